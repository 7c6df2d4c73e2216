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

Contracts:

* Only packs whose every entry is a whole object are merged (``pack.py`` writes no deltas); a
  pack with a delta (e.g. unbundled by git), a ``.keep`` or another file beside it (git's
  ``.rev``, ``.bitmap``...) is left as it is. Entries are copied as they are (no
  re-compression); an object in several packs is kept once.
* The merged pack is written (``.idx`` last, through a rename) before the packs it replaces
  are deleted (``.idx`` first, then ``.pack``), so every object is in some indexed pack at every
  moment. Not fsynced: like every snapshot object, packs become durable in a bundle.
* Nothing here knows pygit2; the caller drops its stale pack handles when `PackSet.added`
  returns True (libgit2 keeps deleted packs open until its object database is replaced).
"""

from __future__ import annotations

import mmap
import os
import struct

from .pack import PackWriter

FANIN = 8
"""Packs of one tier merged at once."""

MAX_MERGE_BYTES = 32 * 1024 * 1024
"""Packs bigger than this (a big first snapshot's, or merges grown this far) are never merged
again: no snapshot pays for rewriting them."""

_DELTAS = (6, 7)  # OFS_DELTA, REF_DELTA
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

    def packs(self) -> list[tuple[str, int]]:
        """``(path without .pack, object count)`` of every pack that may be merged."""
        return [p for level in sorted(self._load()) for p in self._load()[level]]

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

    def _merge(self, group: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Merge the packs of ``group`` that hold only whole objects; return the packs now in
        their place (the merged ones; a pack that cannot be merged is dropped from the set)."""
        writer, merged = PackWriter(self.git_dir), []
        for base, _ in group:
            entries = _whole_entries(base)
            if entries is None:
                continue  # deltas, a large offset or a damaged index: never merged, never deleted
            for oid, entry, crc in entries:
                writer.add(oid, entry, crc)
            merged.append(base)
        if len(merged) < 2:
            return [(b, n) for b, n in group if b in merged]
        writer.close()
        for base in merged:
            for ext in (".idx", ".pack"):
                try:
                    os.unlink(base + ext)
                except FileNotFoundError:
                    pass
        self.merges += 1
        return [(path[:-5], n) for path, n in zip(writer.packs, writer.counts, strict=True)]


def _count(idx_path: str) -> int | None:
    try:
        with open(idx_path, "rb") as f:
            head = f.read(8 + 1024)
    except OSError:
        return None
    if len(head) < 8 + 1024 or head[:8] != b"\377tOc\0\0\0\2":
        return None
    return struct.unpack_from(">I", head, 8 + 255 * 4)[0]


def _whole_entries(base: str) -> list[tuple[bytes, bytes, int]] | None:
    """``(object id, entry bytes, crc32)`` of every entry of pack ``base``, or None when one is
    a delta or the index cannot be used as it is."""
    try:
        with open(base + ".idx", "rb") as f:
            idx = f.read()
        with open(base + ".pack", "rb") as f:
            pack = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        if len(idx) < 8 + 1024 + 40 or idx[:8] != b"\377tOc\0\0\0\2" or pack[:4] != b"PACK":
            return None
        n = struct.unpack_from(">I", idx, 8 + 255 * 4)[0]
        names_at = 8 + 1024
        crcs_at = names_at + 20 * n
        offsets_at = crcs_at + 4 * n
        if len(idx) < offsets_at + 4 * n + 40:
            return None
        offsets = struct.unpack_from(f">{n}I", idx, offsets_at)
        crcs = struct.unpack_from(f">{n}I", idx, crcs_at)
        if any(o & 0x80000000 for o in offsets):
            return None
        ends = dict(zip(sorted(offsets), [*sorted(offsets)[1:], len(pack) - 20], strict=True))
        out = []
        for i, offset in enumerate(offsets):
            if (pack[offset] >> 4) & 7 in _DELTAS:
                return None
            out.append((idx[names_at + 20 * i: names_at + 20 * i + 20], pack[offset:ends[offset]], crcs[i]))
        return out
    finally:
        pack.close()
