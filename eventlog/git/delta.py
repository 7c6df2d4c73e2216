"""Git's delta format: an object written as copy and insert instructions against a base object.

A pack entry of type OFS_DELTA (6) or REF_DELTA (7) holds, deflated: the base's size and the
result's size (little-endian base-128 varints), then instructions. An instruction byte with its
high bit set copies ``size`` bytes of the base from ``offset`` (bits 0–3 say which of 4 offset
bytes follow, bits 4–6 which of 3 size bytes; a size of 0 means 0x10000); a byte 1–127 inserts
that many literal bytes that follow it; 0 is reserved.

`make_delta` is made for consecutive versions of one path (a tree with a few entries changed, a
file with a few lines edited): it keeps the longest common prefix and suffix and inserts what
lies between. That costs two memory comparisons per object, not a block index of the base, and
is what a snapshot's merge (``packset.py``) needs: the versions it pairs differ by one part's
edits. `apply_delta` reads any git delta. No pygit2 here.
"""

from __future__ import annotations

import functools
import re

_COPY_MAX = 0xFFFFFF  # copy sizes up to 3 bytes (0x10000 is encoded as 0; not used here)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # the longest equal prefix, found by halving: bytes' memcmp, never a loop per byte
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, most: int) -> int:
    lo, hi, la, lb = 0, most, len(a), len(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid: la - lo] == b[lb - mid: lb - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _copy(out: bytearray, offset: int, size: int) -> None:
    while size:
        n = min(size, _COPY_MAX)
        op, args = 0x80, bytearray()
        for i in range(4):
            byte = (offset >> (8 * i)) & 0xFF
            if byte:
                op |= 1 << i
                args.append(byte)
        for i in range(3):
            byte = (n >> (8 * i)) & 0xFF
            if byte:
                op |= 0x10 << i
                args.append(byte)
        out.append(op)
        out += args
        offset += n
        size -= n


def make_delta(base: bytes, target: bytes, kind: bytes = b"blob") -> bytes:
    """A delta that turns ``base`` into ``target``: their common prefix and suffix copied, and
    between them every unit of ``target`` (a tree's entry, a blob's line) that ``base`` holds
    copied from there (runs of consecutive units as one copy), the rest inserted."""
    a, b = bytes(base), bytes(target)  # slices of bytes compare by memcmp (memoryviews by item)
    prefix = _common_prefix(a, b)
    room = min(len(a), len(b)) - prefix
    suffix = _common_suffix(a, b, room)
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    if prefix:
        _copy(out, 0, prefix)
    base_end, end = len(base) - suffix, len(target) - suffix
    if len(base) == len(target) and end - prefix > 64:  # ids changed in place (a tree's files edited)
        at = prefix
        for lo, hi in _aligned_changes(a, b, prefix, end):
            if lo > at:
                _copy(out, at, lo - at)
            _insert(out, b[lo:hi])
            at = hi
        if end > at:
            _copy(out, at, end - at)
    elif end - prefix > 64 and base_end - prefix > 64:
        split = _entries if kind == b"tree" else _lines
        by_offset = dict(split(base, prefix, base_end))
        first: dict[bytes, int] = {}
        for offset, unit in by_offset.items():
            first.setdefault(unit, offset)
        run_at = run_end = -1
        pending = prefix
        for offset, unit in split(target, prefix, end):
            if len(unit) < 4:
                continue  # cheaper inserted than copied
            if run_end >= 0 and by_offset.get(run_end) == unit and pending == offset:
                run_end += len(unit)
                pending = offset + len(unit)
                continue
            at = first.get(unit)
            if at is None:
                continue
            if run_end >= 0:
                _copy(out, run_at, run_end - run_at)
                run_at = run_end = -1
            _insert(out, b[pending:offset])
            run_at, run_end, pending = at, at + len(unit), offset + len(unit)
        if run_end >= 0:
            _copy(out, run_at, run_end - run_at)
        _insert(out, b[pending:end])
    else:
        _insert(out, b[prefix:end])
    if suffix:
        _copy(out, len(a) - suffix, suffix)
    return bytes(out)


def _aligned_changes(a: bytes, b: bytes, lo: int, hi: int, grain: int = 16) -> list[tuple[int, int]]:
    """The ranges of ``[lo, hi)`` where ``a`` and ``b`` differ, to ``grain`` bytes, found by
    halving (memory comparisons; ranges closer than 8 bytes joined: a copy costs that much)."""
    out: list[tuple[int, int]] = []
    stack = [(lo, hi)]
    while stack:
        x, y = stack.pop()
        if a[x:y] == b[x:y]:
            continue
        if y - x <= grain:
            if out and x - out[-1][1] < 8:
                out[-1] = (out[-1][0], y)
            else:
                out.append((x, y))
            continue
        mid = (x + y) // 2
        stack.append((mid, y))
        stack.append((x, mid))
    return out


def _insert(out: bytearray, data: bytes) -> None:
    for at in range(0, len(data), 127):
        chunk = data[at: at + 127]
        out.append(len(chunk))
        out += chunk


@functools.cache
def _pattern(kind: str) -> re.Pattern:
    """Compiled on first use: a cold replay, which only applies deltas, never pays for it."""
    return re.compile(rb"[^\n]*\n" if kind == "line" else rb"[^\0]*\0[\s\S]{20}")


def _lines(data: bytes, start: int, end: int):
    """``(offset, line)`` of the lines of ``data[start:end]`` (a last line without its newline
    is left out: inserted, never copied)."""
    return ((m.start(), m.group()) for m in _pattern("line").finditer(data, start, end))


def _entries(data: bytes, start: int, end: int):
    """``(offset, entry)`` of a tree's entries in ``data[start:end]`` (from any place: units
    are only where to look for copies)."""
    return ((m.start(), m.group()) for m in _pattern("entry").finditer(data, start, end))


def _read_varint(delta: bytes, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if at >= len(delta):
            raise ValueError("a delta whose header is truncated")
        byte = delta[at]
        at += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, at


def _operand(delta: bytes, at: int, op: int, first_bit: int, width: int) -> tuple[int, int]:
    """A copy instruction's offset (``first_bit`` 0x01, 4 bytes) or size (0x10, 3 bytes): the
    bytes ``op``'s bits say follow, little-endian; and where the instruction goes on."""
    value = 0
    for i in range(width):
        if op & (first_bit << i):
            if at >= len(delta):
                raise ValueError("a delta copy instruction is truncated")
            value |= delta[at] << (8 * i)
            at += 1
    return value, at


def apply_delta(base: bytes, delta: bytes) -> bytes:
    """The object that ``delta`` makes of ``base``; ValueError when the delta is malformed or
    does not fit the base (a wrong base size, a copy past its end, a result of the wrong size)."""
    base_size, at = _read_varint(delta, 0)
    if base_size != len(base):
        raise ValueError(f"a delta for a base of {base_size} bytes applied to {len(base)} bytes")
    size, at = _read_varint(delta, at)
    out, end = [], len(delta)
    view = memoryview(base)
    total = 0
    while at < end:
        op = delta[at]
        at += 1
        if op & 0x80:
            offset, at = _operand(delta, at, op, 0x01, 4)
            n, at = _operand(delta, at, op, 0x10, 3)
            n = n or 0x10000
            if offset + n > len(base):
                raise ValueError("a delta copies past the end of its base")
            out.append(view[offset: offset + n])
        elif op:
            if at + op > end:
                raise ValueError("a delta insert instruction is truncated")
            out.append(delta[at: at + op])
            at += op
        else:
            raise ValueError("a delta holds the reserved instruction 0")
        total += n if op & 0x80 else op
        if total > size:
            raise ValueError("a delta makes more bytes than its header says")
    if total != size:
        raise ValueError("a delta makes fewer bytes than its header says")
    return b"".join(out)
