"""Reading a whole (non-delta) object out of a git pack in Python, without libgit2.

Big snapshots write their blobs as packs (``pack.py``) whose entries are never deltas, and a
pack written by git may hold whole objects too. pygit2's ``odb.read`` holds the GIL while it
inflates and hashes, so a checkout reading packed files from several threads would run them one
at a time; here the pack and its index are memory-mapped, and ``zlib`` and ``hashlib`` let the
GIL go, so a checkout's threads inflate and hash on every core, as ``loose.py`` does for loose
objects.

Contract: :meth:`PackReader.read` returns ``(kind, bytes)`` only after checking the entry's
header, its size and that its SHA-1 is its name (libgit2's strict verification); a damaged
entry raises :class:`~agtrace.eventlog.git.loose.DamagedObject`. An object in no pack, or stored
as a delta, returns None: the caller reads it through libgit2. An index (``.idx`` version 2) that
is malformed is skipped (libgit2 then reads or refuses the pack). Packs added later (a new
snapshot) are found on the next miss. Safe to share between threads. No pygit2 here.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
import zlib

from .loose import INFLATER, DamagedObject, read_loose

_KINDS = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_IDX_MAGIC = b"\xfftOc\x00\x00\x00\x02"


class _Pack:
    """One ``.idx`` (version 2) and its ``.pack``, memory-mapped."""

    def __init__(self, idx_path: str):
        with open(idx_path, "rb") as fh:
            self.idx = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        with open(idx_path[:-4] + ".pack", "rb") as fh:
            self.pack = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        idx = self.idx
        if len(idx) < 8 + 1024 + 40 or idx[:8] != _IDX_MAGIC or self.pack[:4] != b"PACK":
            raise ValueError("not a version 2 pack index")
        self.fanout = struct.unpack_from(">256I", idx, 8)
        self.count = self.fanout[255]
        if any(a > b for a, b in zip(self.fanout, self.fanout[1:], strict=False)):
            raise ValueError("a pack index whose fan-out table is not sorted")
        self.names_at = 8 + 1024
        self.offsets_at = self.names_at + 24 * self.count  # names (20 bytes), then CRCs (4)
        self.large_at = self.offsets_at + 4 * self.count
        if len(idx) < self.large_at + 40:
            raise ValueError("a truncated pack index")

    def offset(self, name: bytes) -> int | None:
        """Where the entry of object ``name`` (20 bytes) starts in the pack, or None."""
        first = name[0]
        lo = self.fanout[first - 1] if first else 0
        hi = self.fanout[first]
        at, idx = self.names_at, self.idx
        while lo < hi:  # the names of [lo, hi) are sorted
            mid = (lo + hi) // 2
            here = idx[at + 20 * mid : at + 20 * mid + 20]
            if here < name:
                lo = mid + 1
            elif here > name:
                hi = mid
            else:
                break
        else:
            return None
        (offset,) = struct.unpack_from(">I", idx, self.offsets_at + 4 * mid)
        if offset & 0x80000000:
            at = self.large_at + 8 * (offset & 0x7FFFFFFF)
            if at + 8 > len(idx) - 40:
                raise DamagedObject(f"object {name.hex()} has an offset outside its pack index")
            (offset,) = struct.unpack_from(">Q", idx, at)
        return offset


class PackReader:
    """Whole objects of the packs under ``objects_dir/pack`` (see the module docstring)."""

    def __init__(self, objects_dir: str, inflate=None):
        self.dir = os.path.join(objects_dir, "pack")
        self._inflater = inflate or INFLATER
        self._packs: dict[str, _Pack] = {}
        self._seen: float | None = None
        self._mu = threading.Lock()

    def read(self, oid: str, *, refresh: bool = True) -> tuple[bytes, bytes] | None:
        """``(kind, bytes)`` of object ``oid`` (40 hex digits) if some pack holds it whole, checked.
        Without ``refresh`` only the packs already open are looked in (no system call)."""
        name = bytes.fromhex(oid)
        found = self._find(name)
        if found is None and refresh:  # look again even if another thread opened the new packs meanwhile
            self._refresh()
            found = self._find(name)
        if found is None:
            return None
        pack, offset = found
        return self._entry(pack.pack, offset, oid)

    def _find(self, name: bytes) -> tuple[_Pack, int] | None:
        for pack in list(self._packs.values()):
            offset = pack.offset(name)
            if offset is not None:
                return pack, offset
        return None

    def _refresh(self) -> bool:
        """Open packs added since the last look; True if there are new ones."""
        try:
            seen = os.stat(self.dir).st_mtime_ns
        except OSError:
            return False
        with self._mu:
            if seen == self._seen:
                return False
            self._seen = seen
            added = False
            for entry in os.listdir(self.dir):
                if entry.endswith(".idx") and entry not in self._packs:
                    try:
                        self._packs[entry] = _Pack(os.path.join(self.dir, entry))
                        added = True
                    except (OSError, ValueError, struct.error):
                        continue  # libgit2 reads it, or says what is wrong with it
            return added

    def _entry(self, pack: mmap.mmap, offset: int, oid: str) -> tuple[bytes, bytes] | None:
        try:
            byte = pack[offset]
            kind, size, shift, at = (byte >> 4) & 7, byte & 15, 4, offset + 1
            while byte & 0x80:
                byte = pack[at]
                size |= (byte & 0x7F) << shift
                shift += 7
                at += 1
        except IndexError:
            raise DamagedObject(f"object {oid} lies past the end of its pack") from None
        if kind not in _KINDS:
            return None  # a delta: libgit2 resolves it
        inflate = self._inflater.decompressobj()
        bound = size + (size >> 12) + (size >> 14) + (size >> 25) + 64  # zlib's compressBound, and more
        view = memoryview(pack)
        try:
            data = inflate.decompress(view[at : at + bound])
            end = at + bound
            while not inflate.eof and len(data) < size and end < len(pack):  # a deflater less tight
                data += inflate.decompress(view[end : end + _CHUNK])  # than zlib's bound: read on
                end += _CHUNK
        except (zlib.error, self._inflater.error) as exc:
            raise DamagedObject(f"object {oid} does not inflate in its pack ({exc})") from None
        finally:
            view.release()
        if not inflate.eof or len(data) != size:
            raise DamagedObject(f"object {oid} is truncated or of the wrong size in its pack")
        digest = hashlib.sha1(b"%s %d\0" % (_KINDS[kind], size))
        digest.update(data)
        if digest.hexdigest() != oid:
            raise DamagedObject(f"object {oid} does not hash to its name in its pack")
        return _KINDS[kind], data


_CHUNK = 1 << 16
"""How much more of a pack is inflated at a time past an entry's bound."""


class ObjectReader:
    """An object of one repository read in Python where it can be: loose (``loose.py``) or whole
    in a pack; None where libgit2 must read it (a delta, or an object it alone can find)."""

    def __init__(self, objects_dir: str):
        self.dir = objects_dir
        self.packs = PackReader(objects_dir)

    def read(self, oid: str) -> tuple[bytes, bytes] | None:
        """The packs already open first (a lookup in memory: most of a big snapshot's blobs are
        there, and a failed ``open`` of a loose path costs a system call), then the loose
        object, then packs added since. A damaged packed copy is not taken for the object when
        a whole loose one is there."""
        try:
            found = self.packs.read(oid, refresh=False)
        except DamagedObject:
            found = read_loose(self.dir, oid)
            if found is None:
                raise
        if found is None:
            found = read_loose(self.dir, oid)
        return found if found is not None else self.packs.read(oid)
