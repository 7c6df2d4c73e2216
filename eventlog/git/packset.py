"""Keeping the packs of a shadow repository few: small packs merged in tiers as they arrive.

Every snapshot from changed paths writes its objects (a few blobs, the changed trees, the
commit) as one small pack (``pack.py``): one file and its index instead of ~15 loose object
files. Left alone, a 20,000-part run would hold 20,000 packs, and every object lookup that misses
(each new object libgit2 checks for) would search all of them. So packs are merged in tiers, as
an LSM tree merges its runs: a pack of ``n`` objects is in tier ``floor(log_FANIN(n))``; when
:data:`FANIN` packs share a tier they are merged into one, which lands a tier higher. A run of N
snapshots then holds O(FANIN · log N) packs, and each object is copied O(log N) times: the cost
of a part does not grow with the part's number (amortized; one snapshot in FANIN merges FANIN
small packs, one in FANIN² merges bigger ones).

Merges store deltas. A snapshot's pack holds its trees and files whole (it has no base to
delta against: a pack must hold the bases of its deltas), but the snapshot tells the set which
object each new tree and file replaces at its path (`PackSet.hint`). When a merge meets an
object whose earlier version is already in the merged pack, it writes it as an OFS_DELTA
against that version (``delta.py``: consecutive versions differ by one part's edits), so a
directory tree of tens of KB that every part rewrites costs tens of bytes per part, not its
size. Chains stay within :data:`MAX_DEPTH` (trees) and :data:`MAX_BLOB_DEPTH` (files); the
work a merge spends on deltas is bounded by
:data:`DELTA_BYTES` (it runs while the agent waits for its snapshot), and what it left whole
gets its turn in the next merge of its pack.

Contracts:

* Packs whose entries are whole objects or OFS_DELTAs are merged (ours, or git's); a pack with
  a REF_DELTA (git's, unbundled), a ``.keep`` or another file beside it (git's ``.rev``,
  ``.bitmap``...) is left as it is. Entries are copied as they are (no re-compression), deltas
  re-pointed at their base's new place; an object in several packs is kept once.
* The merged pack is written (``.idx`` last, through a rename) before the packs it replaces
  are deleted (``.idx`` first, then ``.pack``), so every object is in some indexed pack at every
  moment. Not fsynced: like every snapshot object, packs become durable in a bundle. Hints are
  in memory only: a store opened later merges the packs it finds without new deltas (those
  written before are kept).
* Nothing here knows pygit2; the caller drops its stale pack handles when `PackSet.added`
  returns True (libgit2 keeps deleted packs open until its object database is replaced).
"""

from __future__ import annotations

import os
import struct
import zlib

from .delta import make_delta
from .loose import DamagedObject
from .pack import PackWriter, deflate, entry_header
from .packed import _Pack

FANIN = 4
"""Packs of one tier merged at once (4, not 8: each merged pack starts every path's chain with a
whole version, so fewer packs per tier hold fewer of those; bench/bench_shadow_size.py)."""

MAX_MERGE_BYTES = 32 * 1024 * 1024
"""Packs bigger than this (a big first snapshot's, or merges grown this far) are never merged
again: no snapshot pays for rewriting them."""

HINT_STEPS = 256
"""Versions followed back to find one in the packs being merged (packs merge by tier, not by
age: the version just before may be in a pack of another tier)."""

COMPACT_BYTES = 256 * 1024 * 1024
"""Bytes of packs `PackSet.compact` merges into one at most."""

DELTA_BYTES = 1 << 20
"""Deflated bytes of whole objects a merge tries to store as deltas (its cost on the snapshot's
path is bounded so: ~15 ms); those left whole are tried again by the next merge of their pack."""

MIN_DELTA_BYTES = 128
"""Smaller whole entries are copied as they are (a delta saves them little)."""

MAX_DEPTH = 50
"""Deltas a merge lets a tree's chain grow to (git's default): a read resolves at most this many."""

MAX_BLOB_DEPTH = 10
"""The same for a file's chain: a replay reads one version of every file it writes, so its
chains are kept short. A version whose chain would grow deeper than its cap is stored against an
older, shallower version instead (a bigger delta, never a whole copy)."""
_SIDECARS = (".keep", ".rev", ".bitmap", ".promisor", ".mtimes")


