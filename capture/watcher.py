"""Which paths of a workdir changed since the last snapshot, without walking it (Linux inotify).

A :class:`TreeWatcher` puts an inotify watch on every directory of the workdir (except ``.git``
directories and those ``skip`` names, e.g. ignored ones) and turns the kernel's events into a
set of workdir-relative paths that may have changed. It is read only when a snapshot is taken
(the agent is frozen then), through :meth:`TreeWatcher.changes`, which drains the queue.

Contracts:

* **Complete or says so.** Every create, write, chmod, delete or rename below a watched
  directory (by the agent, by any process it started) yields its path or an ancestor's. A new
  directory is watched when its event is read and reported whole, so files made in it before
  the watch existed are found by walking it at snapshot time. When the kernel queue overflowed,
  a watch could not be added (``max_user_watches``) or the root itself moved, :meth:`changes`
  returns None: the caller must walk the whole tree (and the watcher goes on from there).
* **No new dependency**: inotify through ``ctypes`` on libc. Where it is missing (not Linux,
  no libc), :func:`open_watcher` returns None and snapshots walk the tree every time.
* What inotify cannot see (writes through a shared ``mmap``, a hard link edited from outside
  the tree, another mount over a directory) is why the run's last snapshot also walks the whole
  tree and records what the watcher missed (see ``agtrace.capture.snapshot``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
import weakref
from collections.abc import Callable

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000

WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
              | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
MAX_PATHS = 50_000
"""More changed paths than this between two snapshots: cheaper to walk the tree (reported as
an overflow)."""


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def open_watcher(root: str | os.PathLike, skip: Callable[[str], bool] | None = None) -> TreeWatcher | None:
    """A watcher of ``root``'s tree, or None where inotify is not available (or refused)."""
    libc = _libc()
    if libc is None:
        return None
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    return TreeWatcher(libc, fd, os.path.realpath(root), skip or (lambda rel: False))


class TreeWatcher:
    """Changed paths of one tree; see the module docstring. One thread; :meth:`close` when done."""

    def __init__(self, libc, fd: int, root: str, skip: Callable[[str], bool]):
        self._libc, self._fd, self.root, self._skip = libc, fd, root, skip
        self._finalizer = weakref.finalize(self, os.close, fd)  # a watcher dropped unclosed
        self._paths: dict[int, str] = {}  # wd -> relative dir ("" for the root)
        self._wds: dict[str, int] = {}
        self._changed: set[str] = set()
        self.overflowed = ""  # why the next changes() must be a walk ("" when it need not)
        self.lost = ""  # why the last changes() returned None
        self._watch_tree("")

    # -- the public face ------------------------------------------------------------------------

    def changes(self) -> set[str] | None:
        """Drain the queue and return the paths changed since the last call (relative, ``/``),
        or None when they are not known (overflow: walk the tree). Resets either way."""
        self._drain()
        changed, self.lost = self._changed, self.overflowed
        self._changed, self.overflowed = set(), ""
        return None if self.lost else changed

    def rescan(self) -> None:
        """Watch every directory of the tree again (after events were lost, or the ignore rules
        changed): directories made meanwhile are watched from now on."""
        self._watch_tree("")

    def close(self) -> None:
        if self._fd >= 0:
            self._finalizer()
            self._fd = -1

    @property
    def watches(self) -> int:
        return len(self._paths)

    # -- watches --------------------------------------------------------------------------------

    def _watch_tree(self, rel: str) -> None:
        """Watch ``rel`` and every directory below it (not following symlinks)."""
        stack = [rel]
        while stack:
            current = stack.pop()
            if not self._add_watch(current):
                continue
            full = os.path.join(self.root, current) if current else self.root
            try:
                with os.scandir(full) as it:
                    for entry in it:
                        if entry.name == ".git" or not entry.is_dir(follow_symlinks=False):
                            continue
                        child = f"{current}/{entry.name}" if current else entry.name
                        if not self._skip(child):
                            stack.append(child)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue

    def _add_watch(self, rel: str) -> bool:
        full = os.path.join(self.root, rel) if rel else self.root
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(full), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return False  # gone already, or not ours to read: its parent's events cover it
            self.overflowed = f"cannot watch {full}: {os.strerror(err)}"
            return False
        old = self._paths.get(wd)
        if old is not None and old != rel:
            self._forget(old)
        self._paths[wd] = rel
        self._wds[rel] = wd
        return True

    def _forget(self, rel: str) -> None:
        """Drop the watches of ``rel`` and below (it moved away or was deleted)."""
        prefix = rel + "/"
        for path in [p for p in self._wds if p == rel or p.startswith(prefix)]:
            wd = self._wds.pop(path)
            if self._paths.get(wd) == path:
                del self._paths[wd]
                self._libc.inotify_rm_watch(self._fd, wd)

    # -- events ---------------------------------------------------------------------------------

    def _drain(self) -> None:
        while self._fd >= 0:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        pos, size = 0, _HEADER.size
        while pos + size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, pos)
            name = data[pos + size: pos + size + length].rstrip(b"\0")
            pos += size + length
            if mask & IN_Q_OVERFLOW:
                self.overflowed = "the kernel's event queue overflowed"
                continue
            parent = self._paths.get(wd)
            if parent is None:
                continue  # a watch dropped meanwhile
            if mask & IN_IGNORED:
                if self._wds.get(parent) == wd:
                    del self._wds[parent]
                del self._paths[wd]
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if parent == "":
                    self.overflowed = f"the workdir {self.root} itself was moved or deleted"
                self._mark(parent)
                continue
            if not name:
                continue
            rel = f"{parent}/{os.fsdecode(name)}" if parent else os.fsdecode(name)
            self._mark(rel)
            if mask & IN_ISDIR and name != b".git" and not self._skip(rel):
                if mask & (IN_CREATE | IN_MOVED_TO):
                    self._watch_tree(rel)
                elif mask & IN_MOVED_FROM:
                    self._forget(rel)

    def _mark(self, rel: str) -> None:
        if rel.split("/", 1)[0] == ".git" or "/.git/" in rel:
            return  # inside a .git: never recorded (a .git appearing is reported by its parent)
        self._changed.add(rel)
        if len(self._changed) > MAX_PATHS:
            self.overflowed = f"over {MAX_PATHS} paths changed"
