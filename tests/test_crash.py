"""Crash safety of the event log, with real processes and real files.

Writers are separate processes (``tests/crash_child.py``) that are SIGKILLed at random moments;
torn tails and bit flips are made on real segment files. The longer soak is
``bench/soak_crash.py`` (and the ``slow`` test below).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from agtrace.eventlog import CorruptLog, RunLocked, RunWriter, Store, segment
from agtrace.eventlog.reader import list_segments

from .crash_child import CrashRun, event_for, part_of, spawn, wait_for_line

POLICIES = ["strict", "normal", "off"]
KILLS_PER_POLICY = 35  # 105 kills in the default run
SOAK_KILLS_PER_POLICY = 150  # -m slow; bench/soak_crash.py goes further


# -- helpers ---------------------------------------------------------------------------------


def make_run(
    root: Path,
    *,
    parts: int,
    durability: str = "strict",
    seal: bool = False,
    segment_bytes: int = 32 * 1024 * 1024,
) -> tuple[Store, str]:
    """A run with ``parts`` parts written in-process; the open segment is left open."""
    store = Store(root)
    writer = store.create_run(durability=durability)
    run_id = writer.run_id
    store.close_writer(writer)
    writer = RunWriter(
        store.run_dir(run_id), run_id, durability=durability, segment_bytes=segment_bytes
    )
    for seq in range(2, 2 + 5 * parts):
        writer.append(event_for(seq), part=part_of(seq))
    writer.close(seal=seal)
    return store, run_id


def events_dir(store: Store, run_id: str) -> Path:
    return store.run_dir(run_id) / "events"


def open_segment(store: Store, run_id: str) -> Path:
    [path] = [p for _f, last, p in list_segments(events_dir(store, run_id)) if last is None]
    return path


def check_log(store: Store, run_id: str, last: int) -> None:
    """Seqs 1..last gapless, every event intact, verify clean."""
    records = list(store.read(run_id))
    assert [r.seq for r in records] == list(range(1, last + 1))
    for rec in records[1:]:
        assert rec.event == event_for(rec.seq)
        assert rec.part == part_of(rec.seq)
    report = store.verify(run_id)
    assert report.ok, report.problems


def flip(path: Path, offset: int, bit: int) -> bytes:
    """Flip one bit of a file in place; return the file's new content."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))
    return bytes(data)


# -- SIGKILLed writers -----------------------------------------------------------------------


@pytest.mark.slow  # 10-30 s on a loaded 2-core machine
@pytest.mark.parametrize("durability", POLICIES)
def test_sigkilled_writer_loses_nothing_acknowledged(tmp_path, durability):
    """35 kills of a writer process per policy on one run: each child reopens the run after the
    previous one was killed and must continue at the next seq; after every kill the log holds
    every seq the child reported durable, gapless and intact, and verifies."""
    run = CrashRun(tmp_path, durability, seed=POLICIES.index(durability))
    try:
        for _ in range(KILLS_PER_POLICY):
            run.kill_once()
    finally:
        run.close()
    s = run.stats
    assert s.kills == KILLS_PER_POLICY
    assert s.acked > 0, "no child ever reported a durable seq: the test checked nothing"
    assert s.events > KILLS_PER_POLICY, s
    print(f"{durability}: {s}")


@pytest.mark.slow
@pytest.mark.parametrize("durability", POLICIES)
def test_sigkilled_writer_soak(tmp_path, durability):
    """The soak: 150 kills per policy, each checked as in the test above, with the whole log
    verified every 10 kills, after each torn tail and at the end (see ``CrashRun``)."""
    run = CrashRun(tmp_path, durability, seed=100 + POLICIES.index(durability), verify_every=10)
    try:
        for _ in range(SOAK_KILLS_PER_POLICY):
            run.kill_once()
        run.finish()
    finally:
        run.close()
    assert run.stats.kills == SOAK_KILLS_PER_POLICY


# -- torn tails ------------------------------------------------------------------------------


