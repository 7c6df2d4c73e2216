"""A forked child that folds a run's projections from its segments while the parent writes.

A writer's own fold (:meth:`~agtrace.eventlog.Store.open_writer` hands what it wrote to the
catalog) runs on the appending thread and holds the GIL: on a bulk append (``agtrace append``)
it took as much of the main thread as decoding the JSON did, while the second core sat mostly
idle. With ``fold="child"`` the writer has no listener and this child follows the run instead:
every :data:`POLL_S`, when the run's files changed, it catches the projections up from what the
writer has put in them (:meth:`Store.sync`, which reads an open segment up to its last whole
frame, as any other process reading a live run does), and once the parent says it is done (it
closes the pipe, or dies, which closes it too) it folds what is left and exits. The parent waits for it on close
(:meth:`FoldChild.finish`); a child that failed is not an error: the parent folds the rest
itself, and anything the child left undone is folded by the next reader, as after a crash.

The child is forked before the writer exists (a fork copies no thread; refused when there is
one), opens its own :class:`~agtrace.eventlog.Store` on the same directory and projections,
never touches the parent's catalog connection, ignores SIGINT (the parent decides, and closes
the pipe), writes nothing to the terminal and leaves with ``os._exit``.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from typing import TYPE_CHECKING

from .forked import fork_with_pipe
from .projection import STREAMS

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

POLL_S = 0.2
"""How often the child catches up while the parent writes."""


class FoldChild:
    """The child folding ``run_id`` of ``store`` (see the module docstring)."""

    def __init__(self, pid: int, done_fd: int):
        self.pid = pid
        self._done_fd = done_fd
        self.status: int | None = None

    @classmethod
    def start(cls, store: Store, run_id: str) -> FoldChild | None:
        """Fork the child; None where it cannot be (no ``fork``, or another thread running)."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        pid, done_fd = fork_with_pipe(lambda fd: _follow(store, run_id, fd), child_writes=False)
        return cls(pid, done_fd)

    def finish(self) -> bool:
        """Tell the child the writer is closed and wait for it; True if it folded everything."""
        if self.status is None:
            os.close(self._done_fd)
            _, status = os.waitpid(self.pid, 0)
            self.status = status
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0


def _follow(store: Store, run_id: str, done_fd: int) -> int:
    """The child's loop: catch up every :data:`POLL_S` until ``done_fd`` ends, then once more."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # not the parent's input, output or terminal
        os.dup2(null, fd)
    from .store import Store

    own = Store(store.root, create=False, projections=store.projections)
    done = select.poll()
    done.register(done_fd, select.POLLIN | select.POLLHUP)
    finished, seen = False, None
    while not finished:
        finished = bool(done.poll(POLL_S * 1000))
        now = _files(own.run_dir(run_id))
        if now != seen or finished:  # a live stream that is quiet costs a listing, not a read
            own.sync(run_id)
            seen = now
    own.close()
    return 0


def _files(run_dir) -> list[tuple[str, int]]:
    """The names and sizes of the files of a run's streams."""
    out = []
    for stream in STREAMS:
        try:
            out.extend((entry.name, entry.stat().st_size) for entry in os.scandir(run_dir / stream))
        except FileNotFoundError:
            continue
    return out
