"""Scale: the one run of issue 14's acceptance. Every ratio against its baseline measured in the
same run, with its budget beside it and PASS/FAIL (issue 14, DESIGN.md's table).

Measures (each a function of :data:`MEASURES`, in the issue's order; add one by appending a
function that takes the :class:`Bench` and returns :class:`Row` s):

* ``startup`` (item 1): `agtrace --version`, `--help`, `ls`, `show ID` against `sqlite-utils
  --version` (``bench_startup.py``'s commands and store). Budget <= 1.2x.
* ``append`` (item 2): `agtrace new` + `agtrace append` of N JSON lines (~1.5 KB events,
  redaction on, default durability) in events/s, against the event log's own library rate (the
  same events appended through ``RunWriter.append`` in this process). Budget: >= 150,000
  events/s, and the ratio is printed (DESIGN: the library reaches >= 200,000).
* ``part_cost`` (item 3): on a 20,000-part run, `replay --part`, `log --part` and `metrics
  --per-part --part` of part 19,000 against part 10 (wall time of the process; medians of at
  least 9 rounds, as these ~0.2 s commands swing between runs). Budget <= 1.25x.
* ``report`` (item 3): `agtrace report` of that run, seconds. Budget <= 3 s.
* ``cold_replay`` (item 4, ``bench_cold_replay.py``): `agtrace replay` of a 2,000-file / 25 MB
  part into a new directory against a plain Python write of the same bytes (<= 1.5x and <= 0.5
  s) and against `git clone` of the bundle + `git checkout` (>= 3x faster).
* ``snapshot`` (item 5, ``bench_snapshot_scale.py``): on a 24,000-file / 170 MB tree, first
  snapshot against `git add -A && git write-tree` (<= 1.2x); incremental after 1-5 edits <= 50
  ms and >= 10x faster than git on a warm index.
* ``capture`` (item 6, ``bench_capture_cli.py``): `agtrace run` of a raw agent against the bare
  agent: cost per part beyond the snapshot. Budget <= 10 ms.
* ``store`` (item 7): `ls`, `ls --json` and `show ID` on a store of 10,000 runs against `sqlite-utils
  --version`. Budget <= 2x.
* ``parquet`` (item 7): `agtrace export --format parquet` of 1,000 of those runs, seconds.
  Budget <= 10 s.
* ``shadow`` (DESIGN.md's table, ``bench_shadow_size.py``): the shadow repository's bytes on disk
  against the run's bundles, at the worst of 4 points during and after a run of
  ``--shadow-parts`` real snapshots, for each of its three workdirs (flat, nested, wide).
  Budget <= 2x.

Every timed command is a real process through its console script; values are medians of
``--rounds`` (>= 3) rounds, baseline and measured alternating. CPU seconds (user + sys of the
child) are printed beside the wall times: on a shared machine they move less. Progress goes to
stderr; stdout gets the table (or, with ``--json``, the rows).

    python bench/bench_scale.py [--rounds 3] [--events 200000] [--parts 20000] [--runs 10000]
                                [--replay-files 2000 --replay-mb 25] [--snapshot-files 24000
                                --snapshot-mb 170] [--capture-files 2000 --capture-parts 200]
                                [--shadow-parts 1000 --shadow-files 3000]
                                [--fixtures DIR] [--only startup,append,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_capture_cli  # noqa: E402
import bench_cold_replay  # noqa: E402
import bench_shadow_size  # noqa: E402
import bench_snapshot_scale  # noqa: E402
import bench_startup  # noqa: E402
from common import console_script, python_env, timed  # noqa: E402
from scale_fixtures import build_long_run, build_store_of_runs  # noqa: E402


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
    speedup: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline; baseline / value for a ``speedup`` (how many times faster)."""
        if not self.baseline or not self.value:
            return None
        return self.baseline / self.value if self.speedup else self.value / self.baseline

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
        self.env = python_env()
        self._fixtures: dict[str, tuple[Path, object]] = {}

    def cli(self, store: Path, *argv: str) -> list[str]:
        return [self.agtrace, "--store", str(store), *argv]

    def alternate(self, commands: dict[str, Callable[[int], list[str]] | list[str]], warm: bool = True,
                  env: dict[str, str] | None = None, rounds: int = 0) -> dict:
        """Median (wall, cpu) of each command over the rounds, the commands alternating. A
        command may be a function of the round number giving argv (for fresh output paths)."""
        argv = {n: (c if callable(c) else (lambda _i, c=c: c)) for n, c in commands.items()}
        env = env or self.env
        if warm:
            for make in argv.values():
                timed(make(-1), env)
        samples = {n: [] for n in commands}
        for i in range(rounds or self.rounds):
            for name, make in argv.items():
                samples[name].append(timed(make(i), env))
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