def tier(count: int) -> int:
    """The tier of a pack of ``count`` objects."""
    level = 0
    while count >= FANIN:
        count //= FANIN
        level += 1
    return level


class PackSet:
    """The mergeable packs of one repository's ``objects/pack``, by tier (read from the
    directory on first use, then kept up to date by `added`). One writer per repository."""

    def __init__(self, git_dir: str):
        self.git_dir = git_dir
        self._dir = os.path.join(git_dir, "objects", "pack")
        self._tiers: dict[int, list[tuple[str, int]]] | None = None  # tier -> [(path sans .pack, count)]
        self.merges = 0
        self._prev: dict[bytes, bytes] = {}  # object -> its previous version (`hint`)
        self._budget = 0  # bytes a merge may still try to store as deltas

    def packs(self) -> list[tuple[str, int]]:
        """``(path without .pack, object count)`` of every pack that may be merged."""
        return [p for level in sorted(self._load()) for p in self._load()[level]]

    def forget(self) -> None:
        """Read the directory again on next use (another tool, git's repack, changed the packs)."""
        self._tiers = None

    def added(self, pack_path: str, count: int) -> bool:
        """Note the new pack ``pack_path`` (``….pack``) of ``count`` objects and merge any tier that
        is full; True when packs were deleted (the caller must drop its open pack handles)."""
        tiers = self._load()
        self._note(pack_path[:-5], count)
        merged = False
        while True:
            full = next((level for level, packs in sorted(tiers.items()) if len(packs) >= FANIN), None)
            if full is None:
                return merged
            group = tiers.pop(full)
            for base, n in self._merge(group):
                self._note(base, n)
            merged = True

    def _note(self, base: str, count: int) -> None:
        if any(base == b for packs in self._load().values() for b, _ in packs):
            return  # the pack just written was already there when the directory was first read
        try:
            small = os.path.getsize(base + ".pack") <= MAX_MERGE_BYTES
        except OSError:
            small = False
        if small:
            self._load().setdefault(tier(count), []).append((base, count))

    def _load(self) -> dict[int, list[tuple[str, int]]]:
        if self._tiers is None:
            self._tiers = {}
            try:
                names = sorted(os.listdir(self._dir))
            except FileNotFoundError:
                names = []
            present = set(names)
            for name in names:
                if not name.endswith(".idx") or name[:-4] + ".pack" not in present:
                    continue
                if any(name[:-4] + ext in present for ext in _SIDECARS):
                    continue  # kept, or git's: its .rev or .bitmap would outlive a merge
                base = os.path.join(self._dir, name[:-4])
                count = _count(base + ".idx")
                if count is not None:
                    self._note(base, count)
        return self._tiers

    def compact(self) -> bool:
        """Merge every pack that can be merged (each up to :data:`MAX_MERGE_BYTES`) into one,
        oldest first, with no bound on the delta work: for a run's end, when nobody waits for
        it. True when packs were deleted (the caller drops its pack handles)."""
        tiers = self._load()
        known = [p for level in sorted(tiers, reverse=True) for p in tiers[level]]  # older tiers first
        self._tiers = None  # the directory again: packs this set never noted (a first snapshot's)
        names = {b for b, _ in known}
        found = sorted((p for p in self.packs() if p[0] not in names), key=lambda p: _mtime(p[0]))
        group, total = [], 0
        for base, n in found + known:
            total += _size(base)
            if total > COMPACT_BYTES:
                break  # the rest stays as it is: one pack's offsets and memory stay bounded
            group.append((base, n))
        self._tiers = {}
        if len(group) < 2:
            for base, n in group:
                self._note(base, n)
            return False
        for base, n in self._merge(group, budget=float("inf")):
            self._note(base, n)
        self._prev.clear()  # every version is placed: the hints have served (a later merge starts anew)
        return True

    def hint(self, oid: bytes, prev: bytes) -> None:
        """Note that object ``oid`` (20 bytes) is the next version of ``prev`` at the same path
        (a tree or file of a snapshot and the parent snapshot's): a merge that holds both stores
        ``oid`` as a delta against ``prev``. Kept in memory only (a store opened later merges
        the packs written before without those deltas)."""
        if oid != prev:
            self._prev[oid] = prev

    def _merge(self, group: list[tuple[str, int]], budget: float | None = None) -> list[tuple[str, int]]:
        """Merge the packs of ``group`` that can be (see the module docstring); return the packs
        now in their place (the merged ones; a pack that cannot be merged is dropped from the set)."""
        writer, merged, sources = PackWriter(self.git_dir, split=False), [], []
        placed: dict = {}  # oid -> (offset in the new pack, delta depth, its base's oid or None)
        where: dict[bytes, tuple[_Pack, int]] = {}  # oid -> (source pack, offset): to read it whole
        prev, self._budget = self._prev, DELTA_BYTES if budget is None else budget
        try:
            for base, _ in group:
                source = _source(base)
                if source is None:
                    continue  # REF_DELTA, a large offset or a damaged index: never merged, never deleted
                sources.append(source[0])
                merged.append(base)
                self._copy(writer, source, placed, where, prev)
            if len(merged) < 2:
                return [(b, n) for b, n in group if b in merged]
            writer.close()
        finally:
            for source in sources:
                source.close()
        written = {path[:-5] for path in writer.packs}
        for base in merged:
            if base in written:
                continue  # the merge made this very pack again (same objects, same order): kept
            for ext in (".idx", ".pack"):
                try:
                    os.unlink(base + ext)
                except FileNotFoundError:
                    pass
        self.merges += 1
        return [(path[:-5], n) for path, n in zip(writer.packs, writer.counts, strict=True)]

    def _copy(self, writer: PackWriter, source: tuple, placed: dict, where: dict, prev: dict) -> None:
        """Append the entries of one source pack to ``writer``: its deltas re-pointed at their
        base's new place, and its whole trees and blobs whose hinted previous version is placed
        already written as deltas against it, when that keeps their chain within
        :data:`MAX_DEPTH` (:data:`MAX_BLOB_DEPTH`) and the delta is less than half the object."""
        pack, entries = source
        name_at = {e[1]: e[0] for e in entries}
        depth_in: dict[int, int] = {}  # offset -> depth below the whole entry its chain starts at here
        root_of: dict[int, int] = {}
        height: dict[int, int] = {}  # offset of a whole entry -> its chain's depth in this pack
        for _, offset, _, base_offset, _, _ in entries:
            if base_offset is None:
                depth_in[offset], root_of[offset] = 0, offset
            else:
                depth_in[offset], root_of[offset] = depth_in[base_offset] + 1, root_of[base_offset]
            root = root_of[offset]
            height[root] = max(height.get(root, 0), depth_in[offset])
        raw = pack.pack
        for oid, offset, kind, base_offset, (head, body_at, end), crc in entries:
            if oid in placed:
                continue  # in an earlier pack of the group: kept once
            where[oid] = (pack, offset)
            at, entry, depth, based_on = writer.offset, None, 0, None
            if base_offset is not None:
                based_on = name_at[base_offset]
                base_at, base_depth, _ = placed[based_on]
                entry = raw[offset: offset + head] + _ofs(at - base_at) + raw[body_at:end]
                depth = base_depth + 1
            elif (kind in (2, 3) and self._budget > 0 and end - body_at >= MIN_DELTA_BYTES
                  and (older := _placed_version(oid, prev, placed))
                  and height[offset] < (cap := MAX_DEPTH if kind == 2 else MAX_BLOB_DEPTH)):
                while placed[older][1] + 1 + height[offset] > cap:
                    older = placed[older][2]  # an older version, shallower: the chain stays within bounds
                if older in where:
                    base_at, base_depth, _ = placed[older]
                    self._budget -= end - body_at
                    entry = _delta_entry(pack, offset, oid, older, *where[older], at - base_at)
                    depth, based_on = base_depth + 1, older
            if entry is None:
                writer.add(oid, raw[offset:end], crc)
                depth, based_on = 0, None
            else:
                writer.add(oid, entry, zlib.crc32(entry))
            placed[oid] = (at, depth, based_on)


