"""The per-run log: seqs, durability acks, roll and seal, recovery, locks, reads by range and part."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agtrace.eventlog import (
    Catalog,
    CorruptLog,
    MessageAdded,
    PartEnded,
    Record,
    RunClosed,
    RunEnded,
    RunLocked,
    RunStarted,
    RunWriter,
    Store,
    ToolReturned,
    default_projections,
)
from agtrace.eventlog import segment as seg
from agtrace.eventlog.reader import list_segments, read_stream

from .conftest import one_of_each


def _fill(writer, parts: int, per_part: int = 3, text: str = "x" * 200):
    for p in range(1, parts + 1):
        for i in range(per_part):
            writer.append(MessageAdded(role="assistant", text=f"{text} p{p} i{i}"), part=p)
        writer.append(PartEnded(part_kind="message", title=f"part {p}", tree_id=f"{p:040x}"), part=p)


def test_seqs_are_gapless_and_events_round_trip(store):
    events = one_of_each()
    w = store.create_run(events[0])
    for ev in events[1:]:
        w.append(ev, part=2)
    store.close_writer(w)
    recs = list(store.read(w.run_id))
    assert [r.seq for r in recs] == list(range(1, len(events) + 1))
    assert [r.event for r in recs][1:] == events[1:]
    assert recs[0].event.host and recs[0].event.prompt_sha256


def test_strict_acks_each_event_durable(store):
    w = store.create_run(RunStarted(agent="a"), durability="strict")
    ack = w.append(MessageAdded(role="user", text="hi"))
    assert ack.seq == ack.durable == 2
    store.close_writer(w)


def test_normal_acks_durable_at_part_end(store):
    import time

    from agtrace.eventlog.writer import COALESCE_S

    w = store.create_run(RunStarted(agent="a"), durability="normal")
    a1 = w.append(MessageAdded(role="user", text="hi"), part=1)
    assert a1.seq == 2 and a1.durable == 1  # run_started is synced, the message not yet
    time.sleep(COALESCE_S * 2)  # a part ending after a quiet spell is durable at once
    a2 = w.append(PartEnded(part_kind="message"), part=1)
    assert a2.durable == a2.seq == 3
    # a flood of part ends shares fsyncs: each is durable within the coalescing window
    acks = [w.append(PartEnded(part_kind="message"), part=p) for p in range(2, 200)]
    assert any(a.durable < a.seq for a in acks)  # some waited for a shared fsync
    assert w.wait_durable(acks[-1].seq, timeout=60)
    store.close_writer(w)


def test_normal_flushes_within_the_sync_interval_without_a_part_end(store):
    import time

    w = store.create_run(RunStarted(agent="a"), durability="normal")
    a = w.append(MessageAdded(role="user", text="hi"))
    deadline = time.monotonic() + 30  # a liveness bound (nothing else flushes): fsync can stall for seconds under load
    while w.durable_seq < a.seq and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.durable_seq == a.seq
    assert [r.seq for r in store.read(w.run_id)] == [1, 2]  # readable by another reader meanwhile
    store.close_writer(w)


def test_appends_go_on_while_the_flusher_syncs_and_a_sync_asked_meanwhile_is_kept(store, monkeypatch):
    """The background flusher's fsync runs with the writer's lock let go: an append made while
    it is in the kernel returns at once (before, it waited the whole fsync out, once per group of
    a bulk append), and a part end appended meanwhile, which asks for a sync, is synced next,
    not forgotten until the next periodic sync (set to a minute here, so that forgetting it
    shows). A slow disk cannot be had here: the flusher's real fsync is followed by a wait until
    the test has appended (on the flusher's thread only)."""
    import threading
    import time

    from agtrace.eventlog import writer as writer_module

    real_fsync = os.fsync
    in_fsync, release = threading.Event(), threading.Event()
    flusher_fsyncs = []

    def slow_on_the_flusher(fd):
        real_fsync(fd)
        if threading.current_thread().name == "agtrace-flush":
            flusher_fsyncs.append(fd)
            if len(flusher_fsyncs) == 1:
                in_fsync.set()
                release.wait(30)

    monkeypatch.setattr(writer_module, "SYNC_INTERVAL_S", 60.0)
    w = store.create_run(RunStarted(agent="a"), durability="normal")
    try:
        monkeypatch.setattr(writer_module.os, "fsync", slow_on_the_flusher)
        first = w.append_many([(MessageAdded(role="user", text="hi"), 1, None),
                               (PartEnded(part_kind="message"), 1, None)])  # asks the flusher for a sync
        assert in_fsync.wait(30), "the flusher did not sync the part end"
        appended = []
        during = threading.Thread(target=lambda: appended.append(  # a group with a part end: its sync is deferred
            w.append_many([(PartEnded(part_kind="message"), 2, None)])))
        during.start()
        during.join(10)  # a liveness bound: it waited for the lock before
        assert appended, "an append waited for the flusher's fsync"
        assert appended[0].durable < appended[0].seq  # not synced yet: the flusher is still in its fsync
        release.set()
        assert w.wait_durable(first.seq, timeout=30)
        deadline = time.monotonic() + 30  # liveness: the next periodic sync is a minute away
        while w.durable_seq < appended[0].seq and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.durable_seq == appended[0].seq and len(flusher_fsyncs) >= 2
    finally:
        release.set()
        store.close_writer(w)
    assert [r.seq for r in store.read(w.run_id)] == [1, 2, 3, 4]


def test_appends_go_on_while_the_flusher_waits_for_a_frame_being_compressed(store, monkeypatch):
    """The flusher hands the buffer off as a frame and waits for its compression with the
    writer's lock let go: a group appended meanwhile returns at once (before, it waited until
    the frame was compressed and written, once per group of a bulk append: 0.5 s of 2.9 s for
    200k events), and everything is written in seq order and made durable after. The frame's
    real compression is followed by a wait until the test has appended (off the appending thread)."""
    import threading

    from agtrace.eventlog import writer as writer_module

    real_encode = seg.encode_frame
    compressing, release = threading.Event(), threading.Event()

    def slow_off_the_appending_thread(first, batch):
        frame = real_encode(first, batch)
        if threading.current_thread().name.startswith(("agtrace-compress", "agtrace-flush")):
            compressing.set()
            release.wait(30)
        return frame

    monkeypatch.setattr(writer_module, "SYNC_INTERVAL_S", 60.0)
    w = store.create_run(RunStarted(agent="a"), durability="normal")
    try:
        monkeypatch.setattr(seg, "encode_frame", slow_off_the_appending_thread)
        first = w.append_many([(MessageAdded(role="user", text="hi"), 1, None),
                               (PartEnded(part_kind="message"), 1, None)])  # asks the flusher for a sync
        assert compressing.wait(30), "the flusher did not write the group"
        appended = []
        during = threading.Thread(target=lambda: appended.append(
            w.append_many([(MessageAdded(role="user", text="more"), 2, None), (PartEnded(part_kind="message"), 2, None)])))
        during.start()
        during.join(10)  # a liveness bound: it waited for the lock before
        assert appended, "an append waited for the flusher's frame to be compressed"
        assert w.durable_seq < first.seq  # the flusher is still waiting for the frame
        release.set()
        assert w.wait_durable(appended[0].seq, timeout=30)
    finally:
        release.set()
        store.close_writer(w)
    assert [(r.seq, r.part) for r in store.read(w.run_id)] == [(1, None), (2, 1), (3, 1), (4, 2), (5, 2)]


def test_bulk_groups_with_part_ends_across_rolls_keep_every_event_in_order(tmp_path):
    """Groups of every size, many with a part end (each asks the flusher for a sync), written
    while segments roll every 64 KiB and the flusher and the appending thread both write
    frames: every event is read back once, in seq order, and the run verifies."""
    import random

    store = Store(tmp_path / "store")
    rng = random.Random(7)
    w = store.create_run(RunStarted(agent="a"), durability="normal")
    w.segment_bytes = 64 * 1024
    expected = []
    for g in range(150):
        group = [(MessageAdded(role="assistant", text=f"g{g} e{i} " + rng.randbytes(rng.randrange(0, 300)).hex()), g + 1, None)
                 for i in range(rng.choice((1, 3, 40, 300, 1100)))]
        if rng.random() < 0.7:
            group.append((PartEnded(part_kind="message", title=f"part {g + 1}"), g + 1, None))
        w.append_many(group)
        expected += [e for e, _, _ in group]
    store.close_writer(w)
    got = list(store.read(w.run_id))
    assert [r.seq for r in got] == list(range(1, len(expected) + 2))
    assert [r.event for r in got[1:]] == expected
    assert len(list_segments(store.run_dir(w.run_id) / "events")) > 10
    assert store.verify(w.run_id).ok
    store.close()


def test_segments_roll_by_size_and_seal_with_range_names(tmp_path):
    store = Store(tmp_path)
    w = store.create_run(RunStarted(agent="a"), durability="strict")  # a frame per event
    w.segment_bytes = 4096
    _fill(w, 40, text=os.urandom(300).hex())
    store.close_writer(w)
    segs = list_segments(store.run_dir(w.run_id) / "events")
    assert len(segs) > 3 and all(last is not None for _, last, _ in segs)
    expected_first = 1
    for first, last, path in segs:
        assert first == expected_first and path.name == seg.sealed_name(first, last)
        expected_first = last + 1
    assert expected_first - 1 == 1 + 40 * 4
    assert store.verify().ok


def test_read_part_uses_the_index_not_a_full_scan(tmp_path):
    store = Store(tmp_path)
    w = store.create_run(RunStarted(agent="a"), durability="strict")
    w.segment_bytes = 2048
    _fill(w, 30, text=os.urandom(200).hex())
    store.close_writer(w)
    segs = list_segments(store.run_dir(w.run_id) / "events")
    row = store.catalog.part_row(w.run_id, 30)
    # destroy every segment that does not hold part 30: reading the part must not touch them
    for _first, last, path in segs:
        if last < row["first_seq"]:
            path.write_bytes(b"garbage")
    recs = store.read_part(w.run_id, 30)
    assert [r.part for r in recs] == [30] * 4
    assert recs[-1].event.title == "part 30"
    assert store.catalog.part_row(w.run_id, 30)["tree_id"] == f"{30:040x}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 80), max_size=6))
def test_reading_in_chunks_equals_reading_at_once(tmp_path_factory, cuts):
    store = Store(tmp_path_factory.mktemp("s"))
    w = store.create_run(RunStarted(agent="a"), durability="strict")
    w.segment_bytes = 3000
    _fill(w, 20)
    store.close_writer(w)
    whole = list(store.read(w.run_id))
    bounds = sorted({1, *cuts, len(whole) + 1})
    chunks = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        chunks.extend(store.read(w.run_id, a, b - 1))
    assert chunks == whole


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 80), max_size=6))
def test_catalog_folded_in_chunks_equals_folded_at_once(tmp_path_factory, cuts):
    root = tmp_path_factory.mktemp("s")
    store = Store(root)
    w = store.create_run(RunStarted(agent="a", model="m"))
    _fill(w, 20)
    w.append(RunEnded(status="failed", reason="r"))
    store.close_writer(w)
    records = list(store.read(w.run_id))
    once = Catalog(root / "once.db", default_projections())
    assert once.apply(w.run_id, records)
    chunked = Catalog(root / "chunked.db", default_projections())
    bounds = sorted({0, *[c for c in cuts if c < len(records)], len(records)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        assert chunked.apply(w.run_id, records[a:b])
    assert chunked.apply(w.run_id, records)  # re-applying is harmless
    assert not chunked.apply("other", records[5:])  # a gap is refused, nothing folded
    assert once.dump() == chunked.dump()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ts=st.lists(st.integers(0, 10**12), min_size=1, max_size=12), cuts=st.lists(st.integers(1, 12), max_size=4))
def test_last_ts_is_the_largest_ts_however_the_events_were_batched(tmp_path_factory, ts, cuts):
    """Capture writes ts out of seq order, and `append` takes any ts: ``last_ts`` (and so a
    run's duration without ``run_ended``) is the largest ts of any event, the same in chunks
    (live appends) as at once (reindex, cp)."""
    root = tmp_path_factory.mktemp("s")
    records = [Record(1, 500_000, None, RunStarted(agent="a"))]
    records += [Record(i, t, 1, MessageAdded(role="assistant", text="x")) for i, t in enumerate(ts, start=2)]
    once = Catalog(root / "once.db", default_projections())
    assert once.apply("R", records)
    chunked = Catalog(root / "chunked.db", default_projections())
    bounds = sorted({0, *[c for c in cuts if c < len(records)], len(records)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        assert chunked.apply("R", records[a:b])
    assert once.dump() == chunked.dump()
    row = once.conn.execute("SELECT last_ts, started_at FROM runs WHERE id='R'").fetchone()
    assert tuple(row) == (max(r.ts for r in records), 500_000)


def test_reindex_rebuilds_the_catalog_row_for_row(store):
    for n in range(3):
        w = store.create_run(RunStarted(agent=f"a{n}", model="m", tags={"k": str(n)}))
        _fill(w, 5 + n)
        if n != 1:
            w.append(RunEnded(status="completed"))
        store.close_writer(w)
    before = store.catalog.dump()
    assert len(before["runs"]) == 3 and len(before["parts"]) == 5 + 6 + 7
    store.reindex()
    assert store.catalog.dump() == before


def test_ended_run_refuses_appends(store):
    w = store.create_run(RunStarted())
    w.append(RunEnded(status="completed"))
    with pytest.raises(RunClosed, match="resumed or continued run is a new run"):
        w.append(MessageAdded(role="user"))
    store.close_writer(w)
    w2 = store.open_writer(w.run_id)
    with pytest.raises(RunClosed):
        w2.append(MessageAdded(role="user"))
    w2.close()


def test_second_writer_in_the_same_process_is_refused(store):
    w = store.create_run(RunStarted())
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        RunWriter(store.run_dir(w.run_id), w.run_id)
    store.close_writer(w)
    store.open_writer(w.run_id).close()  # released: a new writer may open


def test_torn_tail_is_cut_and_reported(store):
    w = store.create_run(RunStarted(), durability="strict")
    _fill(w, 3)
    w.abandon()
    (path,) = [p for _, last, p in list_segments(store.run_dir(w.run_id) / "events") if last is None]
    good = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"AGF1\x10\x00\x00\x00partial")
    w2 = store.open_writer(w.run_id)
    assert w2.torn_tail is not None and w2.torn_tail.offset == good and w2.torn_tail.bytes_cut == 15
    assert w2.append(MessageAdded(role="user")).seq == 14
    store.close_writer(w2)
    assert store.verify().ok


def test_damaged_middle_frame_of_open_segment_is_not_cut(store):
    w = store.create_run(RunStarted(), durability="strict")
    _fill(w, 3)
    w.abandon()
    (path,) = [p for _, last, p in list_segments(store.run_dir(w.run_id) / "events") if last is None]
    frames, _, _ = seg.scan(path)
    data = bytearray(path.read_bytes())
    data[frames[2].offset + seg.HEADER_SIZE + 1] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLog, match=f"byte {frames[2].offset}"):
        store.open_writer(w.run_id)
    assert path.read_bytes() == bytes(data)


def test_verify_names_the_bad_frame_of_a_sealed_segment(store):
    w = store.create_run(RunStarted())
    # 2,401 events: at least two frames however the flusher cut them (a frame holds at most
    # ~1,024; compaction at seal joins frames until one reaches 1,024, so a frame is left over).
    # With 1,201, frames of 1,000 and 201 were joined into one on a loaded machine.
    _fill(w, 600)
    store.close_writer(w)
    ((_, _, path),) = list_segments(store.run_dir(w.run_id) / "events")
    frames, _, _ = seg.scan(path)
    assert len(frames) >= 2
    data = bytearray(path.read_bytes())
    data[frames[1].offset + seg.HEADER_SIZE + 3] ^= 1
    path.write_bytes(bytes(data))
    report = store.verify()
    assert not report.ok
    assert f"{path}: frame at byte {frames[1].offset}: checksum mismatch" in report.problems[0]
    with pytest.raises(CorruptLog, match=f"byte {frames[1].offset}"):
        list(read_stream(path.parent))


def test_large_outputs_go_to_the_blob_store_once(store):
    big = "line of pytest output\n" * 20_000
    inline, digest, n = store.blobs.inline_or_put(big)
    inline2, digest2, _ = store.blobs.inline_or_put(big)
    assert digest == digest2 and n == len(big) and len(inline) < 4096
    assert len(list(store.blobs.digests())) == 1
    w = store.create_run(RunStarted())
    w.append(ToolReturned(call_id="c", output=inline, output_blob=digest, output_bytes=n), part=1)
    store.close_writer(w)
    rec = list(store.read(w.run_id))[-1]
    assert store.text(rec.event.output, rec.event.output_blob) == big
    assert store.verify().ok and store.verify().blobs == 1
    blob = store.blobs.path(digest)
    blob.write_bytes(blob.read_bytes()[:-3] + b"\x00\x00\x00")
    assert not store.verify().ok


def test_status_of_a_run_whose_writer_died(store):
    w = store.create_run(RunStarted(heartbeat_s=5.0))
    assert store.info(w.run_id).status == "running"
    w.abandon()
    info = store.info(w.run_id)
    assert info.status == "crashed" and "stopped" in info.reason


def test_unique_prefix_resolves_and_ambiguous_prefix_is_refused(store):
    ids = []
    for _ in range(2):
        w = store.create_run(RunStarted())
        store.close_writer(w)
        ids.append(w.run_id)
    assert store.resolve(ids[0].lower()) == ids[0]
    common = os.path.commonprefix(ids)
    if common:
        from agtrace.eventlog import AmbiguousRunId

        with pytest.raises(AmbiguousRunId):
            store.resolve(common)
