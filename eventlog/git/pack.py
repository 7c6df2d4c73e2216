"""Objects written as git packs instead of one loose object file each: the blobs of a big
snapshot (hashed and compressed in worker threads), and everything a snapshot from changed paths
writes (its blobs, trees and commit: one pack per snapshot, see ``packset.py`` for how they are
merged).

The first snapshot of a big checkout reads every file once: its bytes are hashed (SHA-1 of
``blob <size>\\0`` + bytes, git's object id) and deflated in a thread pool (``hashlib`` and
``zlib`` release the GIL on large buffers, as do the reads), and appended to a pack in the
repository's ``objects/pack/`` with its ``.idx`` (version 2). One file per pack instead of one
file (and a rename) per blob; git and libgit2 read packs and loose objects alike, so a tree
whose blobs are packed replays byte for byte like one whose blobs are loose.

Contracts:

* A pack is written as ``pack-<sha>.pack`` and then ``.idx`` beside it (through a temp file and
  a rename), so a reader, who finds packs by their ``.idx``, never sees a pack without its index
  nor a partial index (a crash may leave a ``.pack`` without one: ignored by git and libgit2).
  Not fsynced: like loose objects, blobs become durable in a bundle (``repository.py``).
* A pack holds each object once (entries as given: whole objects deflated at level 1, by ISA-L
  when it is installed, from `encode_object`; a merge's deltas from ``packset.py``); a pack is
  closed at :data:`PACK_BYTES` of entries (unless ``split=False``: a merge, whose deltas need
  their bases in the same pack), so memory is bounded and offsets fit the idx's 31-bit table.
* Nothing here knows pygit2; :func:`read_blob` runs in worker threads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib

try:  # ISA-L writes the same zlib streams as zlib, several times faster (and releases the GIL)
    from isal import isal_zlib as _DEFLATE
except ImportError:  # pragma: no cover - without the "fast" extra
    _DEFLATE = zlib

PACK_BYTES = 64 * 1024 * 1024
"""Entries buffered before a pack is written (and the next one started)."""

MIN_BLOBS = 64
"""Fewer new blobs than this in one snapshot: loose objects (libgit2) are cheaper than a pack."""

_BLOB = 3  # the pack's object type of a blob
KINDS = {b"commit": 1, b"tree": 2, b"blob": 3}
"""Pack object types of the whole objects written here."""


def object_id(kind: bytes, body: bytes) -> bytes:
    """Git's id (SHA-1, 20 bytes) of the object ``kind`` (``b"blob"``, ``b"tree"``...) of ``body``."""
    oid = hashlib.sha1(b"%s %d\0" % (kind, len(body)))
    oid.update(body)
    return oid.digest()


def encode_object(kind: bytes, body: bytes, oid: bytes | None = None) -> tuple[bytes, bytes, int]:
    """``(object id, pack entry, crc32 of the entry)`` of one whole object, for `PackWriter.add`
    (``oid``: its id, when the caller has it already)."""
    entry = entry_header(len(body), KINDS[kind]) + deflate(body)
    return oid or object_id(kind, body), entry, zlib.crc32(entry)


def deflate(data: bytes) -> bytes:
    """``data`` as a zlib stream at level 1: ISA-L's when installed, unless that stream is longer
    than zlib's bound for it (incompressible data): readers inflate that bound at once and read
    on past it only in chunks (``packed.py``), so such data is deflated by zlib, whose output
    never exceeds it."""
    out = _DEFLATE.compress(data, 1)
    n = len(data)
    if _DEFLATE is not zlib and len(out) > n + (n >> 12) + (n >> 14) + (n >> 25) + 13:
        out = zlib.compress(data, 1)
    return out