def _placed_version(oid: bytes, prev: dict, placed: dict) -> bytes | None:
    """The newest earlier version of ``oid`` (following the hints back, at most
    :data:`HINT_STEPS` of them) that this merge has placed already, or None."""
    older = prev.get(oid)
    for _ in range(HINT_STEPS):
        if older is None or older in placed:
            return older
        older = prev.get(older)
    return None


def _ofs(back: int) -> bytes:
    """An OFS_DELTA's distance back to its base, as git encodes it."""
    out = [back & 0x7F]
    back >>= 7
    while back:
        back -= 1
        out.append(0x80 | (back & 0x7F))
        back >>= 7
    return bytes(reversed(out))


def _delta_entry(pack: _Pack, offset: int, oid: bytes, base_oid: bytes, base_pack: _Pack, base_offset: int,
                 back: int) -> bytes | None:
    """The OFS_DELTA entry (``back`` bytes after its base) of the object at ``offset`` against
    the object at ``base_offset`` of ``base_pack``; None when either does not read back or the
    delta saves less than half."""
    try:
        found = pack.object_at(offset, oid.hex())
        base = base_pack.object_at(base_offset, base_oid.hex())
    except (DamagedObject, ValueError):
        return None
    if found is None or base is None or found[0] != base[0]:
        return None
    delta = make_delta(base[1], found[1], found[0])
    if len(delta) * 2 >= len(found[1]):
        return None
    return entry_header(len(delta), 6) + _ofs(back) + deflate(delta)


