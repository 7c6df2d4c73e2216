"""Scale: what users hit through the CLI on long runs and full stores, each ratio against its
baseline measured in the same run, with its budget beside it (issue 14, DESIGN.md's table).

Measures (each a function of :data:`MEASURES`; add one by appending a function that takes the
:class:`Bench` and returns :class:`Row` s — cold replay, snapshots and capture overhead go here):

* ``append``: `agtrace new` + `agtrace append` of N JSON lines (~1.5 KB events, redaction on,
  default durability) in events/s, against the event log's own library rate (the same events
  appended through ``RunWriter.append`` in this process). Budget: >= 150,000 events/s, and the
  ratio is printed (DESIGN: the library reaches >= 200,000).
* ``part_cost``: on a 20,000-part run, `replay --part`, `log --part` and `metrics --per-part
  --part` of part 19,000 against part 10 (wall time of the process). Budget <= 1.25x.
* ``report``: `agtrace report` of that run, seconds. Budget <= 3 s.
* ``store``: `ls`, `ls --json` and `show ID` on a store of 10,000 runs against `sqlite-utils
  --version`. Budget <= 2x.
* ``parquet``: `agtrace export --format parquet` of 1,000 of those runs, seconds. Budget <= 10 s.

Every timed command is a real process through its console script; values are medians of
``--rounds`` (>= 3) rounds, baseline and measured alternating. CPU seconds (user + sys of the
child) are printed beside the wall times: on a shared machine they move less.

    python bench/bench_scale.py [--rounds 3] [--events 200000] [--parts 20000] [--runs 10000]
                                [--fixtures DIR] [--only append,part_cost,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_startup import console_script, timed  # noqa: E402


@dataclass
class Row:
    """One measured figure: ``value`` against ``baseline`` (both in ``unit``); ``budget`` is on
    ``ratio`` when ``on_ratio``, else on ``value``; ``higher`` when more is better."""

    measure: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    budget: float | None = None
    on_ratio: bool = True
    higher: bool = False
    cpu: float | None = None
    cpu_baseline: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline

    @property
    def ok(self) -> bool | None:
        if self.budget is None:
            return None
        x = self.ratio if self.on_ratio else self.value
        return x is not None and (x >= self.budget if self.higher else x <= self.budget)


class Bench:
    """What every measure gets: a scratch directory, the console scripts, the round count and
    an environment for the children (bytecode caches allowed, as an installed package has)."""

    def __init__(self, work: Path, args: argparse.Namespace):
        self.work = work
        self.args = args
        self.rounds = args.rounds
        self.agtrace = console_script("agtrace")
        self.sqlite_utils = console_script("sqlite-utils")
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self._fixtures: dict[str, tuple[Path, object]] = {}

    def cli(self, store: Path, *argv: str) -> list[str]:
        return [self.agtrace, "--store", str(store), *argv]

    def alternate(self, commands: dict[str, Callable[[int], list[str]] | list[str]], warm: bool = True) -> dict:
        """Median (wall, cpu) of each command over the rounds, the commands alternating. A
        command may be a function of the round number giving argv (for fresh output paths)."""
        argv = {n: (c if callable(c) else (lambda _i, c=c: c)) for n, c in commands.items()}
        if warm:
            for make in argv.values():
                timed(make(-1), self.env)
        samples = {n: [] for n in commands}
        for i in range(self.rounds):
            for name, make in argv.items():
                samples[name].append(timed(make(i), self.env))
        return {n: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
                for n, s in samples.items()}

    def fixture(self, name: str, build: Callable[[Path], object]) -> tuple[Path, object]:
        """``(directory, what build returned)`` of a fixture store: built once per process, and
        kept in ``--fixtures DIR`` (reused by later runs of the bench) when that is given."""
        if name in self._fixtures:
            return self._fixtures[name]
        keep = Path(self.args.fixtures) if self.args.fixtures else None
        root = (keep or self.work) / name
        meta = root.with_suffix(".json")
        if keep and meta.exists():
            got = root, json.loads(meta.read_text())
        else:
            got = root, build(root)
            if keep:
                meta.write_text(json.dumps(got[1]))
        self._fixtures[name] = got
        return got

    def long_run(self) -> tuple[Path, str]:
        """A store holding one run of ``--parts`` parts (see :func:`build_long_run`)."""
        return self.fixture(f"long-{self.args.parts}",
                            lambda root: build_long_run(root, root.with_name(root.name + "-work"), self.args.parts))


# -- fixtures ---------------------------------------------------------------------------------


def build_long_run(root: Path, workdir: Path, parts: int) -> str:
    """A run of ``parts`` parts written through the library: per part a message, a shell call
    and its output, usage, a snapshot and the part end, tests every 7th part; every 3rd part
    edits a file of a 20-file workdir, snapshotted into the run's real shadow repository (a new
    tree each time), so replay, diffs and the report do real git work."""
    from agtrace.capture.snapshot import Snapshotter
    from agtrace.eventlog import (
        MessageAdded,
        PartEnded,
        RunEnded,
        RunStarted,
        Store,
        TestsRan,
        ToolCalled,
        ToolReturned,
        Usage,
        UsageReported,
    )

    store = Store(root)
    workdir.mkdir(parents=True)
    for i in range(20):
        (workdir / f"mod{i}.py").write_text("".join(f"def f{j}():\n    return {j}\n" for j in range(60)))
    writer = store.create_run(RunStarted(agent="synthetic", model="bench-model", workdir=str(workdir)),
                              durability="off")
    snap = Snapshotter(store.run_dir(writer.run_id), workdir)
    writer.append(snap.take("base"))
    rng = random.Random(0)
    shot = None
    for n in range(1, parts + 1):
        call = f"call_{n}"
        if n % 3 == 0 or shot is None:
            target = workdir / f"mod{n % 20}.py"
            lines = target.read_text().splitlines()
            lines[(n * 7) % len(lines)] = f"    return {n}  # edited at part {n}"
            target.write_text("\n".join(lines) + "\n")
        shot = snap.take(f"part {n}")
        batch = [
            MessageAdded(role="assistant", text=f"Part {n}: looking at the failures. " * 4),
            ToolCalled(call_id=call, tool="shell", command="pytest -q", arguments={"command": "pytest -q"}),
            ToolReturned(call_id=call, tool="shell", output="\n".join(f"test_{i} PASSED" for i in range(20)),
                         exit_code=0, duration_ms=rng.uniform(5, 900)),
            UsageReported(usage=Usage(input=2000 + n % 500, output=300, cache_read=8000), cost_usd=0.002),
        ]
        if n % 7 == 0:
            batch.append(TestsRan(suite="pytest", passed=min(200, n // 50), failed=200 - min(200, n // 50),
                                  total=200, tree_id=shot.tree_id))
        batch.append(shot)
        batch.append(PartEnded(part_kind="tool", title=f"pytest -q ({n})", tool="shell", call_id=call,
                               tree_id=shot.tree_id))
        writer.append_many([(ev, n, None) for ev in batch])
    writer.append(RunEnded(status="completed", reason="done"))
    store.close_writer(writer)
    store.close()
    return writer.run_id


def build_store_of_runs(root: Path, runs: int) -> list[str]:
    """A store of ``runs`` small runs (10 parts of a message, a call, its output, usage and the
    part end; ended), written through the library with ``durability="off"``."""
    from agtrace.eventlog import (
        MessageAdded,
        PartEnded,
        RunEnded,
        RunStarted,
        Store,
        ToolCalled,
        ToolReturned,
        Usage,
        UsageReported,
    )

    store = Store(root)
    ids = []
    day = 86_400 * 10**9
    t0 = time.time_ns() - 5 * day
    for i in range(runs):
        ts = t0 + i * (5 * day // runs)
        w = store.create_run(RunStarted(agent=f"agent{i % 3}", model="bench-model", task_id=f"t{i % 50}"),
                             durability="off", ts=ts)
        batch = []
        for p in range(1, 11):
            at = ts + p * 10**9
            batch += [(MessageAdded(role="assistant", text=f"step {p} of run {i}"), p, at),
                      (ToolCalled(call_id=f"c{p}", tool="shell", command="ls"), p, at + 1),
                      (ToolReturned(call_id=f"c{p}", tool="shell", output="a\nb\nc", exit_code=0), p, at + 2),
                      (UsageReported(usage=Usage(input=100, output=20)), p, at + 3),
                      (PartEnded(part_kind="tool", title="ls", tool="shell"), p, at + 4)]
        batch.append((RunEnded(status="completed"), None, ts + 20 * 10**9))
        w.append_many(batch)
        store.close_writer(w)
        ids.append(w.run_id)
    store.close()
    return ids


# -- measures ---------------------------------------------------------------------------------


def measure_append(b: Bench) -> list[Row]:
    """CLI append (new + append of N JSON lines) against the library's append of the same events."""
    from bench_eventlog import as_dicts, make_events

    from agtrace.eventlog import RunStarted, Store, event_from_json

    n = b.args.events
    lines = b.work / "append.jsonl"
    with open(lines, "w") as f:
        for d in as_dicts(make_events(n)):
            d.pop("seq")
            f.write(json.dumps(d) + "\n")
    decoded = [event_from_json(line) for line in lines.read_bytes().splitlines()]
    library, cli, cpu = [], [], []
    for i in range(b.rounds):
        store = Store(b.work / f"append-lib-{i}")
        started = time.perf_counter()
        writer = store.create_run(RunStarted(agent="bench"))
        for event, ts, part in decoded:
            writer.append(event, part=part, ts=ts)
        store.close_writer(writer)
        library.append(n / (time.perf_counter() - started))
        store.close()
        root = b.work / f"append-cli-{i}"
        started = time.perf_counter()
        import subprocess

        made = subprocess.run(b.cli(root, "new", "--agent", "bench"), env=b.env, capture_output=True, check=True)
        run_id = made.stdout.decode().strip()
        with open(lines, "rb") as stdin:
            proc = subprocess.Popen(b.cli(root, "append", run_id), env=b.env, stdin=stdin,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
        proc.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("agtrace append failed")
        cli.append(n / (time.perf_counter() - started))
        cpu.append(usage.ru_utime + usage.ru_stime)
    rate, lib = statistics.median(cli), statistics.median(library)
    return [
        Row("append", f"CLI new+append of {n:,} lines", rate, "events/s", lib, "library append",
            budget=0.75, higher=True, cpu=statistics.median(cpu)),
        Row("append", "CLI append events/s (absolute)", rate, "events/s", budget=150_000, on_ratio=False,
            higher=True),
    ]


def measure_part_cost(b: Bench) -> list[Row]:
    """Part 19,000 (or --parts - 1,000) against part 10: replay, log --part, metrics page."""
    store, run_id = b.long_run()
    far = max(11, b.args.parts - 1000)
    out = b.work / "replays"

    def replay(part: int):
        return lambda i: b.cli(store, "replay", run_id, "--part", str(part), "--out", str(out / f"{part}-{i}"),
                               "--json")

    rows = []
    for name, near_cmd, far_cmd in [
        ("replay --part", replay(10), replay(far)),
        ("log --part", b.cli(store, "log", run_id, "--part", "10", "--json"),
         b.cli(store, "log", run_id, "--part", str(far), "--json")),
        ("metrics --per-part --part", b.cli(store, "metrics", run_id, "--per-part", "--part", "10", "--json"),
         b.cli(store, "metrics", run_id, "--per-part", "--part", str(far), "--json")),
    ]:
        got = b.alternate({"near": near_cmd, "far": far_cmd})
        rows.append(Row("part_cost", f"{name} {far:,} vs 10", got["far"][0], "s", got["near"][0], "part 10",
                        budget=1.25, cpu=got["far"][1], cpu_baseline=got["near"][1]))
    return rows


def measure_report(b: Bench) -> list[Row]:
    store, run_id = b.long_run()
    got = b.alternate({"report": lambda i: b.cli(store, "report", run_id, "--out", str(b.work / f"r{i}.html"))},
                      warm=False)
    size = (b.work / "r0.html").stat().st_size
    return [Row("report", f"report of {b.args.parts:,} parts ({size / 2**20:.1f} MiB)", got["report"][0], "s",
                budget=3.0, on_ratio=False, cpu=got["report"][1])]


def measure_store(b: Bench) -> list[Row]:
    root, ids = b.fixture(f"runs-{b.args.runs}", lambda root: build_store_of_runs(root, b.args.runs))
    got = b.alternate({"floor": [b.sqlite_utils, "--version"], "ls": b.cli(root, "ls"),
                       "ls --json": b.cli(root, "ls", "--json"), "show": b.cli(root, "show", ids[len(ids) // 2])})
    return [Row("store", f"{name} at {len(ids):,} runs", got[name][0], "s", got["floor"][0], "sqlite-utils --version",
                budget=2.0, cpu=got[name][1], cpu_baseline=got["floor"][1]) for name in ("ls", "ls --json", "show")]


def measure_parquet(b: Bench) -> list[Row]:
    root, ids = b.fixture(f"runs-{b.args.runs}", lambda root: build_store_of_runs(root, b.args.runs))
    chosen = ids[:1000]
    got = b.alternate({"parquet": lambda i: b.cli(root, "export", "--format", "parquet", "--out",
                                                  str(b.work / f"pq{i}"), *chosen)}, warm=False)
    files = sum(1 for p in (b.work / "pq0").rglob("*.parquet"))
    return [Row("parquet", f"export of {len(chosen):,} runs ({files} files)", got["parquet"][0], "s",
                budget=10.0, on_ratio=False, cpu=got["parquet"][1])]


MEASURES: list[Callable[[Bench], list[Row]]] = [
    measure_append, measure_part_cost, measure_report, measure_store, measure_parquet,
]
"""The measures, in order; each a function of the Bench returning its rows."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="repeats of every timed command (>= 3)")
    ap.add_argument("--events", type=int, default=200_000, help="JSON lines appended")
    ap.add_argument("--parts", type=int, default=20_000, help="parts of the long run")
    ap.add_argument("--runs", type=int, default=10_000, help="runs of the full store")
    ap.add_argument("--fixtures", default="", metavar="DIR",
                    help="keep the built stores (the long run, the full store) in DIR and reuse them")
    ap.add_argument("--only", default="", help="comma-separated measure names (append, part_cost, ...)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="agtrace-bench-scale-") as tmp:
        bench = Bench(Path(tmp), args)
        for measure in MEASURES:
            name = measure.__name__.removeprefix("measure_")
            if only and name not in only:
                continue
            got = measure(bench)
            rows += got
            if not args.json:
                for r in got:
                    print_row(r)
                sys.stdout.flush()
    if args.json:
        print(json.dumps([{**asdict(r), "ratio": r.ratio, "ok": r.ok} for r in rows], indent=2))


def print_row(r: Row) -> None:
    value = f"{r.value:,.0f} {r.unit}" if r.unit == "events/s" else f"{r.value:.3f} {r.unit}"
    cpu = f" (cpu {r.cpu:.2f} s" if r.cpu is not None else ""
    if cpu and r.cpu_baseline:
        cpu += f", cpu x{r.cpu / r.cpu_baseline:.2f}"
    cpu += ")" if cpu else ""
    base = ""
    if r.baseline:
        shown = f"{r.baseline:,.0f}" if r.unit == "events/s" else f"{r.baseline:.3f}"
        base = f"  vs {r.baseline_name} {shown}: x{r.ratio:.2f}"
    if r.budget is None:
        verdict = ""
    else:
        sign = ">=" if r.higher else "<="
        what = "x" if r.on_ratio else ""
        verdict = f"  budget {sign} {what}{r.budget:,}  {'ok' if r.ok else 'OVER' if not r.higher else 'UNDER'}"
    print(f"[{r.measure}] {r.name}: {value}{cpu}{base}{verdict}")


if __name__ == "__main__":
    main()
