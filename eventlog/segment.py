"""Segment files: append-only sequences of independent, checksummed frames.

Layout (little-endian; normative copy in ``docs/format.md``)::

    segment  = SEGMENT_MAGIC (8 bytes) frame*
    frame    = magic "AGF1" (4) | length u32 (4) | crc32 u32 (4) | first_seq u64 (8) | count u32 (4)
               | payload (length bytes: zstd-compressed msgpack batch, see codec.py)

``crc32`` covers ``first_seq``, ``count`` and the payload. A frame is independent: it can be
located, checked and decoded without any other frame. Segment names:
``{first:016x}.open`` while written, ``{first:016x}-{last:016x}.seg`` once sealed (immutable).

Recovery rule: a damaged region at the end of the *open* segment with no valid frame after it
that looks like a write cut short (see :func:`is_torn`) is a torn tail and is cut off. A damaged
frame followed by a valid one, or a whole last frame whose checksum fails (a bit flip), is
corruption: it is reported, never cut, because cutting would drop acknowledged events and give
their seqs to others.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import zstandard

from .errors import CorruptLog, NewerFormat

SEGMENT_MAGIC = b"AGTSEG1\n"
FORMAT_VERSION = 1
"""The format version in :data:`SEGMENT_MAGIC` (``AGTSEG<version>\\n``)."""
NEWER_WORDS = "written by a newer version of agtrace"
"""What every message about a segment of a newer format says (:class:`NewerFormat`)."""
FRAME_MAGIC = b"AGF1"
_HEADER = struct.Struct("<4sIIQI")
HEADER_SIZE = _HEADER.size  # 24
MAX_FRAME_PAYLOAD = 1 << 30
MAX_FRAME_BYTES = 1 << 30
"""The most bytes a frame's payload may decompress to (1 GiB). A frame whose zstd header claims
more, or whose stream produces more, is damage of that frame: it is refused before (or while)
it is decompressed, never by running out of memory (a hostile or corrupted segment: a pull, a
copied store, a bad disk). The writer splits batches long before this (``writer.FRAME_BYTES``)."""
_CHUNK = 1 << 20
VERIFY_HINT = "; run `agtrace verify`"
"""How a reader's message about a damaged frame ends."""