def read_blob(full: str):
    """``(stat, bytes, object id, pack entry, crc32)`` of the regular file ``full``, read once and
    not following a symlink; None if it is gone or no longer a regular file."""
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced by a directory or a fifo since it was listed
            return None
        chunks, size = [], st.st_size
        while True:
            chunk = os.read(fd, max(size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size = 1 << 16
    finally:
        os.close(fd)
    data = b"".join(chunks)
    oid, entry, crc = encode_object(b"blob", data)
    return st, data, oid, entry, crc


def entry_header(size: int, kind: int = _BLOB) -> bytes:
    """A pack entry's type and size, as git encodes them."""
    out = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


class PackWriter:
    """Packs of blobs in ``<git_dir>/objects/pack``; `add` each object, `close` to write the
    last pack. Objects are readable once the pack holding them is written."""

    def __init__(self, git_dir: str, *, split: bool = True):
        self._dir = os.path.join(git_dir, "objects", "pack")
        self._seen: set[bytes] = set()
        self._entries: list[tuple[bytes, bytes, int]] = []
        self._bytes = 0
        self._split = split  # False: one pack, however big (a merge's deltas need their bases in it)
        self.packs: list[str] = []
        self.counts: list[int] = []  # objects of each pack written

    def add(self, oid: bytes, entry: bytes, crc: int) -> None:
        """Append the object ``oid`` (its pack entry and the entry's crc32); once per id."""
        if oid in self._seen:
            return
        self._seen.add(oid)
        self._entries.append((oid, entry, crc))
        self._bytes += len(entry)
        if self._split and self._bytes >= PACK_BYTES:
            self._flush()

    @property
    def offset(self) -> int:
        """Where the next entry added lands in the pack being written."""
        return 12 + self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._seen

    def close(self) -> None:
        """Write the objects added since the last pack."""
        self._flush()

    def _flush(self) -> None:
        entries, self._entries, self._bytes = self._entries, [], 0
        if not entries:
            return
        header = b"PACK" + struct.pack(">II", 2, len(entries))
        digest = hashlib.sha1(header)
        offsets, offset = {}, 12
        for oid, entry, _ in entries:
            offsets[oid] = offset
            offset += len(entry)
            digest.update(entry)
        pack_sha = digest.digest()
        name = os.path.join(self._dir, f"pack-{pack_sha.hex()}")
        if os.path.exists(name + ".idx"):  # the same objects in the same order: this very pack is there
            self.packs.append(name + ".pack")
            self.counts.append(len(entries))
            return
        try:
            fd = os.open(name + ".pack", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(name + ".pack", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:  # no reader opens a .pack before its .idx exists, so the .pack needs no temp name
            buffers = [header, *(e[1] for e in entries), pack_sha]
            for at in range(0, len(buffers), 512):
                _write_all(fd, buffers[at:at + 512])
        finally:
            os.close(fd)
        order = sorted(entries, key=lambda e: e[0])
        fanout = [0] * 256
        for oid, _, _ in order:
            fanout[oid[0]] += 1
        total, cumulative = 0, []
        for n in fanout:
            total += n
            cumulative.append(total)
        idx = b"".join([b"\377tOc", struct.pack(">I", 2), struct.pack(">256I", *cumulative),
                        b"".join(e[0] for e in order),
                        struct.pack(f">{len(order)}I", *(e[2] & 0xFFFFFFFF for e in order)),
                        struct.pack(f">{len(order)}I", *(offsets[e[0]] for e in order)), pack_sha])
        idx += hashlib.sha1(idx).digest()
        tmp = os.path.join(self._dir, f"tmp-idx-{os.getpid()}-{id(self):x}-{len(self.packs)}")
        with open(tmp, "wb") as f:
            f.write(idx)
        os.replace(tmp, name + ".idx")
        self.packs.append(name + ".pack")
        self.counts.append(len(entries))


def _write_all(fd: int, buffers: list[bytes]) -> None:
    total = sum(len(b) for b in buffers)
    done = os.writev(fd, buffers)
    if done < total:  # a short write (a signal, a full disk): write the rest plainly
        rest = b"".join(buffers)[done:]
        while rest:
            rest = rest[os.write(fd, rest):]
