"""The interface every remote backend implements, and what its calls return.

Keys are ``/``-separated, relative to the remote's root. The contracts (never overwrite,
verified uploads, whole-or-absent downloads, errors that say what to do) are in the package
docstring; ``tests/test_remote.py`` runs one contract suite against every backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..errors import RemoteConflict, RemoteNotFound
from .transfer import FileDigest, digest_file


@dataclass(frozen=True)
class ObjectInfo:
    """An object as a listing or a head shows it. ``sha256`` is "" when the listing lacks it;
    ``modified_ns`` (when it was written, ns since the epoch) is 0 when the backend did not say."""

    key: str
    size: int
    etag: str = ""
    sha256: str = ""
    modified_ns: int = 0


class PutResult(NamedTuple):
    """What :meth:`Remote.put_file` did: ``status`` is ``uploaded`` or ``existed``."""

    status: str
    nbytes: int = 0
    resumed_parts: int = 0


class Remote:
    """The interface of a remote. Keys are ``/``-separated, relative to the remote's root."""

    url: str = ""
    directory: Path | None = None
    """The local directory the remote's keys live in (a ``file://`` remote), else None."""
    part_size: int = 0
    """Chunk size whose MD5s :meth:`matches` can use (0: the backend does not upload in parts)."""

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        raise NotImplementedError

    def digest(self, path: str | os.PathLike) -> FileDigest:
        """The checksums of a local file that this backend compares and sends."""
        return digest_file(path, md5=False)

    def head(self, key: str) -> ObjectInfo | None:
        """The object at ``key`` (with its sha256 when the backend knows it), or None."""
        raise NotImplementedError

    def put_file(
        self,
        key: str,
        path: str | os.PathLike,
        *,
        if_absent: bool = True,
        digest: FileDigest | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PutResult:
        """Store the file at ``key``; see the package docstring for the contract."""
        raise NotImplementedError

    def get_file(
        self,
        key: str,
        dest: str | os.PathLike,
        *,
        sha256: str = "",
        verify: Callable[[Path], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ObjectInfo:
        """Download ``key`` to ``dest`` (temp file, checks, fsync, rename); raise if absent.

        ``sha256``, when given, must match (as must the sha256 the backend keeps, if any)."""
        raise NotImplementedError

    def delete(self, keys: list[str]) -> int:
        """Remove the objects at ``keys`` (absent ones are not an error); return how many were
        removed. The only call that takes anything away from a remote: `agtrace rm --remote`."""
        raise NotImplementedError

    def matches(self, info: ObjectInfo, digest: FileDigest) -> bool | None:
        """Whether a listed object holds the digested bytes: True, False, or None (head it)."""
        if info.size != digest.size:
            return False
        if info.sha256:
            return info.sha256 == digest.sha256
        return None

    def same_as(self, key: str, digest: FileDigest, listed: ObjectInfo | None = None) -> bool:
        """Whether ``key`` holds exactly the digested bytes (False if it holds others; raises if absent)."""
        if listed is not None:
            verdict = self.matches(listed, digest)
            if verdict is not None:
                return verdict
        info = self.head(key)
        if info is None:
            raise RemoteNotFound(f"{self.url}: {key} vanished while being compared; push again")
        verdict = self.matches(info, digest)
        return bool(verdict)

    def conflict(self, key: str, digest: FileDigest) -> RemoteConflict:
        return RemoteConflict(
            f"{self.describe(key)} already holds different bytes than the local file "
            f"(local sha256 {digest.sha256[:16]}…); agtrace never overwrites an object. Another store "
            "pushed a run with this id, or the object is damaged: inspect it, or push to another prefix"
        )

    def existing(self, key: str, digest: FileDigest) -> PutResult:
        """The answer of a put to a key that exists: ``existed`` if it holds the digested bytes,
        else :class:`RemoteConflict` is raised."""
        if self.same_as(key, digest):
            return PutResult("existed")
        raise self.conflict(key, digest)

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def close(self) -> None:
        """Release connections. The remote may not be used afterwards."""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
