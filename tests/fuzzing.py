"""Mutations and bookkeeping shared by the fuzz suite (``tests/test_fuzz_*.py``) and its soak
(``bench/soak_fuzz.py``).

A mutation is drawn by hypothesis (so failures shrink and replay) and applied to real bytes: a
checked-in fixture, a real segment, manifest or bundle. Every case ends in one of three
outcomes: ``accepted`` (the reader took it and its meaning is intact), ``refused`` (a located
error: the reader's own exception naming the file, byte or line), or a crash, which fails the
test with the case. :class:`Tally` counts them; the tests print the counts.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import zlib
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("AGTRACE_FUZZ_EXAMPLES", "40"))
"""Cases per reader in CI; the soak raises it."""

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

ODD_VALUES = [None, -1, 0, 2**63, 2**64 + 1, -(2**63) - 1, 1.5, float("inf"), "", "x" * 300, True, [], {},
              "__DEEP_50__", {"k": {"k": {"k": None}}}, "\u0000\ud800"]


@dataclass
class Tally:
    """Cases tried and how each was handled, per reader."""

    name: str
    tried: int = 0
    accepted: int = 0
    refused: int = 0
    crashed: int = 0
    examples: dict[str, str] = field(default_factory=dict)

    def accept(self) -> None:
        self.tried += 1
        self.accepted += 1

    def refuse(self, why: str) -> None:
        self.tried += 1
        self.refused += 1
        self.examples.setdefault(why.split(":")[0][:60], why[:200])

    @property
    def handled(self) -> int:
        return self.accepted + self.refused

    def line(self) -> str:
        crashed = f", {self.crashed} NOT handled (the test fails)" if self.crashed else ""
        return (f"fuzz {self.name}: {self.tried} cases tried, {self.handled} handled "
                f"({self.accepted} accepted intact, {self.refused} refused with their location){crashed}")


def counted(tally_of):
    """Count a case that raises (a reader that crashed, or a broken promise) as not handled."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            t = tally_of()
            before = t.tried
            try:
                return fn(*args, **kwargs)
            except Exception:  # hypothesis's own control flow (StopTest) is a BaseException
                if t.tried == before:
                    t.tried += 1
                    t.crashed += 1
                raise
        return run
    return wrap


@st.composite
def byte_mutation(draw, data: bytes, start: int = 0) -> bytes:
    """``data`` with one to three byte-level changes at or after ``start``: bit flips, bytes set,
    truncation, garbage inserted, a range deleted or repeated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if len(out) <= start:
            out += b"\0"
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "repeat"]))
        at = draw(st.integers(start, max(start, len(out) - 1)))
        if op == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            out[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif op == "delete":
            del out[at:at + draw(st.integers(1, 64))]
        else:
            out[at:at] = out[at:at + draw(st.integers(1, 64))]
    return bytes(out)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:20]):
            yield from _paths(v, (*prefix, i))


@st.composite
def json_mutation(draw, value):
    """A deep copy of JSON ``value`` with one field (or element) replaced by an odd value of
    another type, deleted, or nested deeply."""
    value = json.loads(json.dumps(value))
    paths = list(_paths(value))[1:]
    if not paths:
        return draw(st.sampled_from(ODD_VALUES))
    path = draw(st.sampled_from(paths))
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    op = draw(st.sampled_from(["replace", "replace", "delete", "deep"]))
    if op == "delete":
        del parent[path[-1]]
    elif op == "deep":  # expanded by dump_json (the stdlib encoder would recurse)
        parent[path[-1]] = f"__DEEP_{draw(st.sampled_from([50, 3000]))}__"
    else:
        parent[path[-1]] = draw(st.sampled_from(ODD_VALUES))
    return value


def dump_json(value) -> bytes:
    """JSON bytes of a mutated value (a ``__DEEP_n__`` placeholder becomes n nested lists)."""
    text = json.dumps(value, allow_nan=True)
    for n in (50, 3000):
        text = text.replace(f'"__DEEP_{n}__"', "[" * n + "]" * n)
    return text.encode("utf-8", "surrogatepass")


@functools.cache
def zstd_bomb(say_size: bool) -> bytes:
    """A zstd stream of ~40 kB that expands to one byte more than ``segment.MAX_FRAME_BYTES``
    (zeros), its header saying that size or not (then only decompressing tells)."""
    import zstandard

    from agtrace.eventlog import segment

    size = segment.MAX_FRAME_BYTES + 1
    obj = zstandard.ZstdCompressor(level=1, write_content_size=say_size).compressobj(size=size if say_size else -1)
    chunk, out, left = bytes(1 << 20), [], size
    while left:
        out.append(obj.compress(chunk[: min(left, len(chunk))]))
        left -= min(left, len(chunk))
    return b"".join(out) + obj.flush()


def frame_offsets(data: bytes) -> list[int]:
    """Where the frames of segment image ``data`` start (walked by their headers)."""
    from agtrace.eventlog import segment

    offsets, off = [], len(segment.SEGMENT_MAGIC)
    while off + segment.HEADER_SIZE <= len(data):
        offsets.append(off)
        off += segment.HEADER_SIZE + struct.unpack_from("<I", data, off + 4)[0]
    return offsets


@st.composite
def frame_bomb(draw, data: bytes) -> tuple[bytes, int]:
    """``data`` (a segment) with one frame's payload replaced by :func:`zstd_bomb`, its seqs kept
    and its checksum fixed, so only the size limit can catch it; and the frame's offset."""
    from agtrace.eventlog import segment

    off = draw(st.sampled_from(frame_offsets(data)))
    length, _crc, first, count = struct.unpack_from("<IIQI", data, off + 4)
    payload = zstd_bomb(draw(st.booleans()))
    tail = struct.pack("<QI", first, count) + payload
    frame = segment.FRAME_MAGIC + struct.pack("<II", len(payload), zlib.crc32(tail)) + tail
    return data[:off] + frame + data[off + segment.HEADER_SIZE + length:], off
