"""Benchmark `agtrace view` on stores of 1,000 and 10,000 runs: index first paint and search latency.

For each size a store is written through the library (tests/view_store.py, on tmpfs when there
is one), a real `agtrace view` process is started on 127.0.0.1 and measured, R times each
(medians):

* ``ttfb_ms``: time to the first byte of ``GET /`` (the index page's HTML);
* ``page_ms``: ``GET /api/runs?limit=50`` whole (the first page's JSON, newest first), and the
  same sorted by tokens (``page_tokens_ms``) and filtered by agent and tag (``page_filter_ms``);
* ``paint_ms``: headless Chromium's navigation to ``/`` until the table is drawn
  (``body[data-ready]``, set after the first page's JSON is rendered);
* ``search_ms``: ``GET /api/runs?q=…`` (the search box) and ``GET /api/search?q=…``, when the
  installed agtrace has full-text search (``agtrace.eventlog.search``); the first search folds
  the index and is reported apart (``search_first_ms``).

Baselines, measured in the same run: the server's floor (``GET`` of a path it answers 404 to:
the HTTP round trip and the access check) and a paint of a minimal page in the same browser;
ratios are page/floor and 10,000/1,000 (paging in SQL: a page of 10,000 runs should cost about
what one of 1,000 does). Usage: python bench/bench_view.py [--sizes 1000,10000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import chromium  # noqa: E402
from tests.view_server import ViewServer, fast_dir  # noqa: E402
from tests.view_store import make_store  # noqa: E402


def _timed_get(host: str, port: int, path: str) -> tuple[float, float]:
    """(ms to the first byte, ms to the whole body) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    first = time.perf_counter()
    resp.read()
    done = time.perf_counter()
    conn.close()
    return (first - t0) * 1000, (done - t0) * 1000


def _median(values) -> float:
    return round(statistics.median(values), 2)


def measure(size: int, repeats: int, scratch: Path) -> dict:
    root = scratch / f"store-{size}"
    t0 = time.perf_counter()
    make_store(root, size, hostile=False)
    built = time.perf_counter() - t0
    out: dict = {"runs": size, "build_s": round(built, 1)}
    with ViewServer(root) as server:
        host, port = server.base.removeprefix("http://").rsplit(":", 1)
        port = int(port)
        _timed_get(host, port, "/api/runs?limit=50")  # warm: the first request brings projections up to date

        def med(path: str, which: int = 1) -> float:
            return _median([_timed_get(host, port, path)[which] for _ in range(repeats)])

        out["floor_ms"] = med("/no-such-page")
        out["ttfb_ms"] = med("/", 0)
        out["page_ms"] = med("/api/runs?limit=50")
        out["page_tokens_ms"] = med("/api/runs?limit=50&sort=tokens")
        out["page_filter_ms"] = med("/api/runs?limit=50&agent=codex&tag=exp%3Da&sort=cost")
        out["page_last_ms"] = med(f"/api/runs?limit=50&offset={size - 50}")
        facets = json.loads(server.get("/api/facets")[2])
        if facets["search"]:
            out["search_first_ms"] = round(_timed_get(host, port, "/api/search?q=step+3")[1], 2)
            out["search_ms"] = med("/api/search?q=step+3")
            out["search_box_ms"] = med("/api/runs?limit=50&q=step+3")
        else:
            out["search_ms"] = None
        with chromium.Chromium(1400, 900) as browser:
            paints, blank = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                browser.open(server.url, ready="document.body.dataset.ready")
                paints.append((time.perf_counter() - t) * 1000)
            page = scratch / "blank.html"
            page.write_text("<!doctype html><body data-ready=1>blank</body>")
            for _ in range(repeats):
                t = time.perf_counter()
                browser.open(page, ready="document.body.dataset.ready")
                blank.append((time.perf_counter() - t) * 1000)
            out["paint_ms"], out["blank_paint_ms"] = _median(paints), _median(blank)
    out["page_over_floor"] = round(out["page_ms"] / out["floor_ms"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    scratch = fast_dir(Path("/tmp") / "agtrace-bench-view")
    try:
        results = [measure(int(s), args.repeats, scratch) for s in args.sizes.split(",")]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len(results) > 1:
        for key in ("ttfb_ms", "page_ms", "page_tokens_ms", "paint_ms"):
            results[-1][f"{key}_vs_{results[0]['runs']}"] = round(results[-1][key] / results[0][key], 2)
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['runs']:,} runs (written in {r['build_s']}s), medians of {args.repeats}:")
        print(f"  server floor (404) {r['floor_ms']} ms; GET / first byte {r['ttfb_ms']} ms")
        print(f"  first page JSON {r['page_ms']} ms ({r['page_over_floor']}x floor); by tokens "
              f"{r['page_tokens_ms']} ms; filtered {r['page_filter_ms']} ms; last page {r['page_last_ms']} ms")
        print(f"  first paint in Chromium {r['paint_ms']} ms (blank page {r['blank_paint_ms']} ms)")
        if r["search_ms"] is None:
            print("  search: not in this agtrace (agtrace.eventlog.search)")
        else:
            print(f"  search {r['search_ms']} ms (first, folding the index: {r['search_first_ms']} ms); "
                  f"search box page {r['search_box_ms']} ms")
    if len(results) > 1:
        last, base = results[-1], results[0]["runs"]
        ratios = ", ".join(f"{k} {last[k + '_vs_' + str(base)]}x" for k in ("ttfb_ms", "page_ms", "page_tokens_ms", "paint_ms"))
        print(f"{last['runs']:,} vs {base:,} runs: {ratios}")


if __name__ == "__main__":
    main()
