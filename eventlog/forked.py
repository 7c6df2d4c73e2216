"""Work handed to a forked child, its result read back through a pipe.

Two steps use the second core this way, where threads would share the GIL: the report's diffs
(``replay/report_diff.py``) and half of a big checkout (``git/treewrite.py``). The child
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
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_end)
            view = memoryview(compute())
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, os.fdopen(read_end, "rb")


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
