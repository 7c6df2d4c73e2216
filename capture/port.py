"""The two ports of the capture pipeline: the agent's process and the workspace's snapshotter.

:func:`~agtrace.capture.pipeline.run_capture` is the one capture loop; everything that differs
between running an agent here and running it in a sandbox sits behind these two Protocols:

* :class:`AgentPort`, the agent process. Adapters: :class:`~agtrace.capture.process.LocalProcess`
  (a local process group) and :class:`~agtrace.capture.SandboxAgentProcess` (a process
  group inside any ``SandboxAPI``: the in-memory sandbox, Modal). Both share freeze/thaw/stop
  through :class:`~agtrace.capture.process.ProcessGroup`.
* :class:`SnapshotPort`, the workspace snapshotter the :class:`~agtrace.capture.Recorder` calls
  when a part ends. Adapters: :class:`~agtrace.capture.Snapshotter` (a local workdir) and
  :class:`~agtrace.capture.RemoteSnapshotter` (a workdir inside a sandbox).

The one exit-code convention: ``poll``/``wait`` return the exit status, or ``-N`` when the agent
was killed by signal N, whatever the backend reports (a container reports ``128 + N``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from agtrace.eventlog import SnapshotTaken


@dataclass(frozen=True, slots=True)
class Line:
    """One line the agent printed: its stream, its text (decoded, without the newline) and the
    wall-clock time it arrived (ns).

    As a reader queues it, ``text`` keeps bytes that are not UTF-8 as lone surrogates
    (:func:`decode_verbatim`); once the capture has redacted it, such a
    line's ``text`` has U+FFFD in their place and :attr:`data` holds its exact bytes."""

    stream: str
    text: str
    ts: int
    frozen: int | None = None
    """Set when the reader froze the agent as this line arrived (a marker that ends a part): the
    hold's ticket (:meth:`AgentPort.freeze`: the process's ``deadline_thaws`` then), which the
    capture thaws once the part's snapshot is taken; None otherwise."""
    continued: bool = False
    """The line goes on in the next line of the stream: this is a piece of a line longer than
    :data:`~agtrace.capture.process.MAX_LINE_BYTES` (see :func:`~agtrace.capture.process.read_pieces`)."""
    data: bytes = b""
    """The line's exact bytes (redacted) when they are not valid UTF-8; ``b""`` otherwise."""


def decode_verbatim(raw: bytes) -> str:
    """``raw`` as text that keeps every byte: a byte that is not UTF-8 becomes a lone surrogate
    (``surrogateescape``), so ``text.encode("utf-8", "surrogateescape")`` is ``raw`` again. The
    readers of an agent's output decode with this; the capture redacts such text and then stores
    it with :func:`split_undecodable`."""
    return raw.decode("utf-8", "surrogateescape")


def split_undecodable(text: str) -> tuple[str, bytes]:
    """``(shown, data)`` of a text :func:`decode_verbatim` made: when it holds bytes that are not
    UTF-8, ``shown`` is their decoding with U+FFFD for each bad byte (what every text consumer
    sees) and ``data`` their exact bytes; otherwise ``(text, b"")``."""
    if text.isascii():
        return text, b""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape")
        return data.decode("utf-8", "replace"), data
    return text, b""


@runtime_checkable
class AgentPort(Protocol):
    """The agent's process, as the capture loop drives it.

    Contracts: lines of both streams come in arrival order; :meth:`read` never blocks longer
    than its ``timeout`` (the loop ticks and checks limits while the agent is silent).
    :meth:`freeze` and :meth:`thaw` are the one guarded pair that stops and continues the whole
    process group (a no-op once the agent has exited; :meth:`thaw` is idempotent and safe after
    a failed :meth:`freeze`). A freeze never outlives its deadline nor the capture process (see
    :class:`~agtrace.capture.process.ProcessGroup`). :meth:`stop` returns at once: the group gets
    the stop signal (and SIGCONT, so a stopped agent sees it), then SIGKILL after the grace
    period if any of the group is still there. :meth:`close` is called once when the capture is
    done with the agent. Failures of the backend itself (a sandbox that went away) raise
    ``CaptureError``.
    """

    def start(self) -> None:
        """Start the agent; raise ``AgentNotFound`` (or ``SandboxError``) if it cannot start."""
        ...

    def read(self, timeout: float) -> Line | None:
        """The next line, or None when none arrived within ``timeout`` s or the streams ended."""
        ...

    @property
    def done(self) -> bool:
        """Both streams are closed and every line was read."""
        ...

    def freeze(self) -> int | None:
        """Stop the group; returns the hold's ticket for :meth:`thaw` (None: no hold taken).
        Freezes nest: the group runs again once every hold was thawed."""
        ...

    def thaw(self, ticket: int | None = None) -> None:
        """Release the hold of ``ticket`` (a no-op if the deadline ended it already)."""
        ...

    def stop(self) -> None:
        ...

    def close(self) -> None:
        """Release the freeze's guard (its supervisor); a stop under way is finished by it."""
        ...

    def poll(self) -> int | None:
        """The exit code (see the module docstring), or None while the agent runs."""
        ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Like :meth:`poll`, waiting up to ``timeout`` s (None: until the agent exits)."""
        ...


@runtime_checkable
class SnapshotPort(Protocol):
    """The snapshotter of one run's workspace; one per run, called from one thread.

    Contracts: :meth:`take` records the workspace's tree *now* into the run's local shadow
    repository (``runs/<id>/repo.git``) and returns the event describing it (changes since the
    previous snapshot); when it returns, the tree is readable locally. :meth:`seal` writes the
    snapshots made since the last seal as the next bundle (None if nothing is new). ``workdir``
    is the workspace's path as the agent sees it (agents report paths under it).
    """

    tree_id: str | None
    workdir: str | os.PathLike

    def take(self, label: str, *, part_ended_ts: int | None = None, final: bool = False) -> SnapshotTaken:
        ...

    def seal(self) -> Path | None:
        ...


SnapshotterFactory = Callable[[Path], SnapshotPort]
"""Makes a run's snapshotter from the run's directory (which exists only once the run does)."""
