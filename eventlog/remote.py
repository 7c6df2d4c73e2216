"""Remote storage of sealed, immutable objects: the small interface, the ``file://`` backend.

A remote holds objects under keys that mirror a store's layout (see ``docs/remote.md``)::

    runs/<run id>/events/<first>-<last>.seg      sealed segments
    runs/<run id>/scores/<first>-<last>.seg
    runs/<run id>/bundles/<nnnn>-<tip12>.bundle  snapshot bundles
    runs/<run id>/manifests/<last>-<sha16>.json  what one push put there (written last)
    blobs/<aa>/<sha256>.zst                      content-addressed payloads

Contracts every backend keeps (one contract test suite runs against each, ``tests/test_remote.py``):

* ``put_file`` never replaces an object when ``if_absent`` (always, for agtrace's objects): if
  the key holds the same bytes it answers ``existed``; if it holds other bytes it raises
  :class:`RemoteConflict` and leaves both untouched.
* An upload is verified: the bytes stored are checked against the local file's checksum
  (sha256 kept with the object; MD5 by the server in transit where it supports it).
* ``get_file`` writes a temp file beside ``dest``, checks it (sha256 of the object, then the
  caller's ``verify``), fsyncs it and renames it into place: ``dest`` is whole or absent.
* Every failure of the backend's library is raised as a :class:`RemoteError` whose message says
  what to do next. Nothing of a backend's library leaks past its module.

Backends are picked by URL scheme in :func:`remote_for`: ``file://DIR`` (here) and
``s3://bucket/prefix`` (``remote_s3.py``, the only module that imports boto3).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

from .errors import EventlogError
from .segment import fsync_dir

CHUNK = 1024 * 1024


class RemoteError(EventlogError):
    """A remote could not be read or written. The message says what to do next.

    ::

        RemoteError
        ├── RemoteAuthError      credentials missing or rejected, or permission denied
        ├── RemoteNotFound       the bucket / directory (or a run) is not there
        ├── RemoteUnreachable    the endpoint cannot be reached
        └── RemoteConflict       a key already holds different bytes (never overwritten)
    """


class RemoteAuthError(RemoteError):
    """Credentials are missing or rejected, or the identity may not do this."""


class RemoteNotFound(RemoteError):
    """The bucket or directory of the remote (or the asked-for run) does not exist."""


class RemoteUnreachable(RemoteError):
    """The remote's endpoint cannot be reached (network, DNS, wrong endpoint URL)."""


class RemoteConflict(RemoteError):
    """A key holds bytes other than the ones being put; agtrace never overwrites."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object as a listing or a head shows it. ``sha256`` is "" when the listing lacks it."""

    key: str
    size: int
    etag: str = ""
    sha256: str = ""


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


class PutResult(NamedTuple):
    """What :meth:`Remote.put_file` did: ``status`` is ``uploaded`` or ``existed``."""

    status: str
    nbytes: int = 0
    resumed_parts: int = 0


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


class Remote:
    """The interface of a remote. Keys are ``/``-separated, relative to the remote's root."""

    url: str = ""
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
        """Store the file at ``key``; see the module docstring for the contract."""
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

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def close(self) -> None:
        """Release connections. The remote may not be used afterwards."""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- writing downloads -------------------------------------------------------------------------


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
    :class:`RemoteError`; an exception from ``verify`` deletes it and propagates.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    sha = hashlib.sha256()
    md5 = hashlib.md5() if expect_md5 and not expect_sha256 else None
    size = 0
    mode = "wb"
    if resume_from is not None and resume_from == tmp and tmp.exists():
        with open(tmp, "rb") as fh:
            while chunk := fh.read(CHUNK):
                sha.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                size += len(chunk)
        mode = "ab"
    try:
        with open(tmp, mode) as fh:
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
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return got


def partial_path(dest: Path) -> Path:
    """Where a download of ``dest`` is assembled: a dot file readers of the store ignore."""
    return dest.with_name(f".{dest.name}.part")


# -- file:// -----------------------------------------------------------------------------------


