"""Import throughput: MB/s of source and events/s, medians of repeats, for the largest sources.

Sources: the largest TRAE trajectory fixture, the ISO-Bench fixture items, envoi-trace runs
built from a real git workspace (``tests/envoi_build.py``) of 9 and 900 parts (era A JSON + bundle,
era C Parquet), and a big Claude Code session (``--claude-copies`` copies of the lines of
``claude-code/daaain_representative_messages.jsonl``, ids made unique, each copy's text padded to
a few KB, as long sessions have; ``--only claude`` runs just that one). Each repeat imports into a fresh store, so nothing is skipped as already imported.
The baseline measured in the same run is ``json.loads`` of the same source (parsing alone), so
the ratio says what recording costs on top of reading.

    /tmp/venv/bin/python bench/bench_import.py [--repeats 5]
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

from agtrace.capture.importers import IMPORTERS, import_source
from agtrace.eventlog import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from envoi_build import build_run, sample_steps  # noqa: E402

FIXTURES = Path("/work/shared/fixtures")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _bench(name: str, path: Path, fmt: str, repeats: int) -> dict:
    times, events = [], 0
    for _ in range(repeats):
        root = Path(tempfile.mkdtemp(prefix="bench-import-"))
        try:
            with Store(root / "store") as store:
                t = time.perf_counter()
                result = import_source(store, path, IMPORTERS[fmt])
                times.append(time.perf_counter() - t)
                assert not result.error, result.error
                events = sum(store.info(r).events for r in result.runs)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    files = [path] if path.is_file() else [p for p in path.rglob("*.json") if p.is_file()]
    parse = []
    for _ in range(repeats):
        t = time.perf_counter()
        for f in files:
            if f.suffix == ".jsonl":
                [json.loads(line) for line in f.read_bytes().splitlines() if line.strip()]
            else:
                json.loads(f.read_bytes())
        parse.append(time.perf_counter() - t)
    med, size = statistics.median(times), _size(path)
    return {"source": name, "bytes": size, "events": events, "median_s": round(med, 4),
            "mb_per_s": round(size / med / 1e6, 2), "events_per_s": round(events / med),
            "json_parse_s": round(statistics.median(parse), 5)}


def _steps(n: int) -> list[dict]:
    base = sample_steps()
    out = []
    for i in range(n):
        step = dict(base[i % len(base)])
        step["turn"] = 1 + i // 50
        step.pop("turn_usage", None)
        if "write" in step:
            step["write"] = {f"gen/{i % 40}.c": f"int f{i}(void) {{ return {i}; }}\n" * 20}
        step.pop("delete", None)
        step.pop("symlink", None)
        step.pop("chmod_x", None)
        step["output"] = f"output of step {i}\n" * 50
        out.append(step)
    return out


def _claude_session(path: Path, copies: int) -> Path:
    """A Claude Code session of ``copies`` × the fixture's lines (see the module docstring)."""
    lines = (FIXTURES / "claude-code" / "daaain_representative_messages.jsonl").read_text().splitlines()
    pad = " ".join(f"word{i}" for i in range(600))  # ~4.5 KB of plain text per message
    out = []
    for c in range(copies):
        for line in lines:
            rec = json.loads(line)
            for key in ("uuid", "parentUuid", "requestId"):
                if rec.get(key):
                    rec[key] = f"{rec[key]}-{c}"
            msg = rec.get("message")
            if isinstance(msg, dict):
                if msg.get("id"):
                    msg["id"] = f"{msg['id']}-{c}"
                for block in msg.get("content") if isinstance(msg.get("content"), list) else []:
                    if isinstance(block, dict) and isinstance(block.get("text"), str):
                        block["text"] += "\n" + pad
                    if isinstance(block, dict) and block.get("id"):
                        block["id"] = f"{block['id']}-{c}"
                    if isinstance(block, dict) and block.get("tool_use_id"):
                        block["tool_use_id"] = f"{block['tool_use_id']}-{c}"
            out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--claude-copies", type=int, default=1000)
    ap.add_argument("--only", choices=["claude"], default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-src-"))
    try:
        claude = _claude_session(work / "claude-session.jsonl", args.claude_copies)
        if args.only == "claude":
            rows = [_bench(f"claude-code session, {args.claude_copies} copies", claude, "claude-session",
                           args.repeats)]
            _print(rows)
            return
        sources = [("trae trajectory 212 KB", FIXTURES / "trae" / "trajectory_20260118_211615.json", "trae"),
                   ("isobench claude_code item", FIXTURES / "isobench" / "claude_code_sonnet_sglang_core-0000",
                    "isobench"),
                   ("isobench trae item (trajectory)", FIXTURES / "isobench" / "trae_sonnet45_sglang_sso_expired",
                    "isobench")]
        for parts, era in ((9, "A"), (900, "A"), (900, "C")):
            src = work / f"envoi-{parts}-{era}"
            build_run(src, sample_steps() if parts == 9 else _steps(parts), session_end={"reason": "solved"},
                      era=era, trajectory_id=f"bench-{parts}-{era}")
            sources.append((f"envoi era {era}, {parts} parts", src, "envoi-trace"))
        sources.append((f"claude-code session, {args.claude_copies} copies", claude, "claude-session"))
        rows = [_bench(name, path, fmt, args.repeats) for name, path, fmt in sources]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print(rows)


def _print(rows: list[dict]) -> None:
    print(f"{'source':<34} {'bytes':>10} {'events':>7} {'median s':>9} {'MB/s':>7} {'events/s':>9} {'parse s':>8}")
    for r in rows:
        print(f"{r['source']:<34} {r['bytes']:>10} {r['events']:>7} {r['median_s']:>9} {r['mb_per_s']:>7} "
              f"{r['events_per_s']:>9} {r['json_parse_s']:>8}")


if __name__ == "__main__":
    main()
