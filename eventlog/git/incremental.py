"""Bringing the shadow index in line with the workdir: one path at a time, or from a list of
changed paths without walking the tree.

`GitStore.snapshot` walks the whole workdir (libgit2 compares stat data with the index) unless
the caller passes the paths that may have changed since the last snapshot (a file watcher's
report); then only those are read, and a directory among them is walked whole. Either way a
file is read once: its bytes are checked for credentials and hashed into the store from the same
buffer, and its stat data goes into the index, so a later walk skips it.

The changed-paths mode refuses (returns a reason, and the snapshot walks instead) when the
answer could depend on paths it was not told about: a ``.gitignore`` changed, or a nested
repository (a ``.git`` below the root) appeared.

No pygit2 here: blobs and index entries go through `GitStore`'s ``_create_blob``,
``_index_add_stat``, ``_index_drop`` and ``is_ignored`` (``repository.py``), which stage them
while a snapshot from changed paths runs (``recorder.py`` writes and applies them).
"""

from __future__ import annotations

import os
import stat
from collections import deque
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING

from .. import credential
from ..quoting import not_text, quote_name
from . import pack, policy
from .checkout import MODE_BLOB, MODE_EXEC, MODE_LINK
from .result import Exclusion, count_lines

if TYPE_CHECKING:
    from .repository import GitStore

_WORKERS = 2
"""Threads reading, hashing and deflating the big files of a snapshot (hashlib and zlib release
the GIL): the machines this runs on have few cores, and the main thread has work too."""

_THREADED_BYTES = 256 << 10
"""Files of at least this size are read on the worker threads, smaller ones on the main thread.
A small file's read, hash and deflate each let go of the GIL for microseconds and then wait to
take it back from the main thread, so handing it to a thread cost more than it saved: a first
snapshot of 1,500 files of 400 B took 0.29-0.33 s threaded, 0.15-0.18 s on the main thread;
2,000 files of 20 KB 0.50 s against 0.32-0.37 s; 100 files of 500 KB gain from the threads
(0.19-0.20 s against 0.21 s)."""

_WINDOW = 64
"""Files read ahead of the one being recorded (bounds the memory of a big snapshot)."""


