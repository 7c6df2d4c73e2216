"""Reading a run's stream: full scans, seq ranges (by frame header skipping), and live tailing.

Sealed segments are read strictly: any damaged frame raises :class:`CorruptLog`. The open
segment is read up to its last complete frame, because a live writer may be mid-frame; a
damaged frame there ends the read quietly (``agtrace verify`` reports it).
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import codec, segment
from .errors import CorruptLog
from .events import Record


def list_segments(stream_dir: str | os.PathLike) -> list[tuple[int, int | None, Path]]:
    """``(first, last, path)`` of each segment in seq order; ``last`` is None for the open one."""
    stream_dir = Path(stream_dir)
    try:
        names = os.listdir(stream_dir)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        parsed = segment.parse_name(name)
        if parsed is not None:
            out.append((parsed[0], parsed[1], stream_dir / name))
    sealed = {first for first, last, _ in out if last is not None}
    # an open segment beside its sealed twin is a compaction's leftover: the sealed one wins
    out = [t for t in out if t[1] is not None or t[0] not in sealed]
    out.sort(key=lambda t: (t[0], t[1] is None))
    return out


def read_stream(
    stream_dir: str | os.PathLike, start: int = 1, end: int | None = None
) -> Iterator[Record]:
    """Records with ``start <= seq <= end`` in seq order.

    Sealed segments are memory-mapped: frames wholly outside the range are skipped by their
    headers, neither read from disk nor decompressed, so reading a part of a long run costs what
    that part costs. The open segment is read whole instead: recovery may truncate it, and a
    mapped page past a truncation would kill the reader (SIGBUS). Seqs that no segment holds
    (a sealed segment removed) and a sealed segment whose frames do not hold the seqs its name
    says (a file replaced by another) raise :class:`CorruptLog` when the read reaches them, so
    neither is read as a shorter or reordered run.
    """
    expected: int | None = start  # the seq the next segment must start at or before
    for first, last, path in list_segments(stream_dir):
        if last is not None and last < start:
            continue
        if end is not None and first > end:
            break
        if expected is not None and first > expected:
            raise CorruptLog(f"{stream_dir}: no segment holds seqs {expected}..{first - 1} (a segment file is "
                             f"missing); run {_verify_hint(path)} for details and restore the segment from a "
                             "remote copy (`agtrace pull`) if you have one", str(path), 0)
        try:
            data = _map(path) if last is not None else path.read_bytes()
        except FileNotFoundError:  # sealed by the writer between listdir and open
            path = _find_sealed(Path(stream_dir), first)
            if path is None:
                continue
            data, last = _map(path), segment.parse_name(path.name)[1]
        expected = None if last is None else last + 1
        want = lambda info: info.last_seq >= start  # noqa: E731 - frames before start stay compressed
        try:
            if last is None:
                segment.check_version(path, data)  # a newer format's frames are not ours to decode
                frames = segment.iter_frames(data, want=want, where=str(path))
            else:
                frames = _strict_frames(path, data, want, first, last)
            for info, batch in frames:
                if batch is None:
                    continue
                if end is not None and info.first_seq > end:
                    return
                for rec in codec.decode_batch(batch, info.first_seq):
                    if rec.seq >= start and (end is None or rec.seq <= end):
                        yield rec
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def _map(path: Path) -> mmap.mmap | bytes:
    """A read-only map of a segment file (b"" for an empty one, which cannot be mapped)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ) if size else b""


def _find_sealed(stream_dir: Path, first: int) -> Path | None:
    for f, last, path in list_segments(stream_dir):
        if f == first and last is not None:
            return path
    return None


def _verify_hint(path: Path) -> str:
    """``agtrace verify RUN`` for a segment at its place in a store (``runs/RUN/events/``)."""
    run = path.parent.parent.name if path.parent.name == "events" else ""
    return f"`agtrace verify {run}`" if run else "`agtrace verify`"


def _strict_frames(path: Path, data: bytes, want, first: int, last: int) -> Iterator[tuple[segment.FrameInfo, bytes | None]]:
    """The frames of a sealed segment, which must hold exactly ``first..last`` (its name) in order."""
    if data[: len(segment.SEGMENT_MAGIC)] != segment.SEGMENT_MAGIC:
        segment.check_version(path, data)
        raise CorruptLog(f"{path}: bad segment header; run {_verify_hint(path)}", str(path), 0)
    restore = (f"run {_verify_hint(path)} for details and restore the segment from a remote copy "
               "(`agtrace pull`) if you have one")
    off, seq = len(segment.SEGMENT_MAGIC), first
    for info, batch in segment.iter_frames(data, off, want=want, where=str(path)):
        if info.first_seq != seq:
            raise CorruptLog(f"{path}: the frame at byte {info.offset} starts at seq {info.first_seq}, not {seq} "
                             f"(the file is not the segment its name says); {restore}", str(path), info.offset)
        yield info, batch
        off, seq = info.end, info.last_seq + 1
    if off != len(data):
        raise CorruptLog(f"{path}: damaged frame at byte {off}; {restore}", str(path), off)
    if seq != last + 1:
        raise CorruptLog(f"{path}: its frames end at seq {seq - 1}, its name says {last} (the file is not the "
                         f"segment its name says); {restore}", str(path), off)


def last_record(stream_dir: str | os.PathLike) -> Record | None:
    """The last record of a stream, decoding only its last frame."""
    segs = list_segments(stream_dir)
    for _first, _last, path in reversed(segs):
        frames, _problem, _off = segment.scan(path, verify=False)
        if not frames:
            continue
        with open(path, "rb") as fh:
            batch = segment.read_frame(fh, frames[-1])
        return codec.decode_batch(batch, frames[-1].first_seq)[-1]
    return None


def tail(
    stream_dir: str | os.PathLike,
    start: int = 1,
    *,
    poll_s: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Record]:
    """Follow a stream: yield records from ``start`` as they are appended, until ``stop()``.

    Segment rolls and seals are followed transparently. With ``stop`` None it follows forever;
    callers typically stop when they see ``run_ended`` or when the writer's lock is free.
    """
    nxt = start
    while True:
        got = False
        for rec in read_stream(stream_dir, nxt):
            yield rec
            nxt = rec.seq + 1
            got = True
        if stop is not None and stop():
            for rec in read_stream(stream_dir, nxt):  # what landed just before the stop
                yield rec
            return
        if not got:
            time.sleep(poll_s)
