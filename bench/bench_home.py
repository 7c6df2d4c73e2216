"""`agtrace import --from codex` on a home of many sessions: first import, a repeat with nothing
new (the cache of unchanged sources), and detection per source; medians of repeats.

The home is laid out as Codex lays it out (``sessions/YYYY/MM/DD/rollout-*.jsonl``), filled with
copies of the real rollouts of the version matrix (``tests/golden/real/codex@*``), each with its
own session id. Baselines measured in the same run: reading every file once (``read_bytes``) for
the imports, and reading each file's first line for detection.

    .venv/bin/python bench/bench_home.py [--sessions 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from agtrace.capture import import_home
from agtrace.capture.importers.batch import plan
from agtrace.eventlog import Store

REAL = Path(__file__).resolve().parent.parent / "tests" / "golden" / "real"


def build_home(root: Path, sessions: int) -> list[Path]:
    rollouts = sorted(REAL.glob("codex@*/home/.codex/sessions/*/*/*/rollout-*.jsonl"))
    out = []
    for n in range(sessions):
        src = rollouts[n % len(rollouts)]
        lines = src.read_text().splitlines()
        meta = json.loads(lines[0])
        meta["payload"]["id"] = f"{meta['payload']['id'][:-6]}{n:06d}"
        day = root / "sessions" / "2026" / f"{1 + n % 12:02d}" / f"{1 + n % 28:02d}"
        day.mkdir(parents=True, exist_ok=True)
        path = day / f"rollout-{n:06d}.jsonl"
        path.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
        out.append(path)
    return out


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-home-"))
    try:
        files = build_home(tmp / "codex", args.sessions)
        env = {"CODEX_HOME": str(tmp / "codex")}
        read_all = median_s(lambda: [f.read_bytes() for f in files], args.repeats)
        first_lines = median_s(lambda: [f.open("rb").readline() for f in files], args.repeats)
        detect = median_s(lambda: plan([tmp / "codex" / "sessions"]), args.repeats)

        firsts, repeats = [], []
        for i in range(args.repeats):
            with Store(tmp / f"store{i}") as store:
                t0 = time.perf_counter()
                first = import_home(store, "codex", env=env)
                firsts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                again = import_home(store, "codex", env=env)
                repeats.append(time.perf_counter() - t0)
            assert sum(len(r.runs) for r in first.results) == len(files)
            assert again.unchanged == len(files) and not again.results
        first_s, repeat_s = statistics.median(firsts), statistics.median(repeats)
        print(f"{len(files)} sessions, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        print(f"detection (plan):   {detect * 1e3:8.1f} ms = {detect / first_lines:6.1f}x reading "
              f"each file's first line ({first_lines * 1e3:.1f} ms), "
              f"{detect / len(files) * 1e6:.0f} us per source")
        print(f"first --from codex: {first_s:8.2f} s  = {first_s / read_all:6.1f}x reading every "
              f"file ({read_all * 1e3:.1f} ms); {len(files) / first_s:.0f} sessions/s")
        print(f"repeat, unchanged:  {repeat_s:8.3f} s  = {repeat_s / first_s:6.3f}x the first import")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
