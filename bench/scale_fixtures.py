"""The stores bench_scale.py measures on: a run of many parts with real snapshots, and a store
of many small runs; both written through the library."""

from __future__ import annotations

import random
import time
from pathlib import Path


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
