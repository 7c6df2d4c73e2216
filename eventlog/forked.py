"""Work handed to a forked child, its result read back through a pipe.

Three steps use the second core this way, where threads would share the GIL: the report's diffs
(``replay/report_diff.py``), half of a big checkout (``git/treewrite.py``) and the fold of a
bulk append (``fold_child.py``, which reads its pipe instead: :func:`fork_with_pipe`). The child
inherits what the parent opened (a repository, directory descriptors, a memory-mapped pack),
runs one function, writes the bytes it returns to the pipe and leaves with ``os._exit``: no
``finally`` block, ``atexit`` hook or buffered output of the parent runs in it. Its exit status
is 0 only when every byte was written.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import BinaryIO


def fork_computing(compute: Callable[[], bytes]) -> tuple[int, BinaryIO]:
    """Fork a child that writes ``compute()`` to a pipe; return ``(its pid, the pipe's read end)``.

    Read the pipe to its end, close it, then reap the child (``os.waitpid``) or end it with
    :func:`end_child`. Only for a process with no other thread (a fork copies none of them)."""

    def write_all(fd: int) -> int:
        view = memoryview(compute())
        while view:
            view = view[os.write(fd, view):]
        return 0

    pid, read_end = fork_with_pipe(write_all, child_writes=True)
    return pid, os.fdopen(read_end, "rb")


def fork_with_pipe(run: Callable[[int], int], *, child_writes: bool) -> tuple[int, int]:
    """Fork a child that runs ``run(fd)`` on its end of a new pipe (the write end if
    ``child_writes``, else the read end) and leaves with ``os._exit`` of what it returns (1 if
    it raised); return ``(its pid, the parent's end)``."""
    read_end, write_end = os.pipe()
    mine, theirs = (read_end, write_end) if child_writes else (write_end, read_end)
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(mine)
            status = run(theirs)
        finally:
            os._exit(status)
    os.close(theirs)
    return pid, mine


def end_child(pid: int) -> None:
    """SIGKILL the child ``pid`` and reap it; a child already gone is not an error."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def exit_description(status: int) -> str:
    """How a child ended, from the status ``os.waitpid`` gave (for an error message)."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"status {status}"
