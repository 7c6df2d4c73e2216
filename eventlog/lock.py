"""One writer per run: an exclusive ``flock`` on ``runs/<id>/lock``.

The lock file names its holder (pid, host, start time) so a refused writer can say who holds
it. ``flock`` is released by the kernel when the holder dies, so a crashed writer never leaves
a stale lock behind and there is nothing to break by hand.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from .errors import RunLocked, StoreError


class RunLock:
    """An acquired run lock. Release it with :meth:`release` (or let the process exit)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, path: str | os.PathLike, run_id: str) -> RunLock:
        """Take the lock or raise :class:`RunLocked` naming the holder. Never blocks."""
        path = Path(path)
        fd = _open_lock(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(path)
            for _ in range(20):  # the holder writes its name just after taking the lock
                if holder:
                    break
                time.sleep(0.01)
                holder = read_holder(path)
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
            since = holder.get("since", "")
            raise RunLocked(
                f"run {run_id} is locked by {who} (since {since}); wait for that writer to "
                "finish or stop it — the lock is released automatically when it exits",
                holder,
            ) from None
        info = {
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _open_lock(path: Path, flags: int) -> int:
    """Open the lock file itself, never what a symlink in its place points at (``O_NOFOLLOW``):
    writing the holder truncates the file, which must not truncate another file."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    raise StoreError(
        f"{path} is a symbolic link, not a lock file; agtrace never writes through it. Remove the "
        "link (`rm` it; nothing of the run is lost) and retry"
    )


def read_holder(path: str | os.PathLike) -> dict:
    """The holder recorded in a lock file ({} if unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            holder = json.loads(fh.read(4096) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def is_locked(path: str | os.PathLike) -> bool:
    """True if some process holds the lock at ``path`` right now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink is no lock anyone holds
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
