"""Writing a tree of the shadow repository into a directory: a fresh checkout, or a switch of a
directory from one tree to another that touches only the paths that differ.

Safety (both): nothing is ever written outside the target directory. Every entry name is
validated (no ``..``, ``.``, ``/``, NUL, ``.git``, duplicates); every file, link and directory
is created fresh relative to an open directory descriptor without following symlinks (a symlink
planted where a directory belongs is removed, never followed); exec bits and symlinks are kept.
A checkout is verified by the tree id of what it wrote, hashed (with git's own object hashing)
from the bytes handed to the kernel (each file's bytes are checked against its object id as
they are read, see ``GitStore._blob_data``; its size is checked on disk after writing;
``verify="disk"`` re-reads every file instead); a switch re-hashes what it wrote from disk. A
checkout reads and writes its files on the walking thread, in a forked child for half of a big
tree, or from several threads (``jobs``): that half, writing a whole tree, is ``treewrite.py``.

No pygit2 here: trees and blobs come through `GitStore` (``repository.py``) or the pygit2-free
`TreeReader` (``tree_reader.py``), whose objects are read by their ``name``, ``filemode``,
``id`` and ``data``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from typing import TYPE_CHECKING

from ..containment import check_name
from ..errors import GitStoreError, UnsafePath
from .result import SwitchResult
from .treewrite import (
    MODE_BLOB,
    MODE_EXEC,
    MODE_LINK,
    MODE_TREE,
    checked_entries,
    hash_object,
    write_failed,
    write_tree_parallel,
)
from .treewrite import write_file as _write_file

if TYPE_CHECKING:
    from .repository import GitStore

class CheckoutMixin:
    """`GitStore`'s methods that write trees into directories. They read trees through the
    store's ``_tree``, ``_lookup``, ``_blob_data`` and ``_tree_changes`` (``repository.py``)."""

    def checkout(self: GitStore, tree_id: str, out_dir: str | os.PathLike[str], *, verify: bool | str = True,
                 jobs: int | None = None, stats: dict[str, os.stat_result] | None = None,
                 progress=None) -> str:
        """Write exactly tree ``tree_id`` into ``out_dir`` (created; must be absent or empty)
        and return the tree id of what was written.

        Nothing is ever written outside ``out_dir`` (see the module docstring). A hostile or
        unsupported tree raises GitStoreError and leaves ``out_dir`` partially written (delete
        it). Files are written by ``jobs`` threads (default :data:`CHECKOUT_JOBS`, 1: the
        walking thread itself; without ``jobs``, a single-threaded process on Linux with two
        cores has a forked child write about half of a big tree's files, see ``treewrite.py``),
        one directory at a time each, one ``open``/``write``/``close`` per file (plus ``fchmod``
        only when the umask would change its mode). With ``verify`` the written tree's id must
        equal ``tree_id``: it is computed from the bytes as handed to the kernel (each file's
        bytes hash to its object id, checked as they are read; its size is checked on disk
        after writing); ``verify="disk"`` re-reads and re-hashes every file
        from disk instead (slower). A ``stats`` dict is filled with the stat data of everything
        written (relative path → ``os.stat_result`` as ``lstat`` gives it), taken as it is
        written (a file's from the ``fstat`` that checks its size), so a caller that tracks
        changes by stat data need not walk the directory again. ``progress(files written)`` is
        called as batches of directories are done (a bar for a big tree)."""
        tree = self._tree(tree_id)
        out = os.path.abspath(out_dir)
        os.makedirs(out, exist_ok=True)
        if os.listdir(out):
            raise GitStoreError(f"checkout target {out} is not empty; pass a new directory")
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            written = write_tree_parallel(self, tree, fd, tree_id, jobs, stats, progress)
            if verify == "disk":
                written = hash_dir(fd)
        finally:
            os.close(fd)
        if not verify:
            return str(tree.id)
        if written != str(tree.id):
            raise GitStoreError(
                f"checkout of {tree_id} into {out} wrote tree {written}; the disk or the store "
                "is corrupt, check both"
            )
        return written

    def switch(
        self: GitStore,
        from_tree: str,
        to_tree: str,
        out_dir: str | os.PathLike[str],
        *,
        dirty: list[str] | tuple[str, ...] | set[str] = (),
        verify: bool = True,
    ) -> SwitchResult:
        """Turn ``out_dir``, which holds exactly ``from_tree`` (as written by `checkout` or an
        earlier `switch`) except for the paths in ``dirty``, into exactly ``to_tree``, by
        writing and removing only the paths that differ. Cost grows with the change, not with
        the tree.

        ``dirty`` lists relative paths the caller knows may differ from ``from_tree`` (a file
        modified, added or replaced after it was written; a directory that appeared); each is
        made to match ``to_tree``: written afresh, or removed with everything below it.

        Safety is that of `checkout`. With ``verify`` every written path is re-hashed from disk
        and must equal ``to_tree``'s entry, and every removed path must be gone; the rest of the
        directory is the caller's claim (``from_tree`` plus ``dirty``) and is not re-read. On
        GitStoreError the directory is in an unknown state: empty it and `checkout` again."""
        started = time.perf_counter()
        target = self._tree(to_tree)
        paths = {p.strip("/") for p in dirty}
        new_paths = []
        for old, new, deleted in self._tree_changes(from_tree, to_tree):
            paths.add(old)
            paths.add(new)
            if not deleted:
                new_paths.append(new)
        _refuse_conflicts(new_paths, to_tree)
        out = os.path.abspath(out_dir)
        root = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        written: list[str] = []
        removed: set[str] = set()
        done: set[str] = set()
        try:
            for path in sorted(paths):
                if not path:
                    continue
                parts = path.split("/")
                if any("/".join(parts[:i]) in done for i in range(1, len(parts))):
                    continue  # an ancestor was written or removed whole
                entry = _entry_at(target, path)
                for name in parts:
                    _check_name(name, to_tree, writing=entry is not None)
                if entry is None:
                    gone = _highest_absent(target, parts)
                    _remove_path(root, gone.split("/"))
                    removed.add(gone)
                    done.add(gone)
                else:
                    _write_path(self, root, parts, entry, to_tree)
                    written.append(path)
                    done.add(path)
            if verify:
                _verify_paths(root, target, written, removed, to_tree, out)
        except OSError as exc:
            raise write_failed(f"switch of {out} to {to_tree} failed", exc, "; check it out afresh") from exc
        finally:
            os.close(root)
        return SwitchResult(
            tree_id=str(target.id),
            written=tuple(written),
            removed=tuple(sorted(removed)),
            duration_ms=(time.perf_counter() - started) * 1000,
        )