class IncrementalMixin:
    """`GitStore`'s methods that put workdir paths into its index (see the module docstring)."""

    def _add_path(self: GitStore, index, rel: str, full: str, st: os.stat_result, max_file_bytes: int,
                  excluded: list[Exclusion], lines: dict[str, int] | None = None) -> None:
        """Record the file or symlink ``rel`` (lstat ``st``) in ``index``, or leave it out by
        policy (appended to ``excluded``); other file types are not recorded."""
        if self._admit(index, rel, full, st, max_file_bytes, excluded, lines):
            self._read_and_store(index, rel, full, excluded, lines)

    def _read_and_store(self: GitStore, index, rel: str, full: str, excluded: list[Exclusion],
                        lines: dict[str, int] | None) -> None:
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # gone (or replaced) since it was listed: the next snapshot sees it
            self._index_drop(index, rel)
            return
        try:
            st = os.fstat(fd)  # the stat of the bytes read, for the index
            data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        if self._credential_content(index, rel, data, excluded):
            self._store_entry(index, rel, data, MODE_EXEC if st.st_mode & 0o100 else MODE_BLOB, st, excluded, lines)

    def _add_paths(self: GitStore, index, items: list[tuple[str, str, os.stat_result]], max_file_bytes: int,
                   excluded: list[Exclusion], lines: dict[str, int] | None = None) -> None:
        """`_add_path` for each ``(rel, full, lstat)``; many regular files have their blobs
        written as packs (``pack.py``), the big ones read, hashed and deflated on worker threads
        (:func:`_blob_reader`)."""
        todo = [item for item in items if self._admit(index, *item, max_file_bytes, excluded, lines)]
        if len(todo) < pack.MIN_BLOBS:
            for rel, full, _ in todo:
                self._read_and_store(index, rel, full, excluded, lines)
            return
        own = self._staged is None  # else the blobs join the pack of the snapshot's other objects
        writer, staged = pack.PackWriter(self.path) if own else self._staged, []
        known = self.head is not None  # a store with snapshots may hold these blobs already
        with _blob_reader(todo) as read_ahead:
            pending = iter(todo)
            window = deque((item, read_ahead(item)) for item in islice(pending, _WINDOW))
            while window:
                (rel, full, _), future = window.popleft()
                following = next(pending, None)
                if following is not None:
                    window.append((following, read_ahead(following)))
                got = pack.read_blob(full) if future is None else future.result()
                if got is None:  # gone (or replaced) since it was listed: the next snapshot sees it
                    self._index_drop(index, rel)
                    continue
                st, data, oid, entry, crc = got
                if self._credential_content(index, rel, data, excluded):  # never hashed into the store
                    if not known or not self.has_object(oid.hex()):  # touched, not changed: stored once
                        writer.add(oid, entry, crc)
                    staged.append((rel, oid, MODE_EXEC if st.st_mode & 0o100 else MODE_BLOB, st))
                    if lines is not None:
                        lines[rel] = count_lines(data)
        if own:
            writer.close()  # libgit2 takes an index entry only for an object it has
            self._packs_written(writer)
        for rel, oid, mode, st in staged:
            try:
                self._index_add_stat(index, rel, oid, mode, st)
            except ValueError:  # a path git cannot hold (libgit2 refused it)
                excluded.append(Exclusion(rel, "invalid_path", st.st_size))
                self._index_drop(index, rel)
                if lines is not None:
                    lines.pop(rel, None)

    def _admit(self: GitStore, index, rel: str, full: str, st: os.stat_result, max_file_bytes: int,
               excluded: list[Exclusion], lines: dict[str, int] | None) -> bool:
        """True when ``rel`` is a regular file to read; else record it (a symlink) or leave it
        out (another type, too large, a credential by name) here."""
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            if self._credentials and credential.credential_name(rel):
                excluded.append(Exclusion(rel, "credential", st.st_size))
                self._index_drop(index, rel)
                return False
            self._store_entry(index, rel, os.fsencode(os.readlink(full)), MODE_LINK, st, excluded, lines)
            return False
        if not stat.S_ISREG(mode):
            self._index_drop(index, rel)
            return False
        if st.st_size > max_file_bytes:
            excluded.append(Exclusion(rel, "size", st.st_size))
            self._index_drop(index, rel)
            return False
        if self._credentials and credential.credential_name(rel):
            excluded.append(Exclusion(rel, "credential", st.st_size))
            self._index_drop(index, rel)
            return False
        return True

    def _credential_content(self: GitStore, index, rel: str, data: bytes, excluded: list[Exclusion]) -> bool:
        """False (and ``rel`` left out) when the bytes read make it a credential file."""
        if self._credentials and credential.credential_content(rel, data, self._secrets):
            excluded.append(Exclusion(rel, "credential_content", len(data)))
            self._index_drop(index, rel)
            return False
        return True

    def _store_entry(self: GitStore, index, rel, data, mode, st, excluded, lines) -> None:
        try:
            self._index_add_stat(index, rel, self._create_blob(data), mode, st)
        except ValueError:  # a path git cannot hold (libgit2 refused it)
            excluded.append(Exclusion(rel, "invalid_path", st.st_size))
            self._index_drop(index, rel)
            return
        if lines is not None:
            lines[rel] = count_lines(data)

    def _apply_paths_staged(self: GitStore, index, root: str, changed, max_file_bytes: int,
                            excluded: list[Exclusion]) -> tuple[str, list]:
        """`_apply_paths` with its index edits staged, not applied: returns why the tree must be
        walked ("" if it need not) and the edits in order (``(path, (oid, mode, stat))`` sets a
        file, ``(path, None)`` removes a path and all below it), for ``treeedit.edited_tree``
        and ``recorder._flush_staged``. The blobs read wait in ``self._staged`` (a pack); when the
        tree must be walked they are dropped, never written."""
        self._edits, self._staged = [], pack.PackWriter(self.path)
        try:
            reason = self._apply_paths(index, root, changed, max_file_bytes, excluded)
            if reason:
                self._staged = None
            return reason, self._edits
        except BaseException:
            self._staged = None
            raise
        finally:
            self._edits = None

    def _apply_paths(self: GitStore, index, root: str, changed, max_file_bytes: int,
                     excluded: list[Exclusion]) -> str:
        """Bring the entries of ``changed`` (and below them) in line with the disk; ``excluded``
        holds the previous snapshot's exclusions and is updated. Returns "" when done, else why
        the tree must be walked instead (then ``index`` may be partly updated: re-read it)."""
        tops: list[str] = []
        for rel in sorted(p.strip("/") for p in changed):
            if not rel or rel == ".git" or rel.startswith(".git/"):
                continue
            name = rel.rsplit("/", 1)[-1]
            if name == ".gitignore":
                return f"{rel} changed"
            if name == ".git":
                return f"a nested repository appeared at {rel[:-5]}"
            if tops and rel.startswith(tops[-1] + "/"):
                continue  # below a path already taken whole
            if not_text(rel):
                return _not_utf8(rel)
            tops.append(rel)
        if not tops:
            return ""
        gone = set(tops)
        excluded[:] = [e for e in excluded if e.path not in gone and not _below_any(e.path, gone)]
        for rel in tops:
            full = os.path.join(root, rel)
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                self._index_drop(index, rel)
                continue
            if self.is_ignored(rel):
                self._index_drop(index, rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                if os.path.lexists(os.path.join(full, ".git")):
                    return f"a nested repository appeared at {rel}"
                self._index_drop(index, rel)
                reason = self._add_tree(index, root, rel, max_file_bytes, excluded)
                if reason:
                    return reason
            else:
                self._index_drop(index, rel)
                self._add_path(index, rel, full, st, max_file_bytes, excluded)
        return ""

    def _add_tree(self: GitStore, index, root: str, top: str, max_file_bytes: int, excluded,
                  lines: dict[str, int] | None = None, *, nested: bool = False) -> str:
        """Record everything below directory ``top`` (not following symlinks; ignored paths left
        out). A ``.git`` or ``.gitignore`` inside is refused (returns why: the caller walks),
        unless ``nested`` (``top`` is a nested repository's root: its ``.git`` entries are
        skipped, its working files recorded as plain files)."""
        stack, items = [top], []
        while stack:
            rel_dir = stack.pop()
            try:
                entries = list(os.scandir(os.path.join(root, rel_dir)))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}"
                if not_text(entry.name):
                    return _not_utf8(rel)
                if entry.name == ".git":
                    if nested:
                        continue
                    return f"a nested repository appeared at {rel_dir}"
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not self.is_ignored(rel + "/"):
                        stack.append(rel)
                elif not self.is_ignored(rel):
                    if entry.name == ".gitignore" and not nested:
                        return f"{rel} appeared"
                    items.append((rel, entry.path, st))
        self._add_paths(index, items, max_file_bytes, excluded, lines)
        return ""

    def _purge(self: GitStore, index, root: str, max_file_bytes: int, *, check_size: bool) -> None:
        """Drop index entries that the current policy excludes (run when the policy or a
        ``.gitignore`` changed; libgit2 alone would keep tracking once-recorded paths)."""
        for entry in list(index):
            path = entry.path
            if self.is_ignored(path):
                self._index_drop(index, path)
            elif check_size:
                full = os.path.join(root, path)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                too_big = stat.S_ISREG(st.st_mode) and st.st_size > max_file_bytes
                if too_big or policy.credential_exclusion(path, full, st, self._credentials, self._secrets):
                    self._index_drop(index, path)


