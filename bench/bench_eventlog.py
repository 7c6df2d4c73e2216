"""Benchmark the event log against plain JSON lines and per-part JSON rewrites.

Measured in one run, on the same ≈1.5 KB realistic events (assistant messages, shell calls and
their outputs: pytest runs, file listings, code, diffs, grep hits; usage; part ends):

* append events/s per durability mode (``strict``, ``normal``, ``off``; create, append, close
  through ``Store``), and bytes on disk per event; baseline A: plain JSON lines
  (``f.write(json.dumps(e) + "\\n")``, one fsync at the end; and one fsync per event, the
  ``strict`` equivalent);
* size ratio JSON lines / agtrace;
* full scan events/s: ``Store.read`` over the run versus ``json.loads`` of every line;
* baseline B, the pattern of today's pipelines: after every part, rewrite the whole trace as one
  JSON document (``json.dump`` to a temp file, fsync, rename), for 1,000 and 5,000 parts of 5
  events, versus agtrace appending the same parts (``normal``: durable at every part end) —
  total time and bytes written, and the cost of part N at N=100 and N=5,000.

Baseline B is quadratic (5,000 parts rewrite ≈ 90 GB), so by default its total is integrated
from timed rewrites at sampled part counts (bytes written are exact); ``--exact-rewrite`` does
every rewrite for real (only sensible for 1,000 parts).

Medians of ``--repeat`` runs are printed with PASS/FAIL against the budgets of DESIGN.md
(printed, never asserted).

Usage: python bench/bench_eventlog.py [--events 50000] [--strict-events 10000] [--repeat 3]
       [--parts 1000,5000] [--exact-rewrite] [--dir DIR] [--json] [--profile MODE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from agtrace.eventlog import (
    MessageAdded,
    PartEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
    to_builtins,
)

BUDGETS = {
    "append_normal_eps": 200_000,
    "append_strict_eps": 4_000,
    "size_ratio": 5.0,
    "scan_eps": 400_000,
    "part_cost_ratio": 1.5,  # cost of part 5,000 / part 100; "independent of N"
}

# -- realistic events ------------------------------------------------------------------------

_NAMES = [
    "parse",
    "load",
    "render",
    "config",
    "session",
    "cache",
    "index",
    "token",
    "client",
    "schema",
    "router",
    "worker",
    "queue",
    "retry",
    "export",
    "report",
]
_SENTENCES = [
    "Let me look at how {f} handles the {n} case before changing anything.",
    "The failing test is {t}; it expects {n}_{m} to return a dict but gets None.",
    "I'll run the test suite again to confirm the fix in {f}.",
    "The traceback points at line {l} of {f}, where {n} is read before it is set.",
    "Now I understand the problem: {n} is cached across requests, so the second call sees "
    "stale data.",
    "I updated {f} to reset the {n} cache in teardown and added a regression test.",
    "All tests pass except {t}, which depends on network access; skipping it is out of scope.",
    "Let me search for other callers of {n}_{m} to make sure nothing else relies on it.",
]


class Corpus:
    """A fake repository the agent works on: the outputs quote it, so they repeat like real ones."""

    def __init__(self, rng: random.Random, files: int = 40):
        self.rng = rng
        self.files = {}
        for i in range(files):
            pkg = rng.choice(["core", "api", "utils", "cli", "models"])
            path = f"src/app/{pkg}/{rng.choice(_NAMES)}_{i}.py"
            self.files[path] = self._module(path)
        self.tests = [
            f"tests/test_{rng.choice(_NAMES)}_{i}.py::test_{rng.choice(_NAMES)}_"
            f"{rng.choice(_NAMES)}"
            for i in range(120)
        ]

    def _module(self, path: str) -> list[str]:
        rng = self.rng
        lines = [
            '"""' + path.rsplit("/", 1)[1][:-3].replace("_", " ") + ' helpers."""',
            "",
            "from __future__ import annotations",
            "",
            "import json",
            "import os",
            "",
        ]
        for _ in range(rng.randrange(4, 12)):
            n, m = rng.choice(_NAMES), rng.choice(_NAMES)
            lines += [
                f"def {n}_{m}(value, *, strict=False):",
                f'    """Return the {m} of a {n}, or None."""',
                "    if value is None:",
                "        return None",
                f"    result = {{'{n}': value, '{m}': len(str(value))}}",
                f"    if strict and not result['{m}']:",
                f"        raise ValueError('empty {n}')",
                "    return result",
                "",
            ]
        return lines

    def path(self) -> str:
        return self.rng.choice(list(self.files))

    def cat(self) -> tuple[str, str]:
        p = self.path()
        return f"cat -n {p}", "\n".join(f"{i + 1:6}\t{x}" for i, x in enumerate(self.files[p]))

    def pytest(self) -> tuple[str, str]:
        rng = self.rng
        chosen = rng.sample(self.tests, rng.randrange(10, 60))
        failed = [t for t in chosen if rng.random() < 0.15]
        out = [
            "============================= test session starts =============================",
            "platform linux -- Python 3.11.9, pytest-8.2.0, pluggy-1.5.0",
            "rootdir: /workspace/repo",
            f"collected {len(chosen)} items",
            "",
        ]
        out += [f"{t} {'FAILED' if t in failed else 'PASSED'}" for t in chosen]
        for t in failed:
            p = self.path()
            out += [
                "",
                f"___ {t.split('::')[1]} ___",
                "",
                f"    def {t.split('::')[1]}():",
                f">       assert {rng.choice(_NAMES)}_{rng.choice(_NAMES)}(data) == expected",
                "E       AssertionError: assert None == {'key': 'value'}",
                "",
                f"{p}:{rng.randrange(10, 90)}: AssertionError",
            ]
        out.append(
            f"=== {len(failed)} failed, {len(chosen) - len(failed)} passed in "
            f"{rng.uniform(0.5, 9):.2f}s ==="
        )
        return "pytest -q -rA tests", "\n".join(out)

    def listing(self) -> tuple[str, str]:
        rng = self.rng
        out = [f"total {rng.randrange(100, 900)}"]
        for p in rng.sample(list(self.files), rng.randrange(10, 40)):
            out.append(
                f"-rw-r--r--  1 agent agent {rng.randrange(200, 40000):6} "
                f"Jun {rng.randrange(1, 28):2} 10:{rng.randrange(60):02} {p}"
            )
        return "ls -la src/app/*", "\n".join(out)

    def diff(self) -> tuple[str, str]:
        rng = self.rng
        p = self.path()
        lines = self.files[p]
        at = rng.randrange(0, max(1, len(lines) - 12))
        hunk = [
            f"diff --git a/{p} b/{p}",
            "index 3f2a1c4..9b8e7d6 100644",
            f"--- a/{p}",
            f"+++ b/{p}",
            f"@@ -{at + 1},12 +{at + 1},13 @@",
        ]
        for i, x in enumerate(lines[at : at + 12]):
            hunk.append(("-" if i == 5 else " ") + x)
            if i == 5:
                hunk.append("+" + x.replace("value", "value or {}"))
        return f"git diff {p}", "\n".join(hunk)

    def grep(self) -> tuple[str, str]:
        n = self.rng.choice(_NAMES)
        hits = [
            f"{p}:{i + 1}:{x}" for p, ls in self.files.items() for i, x in enumerate(ls) if n in x
        ][:80]
        return f"grep -rn {n} src", "\n".join(hits)

    def message(self) -> str:
        rng = self.rng
        out = []
        target = rng.randrange(700, 3900)
        while sum(map(len, out)) < target:
            out.append(
                rng.choice(_SENTENCES).format(
                    f=self.path(),
                    n=rng.choice(_NAMES),
                    m=rng.choice(_NAMES),
                    t=rng.choice(self.tests),
                    l=rng.randrange(1, 300),
                )
            )
        return " ".join(out)


def make_events(n: int, seed: int = 0) -> list[tuple[object, int]]:
    """``n`` ``(event, part)`` pairs: parts of message, tool call, tool result, usage, part end."""
    rng = random.Random(seed)
    corpus = Corpus(rng)
    tools = [corpus.cat, corpus.pytest, corpus.listing, corpus.diff, corpus.grep]
    out: list[tuple[object, int]] = []
    part = 0
    while len(out) < n:
        part += 1
        call_id = f"call_{rng.getrandbits(64):016x}"
        command, output = rng.choice(tools)()
        while len(output) < 4000 and rng.random() < 0.75:  # `cmd && cmd`: longer outputs
            more_command, more = rng.choice(tools)()
            command, output = f"{command} && {more_command}", f"{output}\n{more}"
        output = output[: rng.randrange(300, 10_000)]
        events = [
            MessageAdded(
                role="assistant",
                text=corpus.message(),
                message_id=f"msg_{part:06}",
                model="claude-sonnet-4-5",
            ),
            ToolCalled(
                call_id=call_id,
                tool="shell",
                arguments={"command": command, "timeout": 120, "workdir": "/workspace/repo"},
                command=command,
            ),
            ToolReturned(
                call_id=call_id,
                tool="shell",
                output=output,
                output_bytes=len(output),
                exit_code=rng.choice([0, 0, 0, 1]),
                duration_ms=round(rng.uniform(5, 9000), 1),
            ),
            UsageReported(
                usage=Usage(
                    input=rng.randrange(200, 4000),
                    output=rng.randrange(50, 900),
                    cache_read=rng.randrange(10_000, 90_000),
                ),
                model="claude-sonnet-4-5",
                cost_usd=round(rng.uniform(0, 0.05), 6),
                request_id=f"req_{rng.getrandbits(64):016x}",
            ),
            PartEnded(
                part_kind="tool",
                title=command[:80],
                tool="shell",
                call_id=call_id,
                tree_id=f"{rng.getrandbits(160):040x}",
            ),
        ]
        out += [(e, part) for e in events]
    return out[:n]


def as_dicts(events: list[tuple[object, int]]) -> list[dict]:
    """The JSON-lines form of the events (what a pipeline would hold), with an envelope."""
    ts = time.time_ns()
    return [
        {"seq": i + 1, "ts": ts + i, "part": p, **to_builtins(e)} for i, (e, p) in enumerate(events)
    ]


# -- measurements ----------------------------------------------------------------------------


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def wchar() -> int:
    """Bytes this process has passed to write(2) so far."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def agtrace_append(root: Path, events, durability: str) -> tuple[float, Store, str]:
    """Create a run and append ``events`` through Store; time from create to close."""
    store = Store(root)
    t0 = time.perf_counter()
    writer = store.create_run(
        RunStarted(agent="bench", model="claude-sonnet-4-5"), durability=durability
    )
    append = writer.append
    for event, part in events:
        append(event, part=part)
    store.close_writer(writer)
    return time.perf_counter() - t0, store, writer.run_id