class _ZstdContexts(threading.local):
    """This thread's zstd compressor (level 3) and decompressor, made on its first use. A zstd
    context must not be used by two threads at once (it corrupts frames or crashes the process),
    and runs are written and read from several threads (a library harness, the viewer)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=3)
        self.decompressor = zstandard.ZstdDecompressor()


zstd_contexts = _ZstdContexts()


class FrameInfo(msgspec.Struct, frozen=True, gc=False):
    """Where a frame lives and which seqs it holds."""

    offset: int
    length: int
    first_seq: int
    count: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + self.length


class TornTail(msgspec.Struct, frozen=True, gc=False):
    """A torn tail found (and, by :func:`recover`, cut) at the end of a segment."""

    path: str
    offset: int
    bytes_cut: int
    reason: str


def sealed_name(first: int, last: int) -> str:
    return f"{first:016x}-{last:016x}.seg"


def open_name(first: int) -> str:
    return f"{first:016x}.open"


def parse_name(name: str) -> tuple[int, int | None] | None:
    """``(first, last)`` of a segment file name (``last`` is None while open), else None."""
    try:
        if name.endswith(".seg") and len(name) == 37:
            return int(name[:16], 16), int(name[17:33], 16)
        if name.endswith(".open") and len(name) == 21:
            return int(name[:16], 16), None
    except ValueError:
        return None
    return None


def encode_frame(first_seq: int, batch: bytes) -> bytes:
    """Compress a msgpack batch and wrap it in a checksummed frame."""
    payload = zstd_contexts.compressor.compress(batch)
    tail = struct.pack("<QI", first_seq, _count_hint(batch)) + payload
    crc = zlib.crc32(tail)
    return FRAME_MAGIC + struct.pack("<II", len(payload), crc) + tail


def _count_hint(batch: bytes) -> int:
    """Number of items of a msgpack array, read from its header byte(s)."""
    b0 = batch[0]
    if 0x90 <= b0 <= 0x9F:
        return b0 - 0x90
    if b0 == 0xDC:
        return struct.unpack_from(">H", batch, 1)[0]
    if b0 == 0xDD:
        return struct.unpack_from(">I", batch, 1)[0]
    raise ValueError("batch is not a msgpack array")


def decompress(payload: bytes, where: str = "", offset: int = -1) -> bytes:
    """The decompressed payload of the frame at byte ``offset`` of segment ``where``, in at most
    :data:`MAX_FRAME_BYTES`; else :class:`CorruptLog` naming the file and offset. The size the
    zstd header claims is checked before anything is allocated; a frame that does not say its
    size (agtrace's writer always says it) is first measured in chunks that are dropped, given
    up as soon as it passes the limit, so refusing it holds one chunk, not the limit."""
    claimed = zstandard.frame_content_size(payload) if len(payload) >= 4 else -1
    if claimed > MAX_FRAME_BYTES:
        raise _too_big(where, offset, f"its zstd header says it decompresses to {claimed:,} bytes")
    if claimed >= 0:
        return zstd_contexts.decompressor.decompress(payload)
    total = 0
    with zstd_contexts.decompressor.stream_reader(payload) as stream:
        while piece := stream.read(_CHUNK):
            total += len(piece)
            if total > MAX_FRAME_BYTES:
                raise _too_big(where, offset, f"it decompresses to more than {MAX_FRAME_BYTES:,} bytes")
    return zstd_contexts.decompressor.decompress(payload, max_output_size=total) if total else b""


def _too_big(where: str, offset: int, how: str) -> CorruptLog:
    return CorruptLog(f"{where}: frame at byte {offset}: {how}, over the limit of {MAX_FRAME_BYTES:,} bytes "
                      f"(no agtrace writes such a frame: it is damaged or hostile){VERIFY_HINT}",
                      where, offset)


def frame_damage(exc: Exception, path: str | os.PathLike, offset: int) -> str:
    """What is wrong with the frame at byte ``offset`` of ``path``, for a caller that names the
    frame itself (verify, the checks of push and pull): the message of ``exc`` without the
    location and the verify hint a :class:`CorruptLog` about that frame already carries (from
    :func:`read_frame`, :func:`decompress`), so neither is said twice; any other failure (the
    batch does not decode as events) is ``does not decode: <exc>``."""
    where = f"{path}: frame at byte {offset}: "
    message = str(exc)
    if isinstance(exc, CorruptLog) and message.startswith(where):
        return message[len(where):].removesuffix(VERIFY_HINT)
    return f"does not decode: {message}"


def check_version(path: str | os.PathLike, data: bytes) -> None:
    """Raise :class:`NewerFormat` when ``data`` (a segment's first bytes) starts with the header
    of a format newer than :data:`FORMAT_VERSION` (``AGTSEG2\\n``, ``AGTSEG10\\n``: a newer
    agtrace wrote it). Any other header that is not ours is damage, for the callers to report."""
    head = bytes(data[:16])
    if not head.startswith(b"AGTSEG") or head.startswith(SEGMENT_MAGIC):
        return
    digits = head[6:].split(b"\n", 1)
    if len(digits) == 2 and digits[0].isdigit() and int(digits[0]) > FORMAT_VERSION:
        n = int(digits[0])
        raise NewerFormat(f"{path}: {NEWER_WORDS} (format {n}; this one reads "
                          f"format {FORMAT_VERSION}); upgrade agtrace to read it. The file is left as it is",
                          str(path), n)


def check_frame_version(path: str | os.PathLike, buf: bytes, off: int) -> None:
    """Raise :class:`NewerFormat` when the frame at ``off`` has the magic of a newer frame
    format (``AGF2``..``AGF9``: a newer agtrace appended it to a format-1 segment), like a
    segment of a newer format (:func:`check_version`); any other bad magic is damage, and so is
    a newer magic on a frame that checks as ours (the checksum does not cover the magic: one bit
    flip turns ``AGF1`` into ``AGF3``)."""
    magic = bytes(buf[off : off + 4])
    if len(magic) == 4 and magic[:3] == FRAME_MAGIC[:3] and magic[3:].isdigit() and magic[3:] > FRAME_MAGIC[3:]:
        head = bytes(buf[off : off + HEADER_SIZE])
        length = _HEADER.unpack(head)[1] if len(head) == HEADER_SIZE else -1
        if 0 <= length <= MAX_FRAME_PAYLOAD and isinstance(
                _check_frame(FRAME_MAGIC + bytes(buf[off + 4 : off + HEADER_SIZE + length]), 0,
                             HEADER_SIZE + length), FrameInfo):
            return  # a frame of ours with a flipped magic bit: damage
        n = int(magic[3:])
        raise NewerFormat(f"{path}: frame at byte {off}: {NEWER_WORDS} (frame format {n}; this one reads "
                          f"frame format {FRAME_MAGIC[3:].decode()}); upgrade agtrace to read it. The file is left "
                          "as it is", str(path), n)


def _check_frame(buf: bytes, off: int, size: int) -> FrameInfo | str:
    """Validate the frame at ``off`` in ``buf``: a FrameInfo, or why it is not a valid frame."""
    if size - off < HEADER_SIZE:
        return "incomplete frame header"
    magic, length, crc, first, count = _HEADER.unpack_from(buf, off)
    if magic != FRAME_MAGIC:
        return "bad frame magic"
    if length > MAX_FRAME_PAYLOAD or off + HEADER_SIZE + length > size:
        return "frame extends past the end of the file"
    if zlib.crc32(memoryview(buf)[off + 12 : off + HEADER_SIZE + length]) != crc:
        return "checksum mismatch"
    if count == 0 or first == 0:
        return "empty frame or seq 0"
    return FrameInfo(off, length, first, count)


def scan(path: str | os.PathLike, *, verify: bool = True) -> tuple[list[FrameInfo], str | None, int]:
    """Walk a segment's frames.

    Returns ``(frames, problem, problem_offset)``: the valid frames from the start, and, if the
    walk stopped early, why and where. ``verify=False`` checks headers only (fast seek by
    length), which is what readers use to skip frames they do not need. Raises
    :class:`NewerFormat` for a segment of a newer format (see :func:`check_version`), which is
    no problem of the file.
    """
    data = Path(path).read_bytes()
    check_version(path, data)
    size = len(data)
    if size < len(SEGMENT_MAGIC) or data[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
        if size == 0:
            return [], None, 0
        return [], "bad segment header", 0
    frames: list[FrameInfo] = []
    off = len(SEGMENT_MAGIC)
    expected = None
    while off < size:
        if verify:
            info = _check_frame(data, off, size)
        else:
            info = _header_only(data, off, size)
        if isinstance(info, str):
            if info == "bad frame magic":
                check_frame_version(path, data, off)  # a newer frame is no damage
            return frames, info, off
        if expected is not None and info.first_seq != expected:
            return frames, f"seq gap: expected {expected}, frame starts at {info.first_seq}", off
        frames.append(info)
        expected = info.last_seq + 1
        off = info.end
    return frames, None, off


def _header_only(buf: bytes, off: int, size: int) -> FrameInfo | str:
    if size - off < HEADER_SIZE:
        return "incomplete frame header"
    magic, length, _crc, first, count = _HEADER.unpack_from(buf, off)
    if magic != FRAME_MAGIC:
        return "bad frame magic"
    if off + HEADER_SIZE + length > size:
        return "frame extends past the end of the file"
    return FrameInfo(off, length, first, count)


def _valid_frame_after(data: bytes, start: int) -> int | None:
    """Offset of the first checksum-valid frame at or after ``start``, if any."""
    pos = data.find(FRAME_MAGIC, start)
    while pos != -1:
        if isinstance(_check_frame(data, pos, len(data)), FrameInfo):
            return pos
        pos = data.find(FRAME_MAGIC, pos + 1)
    return None


def recover(path: str | os.PathLike) -> tuple[list[FrameInfo], TornTail | None]:
    """Check an open segment and cut a torn tail off it.

    Returns the valid frames and the cut that was made (None if the file was intact).
    Raises :class:`CorruptLog` when a bad frame is followed by a valid one: that is corruption
    of acknowledged data, which is never cut automatically.
    """
    path = Path(path)
    frames, problem, off = scan(path)
    _check_sizes(path, frames)
    if problem is None:
        return frames, None
    data = path.read_bytes()
    if off == 0:
        if _valid_frame_after(data, 0) is not None:
            raise CorruptLog(
                f"{path}: bad segment header but valid frames follow; run `agtrace verify` and "
                "restore the file from a remote copy",
                str(path),
                0,
            )
        off = 0
    else:
        later = _valid_frame_after(data, off + 1)
        if later is not None:
            raise CorruptLog(
                f"{path}: frame at byte {off} is damaged ({problem}) but a valid frame follows at "
                f"byte {later}; the log is corrupt, not torn. Run `agtrace verify` and restore this "
                "segment from a remote copy (`agtrace pull`) if you have one",
                str(path),
                off,
            )
        if not is_torn(data, off):
            raise CorruptLog(
                f"{path}: the last frame, at byte {off}, is whole but damaged ({problem}): its events "
                f"were written and are now unreadable, which no crash does. It is not cut (its seqs "
                "would be given to other events); the events before it read normally. Run `agtrace "
                "verify` and keep the file for inspection; the run cannot be appended to",
                str(path),
                off,
            )
    cut = TornTail(str(path), off, len(data) - off, problem)
    with open(path, "r+b") as fh:
        if off == 0:
            fh.truncate(0)
            fh.write(SEGMENT_MAGIC)
        else:
            fh.truncate(off)
        fh.flush()
        os.fsync(fh.fileno())
    return frames, cut


def _check_sizes(path: Path, frames: list[FrameInfo]) -> None:
    """Raise :class:`CorruptLog` for a checksum-valid frame that decompresses past
    :data:`MAX_FRAME_BYTES` (a bomb: what the readers refuse), so that nothing is appended after
    it. Each frame's zstd header is read (agtrace's writer always says the size there); a frame
    that does not say it is measured (:func:`decompress`)."""
    with open(path, "rb") as fh:
        for info in frames:
            head = os.pread(fh.fileno(), min(info.length, 18), info.offset + HEADER_SIZE)
            try:
                claimed = zstandard.frame_content_size(head) if len(head) >= 4 else -1
            except zstandard.ZstdError:
                claimed = -1
            if claimed > MAX_FRAME_BYTES or claimed < 0:
                try:
                    decompress(os.pread(fh.fileno(), info.length, info.offset + HEADER_SIZE), str(path), info.offset)
                except zstandard.ZstdError as exc:
                    raise CorruptLog(f"{path}: frame at byte {info.offset}: does not decode: {exc}{VERIFY_HINT}",
                                     str(path), info.offset) from None


TORN_ZEROS = 16
"""A tail ending in at least this many zero bytes is a write the disk did not finish."""


def is_torn(data: bytes, off: int) -> bool:
    """Whether the bad region from ``off`` to the end of ``data`` is what a write cut short leaves:
    less than a frame header, a header whose frame runs past the end of the file, or a tail of
    zeros (pages the filesystem allocated but never wrote). A whole frame whose checksum fails,
    or bytes that are no frame at all, are damage instead (a bit flip, an overwrite)."""
    size = len(data)
    if size - off < HEADER_SIZE:
        return True
    magic, length, _crc, _first, _count = _HEADER.unpack_from(data, off)
    if magic == FRAME_MAGIC and off + HEADER_SIZE + length > size:
        return True
    tail = data[-TORN_ZEROS:]
    return size - off >= TORN_ZEROS and tail == bytes(len(tail))


def read_frame(fh, info: FrameInfo) -> bytes:
    """The decompressed batch of a frame (checksum verified)."""
    fh.seek(info.offset)
    raw = fh.read(HEADER_SIZE + info.length)
    checked = _check_frame(raw, 0, len(raw))
    if isinstance(checked, str):
        raise CorruptLog(
            f"{fh.name}: frame at byte {info.offset}: {checked}{VERIFY_HINT}",
            fh.name,
            info.offset,
        )
    return decompress(raw[HEADER_SIZE:], fh.name, info.offset)


def iter_frames(
    data: bytes, start: int = len(SEGMENT_MAGIC), want=None, where: str = ""
) -> Iterator[tuple[FrameInfo, bytes | None]]:
    """Valid frames of an in-memory segment image, stopping quietly at an incomplete tail.

    Frames for which ``want(info)`` is false are walked by their headers only and yielded with
    ``None`` instead of their batch: they are neither checksummed nor decompressed. Used to
    follow a segment that a live writer is appending to: a half-written frame at the end is not
    an error there, just not there yet. A frame over :data:`MAX_FRAME_BYTES` raises
    :class:`CorruptLog` naming ``where`` (the segment's path).
    """
    off = start
    size = len(data)
    while off < size:
        if want is not None:
            head = _header_only(data, off, size)
            if isinstance(head, str):
                check_frame_version(where, data, off)
                return
            if not want(head):
                yield head, None
                off = head.end
                continue
        info = _check_frame(data, off, size)
        if isinstance(info, str):
            check_frame_version(where, data, off)
            return
        yield info, decompress(data[off + HEADER_SIZE : info.end], where, off)
        off = info.end


def _array_body(batch: bytes) -> tuple[int, bytes]:
    """``(count, items)`` of a msgpack array: its element count and the bytes after its header."""
    b0 = batch[0]
    if 0x90 <= b0 <= 0x9F:
        return b0 - 0x90, batch[1:]
    if b0 == 0xDC:
        return struct.unpack_from(">H", batch, 1)[0], batch[3:]
    return struct.unpack_from(">I", batch, 1)[0], batch[5:]


def _array_header(n: int) -> bytes:
    if n <= 15:
        return bytes([0x90 | n])
    if n <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


COMPACT_FRAME_BYTES = 16 * 1024 * 1024
"""Seal-time compaction joins small frames until they hold this many (uncompressed) bytes."""


def compact(src: str | os.PathLike, dest: str | os.PathLike, batch_events: int, below: int) -> bool:
    """Rewrite segment ``src`` as ``dest`` with frames of about ``batch_events`` events.

    Only when ``src``'s frames hold fewer than ``below`` events on average (else returns False
    and does nothing). Batches are joined without decoding their events, and no further once
    they hold :data:`COMPACT_FRAME_BYTES` (frames of big events stay apart, so compaction, and
    every later read of a frame, holds that much at most). Crash-safe: ``dest`` is
    written as ``<dest>.tmp``, fsynced and renamed before ``src`` is removed; a crash leaves
    either ``src`` alone, or ``dest`` complete beside ``src`` (the writer then removes ``src``).
    """
    src, dest = Path(src), Path(dest)
    frames, problem, off = scan(src)
    if problem or not frames:
        return False
    total = frames[-1].last_seq - frames[0].first_seq + 1
    if total / len(frames) >= below:
        return False
    tmp = dest.with_name(dest.name + ".tmp")
    with open(src, "rb") as fh, open(tmp, "wb") as out:
        out.write(SEGMENT_MAGIC)
        first, count, size, parts = frames[0].first_seq, 0, 0, []
        for info in frames:
            n, items = _array_body(read_frame(fh, info))
            parts.append(items)
            count += n
            size += len(items)
            if count >= batch_events or size >= COMPACT_FRAME_BYTES or info is frames[-1]:
                out.write(encode_frame(first, _array_header(count) + b"".join(parts)))
                first, count, size, parts = first + count, 0, 0, []
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    os.unlink(src)
    return True


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so that a rename or a new file in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