class FileRemote(Remote):
    """A directory as a remote (``file:///abs/dir``): the same contract as S3, on a filesystem.

    ``put_file`` is a true conditional write: the file is copied to a temp name, fsynced and
    then hard-linked to its key, which fails if the key exists, so two pushers cannot both win.
    The sha256 of an object is computed from its bytes when asked (no metadata is kept).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.url = f"file://{self.root}"

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise RemoteNotFound(
                f"remote directory {self.root} does not exist; create it (mkdir -p {self.root}) "
                "or fix the remote URL"
            )

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise RemoteError(f"{key!r} is not a valid remote key")
        return self.root.joinpath(*parts)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self._check_root()
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        out = []
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith("."):
                        continue
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        st = os.stat(os.path.join(dirpath, name))
                        out.append(ObjectInfo(key, st.st_size, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}"))
        except PermissionError as exc:
            raise RemoteAuthError(f"no permission to read {exc.filename}; check the remote directory's permissions") from None
        return sorted(out, key=lambda o: o.key)

    def head(self, key: str) -> ObjectInfo | None:
        self._check_root()
        path = self._path(key)
        if not path.is_file():
            return None
        digest = digest_file(path, md5=False)
        return ObjectInfo(key, digest.size, sha256=digest.sha256)

    def put_file(self, key, path, *, if_absent=True, digest=None, progress=None) -> PutResult:
        self._check_root()
        dest = self._path(key)
        digest = digest or self.digest(path)
        if if_absent and dest.exists():
            return self._existing(key, digest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            with open(path, "rb") as src:
                got = receive(tmp, _read_chunks(src), source=str(path), expect_sha256=digest.sha256, progress=progress)
            try:  # link, unlike rename, fails when the key exists: a real conditional write
                if if_absent:
                    os.link(tmp, dest)
                else:
                    os.replace(tmp, dest)
            except FileExistsError:
                return self._existing(key, digest)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(dest.parent)
        except PermissionError as exc:
            raise RemoteAuthError(
                f"no permission to write {exc.filename or dest}; check the remote directory's permissions"
            ) from None
        return PutResult("uploaded", got.size)

    def _existing(self, key: str, digest: FileDigest) -> PutResult:
        if self.same_as(key, digest):
            return PutResult("existed")
        raise self.conflict(key, digest)

    def get_file(self, key, dest, *, sha256="", verify=None, progress=None) -> ObjectInfo:
        self._check_root()
        src = self._path(key)
        try:
            fh = open(src, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise RemoteNotFound(f"{self.describe(key)} does not exist; `agtrace pull` lists what the remote has") from None
        except PermissionError:
            raise RemoteAuthError(f"no permission to read {src}; check the remote directory's permissions") from None
        with fh:
            got = receive(dest, _read_chunks(fh), source=self.describe(key), expect_sha256=sha256,
                          verify=verify, progress=progress)
        return ObjectInfo(key, got.size, sha256=got.sha256)



def _read_chunks(fh) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


# -- picking a backend -------------------------------------------------------------------------


def remote_for(url: str, **options) -> Remote:
    """The remote named by ``url``: ``file:///dir`` (or a plain path) or ``s3://bucket/prefix``.

    ``options`` go to the backend (for S3: ``endpoint_url``, ``profile``, ``region``,
    ``multipart_threshold``, ``part_size``, ``conditional``, ``access_key``, ``secret_key``);
    S3 also reads ``AGTRACE_S3_ENDPOINT`` and ``AGTRACE_S3_PROFILE``.
    """
    if not url:
        raise RemoteError("no remote given; pass --remote URL (s3://bucket/prefix or file:///dir) or set AGTRACE_REMOTE")
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise RemoteError(f"{url}: a file remote is file:///absolute/dir (three slashes)")
        return FileRemote(unquote(parsed.path))
    if scheme == "":
        return FileRemote(url)
    if scheme == "s3":
        try:
            from .remote_s3 import S3Remote
        except ImportError as exc:
            raise RemoteError(f"the S3 remote needs boto3 ({exc}); install it: pip install 'agtrace[s3]'") from None

        return S3Remote(url, **options)
    raise RemoteError(f"{url}: unknown remote scheme {scheme!r}; use s3://bucket/prefix or file:///dir")


__all__ = [
    "FileDigest", "FileRemote", "ObjectInfo", "PutResult", "Remote", "RemoteAuthError", "RemoteConflict",
    "RemoteError", "RemoteNotFound", "RemoteUnreachable", "digest_file", "remote_for",
]