@pytest.mark.slow  # 10-30 s on a loaded 2-core machine
def test_truncating_last_frame_at_every_offset_recovers_previous_frame(tmp_path):
    store, run_id = make_run(tmp_path / "s", parts=3, durability="normal")
    path = open_segment(store, run_id)
    # one multi-event frame at the end (group commit), so the cut spans a big frame
    writer = RunWriter(store.run_dir(run_id), run_id, durability="off")
    first_of_last = writer.next_seq
    for seq in range(first_of_last, first_of_last + 5):
        writer.append(event_for(seq), part=part_of(seq))
    writer.close(seal=False)
    original = path.read_bytes()
    frames, problem, end = segment.scan(path)
    assert problem is None and end == len(original)
    last = frames[-1]
    assert last.first_seq == first_of_last and last.count == 5 and last.end == len(original)
    prev_last_seq = last.first_seq - 1

    for cut_at in range(last.offset, last.end):
        path.write_bytes(original[:cut_at])
        writer = RunWriter(store.run_dir(run_id), run_id)
        try:
            if cut_at == last.offset:
                assert writer.torn_tail is None
            else:
                torn = writer.torn_tail
                assert torn is not None, cut_at
                assert (torn.path, torn.offset, torn.bytes_cut) == (
                    str(path),
                    last.offset,
                    cut_at - last.offset,
                )
            assert writer.next_seq == prev_last_seq + 1
            assert path.stat().st_size == last.offset
        finally:
            writer.close(seal=False)
        assert [r.seq for r in store.read(run_id, prev_last_seq - 1)] == [
            prev_last_seq - 1,
            prev_last_seq,
        ]
        assert store.verify(run_id).ok

    # and appends continue at the next seq after a cut
    path.write_bytes(original[: last.offset + 30])
    writer = RunWriter(store.run_dir(run_id), run_id)
    ack = writer.append(event_for(prev_last_seq + 1), part=part_of(prev_last_seq + 1))
    writer.close()
    assert ack.seq == prev_last_seq + 1
    check_log(store, run_id, prev_last_seq + 1)


def test_truncating_the_only_frame_of_a_new_open_segment(tmp_path):
    """A crash right after a roll: the open segment's only frame is torn; the sealed one stays."""
    store, run_id = make_run(tmp_path / "s", parts=4, segment_bytes=4096)
    sealed = [p for _f, last, p in list_segments(events_dir(store, run_id)) if last is not None]
    assert sealed
    path = open_segment(store, run_id)
    frames, _, _ = segment.scan(path)
    if len(frames) > 1:  # keep one frame only
        path.write_bytes(path.read_bytes()[: frames[0].end])
    original = path.read_bytes()
    for cut_at in range(0, frames[0].end):
        path.write_bytes(original[:cut_at])
        writer = RunWriter(store.run_dir(run_id), run_id)
        writer.close(seal=False)
        assert writer.next_seq == frames[0].first_seq
        assert list(store.read(run_id))[-1].seq == frames[0].first_seq - 1
        assert store.verify(run_id).ok, cut_at


# -- bit flips -------------------------------------------------------------------------------


