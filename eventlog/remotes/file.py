"""The ``file://`` remote: a directory with the same contract as S3, on a filesystem."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import leftover
from ..containment import inside
from ..errors import RemoteAuthError, RemoteError, RemoteNotFound, UnsafePath
from ..segment import fsync_dir
from .base import ObjectInfo, PutResult, Remote
from .transfer import digest_file, read_chunks, receive


def open_remote(url: str, **options) -> FileRemote:
    """``file:///abs/dir`` (three slashes) or a plain path; ``options`` are for other schemes."""
    parsed = urlparse(url)
    if not parsed.scheme:
        return FileRemote(url)
    if parsed.netloc not in ("", "localhost"):
        raise RemoteError(f"{url}: a file remote is file:///absolute/dir (three slashes)")
    return FileRemote(unquote(parsed.path))


class FileRemote(Remote):
    """A directory as a remote (``file:///abs/dir``): the same contract as S3, on a filesystem.

    ``put_file`` is a true conditional write: the file is copied to a temp name, fsynced and
    then hard-linked to its key, which fails if the key exists, so two pushers cannot both win.
    The sha256 of an object is computed from its bytes when asked (no metadata is kept). The
    temp name holds the pusher's host and pid; a later push removes those its killed owner left.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.directory = self.root
        self.url = f"file://{self.root}"

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise RemoteNotFound(
                f"remote directory {self.root} does not exist; create it (mkdir -p {self.root}) "
                "or fix the remote URL"
            )

    def _path(self, key: str) -> Path:
        """The file of ``key``: a relative path of visible components that passes through no
        symbolic link (the one path rule, ``containment.py``)."""
        try:
            return inside(self.root, key, "remote key", hidden=False)
        except UnsafePath as exc:
            raise RemoteError(f"{self.describe(key)}: {exc}") from None

    def _clean(self, directory: Path) -> None:
        """Remove the temp files a killed push left in ``directory`` (hidden, named by their
        owner: see ``leftover.py``); once per directory per remote object. ``list`` removes those
        it walks past too, so the next push of a run cleans its directories."""
        cleaned = self.__dict__.setdefault("_cleaned", set())
        if directory in cleaned:
            return
        cleaned.add(directory)
        for entry in os.scandir(directory):
            if entry.name.startswith("."):
                self._clean_one(entry.path)

    @staticmethod
    def _clean_one(path: str) -> None:
        """Remove ``path`` if it is a temp file whose owner is gone (see ``leftover.py``)."""
        try:
            st = os.lstat(path)
            if os.path.stat.S_ISREG(st.st_mode) and leftover.is_stale(os.path.basename(path), st.st_mtime):
                os.unlink(path)
        except FileNotFoundError:
            pass

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
                        self._clean_one(os.path.join(dirpath, name))
                        continue
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        st = os.stat(os.path.join(dirpath, name))
                        out.append(ObjectInfo(key, st.st_size, etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
                                              modified_ns=st.st_mtime_ns))
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
            return self.existing(key, digest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._clean(dest.parent)
            tmp = dest.with_name(f".{dest.name}.{leftover.tag()}.tmp")
            with open(path, "rb") as src:
                got = receive(tmp, read_chunks(src), source=str(path), expect_sha256=digest.sha256, progress=progress)
            try:  # link, unlike rename, fails when the key exists: a real conditional write
                if if_absent:
                    os.link(tmp, dest)
                else:
                    os.replace(tmp, dest)
            except FileExistsError:
                return self.existing(key, digest)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(dest.parent)
        except PermissionError as exc:
            raise RemoteAuthError(
                f"no permission to write {exc.filename or dest}; check the remote directory's permissions"
            ) from None
        return PutResult("uploaded", got.size)

    def get_file(self, key, dest, *, sha256="", verify=None, progress=None) -> ObjectInfo:
        self._check_root()
        src = self._path(key)
        try:
            fh = open(src, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise RemoteNotFound(f"{self.describe(key)} does not exist; `agtrace ls --remote {self.url}` lists what the remote has") from None
        except PermissionError:
            raise RemoteAuthError(f"no permission to read {src}; check the remote directory's permissions") from None
        with fh:
            got = receive(dest, read_chunks(fh), source=self.describe(key), expect_sha256=sha256,
                          verify=verify, progress=progress)
        return ObjectInfo(key, got.size, sha256=got.sha256)

    def delete(self, keys: list[str]) -> int:
        self._check_root()
        removed = 0
        try:
            for key in keys:
                path = self._path(key)
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
                parent = path.parent  # drop directories left empty, up to the root
                while parent != self.root:
                    try:
                        parent.rmdir()
                    except OSError:
                        break
                    parent = parent.parent
        except PermissionError as exc:
            raise RemoteAuthError(f"no permission to remove {exc.filename}; check the remote directory's permissions") from None
        return removed