# -- measures ---------------------------------------------------------------------------------


def measure_startup(b: Bench) -> list[Row]:
    """bench_startup's four commands against its floor, on its small store (item 1)."""
    env = {**b.env, "AGTRACE_HOME": str(b.work / "startup")}
    run_id = bench_startup.make_store(b.work / "startup", b.agtrace, 5, env)
    commands = bench_startup.startup_commands(b.agtrace, b.sqlite_utils, run_id)
    floor = next(iter(commands))
    # sqlite-utils imports pandas and numpy when they are installed (most of its start here):
    # the same floor without them, for information beside the budgeted rows
    lean = "sqlite-utils --version without pandas/numpy"
    got = b.alternate({**commands, lean: [sys.executable, "-c", _LEAN_SQLITE_UTILS]}, env=env,
                      rounds=max(b.rounds, 7))  # cheap: more rounds, steadier
    rows = [Row("startup", name, got[name][0], "s", got[floor][0], floor, budget=bench_startup.BUDGET,
                cpu=got[name][1], cpu_baseline=got[floor][1]) for name in commands if name != floor]
    slowest = max(rows, key=lambda r: r.value)
    rows.append(Row("startup", f"slowest ({slowest.name}), for information", slowest.value, "s", got[lean][0], lean,
                    cpu=slowest.cpu, cpu_baseline=got[lean][1]))
    return rows


_LEAN_SQLITE_UTILS = ("import sys; sys.modules['pandas'] = sys.modules['numpy'] = None; "
                      "from sqlite_utils.cli import cli; sys.argv = ['sqlite-utils', '--version']; cli()")


def measure_cold_replay(b: Bench) -> list[Row]:
    """bench_cold_replay's run: CLI replay into a new dir, plain write, bundle clone (item 4)."""
    m = bench_cold_replay
    files, mb = b.args.replay_files, b.args.replay_mb
    r = m.run(files, mb, b.rounds)
    what = f"replay --part (CLI, new dir, {files:,} files / {r['bytes'] / 1e6:.0f} MB)"
    ms, cpu = r["cli_replay_ms"], r["cli_replay_cpu_ms"]
    return [
        Row("cold_replay", what, ms, "ms", r["plain_write_ms"], "plain Python write", m.FLOOR_RATIO_BUDGET,
            cpu=cpu, cpu_baseline=r["plain_write_cpu_ms"]),
        Row("cold_replay", what, ms, "ms", budget=m.COLD_MS_BUDGET, on_ratio=False, cpu=cpu),
        Row("cold_replay", what, ms, "ms", r["clone_checkout_ms"], "bundle clone + checkout", m.CLONE_SPEEDUP_BUDGET,
            higher=True, speedup=True, cpu=cpu, cpu_baseline=r["clone_checkout_cpu_ms"]),
        # for information: the checkout alone against the same floor, so the table shows how
        # much of the CLI's ratio is the fixed start (interpreter, click, modules, store open)
        Row("cold_replay", "checkout alone (in-process, default: half forked), for information",
            r["checkout_default_ms"], "ms", r["plain_write_ms"], "plain Python write",
            note=(f"the CLI's replay less the checkout: {ms - r['checkout_default_ms']:.0f} ms of start, "
                  f"imports and store open; checkout on one thread {r['checkout_1_thread_ms']:.0f} ms")),
    ]


