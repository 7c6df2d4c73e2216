"""Checksums of local files and verified downloads, shared by every remote backend.

A download is written to a temp file beside its destination (a dot file that readers of the
store ignore), hashed while it is written, checked, fsynced and renamed into place, so the
destination is whole or absent; a download cut short leaves its temp file for a ranged resume.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import RemoteError
from ..segment import fsync_dir

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    """Checksums of a local file, computed in one pass (see :func:`digest_file`)."""

    size: int
    sha256: str
    md5: str
    part_size: int = 0
    part_md5s: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.md5)).decode()

    @property
    def multipart_etag(self) -> str:
        """The ETag S3 gives this file uploaded in parts of ``part_size`` (md5 of the part md5s)."""
        if not self.part_md5s:
            return ""
        return f"{hashlib.md5(b''.join(self.part_md5s)).hexdigest()}-{len(self.part_md5s)}"


def digest_file(path: str | os.PathLike, part_size: int = 0, *, md5: bool = True) -> FileDigest:
    """sha256 of a file, its MD5 (unless ``md5=False``: MD5 is the slow one) and the MD5 of each
    ``part_size`` chunk when ``part_size`` is given."""
    whole = hashlib.md5() if md5 else None
    sha = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    part = hashlib.md5() if part_size else None
    in_part = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            if whole is not None:
                whole.update(chunk)
            size += len(chunk)
            if part is not None:
                view = memoryview(chunk)
                while view:
                    take = min(len(view), part_size - in_part)
                    part.update(view[:take])
                    in_part += take
                    view = view[take:]
                    if in_part == part_size:
                        parts.append(part.digest())
                        part, in_part = hashlib.md5(), 0
    if part is not None and (in_part or not parts):
        parts.append(part.digest())
    return FileDigest(size, sha.hexdigest(), whole.hexdigest() if whole else "", part_size, tuple(parts))


def receive(
    dest: str | os.PathLike,
    chunks: Iterable[bytes],
    *,
    source: str,
    expect_sha256: str = "",
    expect_md5: str = "",
    resume_from: Path | None = None,
    verify: Callable[[Path], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FileDigest:
    """Write ``chunks`` to a temp file beside ``dest``, check it, fsync, rename into place.

    With ``resume_from`` (a partial temp file a killed download left), its bytes are kept and
    hashed first and ``chunks`` continue it. A checksum mismatch deletes the temp file and raises
    :class:`RemoteError`; an exception from ``verify`` deletes it and propagates. The temp file is
    held (``flock``) from its first byte to its rename, so a second process receiving the same
    ``dest`` at the same time gets :class:`RemoteError` ("pull again") instead of mixing bytes.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    sha = hashlib.sha256()
    md5 = hashlib.md5() if expect_md5 and not expect_sha256 else None
    size = 0
    with os.fdopen(_claim(tmp, dest, source), "r+b") as fh:
        try:
            if resume_from is not None and resume_from == tmp:
                while chunk := fh.read(CHUNK):
                    sha.update(chunk)
                    if md5 is not None:
                        md5.update(chunk)
                    size += len(chunk)
                fh.seek(0, os.SEEK_END)
            else:
                fh.truncate(0)
            for chunk in chunks:
                fh.write(chunk)
                sha.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                size += len(chunk)
                if progress:
                    progress(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
            got = FileDigest(size, sha.hexdigest(), md5.hexdigest() if md5 is not None else "")
            if expect_sha256 and got.sha256 != expect_sha256:
                raise RemoteError(
                    f"{source} does not match its sha256 (expected {expect_sha256[:16]}…, got "
                    f"{got.sha256[:16]}…); the remote copy is damaged or was replaced. Nothing was written locally"
                )
            if md5 is not None and got.md5 != expect_md5:
                raise RemoteError(f"{source} does not match its MD5 ETag; the transfer was damaged — pull again")
            if verify is not None:
                verify(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)  # still holding the claim: nobody truncates what takes the name
    fsync_dir(dest.parent)
    return got


def _claim(tmp: Path, dest: Path, source: str) -> int:
    """Open ``tmp`` (created if absent, never truncated here) holding an exclusive ``flock`` on it
    until the caller closes it, or raise :class:`RemoteError` when another process holds it.

    Two pulls into one store fetch the same object to the same temp file (a segment of a run
    both pull, a blob two runs share); without the claim one truncated the other's bytes, and
    its rename failed (``No such file or directory: …part``) or put a truncated file in place."""
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RemoteError(f"another process is downloading {source} to {dest} right now (a second pull into "
                          "this store?); pull again once it has finished") from None
    return fd


def partial_path(dest: Path) -> Path:
    """Where a download of ``dest`` is assembled: a dot file readers of the store ignore."""
    return dest.with_name(f".{dest.name}.part")


def read_chunks(fh: BinaryIO) -> Iterator[bytes]:
    """The bytes of an open file in :data:`CHUNK`-sized pieces."""
    while chunk := fh.read(CHUNK):
        yield chunk
