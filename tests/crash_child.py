"""A writer process for the crash tests (run as a program; pytest does not collect it).

It opens an existing run of a store and appends realistic events until it is killed, printing
one line per milestone on stdout (flushed at once)::

    start <next_seq> <pid>      the writer is open (torn tail, if any, already cut)
    torn <offset> <bytes_cut>   the open segment had a torn tail that was cut on open
    durable <seq>               ``Ack.durable`` increased to <seq>: the writer reported it durable
    done <last_seq>             --events was reached and the writer was closed
    locked <message>            the run's lock is held by another writer (exit code 3)

``durable`` lines are the only acknowledgments the parent trusts. The content of the event at
seq ``s`` is a pure function of ``s`` (:func:`event_for`), so the parent can check every event
it reads back without any record of what the child wrote.

Usage: python tests/crash_child.py STORE RUN_ID [--durability strict|normal|off]
       [--segment-bytes N] [--events N] [--pace-ms MS] [--hold] [--end]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agtrace.eventlog import (
    MessageAdded,
    PartEnded,
    Record,
    RunEnded,
    RunLocked,
    RunWriter,
    Store,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
)

PART_EVENTS = 5
"""Events per part: message, tool call, tool result, usage, part end."""

_WORDS = (
    "the",
    "test",
    "suite",
    "fails",
    "because",
    "the",
    "fixture",
    "is",
    "not",
    "reset",
    "between",
    "cases",
    "so",
    "I",
    "will",
    "patch",
    "conftest",
    "and",
    "rerun",
    "pytest",
    "with",
    "verbose",
    "output",
    "then",
    "check",
    "the",
    "diff",
    "before",
    "committing",
)
_FILES = (
    "src/app/models.py",
    "src/app/views.py",
    "tests/test_models.py",
    "README.md",
    "src/app/__init__.py",
    "setup.cfg",
    "src/app/utils/io.py",
    "docs/index.rst",
)


def part_of(seq: int) -> int:
    """The part an event belongs to (seq 1 is run_started; parts start at seq 2)."""
    return (seq - 2) // PART_EVENTS + 1


def _tool_output(rng: random.Random, seq: int, size: int) -> str:
    lines = [f"$ pytest -q tests  # seq={seq}"]
    while sum(len(x) + 1 for x in lines) < size:
        roll = rng.random()
        f = rng.choice(_FILES)
        if roll < 0.4:
            lines.append(f"{f}::test_case_{rng.randrange(200)} {rng.choice(['PASSED', 'FAILED'])}")
        elif roll < 0.7:
            size_, minute = rng.randrange(99999), rng.randrange(60)
            lines.append(f"-rw-r--r-- 1 agent agent {size_:>6} Jan  3 12:{minute:02} {f}")
        else:
            n, word = rng.randrange(50), rng.choice(_WORDS)
            lines.append(f"    def handle_{n}(self, request): return self.{word}()")
    return "\n".join(lines)[:size]


def event_for(seq: int):
    """The event appended at ``seq`` (>= 2), derived from ``seq`` alone."""
    rng = random.Random(seq)
    part = part_of(seq)
    call_id = f"call_{part}"
    kind = (seq - 2) % PART_EVENTS
    if kind == 0:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(10, 60)))
        digest = hashlib.sha256(words.encode()).hexdigest()[:16]
        return MessageAdded(role="assistant", text=f"seq={seq} sha={digest} {words}")
    if kind == 1:
        return ToolCalled(
            call_id=call_id,
            tool="shell",
            arguments={"cmd": f"pytest -q  # seq={seq}"},
            command="pytest -q",
        )
    if kind == 2:
        out = _tool_output(rng, seq, rng.randrange(200, 3001))
        digest = hashlib.sha256(out.encode()).hexdigest()[:16]
        return ToolReturned(
            call_id=call_id,
            tool="shell",
            output=f"seq={seq} sha={digest}\n{out}",
            output_bytes=len(out),
            exit_code=seq % 3,
            duration_ms=float(seq % 997),
        )
    if kind == 3:
        return UsageReported(
            usage=Usage(input=seq, output=seq % 1000, cache_read=7 * seq),
            model="model-x",
            request_id=f"req_{seq}",
        )
    return PartEnded(
        part_kind="tool",
        title=f"pytest -q (part {part}, seq={seq})",
        tool="shell",
        call_id=call_id,
        tree_id=hashlib.sha1(str(seq).encode()).hexdigest(),
    )


def open_writer(store: Store, run_id: str, durability: str, segment_bytes: int) -> RunWriter:
    """``Store.open_writer``, or the same with a small segment size (it does not take one yet)."""
    if not segment_bytes:
        return store.open_writer(run_id, durability=durability)
    catalog = store.catalog
    writer = RunWriter(
        store.run_dir(run_id),
        run_id,
        durability=durability,
        segment_bytes=segment_bytes,
        listener=lambda first, items: catalog.apply(
            run_id, [Record(seq, ts, part, ev) for seq, (ts, part, ev) in enumerate(items, first)]),
    )
    store.sync(run_id)
    return writer


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("run_id")
    ap.add_argument("--durability", default="normal")
    ap.add_argument("--segment-bytes", type=int, default=0, help="0: Store.open_writer's default")
    ap.add_argument("--events", type=int, default=0, help="stop after this many (0: until killed)")
    ap.add_argument("--pace-ms", type=float, default=0.0, help="sleep after each part")
    ap.add_argument("--hold", action="store_true", help="open, then sleep holding the lock")
    ap.add_argument("--end", action="store_true", help="append run_ended after --events")
    args = ap.parse_args(argv)

    store = Store(args.store, create=False)
    try:
        writer = open_writer(store, args.run_id, args.durability, args.segment_bytes)
    except RunLocked as exc:
        say(f"locked {exc}")
        return 3
    if writer.torn_tail is not None:
        say(f"torn {writer.torn_tail.offset} {writer.torn_tail.bytes_cut}")
    say(f"start {writer.next_seq} {os.getpid()}")
    if args.hold:
        time.sleep(3600)
    durable = writer.durable_seq
    n = 0
    while not args.events or n < args.events:
        seq = writer.next_seq
        ack = writer.append(event_for(seq), part=part_of(seq))
        assert ack.seq == seq, (ack, seq)
        n += 1
        if ack.durable > durable:
            durable = ack.durable
            say(f"durable {durable}")
        if args.pace_ms and (seq - 1) % PART_EVENTS == 0:
            time.sleep(args.pace_ms / 1000)
    if args.end:
        writer.append(RunEnded(status="completed", reason="crash_child --end"))
    last = writer.next_seq - 1
    store.close_writer(writer)
    if writer.durable_seq > durable:
        say(f"durable {writer.durable_seq}")
    say(f"done {last}")
    return 0


# -- the parent's side: spawn, kill, reopen, check ----------------------------------------------

CHILD = Path(__file__).resolve()


def spawn(store: str | os.PathLike, run_id: str, *args: str) -> subprocess.Popen:
    """Start this program as a child process writing to ``run_id``."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(store), run_id, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, prefix: str) -> tuple[str, list[str]]:
    """Read the child's stdout until a line starting with ``prefix``; return it and the lines."""
    seen = []
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise AssertionError(
                f"child exited ({proc.returncode}) before {prefix!r}; stdout {seen}, "
                f"stderr:\n{proc.stderr.read()}"
            )
        seen.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return line.rstrip("\n"), seen