def _size(base: str) -> int:
    try:
        return os.path.getsize(base + ".pack")
    except OSError:
        return 0


def _mtime(base: str) -> int:
    try:
        return os.stat(base + ".pack").st_mtime_ns
    except OSError:
        return 0


def _count(idx_path: str) -> int | None:
    try:
        with open(idx_path, "rb") as f:
            head = f.read(8 + 1024)
    except OSError:
        return None
    if len(head) < 8 + 1024 or head[:8] != b"\377tOc\0\0\0\2":
        return None
    return struct.unpack_from(">I", head, 8 + 255 * 4)[0]


def _source(base: str) -> tuple[_Pack, list] | None:
    """The pack ``base`` open, and ``(oid, offset, type, base offset or None, (header length,
    data offset, end), crc32)`` of its entries in pack order; None when it cannot be merged
    (a REF_DELTA, a large offset, an index or entry that does not parse)."""
    try:
        pack = _Pack(base + ".idx")
    except (OSError, ValueError, struct.error):
        return None
    try:
        entries = _entries(pack)
    except (IndexError, ValueError, struct.error, DamagedObject):
        entries = None
    if entries is None:
        pack.close()
        return None
    return pack, entries


def _entries(pack: _Pack) -> list | None:
    idx, raw, n = pack.idx, pack.pack, pack.count
    names = [idx[pack.names_at + 20 * i: pack.names_at + 20 * i + 20] for i in range(n)]
    crcs = struct.unpack_from(f">{n}I", idx, pack.names_at + 20 * n)
    offsets = struct.unpack_from(f">{n}I", idx, pack.offsets_at)
    if any(o & 0x80000000 for o in offsets):
        return None
    order = sorted(range(n), key=offsets.__getitem__)
    ends = [offsets[i] for i in order[1:]] + [len(raw) - 20]
    known = set(offsets)
    out = []
    for i, end in zip(order, ends, strict=True):
        offset = offsets[i]
        kind, _, at = pack._header(offset, names[i].hex())
        head, base_offset = at - offset, None
        if kind == 7:
            return None  # REF_DELTA (git's): left as it is
        if kind == 6:
            back, at = pack._ofs(at, names[i].hex())
            base_offset = offset - back
            if base_offset not in known or back <= 0:
                return None
        elif kind not in (1, 2, 3, 4):
            return None
        if end <= at:
            return None
        out.append((names[i], offset, kind, base_offset, (head, at, end), crcs[i]))
    return out
