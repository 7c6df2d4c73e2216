"""The exceptions of ``agtrace.eventlog``: one rooted tree.

::

    EventlogError
    ├── StoreError            the store directory cannot be opened or is not a store
    │   ├── StoreNotFound     there is no store at that path (and it was not to be created)
    │   ├── RunExists         a run with that id is in the store already (runs are never replaced)
    │   └── ReadOnlyStore     the store cannot be written (read-only mount, archive) and the command writes
    ├── RunNotFound           no run matches an id or prefix
    ├── AmbiguousRunId        a prefix matches several runs
    ├── RunLocked             another writer holds the run's lock
    ├── RunClosed             the run has ended; appends are refused
    ├── CorruptLog            a frame or segment fails its checksum or structure check
    │   └── CorruptBlob       a blob's content does not match its address
    ├── NewerFormat           a segment was written by a newer agtrace (not damage: never repaired)
    ├── InvalidEvent          an event (or a JSON line) does not decode, or breaks a limit
    ├── BadPartSelection      a part selection (`3-7`, `last`, `1,4,9`) cannot be read or resolved
    ├── UnsafePath            a name from data would leave its directory (see containment.py)
    ├── GitStoreError         the shadow git repository failed (see git/)
    │   └── CheckoutWriteFailed  a checkout's directory could not be written (disk full, permissions)
    ├── UnreadableResult      a test result file is not JUnit XML or a known JSON report
    └── RemoteError           a remote (file://, s3://) failed (see remotes/)
        ├── RemoteAuthError   missing or wrong credentials, access denied
        ├── RemoteNotFound    no such bucket, directory or run
        ├── RemoteUnreachable the endpoint cannot be reached
        └── RemoteConflict    a different object already holds the key (never overwritten)

Every message says what happened and what to do next. Only ``agtrace.cli`` prints or exits.
"""

from __future__ import annotations


class EventlogError(Exception):
    """Root of every error raised by ``agtrace.eventlog``."""


class StoreError(EventlogError):
    """The store directory cannot be used."""


class StoreNotFound(StoreError):
    """There is no store at the path (missing, or not a store), and the command creates none."""


class RunExists(StoreError):
    """A run being adopted is in the store already (another process may have just adopted it)."""


class ReadOnlyStore(StoreError):
    """The store cannot be written (a read-only mount, an archive) and the command must write it."""


class RunNotFound(EventlogError):
    """No run matches the given id or prefix."""


class AmbiguousRunId(EventlogError):
    """A prefix matches more than one run."""


class RunLocked(EventlogError):
    """Another writer holds the run's lock."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


class RunClosed(EventlogError):
    """The run has a ``run_ended`` event; nothing more may be appended."""


class CorruptLog(EventlogError):
    """A frame or segment is damaged. ``path`` and ``offset`` locate the first bad byte."""

    def __init__(self, message: str, path: str = "", offset: int = -1):
        super().__init__(message)
        self.path = path
        self.offset = offset


class CorruptBlob(CorruptLog):
    """A blob does not hash to its address."""


class NewerFormat(EventlogError):
    """A segment's header names a format version newer than this agtrace reads (a newer agtrace
    wrote it). Not a :class:`CorruptLog`: nothing treats it as damage, so it is never cut,
    replaced, renamed aside or overwritten; the message says to upgrade."""

    def __init__(self, message: str, path: str = "", version: int = 0):
        super().__init__(message)
        self.path = path
        self.version = version


class InvalidEvent(EventlogError):
    """An event or a JSON line does not decode. ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class BadPartSelection(EventlogError, ValueError):
    """A part selection cannot be read, or names a part the run does not have (the message
    says which and what the run has)."""


class UnsafePath(EventlogError):
    """A path or name that came from data (a blob address, a remote key, a tree entry) breaks
    the one path rule (``containment.py``): it would leave its directory."""


class GitStoreError(EventlogError):
    """The shadow git repository could not be read or written."""


class CheckoutWriteFailed(GitStoreError):
    """A checkout could not write its directory (the disk is full, a quota, permissions, a
    read-only filesystem): the fault of where it writes, not of the repository, so reading the
    tree from elsewhere (the bundles) cannot help. ``errno`` is the OS error's number."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno

    def __reduce__(self):  # crosses a fork's pipe (treewrite's half-writing child)
        return type(self), (str(self), self.errno)


class UnreadableResult(EventlogError):
    """A test result file is neither JUnit XML nor a JSON report agtrace knows (the message
    says which and why)."""


class RemoteError(EventlogError):
    """A remote could not be read or written. The message says what to do next."""


class RemoteAuthError(RemoteError):
    """Credentials are missing or rejected, or the identity may not do this."""


class RemoteNotFound(RemoteError):
    """The bucket or directory of the remote (or the asked-for run) does not exist."""


class RemoteUnreachable(RemoteError):
    """The remote's endpoint cannot be reached (network, DNS, wrong endpoint URL)."""


class RemoteConflict(RemoteError):
    """A key holds bytes other than the ones being put; agtrace never overwrites."""