def _write_tree(git: GitStore, tree, dir_fd: int, tree_id: str) -> None:
    for entry in checked_entries(tree, tree_id):
        try:
            _write_entry(git, dir_fd, entry.name, entry, tree_id)
        except OSError as exc:
            raise write_failed(f"checkout of {tree_id} failed at {entry.name!r}", exc) from exc


def _write_entry(git: GitStore, dir_fd: int, name: str, entry, tree_id: str) -> None:
    mode = entry.filemode
    if mode == MODE_TREE:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            _write_tree(git, git._lookup(entry.id), sub, tree_id)
        finally:
            os.close(sub)
    elif mode == MODE_LINK:
        os.symlink(git._blob_data(entry.id), os.fsencode(name), dir_fd=dir_fd)
    elif mode in (MODE_BLOB, MODE_EXEC):
        _write_file(dir_fd, name, mode, git._blob_data(entry.id))
    else:
        raise GitStoreError(f"tree {tree_id} has entry {name!r} of unsupported mode {mode:o}")


def _write_path(git: GitStore, root: int, parts: list[str], entry, tree_id: str) -> None:
    """Write ``entry`` at ``parts`` below ``root``, making (or replacing by) directories on the
    way; whatever is at the path is removed first."""
    fd = _open_dirs(root, parts[:-1], create=True)
    try:
        _remove_entry(fd, parts[-1])
        _write_entry(git, fd, parts[-1], entry, tree_id)
    finally:
        if fd != root:
            os.close(fd)