def jsonl_append(path: Path, dicts: list[dict], *, fsync_each: bool) -> float:
    t0 = time.perf_counter()
    with open(path, "w") as f:
        for d in dicts:
            f.write(json.dumps(d) + "\n")
            if fsync_each:
                f.flush()
                os.fsync(f.fileno())
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def agtrace_scan(store: Store, run_id: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = sum(1 for _ in store.read(run_id))
    return time.perf_counter() - t0, n


def jsonl_scan(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    with open(path) as f:
        for line in f:
            json.loads(line)
            n += 1
    return time.perf_counter() - t0, n


def rewrite_once(path: Path, doc: list[dict]) -> float:
    """One envoi-trace style save: the whole trace to a temp file, fsync, rename."""
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return time.perf_counter() - t0


def rewrite_baseline(
    root: Path, dicts: list[dict], parts: int, exact: bool, samples: int = 12
) -> dict:
    """Baseline B: rewrite the whole JSON document after each of ``parts`` parts of 5 events."""
    path = root / "agent_trace.json"
    # exact bytes: json.dump(list) = "[" + ", ".join(items) + "]"
    sizes = [len(json.dumps(d)) for d in dicts[: parts * 5]]
    total_bytes, acc = 0, 0
    for k in range(1, parts + 1):
        acc += sum(sizes[(k - 1) * 5 : k * 5])
        total_bytes += acc + 2 + 2 * (k * 5 - 1)
    at = {}
    for n in (100, parts):
        at[n] = statistics.median(rewrite_once(path, dicts[: n * 5]) for _ in range(3))
    if exact:
        w0 = wchar()
        total = sum(rewrite_once(path, dicts[: k * 5]) for k in range(1, parts + 1))
        total_bytes = wchar() - w0
        how = "measured"
    else:
        ks = sorted({1, parts, *[round(parts * (i + 0.5) / samples) for i in range(samples)]})
        ts = {k: rewrite_once(path, dicts[: k * 5]) for k in ks}
        total = 0.0  # trapezoid over k = 1..parts
        for a, b in zip(ks, ks[1:], strict=False):
            total += (ts[a] + ts[b]) / 2 * (b - a)
        total += ts[ks[0]]
        how = f"integrated from {len(ks)} timed rewrites"
    path.unlink(missing_ok=True)
    return {
        "seconds": total,
        "bytes_written": total_bytes,
        "part_100_s": at[100],
        f"part_{parts}_s": at[parts],
        "how": how,
    }


def agtrace_parts(root: Path, events, parts: int) -> dict:
    """agtrace appending the same parts, normal mode (durable at each part end)."""
    store = Store(root)
    writer = store.create_run(RunStarted(agent="bench"), durability="normal")
    per_part = []
    w0 = wchar()
    t0 = time.perf_counter()
    for k in range(parts):
        t1 = time.perf_counter()
        for event, part in events[k * 5 : k * 5 + 5]:
            writer.append(event, part=part)
        per_part.append(time.perf_counter() - t1)
    store.close_writer(writer)
    total = time.perf_counter() - t0
    written = wchar() - w0
    store.close()
    on_disk = dir_bytes(root / "runs")

    def around(n: int) -> float:
        lo, hi = max(0, n - 20), min(parts, n + 20)
        return statistics.median(per_part[lo:hi])

    return {
        "seconds": total,
        "bytes_written": written,
        "bytes_on_disk": on_disk,
        "part_100_s": around(100),
        f"part_{parts}_s": around(parts - 20),
    }


# -- driver ----------------------------------------------------------------------------------


def one_repeat(work: Path, events, dicts, strict_n: int, part_counts, exact: bool) -> dict:
    r: dict = {}
    n = len(events)
    for mode in ("strict", "normal", "off"):
        evs = events[:strict_n] if mode == "strict" else events
        root = work / f"store-{mode}"
        secs, store, run_id = agtrace_append(root, evs, mode)
        seg_bytes = dir_bytes(store.run_dir(run_id) / "events")
        r[f"append_{mode}_eps"] = len(evs) / secs
        r[f"bytes_per_event_{mode}"] = seg_bytes / (len(evs) + 1)
        if mode == "normal":
            secs, count = agtrace_scan(store, run_id)
            assert count == n + 1
            r["scan_eps"] = count / secs
            r["catalog_bytes"] = sum(p.stat().st_size for p in root.glob("catalog.db*"))
        store.close()
        shutil.rmtree(root)
    jl = work / "events.jsonl"
    r["jsonl_append_eps"] = n / jsonl_append(jl, dicts, fsync_each=False)
    r["jsonl_bytes_per_event"] = jl.stat().st_size / n
    secs, _ = jsonl_scan(jl)
    r["jsonl_scan_eps"] = n / secs
    r["jsonl_fsync_each_eps"] = strict_n / jsonl_append(jl, dicts[:strict_n], fsync_each=True)
    jl.unlink()
    for mode in ("strict", "normal", "off"):
        r[f"size_ratio_{mode}"] = r["jsonl_bytes_per_event"] / r[f"bytes_per_event_{mode}"]
    for parts in part_counts:
        d = work / f"parts-{parts}"
        d.mkdir()
        r[f"rewrite_{parts}"] = rewrite_baseline(d, dicts, parts, exact)
        r[f"agtrace_{parts}"] = agtrace_parts(d / "store", events, parts)
        shutil.rmtree(d)
    return r


def median_of(reports: list[dict]) -> dict:
    out: dict = {}
    for key, value in reports[0].items():
        if isinstance(value, dict):
            out[key] = median_of([r[key] for r in reports])
        elif isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in reports)
        else:
            out[key] = value
    return out


def verdict(value: float, budget: float, higher_is_better: bool = True) -> str:
    ok = value >= budget if higher_is_better else value <= budget
    return "PASS" if ok else "FAIL"


def print_report(m: dict, n: int, strict_n: int, mean_json: float, part_counts) -> None:
    print(f"events: {n:,} (strict: {strict_n:,}), mean JSON size {mean_json:,.0f} bytes/event\n")
    print(f"{'append (create..close)':34}{'events/s':>12}{'bytes/event':>13}{'JSONL/this':>12}")
    for mode in ("strict", "normal", "off"):
        print(
            f"  agtrace {mode:25}{m[f'append_{mode}_eps']:12,.0f}"
            f"{m[f'bytes_per_event_{mode}']:13,.0f}{m[f'size_ratio_{mode}']:11.1f}x"
        )
    print(
        f"  {'JSON lines, one fsync':32}{m['jsonl_append_eps']:12,.0f}"
        f"{m['jsonl_bytes_per_event']:13,.0f}"
    )
    print(f"  {'JSON lines, fsync per event':32}{m['jsonl_fsync_each_eps']:12,.0f}")
    print(f"  (catalog.db of the normal run: {m['catalog_bytes']:,} bytes)\n")
    print(f"{'full scan':34}{'events/s':>12}")
    print(f"  {'agtrace Store.read':32}{m['scan_eps']:12,.0f}")
    print(f"  {'JSON lines json.loads':32}{m['jsonl_scan_eps']:12,.0f}\n")
    print(
        f"{'per-part durable':26}{'total s':>10}{'written':>14}{'part 100':>11}{'part N':>11}"
        f"{'N/100':>8}"
    )
    for parts in part_counts:
        for name in (f"rewrite_{parts}", f"agtrace_{parts}"):
            x = m[name]
            label = ("JSON rewrite " if name.startswith("rewrite") else "agtrace ") + f"{parts:,}"
            print(
                f"  {label:24}{x['seconds']:10.2f}{x['bytes_written'] / 1e6:12,.1f}MB"
                f"{x['part_100_s'] * 1e3:9.2f}ms{x[f'part_{parts}_s'] * 1e3:9.2f}ms"
                f"{x[f'part_{parts}_s'] / x['part_100_s']:8.2f}"
            )
        rw, ag = m[f"rewrite_{parts}"], m[f"agtrace_{parts}"]
        print(
            f"    agtrace vs rewrite: {rw['seconds'] / ag['seconds']:,.0f}x less time, "
            f"{rw['bytes_written'] / ag['bytes_written']:,.0f}x fewer bytes written "
            f"(rewrite total {rw['how']})"
        )
    big = max(part_counts)
    checks = [
        ("append, group commit (normal)", m["append_normal_eps"], "append_normal_eps", True),
        ("append, per-event fsync (strict)", m["append_strict_eps"], "append_strict_eps", True),
        ("size vs JSON lines (normal)", m["size_ratio_normal"], "size_ratio", True),
        ("full scan + decode", m["scan_eps"], "scan_eps", True),
        (
            f"cost of part {big} / part 100",
            m[f"agtrace_{big}"][f"part_{big}_s"] / m[f"agtrace_{big}"]["part_100_s"],
            "part_cost_ratio",
            False,
        ),
    ]
    print("\nbudgets (DESIGN.md)")
    for label, value, key, higher in checks:
        budget = BUDGETS[key]
        rel = f"{'>=' if higher else '<='} {budget:,}"
        print(
            f"  {verdict(value, budget, higher)}  {label:36}{value:14,.2f}  budget {rel}"
            f"  ({value / budget:.2f} of budget)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--strict-events", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parts", default="1000,5000")
    ap.add_argument("--exact-rewrite", action="store_true")
    ap.add_argument("--dir", help="work directory (default: a temporary one on /tmp)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--profile",
        choices=["strict", "normal", "off", "scan"],
        help="cProfile one append mode (or the scan) and print the top functions",
    )
    args = ap.parse_args()
    part_counts = [int(x) for x in args.parts.split(",")]
    n = max(args.events, 5 * max(part_counts))
    events = make_events(n)
    dicts = as_dicts(events)
    mean_json = statistics.fmean(len(json.dumps(d)) for d in dicts)
    strict_n = min(args.strict_events, n)

    with tempfile.TemporaryDirectory(prefix="agtrace-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        if args.profile:
            profile(work, events, args.profile)
            return
        reports = []
        for _ in range(args.repeat):
            reports.append(
                one_repeat(work, events, dicts, strict_n, part_counts, args.exact_rewrite)
            )
    m = median_of(reports)
    if args.json:
        print(
            json.dumps(
                {
                    "events": n,
                    "strict_events": strict_n,
                    "mean_json_bytes": mean_json,
                    "repeat": args.repeat,
                    "medians": m,
                    "budgets": BUDGETS,
                },
                indent=2,
            )
        )
    else:
        print_report(m, n, strict_n, mean_json, part_counts)


def profile(work: Path, events, mode: str) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    if mode == "scan":
        _, store, run_id = agtrace_append(work / "s", events, "normal")
        prof.runcall(agtrace_scan, store, run_id)
    else:
        prof.runcall(agtrace_append, work / "s", events, mode)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