def measure_snapshot(b: Bench) -> list[Row]:
    """bench_snapshot_scale's run: first and incremental snapshots against git (item 5)."""
    m = bench_snapshot_scale
    files, mb = b.args.snapshot_files, b.args.snapshot_mb
    r = m.run(files, mb, b.rounds, b.args.snapshot_edits)
    git = "git add -A + write-tree"
    inc = f"incremental snapshot after 1-5 edits ({files:,} files, median of {r['edits']})"
    note = (f"detector {','.join(r['detectors'])}; stat walk {r['incremental_walk_ms']:.1f} ms; "
            f"first snapshot's blobs in {r['first_packs']} pack(s)")
    return [
        Row("snapshot", f"first snapshot ({files:,} files / {r['bytes'] / 1e6:.0f} MB)", r["first_ms"], "ms",
            r["first_git_ms"], git, m.FIRST_RATIO_BUDGET, cpu=r["first_cpu_ms"], cpu_baseline=r["first_git_cpu_ms"]),
        Row("snapshot", inc, r["incremental_ms"], "ms", budget=m.INCREMENTAL_MS_BUDGET, on_ratio=False,
            cpu=r["incremental_cpu_ms"], note=note),
        Row("snapshot", inc, r["incremental_ms"], "ms", r["incremental_git_ms"], f"{git} (warm index)",
            m.INCREMENTAL_SPEEDUP_BUDGET, higher=True, speedup=True, cpu=r["incremental_cpu_ms"],
            cpu_baseline=r["incremental_git_cpu_ms"]),
    ]


def measure_capture(b: Bench) -> list[Row]:
    """bench_capture_cli's run: `agtrace run` against the bare agent, per part (item 6)."""
    m = bench_capture_cli
    a = b.args
    r = m.run(a.capture_files, a.capture_parts, a.capture_small, b.rounds, a.think_ms)
    note = (f"{a.capture_parts} parts: captured {r['captured_s']:.2f} s vs bare {r['bare_s']:.2f} s; "
            f"marginal {r['per_part_ms_marginal']:.1f} ms/part - snapshot {r['snapshot_ms_median']:.1f} ms; "
            "cpu column: cpu per marginal part, snapshot included")
    return [Row("capture", f"per part beyond the snapshot, vs bare agent ({a.capture_files:,} files)",
                r["overhead_beyond_snapshot_ms"], "ms", budget=m.BUDGET_MS, on_ratio=False,
                cpu=r["cpu_per_part_ms_marginal"], note=note)]


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
            higher=True, cpu=statistics.median(cpu)),
    ]


PART_COST_ROUNDS = 9
"""Rounds of the part-cost commands at least (cheap, and noisy at 3)."""


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
        # ~0.2 s commands whose medians of 3 swung +-30% between runs: more rounds, as for startup
        got = b.alternate({"near": near_cmd, "far": far_cmd}, rounds=max(b.rounds, PART_COST_ROUNDS))
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


def measure_shadow(b: Bench) -> list[Row]:
    """bench_shadow_size's runs: shadow repository bytes against the run's bundles (DESIGN.md)."""
    m = bench_shadow_size
    parts, files = b.args.shadow_parts, b.args.shadow_files
    r = m.run(parts, files, 4)
    rows = []
    for kind in ("flat", "nested", "wide"):
        points = [k.removeprefix(f"{kind}_").removesuffix("_ratio") for k in r
                  if k.startswith(f"{kind}_") and k.endswith("_ratio") and k != f"{kind}_worst_ratio"]
        worst = max(points, key=lambda at: r[f"{kind}_{at}_ratio"])
        rows.append(Row("shadow", f"{kind} workdir: shadow repository / bundles, worst point ({worst}) of {parts:,} parts",
                        r[f"{kind}_{worst}_shadow_bytes"] / 1e3, "KB", r[f"{kind}_{worst}_bundle_bytes"] / 1e3,
                        "the run's bundles", m.RATIO_BUDGET,
                        note=f"{kind}: at the end x{r[f'{kind}_end_ratio']:.2f} in {r[f'{kind}_end_packs']} pack(s); "
                             f"snapshot median {r[f'{kind}_snapshot_ms_median']:.2f} ms"))
    return rows


