"""The console scripts' entry points (``agtrace``, ``replay``).

Click turns a Ctrl-C during a command into "aborted", exit 130. Before the command (while the
CLI's modules are imported: click alone takes tens of milliseconds) and after it (while the
process exits) nothing did, and a Ctrl-C printed a ``KeyboardInterrupt`` traceback. Here SIGINT
ends the process at once with "aborted", exit 130, until :func:`agtrace.cli.main.main` runs, and
again from its exit on. This module imports nothing but the standard library, so that the
window before it is Python's own start.
"""

from __future__ import annotations

import os
import signal

EXIT_INTERRUPTED = 130


def _aborted(_signum, _frame) -> None:
    try:
        os.write(2, b"\naborted\n")
    except OSError:  # standard error closed or gone: the exit code says it
        pass
    os._exit(EXIT_INTERRUPTED)


def quiet_interrupts() -> bool:
    """Make a SIGINT end the process at once, quietly (exit 130), unless it was not Python's
    default handler (ignored, as in a background job, or a caller's own); whether it did."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False
    signal.signal(signal.SIGINT, _aborted)
    return True


def main() -> None:
    """``agtrace``: :func:`agtrace.cli.main.main`, with a Ctrl-C before and after it quiet."""
    _run("main")


def replay_main() -> None:
    """``replay``: :func:`agtrace.cli.main.replay_main`, likewise."""
    _run("replay_main")


def _run(name: str) -> None:
    quiet = quiet_interrupts()
    from . import main as cli_main

    if quiet:
        cli_main.quiet_exit()  # main() gives SIGINT back to Python for the command, and takes it at exit
    getattr(cli_main, name)()