def _file_signature(path: str):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _trusted_state(state: dict, fingerprint: str, parent: str | None) -> str:
    """Why the last snapshot's index cannot be updated from changed paths alone ("" if it can)."""
    if parent is None:
        return "first snapshot"
    if state.get("policy") != fingerprint:
        return "the snapshot policy or ignore rules changed"
    if "excluded" not in state:
        return "no exclusions recorded by the last snapshot"
    return ""


def _not_utf8(rel: str) -> str:
    """Why a snapshot from changed paths walks when it meets a name that is not UTF-8:
    `GitStore.is_ignored` cannot match its bytes exactly, libgit2's walk does."""
    return f"a name that is not UTF-8 changed: {quote_name(rel)}"


def _below_any(path: str, tops: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:i]) in tops for i in range(1, len(parts)))


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, max(size, 1 << 16))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size = 1 << 16


@contextmanager
def _blob_reader(items: list[tuple[str, str, os.stat_result]]):
    """A function starting the read of a listed file on a worker thread (its future), or None
    for a file the caller reads itself (one under :data:`_THREADED_BYTES`); no threads are
    started when no file is that large."""
    if not any(st.st_size >= _THREADED_BYTES for _, _, st in items):
        yield lambda item: None
        return
    # imported here: ~5 ms (it imports logging) that a replay, which never snapshots, saves
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="agtrace-blobs") as pool:
        yield lambda item: pool.submit(pack.read_blob, item[1]) if item[2].st_size >= _THREADED_BYTES else None