def test_bit_flip_in_sealed_segment_is_located_by_verify(tmp_path):
    store, run_id = make_run(tmp_path / "s", parts=3, seal=True)
    path = list_segments(events_dir(store, run_id))[-1][2]
    assert path.name.endswith(".seg")
    original = path.read_bytes()
    frames, _, _ = segment.scan(path)
    middle = frames[len(frames) // 2]
    rng = random.Random(1)
    for offset in range(middle.offset, middle.end):
        path.write_bytes(original)
        flip(path, offset, rng.randrange(8))
        report = store.verify(run_id)
        assert not report.ok, offset
        assert report.problems[0].startswith(f"{path}: frame at byte {middle.offset}: "), (
            offset,
            report.problems,
        )
        with pytest.raises(CorruptLog) as err:
            list(store.read(run_id))
        assert (err.value.path, err.value.offset) == (str(path), middle.offset)
    # the segment header
    path.write_bytes(original)
    flip(path, 3, 0)
    report = store.verify(run_id)
    assert report.problems and report.problems[0].startswith(f"{path}: frame at byte 0: ")


def test_bit_flip_in_middle_frame_of_open_segment_is_not_cut(tmp_path):
    store, run_id = make_run(tmp_path / "s", parts=3)
    path = open_segment(store, run_id)
    original = path.read_bytes()
    frames, _, _ = segment.scan(path)
    middle = frames[len(frames) // 2]
    assert middle.end < len(original)
    rng = random.Random(2)
    for offset in [*range(0, len(segment.SEGMENT_MAGIC)), *range(middle.offset, middle.end)]:
        path.write_bytes(original)
        damaged = flip(path, offset, rng.randrange(8))
        where = 0 if offset < len(segment.SEGMENT_MAGIC) else middle.offset
        with pytest.raises(CorruptLog) as err:
            RunWriter(store.run_dir(run_id), run_id)
        assert (err.value.path, err.value.offset) == (str(path), where), offset
        assert str(path) in str(err.value)
        assert path.read_bytes() == damaged, f"the file was changed (flip at {offset})"
        report = store.verify(run_id)
        assert report.problems[0].startswith(f"{path}: frame at byte {where}: "), report.problems
    # the lock was released by the refused writer: a good file opens again
    path.write_bytes(original)
    RunWriter(store.run_dir(run_id), run_id).close(seal=False)


@pytest.mark.parametrize("where", ["payload", "crc", "magic", "count"])
def test_bit_flip_in_last_frame_of_open_segment_is_damage_not_a_torn_tail(tmp_path, where):
    """A whole last frame that fails its checksum was written and then damaged: it is not cut
    (issue 12: its seqs were given to other events), the writer refuses and verify names it."""
    store, run_id = make_run(tmp_path / "s", parts=2)
    path = open_segment(store, run_id)
    frames, _, _ = segment.scan(path)
    last = frames[-1]
    offset = {"payload": last.offset + segment.HEADER_SIZE + 3, "crc": last.offset + 9,
              "magic": last.offset + 1, "count": last.offset + 20}[where]
    damaged = flip(path, offset, 5)
    with pytest.raises(CorruptLog) as err:
        RunWriter(store.run_dir(run_id), run_id)
    assert (err.value.path, err.value.offset) == (str(path), last.offset)
    assert path.read_bytes() == damaged
    report = store.verify(run_id)
    assert any(p.startswith(f"{path}: frame at byte {last.offset}: ") for p in report.problems), report.problems
    # the events before it still read
    assert [r.seq for r in store.read(run_id)] == list(range(1, last.first_seq))


def test_zero_filled_tail_of_open_segment_is_torn(tmp_path):
    """Pages a crash left allocated but unwritten (zeros) are a torn tail and are cut."""
    store, run_id = make_run(tmp_path / "s", parts=2)
    path = open_segment(store, run_id)
    frames, _, _ = segment.scan(path)
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(bytes(4096))
    writer = RunWriter(store.run_dir(run_id), run_id)
    writer.close(seal=False)
    assert writer.torn_tail is not None and writer.torn_tail.offset == size
    assert writer.next_seq == frames[-1].last_seq + 1


# -- one writer per run ----------------------------------------------------------------------


def test_second_writer_process_is_refused_naming_the_holder(tmp_path):
    store, run_id = make_run(tmp_path / "s", parts=1)
    holder = spawn(tmp_path / "s", run_id, "--hold")
    try:
        wait_for_line(holder, "start ")
        second = spawn(tmp_path / "s", run_id, "--events", "5")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 3, (out, err)
        assert out.startswith("locked "), out
        assert f"pid {holder.pid} " in out, out
        assert run_id in out
        # and in-process too, with the holder as data
        with pytest.raises(RunLocked) as exc:
            RunWriter(store.run_dir(run_id), run_id)
        assert exc.value.holder["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    # the kernel released the lock with the process; nothing was interleaved
    writer = RunWriter(store.run_dir(run_id), run_id)
    writer.close(seal=False)
    assert writer.next_seq == 7
    check_log(store, run_id, 6)


# -- tail ------------------------------------------------------------------------------------


def test_tail_follows_live_writer_across_segment_rolls(tmp_path):
    root = tmp_path / "s"
    store = Store(root)
    writer = store.create_run()
    run_id = writer.run_id
    store.close_writer(writer)
    n = 400
    proc = spawn(
        root, run_id, "--segment-bytes", "8192", "--events", str(n), "--pace-ms", "8", "--end"
    )
    try:
        wait_for_line(proc, "start ")
        got = []
        alive_at = []
        for rec in store.tail(run_id, poll_s=0.02):
            got.append(rec)
            alive_at.append(proc.poll() is None)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    assert [r.seq for r in got] == list(range(1, n + 3))
    assert got[-1].kind == "run_ended"
    for rec in got[1:-1]:
        assert rec.event == event_for(rec.seq)
    sealed = [
        (f, last) for f, last, _p in list_segments(events_dir(store, run_id)) if last is not None
    ]
    assert len(sealed) >= 3, sealed
    # records past the second roll reached the tail while the writer was still running
    live = [r.seq for r, alive in zip(got, alive_at, strict=True) if alive]
    assert live and max(live) > sealed[1][1], (max(live), sealed)


def test_store_tail_stops_when_writer_process_is_killed(tmp_path):
    root = tmp_path / "s"
    store, run_id = make_run(root, parts=1)
    proc = spawn(root, run_id, "--segment-bytes", "8192", "--pace-ms", "5")
    try:
        wait_for_line(proc, "start ")
        got = []
        t0 = time.monotonic()
        for rec in store.tail(run_id, poll_s=0.02):
            got.append(rec.seq)
            if len(got) == 60:
                proc.send_signal(signal.SIGKILL)
            assert time.monotonic() - t0 < 600, "the tail never saw the killed writer's events"
    finally:
        proc.kill()
        proc.communicate()
    writer = RunWriter(store.run_dir(run_id), run_id)
    writer.close(seal=False)
    assert got == list(range(1, writer.next_seq))


def test_open_writer_releases_the_lock_when_catalog_sync_fails(tmp_path):
    store, run_id = make_run(tmp_path / "s", parts=3, seal=True)
    store.close()
    (tmp_path / "s" / "catalog.db").unlink()  # the catalog must be rebuilt by reading
    path = list_segments(events_dir(store, run_id))[-1][2]
    original = path.read_bytes()
    flip(path, len(original) // 2, 3)
    store = Store(tmp_path / "s")
    with pytest.raises(CorruptLog):
        store.open_writer(run_id)
    path.write_bytes(original)  # restored from a remote copy
    writer = store.open_writer(run_id)
    store.close_writer(writer)
    assert writer.next_seq == 17
