"""A frame whose payload decompresses to more than ``segment.MAX_FRAME_BYTES`` (a zstd bomb with
a valid checksum, from a remote, a copied store or a bad disk) is damage of that frame, named
with its file and offset, never an out-of-memory; the writer never makes such a frame. A frame
of a newer frame format (``AGF2``) is :class:`NewerFormat` like a newer segment; other bad magic
stays damage."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import zstandard

from agtrace.eventlog import (
    CorruptLog,
    MessageAdded,
    NewerFormat,
    RunStarted,
    RunWriter,
    Store,
    segment,
)
from agtrace.eventlog.reader import list_segments, read_stream
from agtrace.eventlog.sync.keys import check_segment


def _bomb(expanded: int, *, say_size: bool) -> bytes:
    """A zstd frame of ``expanded`` zero bytes, its header saying its size or not."""
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=say_size)
    obj = cctx.compressobj(size=expanded if say_size else -1)
    chunk, out, left = bytes(1 << 20), [], expanded
    while left:
        out.append(obj.compress(chunk[: min(left, len(chunk))]))
        left -= min(left, len(chunk))
    return b"".join(out) + obj.flush()


def _forged(info: segment.FrameInfo, payload: bytes) -> bytes:
    """The frame ``info`` with ``payload`` in place of its own, its checksum fixed."""
    tail = struct.pack("<QI", info.first_seq, info.count) + payload
    return segment.FRAME_MAGIC + struct.pack("<II", len(payload), zlib.crc32(tail)) + tail


def _store_with_bomb(tmp_path: Path, payload: bytes) -> tuple[Store, str, Path]:
    """A run written by the real writer whose second frame's payload is replaced by ``payload``,
    its checksum fixed so that only the size check can catch it."""
    store = Store(tmp_path / "store")
    w = store.create_run(RunStarted(agent="t"), durability="strict")
    run_id = w.run_id
    w.append(MessageAdded(role="user", text="hello"))
    w.close(seal=False)  # sealing would compact the two frames into one
    path = list_segments(store.run_dir(run_id) / "events")[0][2]
    frames, problem, _ = segment.scan(path)
    assert problem is None and len(frames) == 2
    data = path.read_bytes()
    path.write_bytes(data[: frames[1].offset] + _forged(frames[1], payload))
    return store, run_id, path


@pytest.mark.slow
def test_a_frame_claiming_more_than_the_limit_is_damage_named_by_file_and_offset(tmp_path):
    store, run_id, path = _store_with_bomb(tmp_path, _bomb(segment.MAX_FRAME_BYTES + 1, say_size=True))
    offset = segment.scan(path)[0][1].offset
    with pytest.raises(CorruptLog, match=f"frame at byte {offset}: its zstd header says it decompresses to"):
        list(read_stream(store.run_dir(run_id) / "events"))
    with pytest.raises(CorruptLog, match="over the limit"):
        check_segment(path, 1, 2)
    report = store.verify(run_id, snapshots=False)
    assert any(f"frame at byte {offset}" in p and "limit" in p for p in report.problems), report.problems


@pytest.mark.slow
def test_a_frame_that_does_not_say_its_size_is_given_up_past_the_limit_in_bounded_memory(tmp_path):
    """Measured before it is decompressed for real: refusing it held the whole 1 GiB before
    (1.08 GB of RSS in `verify`, `log`, `show`, `append`); here the readers run under an
    address-space limit of half the frame limit."""
    store, run_id, path = _store_with_bomb(tmp_path, _bomb(segment.MAX_FRAME_BYTES + 1, say_size=False))
    store.close()
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, ({segment.MAX_FRAME_BYTES // 2}, {segment.MAX_FRAME_BYTES // 2}))
from pathlib import Path
from agtrace.eventlog import CorruptLog, Store
from agtrace.eventlog.reader import read_stream
from agtrace.eventlog.sync.keys import check_segment
store = Store({str(store.root)!r})
for read in (lambda: check_segment(Path({str(path)!r}), 1, 2),
             lambda: list(read_stream(store.run_dir({run_id!r}) / "events"))):
    try:
        read()
    except CorruptLog as exc:
        print(exc)
print(store.verify({run_id!r}, snapshots=False).problems[0])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all("it decompresses to more than" in line and "over the limit" in line
                                   for line in lines), lines


def test_the_writer_splits_a_batch_over_its_frame_bytes(tmp_path, monkeypatch):
    from agtrace.eventlog import writer

    monkeypatch.setattr(writer, "FRAME_BYTES", 4096)
    store = Store(tmp_path / "store")
    w = store.create_run(RunStarted(agent="t"), durability="off")
    run_id = w.run_id
    w.append_many([(MessageAdded(role="user", text="x" * 1000), None, None) for _ in range(40)])
    w.close(seal=False)  # sealing would compact the frames (into at most COMPACT_FRAME_BYTES)
    path = list_segments(store.run_dir(run_id) / "events")[0][2]
    frames, problem, _ = segment.scan(path)
    assert problem is None and len(frames) > 1
    with open(path, "rb") as fh:
        assert all(len(segment.read_frame(fh, f)) <= 4096 for f in frames)
    assert [r.seq for r in read_stream(store.run_dir(run_id) / "events")] == list(range(1, 42))


def _store_with_second_frame_magic(tmp_path: Path, magic: bytes) -> tuple[Store, str, Path]:
    store = Store(tmp_path / "store")
    w = store.create_run(RunStarted(agent="t"), durability="strict")
    w.append(MessageAdded(role="user", text="hello"))
    w.close(seal=False)
    path = list_segments(store.run_dir(w.run_id) / "events")[0][2]
    second = segment.scan(path)[0][1]
    data = bytearray(path.read_bytes())
    data[second.offset : second.offset + 4] = magic
    if magic == b"AGF2":  # a newer frame's layout: not a format-1 frame with a flipped magic bit
        data[second.offset + 8 : second.offset + 12] = bytes(4)
    path.write_bytes(bytes(data))
    return store, w.run_id, path


def test_a_frame_of_a_newer_frame_format_is_newer_format_not_damage(tmp_path):
    store, run_id, path = _store_with_second_frame_magic(tmp_path, b"AGF2")
    size = path.stat().st_size
    with pytest.raises(NewerFormat, match="frame format 2.*upgrade agtrace"):
        list(read_stream(store.run_dir(run_id) / "events"))
    report = store.verify(run_id, snapshots=False)
    assert report.newer and not report.problems, report.to_dict()
    with pytest.raises(NewerFormat):
        RunWriter(store.run_dir(run_id), run_id)  # recovery neither cuts nor appends to it
    assert path.stat().st_size == size


def test_a_frame_of_garbage_magic_stays_damage(tmp_path):
    store, run_id, _path = _store_with_second_frame_magic(tmp_path, b"AGFx")
    report = store.verify(run_id, snapshots=False)
    assert not report.newer and any("bad frame magic" in p for p in report.problems), report.to_dict()


def test_ls_says_newer_format_for_a_run_whose_first_segment_is_newer(tmp_path):
    store = Store(tmp_path / "store")
    w = store.create_run(RunStarted(agent="t"))
    w.close()
    path = list_segments(store.run_dir(w.run_id) / "events")[0][2]
    path.write_bytes(b"AGTSEG2\n" + path.read_bytes()[8:])
    store.catalog.conn.close()
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (tmp_path / "store" / name).unlink(missing_ok=True)  # rebuilt from the segments
    fresh = Store(tmp_path / "store")
    (row,) = [r for r in fresh.runs() if r.id == w.run_id]
    assert row.status == "newer-format" and "upgrade agtrace" in row.reason, (row.status, row.reason)


def _claims(size: int) -> bytes:
    """A zstd frame of a few bytes whose header says it decompresses to ``size`` bytes."""
    return b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", size) + b"\x01\x00\x00"


@pytest.mark.parametrize("payload, says", [(_claims(1 << 40), "its zstd header says it decompresses to"),
                                           (b"no zstd at all", "does not decode: ")], ids=["bomb", "not-zstd"])
def test_verify_and_the_remote_check_name_a_damaged_frame_once(tmp_path, payload, says):
    """verify said `<path>: frame at byte N: does not decode: <path>: frame at byte N: …; run
    `agtrace verify``, and the check of a pulled segment `frame at byte N does not decode (<temp
    path>: frame at byte N: …)`: the location twice, a verify hint inside verify."""
    store, run_id, path = _store_with_bomb(tmp_path, payload)
    offset = segment.scan(path)[0][1].offset
    (problem,) = store.verify(run_id, snapshots=False).problems
    assert problem.startswith(f"{path}: frame at byte {offset}: {says}"), problem
    assert problem.count(str(path)) == problem.count(f"byte {offset}") == 1 and "agtrace verify" not in problem
    with pytest.raises(CorruptLog) as exc:
        check_segment(path, 1, 2)
    message = str(exc.value)
    assert message.startswith(f"frame at byte {offset}: {says}"), message
    assert str(path) not in message and message.count(f"byte {offset}") == 1 and "agtrace verify" not in message


@pytest.mark.slow
def test_a_frame_this_machine_has_no_memory_for_is_not_called_damage(tmp_path):
    """A frame under the limit that needs more memory than the process has: verify said it
    `does not decode: ` (an empty MemoryError), and the check of a pulled or local segment
    called a whole copy damaged (pull then set a whole local file aside). Now the MemoryError
    reaches the caller (the CLI says out of memory)."""
    store, run_id, path = _store_with_bomb(tmp_path, _bomb(600 << 20, say_size=True))
    store.close()
    script = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
from pathlib import Path
from agtrace.eventlog import Store
from agtrace.eventlog.sync.keys import check_segment
store = Store({str(store.root)!r})
for check in (lambda: check_segment(Path({str(path)!r}), 1, 2), lambda: store.verify({run_id!r}, snapshots=False)):
    try:
        print("returned", check())
    except MemoryError:
        print("MemoryError")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["MemoryError", "MemoryError"], proc.stdout


@pytest.mark.parametrize("payload, says", [(_claims(1 << 40), "its zstd header says it decompresses to"),
                                           (b"no zstd at all", "does not decode: ")], ids=["bomb", "not-zstd"])
def test_append_is_refused_before_a_bomb_in_the_middle_of_the_open_segment(tmp_path, payload, says):
    """Recovery checked the open segment's checksums only, and the writer reads back its last
    frame alone: with a bomb (or a frame that is no zstd) between whole frames, `agtrace append`
    wrote its event past it, then failed sealing, leaving a `.seg.tmp` and an acknowledged
    event no reader reaches. It is now refused before anything is written, naming the frame."""
    from .conftest import run_agtrace

    store = Store(tmp_path / "store")
    w = store.create_run(RunStarted(agent="t"), durability="strict")
    for i in range(3):
        w.append(MessageAdded(role="user", text=f"hello {i}"))
    w.close(seal=False)
    store.close()
    path = list_segments(store.run_dir(w.run_id) / "events")[0][2]
    data = path.read_bytes()
    second = segment.scan(path)[0][1]
    path.write_bytes(data[: second.offset] + _forged(second, payload) + data[second.end:])
    before = path.read_bytes()
    proc = run_agtrace(["append", w.run_id], tmp_path / "store",
                       input=b'{"kind":"message_added","role":"user","text":"after"}\n')
    err = proc.stderr.decode()
    assert proc.returncode != 0 and f"frame at byte {second.offset}: {says}" in err and "Traceback" not in err, err
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, "manifest"]
