"""The CLI's one error boundary: every exception a command lets out becomes one line on stderr
that says what happened and what to do next, and an exit code. No traceback reaches a user.

Exit codes: 0 success; 1 the operation failed or found a problem (a corrupt frame, a run that
failed to capture, a damaged catalog, a full disk); 2 bad usage or bad input (a malformed line,
an unknown run id); 130 interrupted.

What is mapped, and where (:func:`map_error`):

* agtrace's own trees (``EventlogError``, ``CaptureError``, ``ReplayError``): their messages
  already say what to do; bad input (unknown or ambiguous id, an invalid event, a part the
  run does not have or a selection that cannot be read, whichever command reads it, a --store
  where there is no store) exits 2.
* ``sqlite3`` errors come from the catalog, which is derived: "database is locked" (another
  process holds it), "file is not a database" (damaged or replaced), disk I/O errors, and the
  rest; each message says how to get the catalog back without losing an event.
* ``OSError`` by errno (no space, no permission, read-only, a file where a directory belongs,
  not found, too many open files, I/O error, …), naming the path.
* Foreign decoding errors of bad input or damaged data: msgspec ``DecodeError`` /
  ``ValidationError``, ``UnicodeDecodeError``, ``RecursionError`` (input nested too deeply),
  ``OverflowError`` (a number too large), ``MemoryError``.
* Anything else is a bug: one line naming the exception, and ``AGTRACE_DEBUG=1`` shows the
  traceback.
"""

from __future__ import annotations

import errno
import os
import sys

import click

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """A failure to report without a traceback; ``exit_code`` says which kind."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def map_error(exc: BaseException, store_path: str = "the store") -> UserError:
    """The one place where an exception becomes a CLI error (see the module docstring)."""
    from agtrace.capture import AgentNotFound, CaptureError, WorkdirError
    from agtrace.eventlog import (
        AmbiguousRunId,
        BadPartSelection,
        EventlogError,
        InvalidEvent,
        RunNotFound,
        StoreNotFound,
    )
    from agtrace.replay import NoSuchPart, ReplayError

    if isinstance(exc, (RunNotFound, AmbiguousRunId, InvalidEvent, BadPartSelection, NoSuchPart, StoreNotFound,
                        AgentNotFound, WorkdirError)):
        return UserError(str(exc), EXIT_BAD_INPUT)
    if isinstance(exc, (EventlogError, CaptureError, ReplayError)):
        return UserError(str(exc))
    sqlite3 = sys.modules.get("sqlite3")  # not imported: the error cannot be one of its
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return UserError(_sqlite_message(exc, os.path.join(store_path, "catalog.db")))
    if isinstance(exc, OSError):
        return UserError(_os_message(exc, store_path))
    for kind, exit_code, message in _decoding_messages():
        if isinstance(exc, kind):
            return UserError(message.format(exc=_one_line(exc)), exit_code)
    return UserError(
        f"internal error ({type(exc).__name__}: {_one_line(exc)}); nothing already stored is lost. "
        "This is a bug in agtrace: report it with the command you ran (AGTRACE_DEBUG=1 shows the traceback)"
    )


def _sqlite_message(exc: Exception, catalog: str) -> str:
    text = str(exc)
    rebuild = "it is derived from the event logs, which are intact: rebuild it with `agtrace reindex`"
    if "locked" in text or "busy" in text:
        return (f"the catalog {catalog} is locked by another agtrace process ({text}); wait for it "
                "to finish and retry")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"the catalog {catalog} is damaged ({text}); {rebuild}"
    if "full" in text or ("disk I/O" in text and _disk_full(catalog)):  # SQLITE_FULL, or a WAL write cut short
        return (f"the disk holding the catalog {catalog} is full ({text}); free some space and retry — "
                "events already stored are intact")
    if "disk I/O" in text:
        return (f"disk I/O error on the catalog {catalog} ({text}); check the disk and free space, "
                "then retry; if it persists, " + rebuild)
    if "unable to open" in text:
        return (f"cannot open the catalog {catalog} ({text}); it must be a file agtrace may write, in a "
                "writable directory: check what is at that path and its permissions")
    if "readonly" in text or "read-only" in text:
        return f"the catalog {catalog} cannot be written ({text}); check its permissions and the filesystem"
    return f"the catalog {catalog} failed: {text} ({type(exc).__name__}); {rebuild}"


def _disk_full(path: str) -> bool:
    """Whether the filesystem holding ``path`` has (almost) no room left: SQLite reports a WAL or
    shared-memory write that found no space as a disk I/O error."""
    directory = os.path.dirname(path) or "."
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and retry — events already stored are intact",
    errno.EDQUOT: "the disk quota is exceeded; free some space and retry — events already stored are intact",
    errno.EACCES: "permission denied; check the permissions of {path} (and of the store directory)",
    errno.EPERM: "operation not permitted; check the permissions of {path} (and of the store directory)",
    errno.EROFS: "the filesystem is read-only; use a store on a writable filesystem (--store or AGTRACE_HOME)",
    errno.ENOTDIR: "a file is where a directory should be in {path}; move it away or pick another path",
    errno.EISDIR: "{path} is a directory where a file was expected; pass a file",
    errno.ENOENT: "{path} does not exist; check the path",
    errno.EEXIST: "{path} already exists; remove it or pick another path",
    errno.ENAMETOOLONG: "the path {path} is too long; use a shorter one",
    errno.ELOOP: "too many symbolic links in {path}; check where it points",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and retry",
    errno.ENFILE: "the system is out of file handles; close other programs and retry",
    errno.EIO: "I/O error on {path}; check the disk (dmesg) — the data there may be damaged",
}


def _os_message(exc: OSError, store_path: str) -> str:
    path = exc.filename if exc.filename is not None else store_path
    what = exc.strerror or str(exc)
    code = exc.errno
    if code in (errno.EEXIST, errno.ENOTDIR):
        blocker = _file_in_the_way(str(path))
        if blocker is not None:
            return (f"{what}: {path}; {blocker} is a file where a directory should be: move it away "
                    "or pick another path")
    hint = _ERRNO_HINTS.get(code)
    if hint is None:
        return f"{what}: {path} ({type(exc).__name__}); check the path and retry"
    return f"{what}: {path}; {hint.format(path=path)}"


def _file_in_the_way(path: str) -> str | None:
    """The path itself or its nearest ancestor that exists and is not a directory, if any."""
    current = os.path.abspath(path)
    while True:
        if os.path.lexists(current):
            return None if os.path.isdir(current) else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _decoding_messages():
    import msgspec

    return (
        (msgspec.ValidationError, EXIT_BAD_INPUT,
         "data does not have the expected shape: {exc}; check the input (or run `agtrace verify` if it came "
         "from the store)"),
        (msgspec.DecodeError, EXIT_BAD_INPUT,
         "data could not be decoded: {exc}; check the input (or run `agtrace verify` if it came from the store)"),
        (UnicodeDecodeError, EXIT_BAD_INPUT, "input is not valid UTF-8 ({exc}); convert it to UTF-8 and retry"),
        (RecursionError, EXIT_BAD_INPUT,
         "input is nested too deeply to process ({exc}); flatten it or split it and retry"),
        (OverflowError, EXIT_BAD_INPUT, "a number is too large ({exc}); keep integers within 64 bits"),
        (MemoryError, EXIT_FAILED, "out of memory ({exc}); process less at once (fewer runs, smaller input)"),
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__