MEASURES: list[Callable[[Bench], list[Row]]] = [
    measure_startup, measure_append, measure_part_cost, measure_report, measure_cold_replay, measure_snapshot,
    measure_capture, measure_store, measure_parquet, measure_shadow,
]
"""The measures, in order; each a function of the Bench returning its rows."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="repeats of every timed command (>= 3)")
    ap.add_argument("--events", type=int, default=200_000, help="JSON lines appended")
    ap.add_argument("--parts", type=int, default=20_000, help="parts of the long run")
    ap.add_argument("--runs", type=int, default=10_000, help="runs of the full store")
    ap.add_argument("--replay-files", type=int, default=2000, help="files of the cold replay's tree")
    ap.add_argument("--replay-mb", type=int, default=25, help="MB of the cold replay's tree")
    ap.add_argument("--snapshot-files", type=int, default=24_000, help="files of the snapshot tree")
    ap.add_argument("--snapshot-mb", type=int, default=170, help="MB of the snapshot tree")
    ap.add_argument("--snapshot-edits", type=int, default=30, help="incremental snapshots (1-5 edits each)")
    ap.add_argument("--capture-files", type=int, default=2000, help="files of the captured agent's repository")
    ap.add_argument("--capture-parts", type=int, default=200, help="parts of the long captured run")
    ap.add_argument("--capture-small", type=int, default=20, help="parts of the short captured run")
    ap.add_argument("--think-ms", type=float, default=20.0, help="the captured agent's pause per part")
    ap.add_argument("--shadow-parts", type=int, default=1000, help="snapshots of each shadow-size run")
    ap.add_argument("--shadow-files", type=int, default=3000, help="files of the nested and wide shadow-size workdirs")
    ap.add_argument("--fixtures", default="", metavar="DIR",
                    help="keep the built stores (the long run, the full store) in DIR and reuse them")
    names = [m.__name__.removeprefix("measure_") for m in MEASURES]
    ap.add_argument("--only", default="", help=f"comma-separated measure names ({', '.join(names)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - set(names):
        ap.error(f"--only: unknown measure {', '.join(sorted(only - set(names)))}; the measures are {', '.join(names)}")
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agtrace-bench-scale-") as tmp:
        bench = Bench(Path(tmp), args)
        for measure, name in zip(MEASURES, names, strict=True):
            if only and name not in only:
                continue
            print(f"[{name}] measuring ({time.perf_counter() - started:.0f} s in)", file=sys.stderr, flush=True)
            got = measure(bench)
            rows += got
            for r in got:
                print(" ", format_row(r), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([{**asdict(r), "ratio": r.ratio, "ok": r.ok} for r in rows], indent=2))
        return
    print(f"agtrace scale benchmark (issue 14): medians of {args.rounds} alternating rounds "
          f"(startup {max(args.rounds, 7)}, part cost {max(args.rounds, PART_COST_ROUNDS)}); cpu = user+sys; {time.perf_counter() - started:.0f} s in all")
    print_table(rows)


def _amount(x: float, unit: str) -> str:
    if unit == "events/s":
        return f"{x:,.0f} ev/s"
    return f"{x:.3f} s" if unit == "s" else f"{x:.1f} {unit}"


def _columns(r: Row) -> list[str]:
    base = f"{_amount(r.baseline, r.unit)} {r.baseline_name}" if r.baseline else "-"
    if r.ratio is None:
        ratio = "-"
    else:
        ratio = f"x{r.ratio:.2f}"
        if r.speedup:
            ratio = f"{r.ratio:.1f}x faster" if r.ratio >= 1 else f"{1 / r.ratio:.1f}x slower"
    if r.budget is None:
        budget, verdict = "-", "-"
    else:
        sign = ">=" if r.higher else "<="
        if r.speedup:
            budget = f">= {r.budget:g}x faster"
        elif r.on_ratio:
            budget = f"{sign} x{r.budget:g}"
        else:
            budget = f"{sign} {_amount(r.budget, r.unit)}"
        verdict = "PASS" if r.ok else "FAIL"
    cpu = "-" if r.cpu is None else _amount(r.cpu, r.unit if r.unit != "events/s" else "s")
    if r.cpu is not None and r.cpu_baseline:
        cpu += f" (x{r.cpu / r.cpu_baseline:.2f})"
    return [r.measure, r.name, _amount(r.value, r.unit), base, ratio, budget, verdict, cpu]


def format_row(r: Row) -> str:
    """One row as a line (the progress printed while the bench runs)."""
    measure, name, value, base, ratio, budget, verdict, cpu = _columns(r)
    return f"{name}: {value} vs {base}: {ratio}, budget {budget}: {verdict} (cpu {cpu})"


def print_table(rows: list[Row]) -> None:
    """The rows as a table, the notes below it."""
    head = ["measure", "what", "value", "baseline", "ratio", "budget", "verdict", "cpu (x baseline's)"]
    cells = [head, *(_columns(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for n, c in enumerate(cells):
        print("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    passed = sum(1 for r in rows if r.ok)
    budgeted = sum(1 for r in rows if r.ok is not None)
    print(f"{passed} of {budgeted} budgets PASS")
    for r in rows:
        if r.note:
            print(f"  [{r.measure}] {r.note}")


if __name__ == "__main__":
    main()
