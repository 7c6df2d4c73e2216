"""Reading an object out of a git pack in Python, without libgit2: whole, or a delta resolved.

Big snapshots write their blobs as packs (``pack.py``) of whole objects; merged packs
(``packset.py``) and git's hold deltas (OFS_DELTA: the base named by its offset in the pack;
REF_DELTA: by its id). pygit2's ``odb.read`` holds the GIL while it inflates and hashes, so a
checkout reading packed files from several threads would run them one at a time; here the pack
and its index are memory-mapped, and ``zlib`` and ``hashlib`` let the GIL go, so a checkout's
threads inflate and hash on every core, as ``loose.py`` does for loose objects; and a cold
replay need not import pygit2 (~100 ms) to read a delta.

Contract: :meth:`PackReader.read` returns ``(kind, bytes)`` only after checking the entry's
header, its size and that its SHA-1 (after the deltas of its chain are applied, ``delta.py``)
is its name (libgit2's strict verification); a damaged entry, a delta that does not apply, a
chain longer than :data:`MAX_CHAIN` raise :class:`~agtrace.eventlog.git.loose.DamagedObject`
naming the object. An object in no pack, or a REF_DELTA whose base is in another pack, returns
None: the caller reads it through libgit2. An index (``.idx`` version 2) that is malformed is
skipped (libgit2 then reads or refuses the pack). Packs added later (a new snapshot) are found on
the next miss. Each pack keeps the last :data:`_CACHED` delta bases it resolved, so the versions
of one chain read in a row cost one delta each. Safe to share between threads. No pygit2 here.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
import zlib

from .delta import apply_delta
from .loose import INFLATER, DamagedObject, read_loose

_KINDS = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_OFS_DELTA, _REF_DELTA = 6, 7
_BLOB = 3
_CACHED, _CACHED_BYTES = 64, 1 << 20
"""Delta bases a pack keeps resolved (blobs only when smaller than this)."""
MAX_CHAIN = 10_000
"""Deltas followed to reach a whole base (git writes chains of at most 4,095; ``packset.py``
writes them no deeper than its ``MAX_DEPTH``): a longer chain, or a cycle of REF_DELTAs, is damage."""
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
        self.bases: dict[int, tuple[int, bytes]] = {}  # offset -> a delta base resolved lately
        self.names_at = 8 + 1024
        self.offsets_at = self.names_at + 24 * self.count  # names (20 bytes), then CRCs (4)
        self.large_at = self.offsets_at + 4 * self.count
        if len(idx) < self.large_at + 40:
            raise ValueError("a truncated pack index")

    def close(self) -> None:
        self.idx.close()
        self.pack.close()

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

    def object_at(self, offset: int, oid: str, inflater=None) -> tuple[bytes, bytes] | None:
        """``(kind, bytes)`` of the entry at ``offset``, a delta resolved against its bases in
        this pack, checked to hash to ``oid`` (40 hex digits); None when a base is in no pack
        here (a thin pack: libgit2 decides); DamagedObject for anything malformed."""
        inflater = inflater or INFLATER
        chain, at_offset, cache, data = [], offset, self.bases, None
        for _ in range(MAX_CHAIN):
            if chain and (known := cache.get(at_offset)) is not None:
                kind, data = known  # a base resolved just now (a chain's next version, a merge)
                break
            kind, size, at = self._header(at_offset, oid)
            if kind in _KINDS:
                break
            if kind == _OFS_DELTA:
                back, at = self._ofs(at, oid)
                if back <= 0 or back > at_offset:
                    raise DamagedObject(f"object {oid} is a delta whose base lies outside its pack")
                chain.append((at_offset, at, size))
                at_offset -= back
            elif kind == _REF_DELTA:
                name = self.pack[at: at + 20]
                found = self.offset(name) if len(name) == 20 else None
                if found is None:
                    return None
                chain.append((at_offset, at + 20, size))
                at_offset = found
            else:
                raise DamagedObject(f"object {oid} has an entry of unknown type {kind} in its pack")
        else:
            raise DamagedObject(f"object {oid} is a delta chain longer than {MAX_CHAIN}")
        if data is None:
            data = self._inflate(at, size, oid, inflater)
        for delta_offset, delta_at, delta_size in reversed(chain):
            if kind != _BLOB or len(data) < _CACHED_BYTES:
                cache[at_offset] = (kind, data)  # at_offset: the base just resolved
                if len(cache) > _CACHED:
                    try:
                        del cache[next(iter(cache))]
                    except (KeyError, RuntimeError, StopIteration):  # another thread's read got there first
                        pass
            try:
                data = apply_delta(data, self._inflate(delta_at, delta_size, oid, inflater))
            except ValueError as exc:
                raise DamagedObject(f"object {oid} is a delta that does not apply in its pack ({exc})") from None
            at_offset = delta_offset
        digest = hashlib.sha1(b"%s %d\0" % (_KINDS[kind], len(data)))
        digest.update(data)
        if digest.hexdigest() != oid:
            raise DamagedObject(f"object {oid} does not hash to its name in its pack")
        return _KINDS[kind], data

    def _header(self, offset: int, oid: str) -> tuple[int, int, int]:
        pack = self.pack
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
        return kind, size, at

    def _ofs(self, at: int, oid: str) -> tuple[int, int]:
        pack = self.pack
        try:
            byte = pack[at]
            back = byte & 0x7F
            at += 1
            while byte & 0x80:
                byte = pack[at]
                back = ((back + 1) << 7) | (byte & 0x7F)
                at += 1
        except IndexError:
            raise DamagedObject(f"object {oid} lies past the end of its pack") from None
        return back, at

    def _inflate(self, at: int, size: int, oid: str, inflater) -> bytes:
        pack = self.pack
        inflate = inflater.decompressobj()
        bound = size + (size >> 12) + (size >> 14) + (size >> 25) + 64  # zlib's compressBound, and more
        view = memoryview(pack)
        try:
            data = inflate.decompress(view[at : at + bound])
            end = at + bound
            while not inflate.eof and len(data) < size and end < len(pack):  # a deflater less tight
                data += inflate.decompress(view[end : end + _CHUNK])  # than zlib's bound: read on
                end += _CHUNK
        except (zlib.error, inflater.error) as exc:
            raise DamagedObject(f"object {oid} does not inflate in its pack ({exc})") from None
        finally:
            view.release()
        if not inflate.eof or len(data) != size:
            raise DamagedObject(f"object {oid} is truncated or of the wrong size in its pack")
        return data


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
        return pack.object_at(offset, oid, self._inflater)

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