@dataclass
class CrashStats:
    kills: int = 0
    killed_before_start: int = 0
    torn_tails: int = 0
    events: int = 0
    acked: int = 0
    segments: int = 0
    seconds: float = 0.0


class CrashRun:
    """One run that successive children append to and are SIGKILLed in.

    After each kill :meth:`check` reopens the run with a :class:`RunWriter` (which cuts a torn
    tail), and checks: every seq the child reported durable is there, seqs are gapless from 1,
    every event the child wrote is exactly :func:`event_for` of its seq, the catalog caught up,
    and the next child starts at the next seq; ``Store.verify`` of the whole log is clean.

    ``verify_every`` > 1 runs that whole-log verify only after every that many kills, after a
    kill whose recovery cut a torn tail, and from :meth:`finish`: it reads every segment, so on
    a soak's growing log it cost as much as the children (41 of 126 s for 150 kills under
    ``off``). Damage to a segment stays on disk, so the next verify still finds it; only which
    kill made it is then known to within ``verify_every`` kills.
    """

    def __init__(self, root: str | os.PathLike, durability: str, seed: int = 0, *, verify_every: int = 1):
        self.root = Path(root)
        self.durability = durability
        self.verify_every = verify_every
        self.verified = 0  # the last seq that a whole-log verify saw
        self.rng = random.Random(seed)
        self.store = Store(self.root)
        writer = self.store.create_run(durability=durability)
        self.run_id = writer.run_id
        self.store.close_writer(writer)
        self.last = 1  # highest seq known to be in the log (checked)
        self.stats = CrashStats()

    def close(self) -> None:
        self.store.close()

    def finish(self) -> None:
        """The whole-log verify, unless the last kill's check ran it."""
        if self.verified != self.last:
            self.verify()

    def verify(self) -> None:
        report = self.store.verify(self.run_id)
        assert report.ok, report.problems
        assert report.events == self.last, (report.events, self.last)
        self.stats.segments = report.segments
        self.verified = self.last

    def kill_once(self) -> None:
        rng = self.rng
        roll = rng.random()
        seg = rng.choice(["0", "16384", "65536"])
        pace = "0" if self.durability == "strict" else rng.choice(["0", "1", "3"])
        if roll >= 0.5 and self.durability == "off":
            # under ``off`` only a sealed segment is durable before close: make the child roll,
            # and not at a 3 ms pace, which made each such kill wait ~1.5 s for the first seal
            # (a third of an ``off`` soak's time) while the pace changes nothing that is durable
            seg = rng.choice(["16384", "65536"])
            pace = rng.choice(["0", "1"])
        proc = spawn(
            self.root,
            self.run_id,
            "--durability",
            self.durability,
            "--segment-bytes",
            seg,
            "--pace-ms",
            pace,
        )
        lines: list[str] = []
        try:
            # The moment is random, but anchored on what the child said rather than on the
            # clock alone: on a loaded machine a child may need longer than any fixed sleep to
            # import, recover and write, and a kill that always lands before the first durable
            # write would check nothing.
            if roll < 0.15:  # anywhere, including while it imports and recovers
                time.sleep(rng.uniform(0.0, 0.25))
            elif roll < 0.5:  # soon after it opened the run (torn tails, first frames)
                _line, lines = wait_for_line(proc, "start ")
                time.sleep(rng.uniform(0.0, 0.12))
            else:  # while it writes, after it acknowledged something durable
                _line, lines = wait_for_line(proc, "durable ")
                time.sleep(rng.uniform(0.0, 0.12))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate()
        lines += out.splitlines()
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, lines, err)
        self.stats.kills += 1
        self.check(lines)

    def check(self, lines: list[str]) -> None:
        starts = [int(x.split()[1]) for x in lines if x.startswith("start ")]
        acked = max([int(x.split()[1]) for x in lines if x.startswith("durable ")], default=0)
        if starts:
            assert starts == [self.last + 1], f"child started at {starts}, log ended at {self.last}"
        else:
            self.stats.killed_before_start += 1
        run_dir = self.store.run_dir(self.run_id)
        writer = RunWriter(run_dir, self.run_id, durability=self.durability)
        torn = writer.torn_tail is not None
        try:
            if torn:
                self.stats.torn_tails += 1
            last = writer.next_seq - 1
        finally:
            writer.close(seal=False)
        assert last >= acked, f"seq {acked} was acknowledged durable but the log ends at {last}"
        assert last >= self.last, f"the log shrank from {self.last} to {last}"
        seqs = []
        for rec in self.store.read(self.run_id, self.last + 1):
            seqs.append(rec.seq)
            assert rec.event == event_for(rec.seq), f"seq {rec.seq} differs: {rec.event!r}"
            assert rec.part == part_of(rec.seq), (rec.seq, rec.part)
        assert seqs == list(range(self.last + 1, last + 1)), "seqs are not gapless"
        self.store.sync(self.run_id)
        assert self.store.catalog.indexed_seq(self.run_id) == last
        self.stats.events = last
        self.stats.acked = max(self.stats.acked, acked)
        self.last = last
        if torn or self.stats.kills % self.verify_every == 0:
            self.verify()


if __name__ == "__main__":
    sys.exit(main())
