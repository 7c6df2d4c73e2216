"""Benchmark `agtrace report` on a long run: render time, file size, first paint in headless Chromium.

Records a synthetic run of N parts (default 5,000) through the real Recorder on a small workdir
(a snapshot after every part; one file edited every third part, tests every third, priced usage
after each part), renders its report, then opens the file in headless Chromium R times (fresh
navigation each time) and reads, from the page's Performance API over CDP:

* ``first-contentful-paint`` (the server-rendered header);
* ``agtrace-ready`` (the mark the page sets once plots and the first transcript page are drawn);
* the time ``agtraceJump(N - 679)`` takes (render another page and show that part's diff).

Baseline, measured in the same run: first paint of a minimal HTML page in the same browser.
Budget: first paint < 2 s (median). Usage: python bench/bench_report.py [--parts 5000] [--repeats 5] [--json] [--screenshot artifacts/x.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agtrace.capture.recorder import Recorder  # noqa: E402
from agtrace.eventlog import Store  # noqa: E402
from agtrace.replay.report import render_report  # noqa: E402
from tests import chromium  # noqa: E402

BUDGET_FIRST_PAINT_MS = 2000


def build_run(store: Store, workdir: Path, parts: int) -> str:
    """A ``parts``-part run recorded like a capture: tool calls, messages, tests, edits, usage."""
    workdir.mkdir(parents=True)
    for i in range(20):
        (workdir / f"mod{i}.py").write_text("".join(f"def f{j}():\n    return {j}\n" for j in range(60)))
    with Recorder(store, workdir=workdir, agent="synthetic", agent_version="1", model="bench-model",
                  task="make the suite pass", task_id="bench/report", durability="off") as rec:
        for n in range(1, parts + 1):
            kind = n % 3
            if kind == 0:
                target = workdir / f"mod{n % 20}.py"
                lines = target.read_text().splitlines()
                lines[(n * 7) % len(lines)] = f"    return {n}  # edited at part {n}"
                target.write_text("\n".join(lines) + "\n")
                call = rec.tool_call("apply_patch", {"path": target.name}, command=f"patch {target.name}")
                rec.tool_result(call, "patched")
            elif kind == 1:
                call = rec.tool_call("shell", command="pytest -q")
                ok = n % 5 != 1
                rec.tool_result(call, "\n".join(f"test_{i} PASSED" for i in range(30)),
                                exit_code=0 if ok else 1, status="ok" if ok else "error")
                passed = min(200, n // 20)
                rec.test_result(suite="pytest", passed=passed, failed=200 - passed, total=200)
            else:
                rec.message("assistant", f"Part {n}: looking at the failures and planning the next edit. " * 3)
            rec.usage(input=2000 + n % 500, output=300, cache_read=8000, cost_usd=0.002)
        rec.end("completed", "all parts done")
    return rec.run_id


def paint_times(browser: chromium.Chromium, page: Path, jump_to: int | None) -> dict:
    browser.open(page)
    fcp = browser.eval("""new Promise(done => { const t0 = Date.now(), look = () => {
        const e = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
        if (e || Date.now() - t0 > 5000) done(e ? e.startTime : null); else setTimeout(look, 10); }; look(); })""")
    out = {"first_paint_ms": fcp}
    if jump_to is not None:
        out["ready_ms"] = browser.eval("performance.getEntriesByName('agtrace-ready')[0].startTime")
        out["jump_ms"] = browser.eval(f"(() => {{ const t = performance.now(); agtraceJump({jump_to}); return performance.now() - t; }})()")
        out["errors"] = browser.console_errors()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--screenshot", default=None, metavar="PNG", help="also save a screenshot of the report's first screen")
    args = ap.parse_args()
    if not chromium.available():
        sys.exit(f"{chromium.CHROMIUM} is absent; install Debian's chromium package")
    tmp = Path(tempfile.mkdtemp(prefix="agtrace-bench-report-"))
    try:
        store = Store(tmp / "store")
        t = time.perf_counter()
        run_id = build_run(store, tmp / "work", args.parts)
        record_s = time.perf_counter() - t
        renders = []
        for _ in range(3):
            t = time.perf_counter()
            html = render_report(store, run_id)
            renders.append(time.perf_counter() - t)
        page = tmp / "report.html"
        page.write_text(html)
        blank = tmp / "blank.html"
        blank.write_text("<!doctype html><title>x</title><p>baseline</p><script>document.body.dataset.ready=1</script>")
        runs, base = [], []
        with chromium.Chromium() as browser:
            for _ in range(args.repeats):
                base.append(paint_times(browser, blank, None)["first_paint_ms"])
                runs.append(paint_times(browser, page, max(1, args.parts - 679)))
            if args.screenshot:
                browser.open(page)
                browser.screenshot(args.screenshot, full_page=False)
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        result = {
            "parts": args.parts, "events": store.info(run_id).events, "record_s": round(record_s, 2),
            "render_s": round(statistics.median(renders), 3), "bytes": len(html.encode()),
            "first_paint_ms": round(med("first_paint_ms"), 1), "ready_ms": round(med("ready_ms"), 1),
            "jump_ms": round(med("jump_ms"), 1), "baseline_first_paint_ms": round(statistics.median(base), 1),
            "console_errors": sorted({e for r in runs for e in r["errors"]}), "repeats": args.repeats,
        }
        result["first_paint_vs_baseline"] = round(result["first_paint_ms"] / max(result["baseline_first_paint_ms"], 0.1), 2)
        result["budget_ok"] = result["first_paint_ms"] < BUDGET_FIRST_PAINT_MS and result["ready_ms"] < BUDGET_FIRST_PAINT_MS
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['parts']:,} parts / {result['events']:,} events recorded in {result['record_s']}s")
    print(f"render_report: {result['render_s']}s median of 3, {result['bytes'] / 2**20:.1f} MiB")
    print(f"first contentful paint: {result['first_paint_ms']} ms median of {args.repeats} "
          f"(blank page baseline {result['baseline_first_paint_ms']} ms, x{result['first_paint_vs_baseline']})")
    print(f"plots + first transcript page drawn (agtrace-ready): {result['ready_ms']} ms; "
          f"jump to part {args.parts - 679}: {result['jump_ms']} ms")
    print(f"budget first paint < {BUDGET_FIRST_PAINT_MS} ms: {'ok' if result['budget_ok'] else 'OVER'}; "
          f"console errors: {result['console_errors'] or 'none'}")


if __name__ == "__main__":
    main()