def _remove_path(root: int, parts: list[str]) -> bool:
    """Remove whatever is at ``parts`` (a directory with its content); False if absent."""
    try:
        fd = _open_dirs(root, parts[:-1], create=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return _remove_entry(fd, parts[-1])
    finally:
        if fd != root:
            os.close(fd)


def _verify_paths(root: int, target, written, removed, tree_id: str, out: str) -> None:
    for path in written:
        parts = path.split("/")
        entry = target[path]
        fd = _open_dirs(root, parts[:-1], create=False)
        try:
            found = _hash_entry(fd, parts[-1])
        finally:
            if fd != root:
                os.close(fd)
        if found != (entry.filemode, str(entry.id)):
            raise GitStoreError(
                f"switch of {out} to {tree_id} wrote {path} as {found}, expected "
                f"{(entry.filemode, str(entry.id))}; the disk or the store is corrupt, check both"
            )
    for path in removed:
        if _entry_at(target, path) is None and os.path.lexists(os.path.join(out, path)):
            raise GitStoreError(f"switch of {out} to {tree_id} left {path} in place")


# -- paths ---------------------------------------------------------------------------------------


def _check_name(name: str, tree_id: str, *, writing: bool) -> None:
    """Refuse traversal in any path, and ``.git`` in a path to write (removing one is fine)."""
    try:
        check_name(name, f"a path of tree {tree_id}", tree=writing, entry=True)
    except UnsafePath:
        raise GitStoreError(f"path component {name!r} for tree {tree_id} is hostile; refused") from None


def _refuse_conflicts(paths: list[str], tree_id: str) -> None:
    """A well-formed tree never has a path twice, nor a file that is also a directory."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise GitStoreError(f"tree {tree_id} has a duplicate entry; refused")
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise GitStoreError(f"tree {tree_id} has {path} below a file; refused")


def _entry_at(tree, path: str):
    """The entry at ``path`` in ``tree``, or None (also when an ancestor is not a directory)."""
    try:
        return tree[path]
    except KeyError:
        return None


def _highest_absent(tree, parts: list[str]) -> str:
    """The shortest prefix of ``parts`` that ``tree`` lacks (a path it lacks is removed whole)."""
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        entry = _entry_at(tree, prefix)
        if entry is None or (i < len(parts) and entry.filemode != MODE_TREE):
            return prefix
    return "/".join(parts)


def _open_dirs(root: int, names: list[str], *, create: bool) -> int:
    """A descriptor of the directory ``names`` below ``root``, never following a symlink. With
    ``create``, a missing directory is made and a non-directory in the way is replaced."""
    fd = root
    for name in names:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            sub = os.open(name, flags, dir_fd=fd)
        except OSError as exc:
            if not create or exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                if fd != root:
                    os.close(fd)
                raise
            _remove_entry(fd, name)  # a file or symlink where a directory belongs
            os.mkdir(name, 0o755, dir_fd=fd)
            sub = os.open(name, flags, dir_fd=fd)
        if fd != root:
            os.close(fd)
        fd = sub
    return fd


def _remove_entry(dir_fd: int, name: str) -> bool:
    """Remove ``name`` in ``dir_fd`` (a real directory recursively, symlinks not followed)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return True


# -- hashing what is on disk ---------------------------------------------------------------------


def _hash_entry(dir_fd: int, name: str) -> tuple[int, str] | None:
    """``(git mode, object id)`` of ``name`` as it is on disk, or None when absent."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            return MODE_TREE, hash_dir(sub)
        finally:
            os.close(sub)
    if stat.S_ISLNK(st.st_mode):
        return MODE_LINK, hash_object(b"blob", os.fsencode(os.readlink(name, dir_fd=dir_fd)))
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    return (MODE_EXEC if st.st_mode & 0o100 else MODE_BLOB), hash_object(b"blob", data)


def hash_dir(dir_fd: int) -> str:
    """Git tree id of a directory as it is on disk (symlinks not followed, exec bit kept);
    writes no objects."""
    entries = []
    for name in os.listdir(dir_fd):
        st = os.lstat(name, dir_fd=dir_fd)
        bname = os.fsencode(name)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                oid = hash_dir(sub)
            finally:
                os.close(sub)
            entries.append((bname + b"/", b"40000", bname, oid))
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dir_fd)
            entries.append((bname, b"120000", bname, hash_object(b"blob", os.fsencode(target))))
        else:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                data = f.read()
            mode = b"100755" if st.st_mode & 0o100 else b"100644"
            entries.append((bname, mode, bname, hash_object(b"blob", data)))
    entries.sort()
    body = b"".join(m + b" " + n + b"\0" + bytes.fromhex(o) for _, m, n, o in entries)
    return hash_object(b"tree", body)


