"""The recorder: everything a capture writes goes through here, from `agtrace run` or a framework.

Contracts:

* Every event is redacted before it is appended (secrets never reach the store: every text,
  nested value and bytes field, with :class:`~agtrace.eventlog.Redactor`); the number of
  redactions is kept and written in ``run_ended``. Large texts are redacted before they go to
  the blob store.
* When a part ends, the workspace is snapshotted at once, before anything else is appended,
  and the ``part_ended`` event carries the tree id; the snapshot event records both the time the
  part ended and the time the snapshot was taken.
* A heartbeat is appended every ``heartbeat_s`` while the recorder is open, so a run whose
  capture process died shows as crashed.
* :meth:`end` takes a final snapshot (also on interrupt), appends ``run_ended``, closes the
  log and seals the snapshots into a git bundle. Leaving the ``with`` block by an exception ends
  the run as ``failed`` (``interrupted`` for KeyboardInterrupt) with the exception as reason.

Framework use (the same path `agtrace run` takes)::

    with Recorder(store, workdir="repo", agent="my-agent", model="m", task="fix bug") as rec:
        rec.message("assistant", "Looking at the tests")
        call = rec.tool_call("shell", {"cmd": "pytest"}, command="pytest")
        rec.tool_result(call, output="1 failed", exit_code=1)
        rec.usage(input=1200, output=80)
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from agtrace.eventlog import (
    INLINE_LIMIT,
    Event,
    FileChanged,
    HeartbeatSent,
    MessageAdded,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    Redactor,
    Remote,
    RemoteError,
    RemoteShipper,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    Store,
    TestCase,
    TestsRan,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
    run_metrics,
)

from .port import SnapshotPort, SnapshotterFactory
from .snapshot import SnapshotPolicy, Snapshotter


@dataclass(frozen=True)
class ToolCall:
    """A tool call in flight, returned by :meth:`Recorder.tool_call`."""

    call_id: str
    tool: str
    part: int
    command: str
    started_ns: int


@dataclass(frozen=True)
class PartDone:
    """What the live view shows when a part ends."""

    part: int
    kind: str
    title: str
    tool: str
    files: tuple[str, ...]
    tokens: int
    tree_id: str


class Recorder:
    """Records one run into a store. See the module docstring for the contracts."""

    def __init__(
        self,
        store: Store,
        *,
        workdir: str | os.PathLike | None = None,
        agent: str = "",
        agent_version: str = "",
        model: str = "",
        task: str = "",
        task_id: str = "",
        repo: str = "",
        base_commit: str = "",
        command: list[str] | None = None,
        config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        parent_run: str = "",
        attempt: int = 1,
        durability: str = "normal",
        policy: SnapshotPolicy | None = None,
        redactor: Redactor | None = None,
        heartbeat_s: float = 5.0,
        on_part: Callable[[PartDone], None] | None = None,
        remote: Remote | None = None,
        ship_interval_s: float = 10.0,
        bundle_interval_s: float = 60.0,
        snapshotter: SnapshotterFactory | None = None,
    ):
        """Create the run (its ``run_started`` event) and take the base snapshot.

        Snapshots come from ``snapshotter`` (called once with the new run's directory, e.g. a
        sandbox's ``RemoteSnapshotter``), else from a local :class:`Snapshotter` of ``workdir``
        with ``policy``; with neither, parts end without a tree.
        """
        self.store = store
        self.redactor = redactor or Redactor.from_env(os.environ)
        self.on_part = on_part
        self.heartbeat_s = heartbeat_s
        started = RunStarted(
            agent=agent, agent_version=agent_version, model=model, prompt=task, task_id=task_id,
            repo=repo, base_commit=base_commit, workdir=str(os.path.abspath(workdir)) if workdir else "",
            command=list(command or []), config=config or {}, tags=tags or {}, parent_run=parent_run,
            attempt=attempt, heartbeat_s=heartbeat_s, source="capture",
        )
        self.writer = store.create_run(self._redact(started), durability=durability)
        self.run_id = self.writer.run_id
        if snapshotter is None and workdir:
            # the framework's agent is this process: a file holding one of its environment's secrets is left out
            policy = (policy or SnapshotPolicy()).with_env_secrets(os.environ)
            snapshotter = functools.partial(Snapshotter, workdir=workdir, policy=policy)
        self.snapshots: SnapshotPort | None = snapshotter(store.run_dir(self.run_id)) if snapshotter else None
        self.parts = 0
        self.ended: RunEnded | None = None
        self._ids = itertools.count(1)
        self._pending_tests: dict[int, list] = {}  # test results waiting for their part's tree
        self._stop = threading.Event()
        if self.snapshots is not None:
            self._append(self.snapshots.take("base"))
        self.warnings: list[str] = []
        self.bundle_interval_s = bundle_interval_s
        self._last_bundle = time.monotonic()
        self.shipper = (
            RemoteShipper.start(store, self.run_id, remote, interval_s=ship_interval_s, roll=self.writer.roll)
            if remote is not None
            else None
        )
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="agtrace-heartbeat")
        self._beat.start()

    def drop_snapshots(self) -> SnapshotPort | None:
        """Stop snapshotting (the snapshotter failed): parts from now on, and the run's end, have
        no tree. Returns the snapshotter, whose earlier snapshots can still be sealed."""
        dropped, self.snapshots = self.snapshots, None
        return dropped

    # -- the low-level path (adapters) -------------------------------------------------------

    def emit(self, event: Event, part: int | None = None, ts: int | None = None) -> None:
        """Store one event; a ``part_ended`` triggers the snapshot and gets its tree id."""
        if isinstance(event, PartEnded) and part is not None:
            self._end_part(event, part)
            return
        if isinstance(event, TestsRan) and not event.tree_id and part is not None and self.snapshots:
            self._pending_tests.setdefault(part, []).append((event, ts or time.time_ns()))
            return
        if isinstance(event, FileChanged) and self.snapshots is not None:
            event = self._relative(event)
        self._append(event, part=part, ts=ts)

    def _relative(self, event: FileChanged) -> FileChanged:
        """Agents report absolute paths (Codex); the event's paths are workdir-relative."""
        root = str(getattr(self.snapshots, "workdir", "") or "")
        fixed = {}
        for name in ("path", "old_path"):
            value = getattr(event, name)
            if root and value and os.path.isabs(value):
                rel = os.path.relpath(os.path.realpath(value), os.path.realpath(root))
                if not rel.startswith(".."):
                    fixed[name] = rel
        return msgspec.structs.replace(event, **fixed) if fixed else event

    def _end_part(self, event: PartEnded, part: int) -> None:
        ended_ns = time.time_ns()
        tree_id = ""
        files: tuple[str, ...] = ()
        if self.snapshots is not None:
            snap = self.snapshots.take(f"part {part}", part_ended_ts=ended_ns)
            self._append(snap, part=part)
            tree_id = snap.tree_id
            files = (*snap.added, *snap.modified, *snap.deleted)
        for test, ts in self._pending_tests.pop(part, []):
            self._append(msgspec.structs.replace(test, tree_id=tree_id), part=part, ts=ts)
        self._append(msgspec.structs.replace(event, tree_id=tree_id), part=part, ts=ended_ns)
        self.parts = max(self.parts, part)
        if (self.shipper is not None and self.snapshots is not None
                and time.monotonic() - self._last_bundle >= self.bundle_interval_s):
            self.snapshots.seal()  # an incremental bundle, for the shipper to pick up
            self._last_bundle = time.monotonic()
        if self.on_part:
            self.on_part(PartDone(part, event.part_kind, event.title, event.tool, files, self.tokens, tree_id))

    @property
    def tokens(self) -> int:
        """Tokens spent so far: the run's ``tokens`` metric, read from the metrics projection
        (what `agtrace metrics` and `ls` report), after handing it every event appended."""
        if self.ended is None:
            self.writer.flush(sync=False)  # the writer folds what it wrote into the projections
        return run_metrics(self.store, self.run_id, sync=False).tokens

    def _append(self, event: Event, part: int | None = None, ts: int | None = None):
        return self.writer.append(self._offload(self._redact(event)), part=part, ts=ts)

    def _offload(self, event: Event) -> Event:
        """Large texts go to the blob store (stored once however often repeated); a prefix stays."""
        field = _BLOBBED.get(type(event))
        if field is None:
            return event
        text_field, blob_field = field
        text = getattr(event, text_field)
        if len(text) * 4 <= INLINE_LIMIT or getattr(event, blob_field):
            return event
        inline, digest, nbytes = self.store.blobs.inline_or_put(text)
        if not digest:
            return event
        extra = {"output_bytes": nbytes} if isinstance(event, ToolReturned) else {}
        return msgspec.structs.replace(event, **{text_field: inline, blob_field: digest}, **extra)

    def _redact(self, event: Event) -> Event:
        """The event with secrets replaced in every text, nested value and bytes field."""
        return self.redactor.redact_event(event)[0]

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.writer.append(HeartbeatSent())
            except Exception:  # noqa: BLE001 - the run ended or the writer closed meanwhile
                return

    # -- the high-level path (frameworks) ----------------------------------------------------

    def _next_part(self) -> int:
        return self.parts + 1

    def message(self, role: str, text: str, *, model: str = "", message_id: str = "") -> int:
        """Record a message as its own part; returns the part number."""
        part = self._next_part()
        self.emit(MessageAdded(role=role, text=text, model=model, message_id=message_id), part)
        self.emit(PartEnded(part_kind="message", title=_title(text)), part)
        return part

    def reasoning(self, text: str) -> int:
        """Record a reasoning block as its own part."""
        part = self._next_part()
        self.emit(ReasoningAdded(text=text), part)
        self.emit(PartEnded(part_kind="reasoning", title=_title(text)), part)
        return part

    def tool_call(self, tool: str, arguments: Any = None, *, command: str = "", call_id: str = "") -> ToolCall:
        """Record a tool call; the part ends with :meth:`tool_result`."""
        part = self._next_part()
        call_id = call_id or f"call_{next(self._ids)}"
        self.emit(ToolCalled(call_id=call_id, tool=tool, arguments=arguments, command=command), part)
        return ToolCall(call_id, tool, part, command, time.monotonic_ns())

    def tool_result(self, call: ToolCall, output: str = "", *, exit_code: int | None = None,
                    status: str = "ok", error: str = "") -> int:
        """Record a tool call's result and end its part (snapshot included)."""
        inline, blob, nbytes = self.store.blobs.inline_or_put(self._redact_text(output))
        nbytes = nbytes or len(output.encode())
        duration = (time.monotonic_ns() - call.started_ns) / 1e6
        self.emit(ToolReturned(call_id=call.call_id, tool=call.tool, status=status, output=inline,
                               output_blob=blob, output_bytes=nbytes, exit_code=exit_code,
                               duration_ms=round(duration, 3), error=error), call.part)
        title = f"{call.tool} {call.command}".strip()
        self.emit(PartEnded(part_kind="tool", title=_title(title), tool=call.tool, call_id=call.call_id), call.part)
        return call.part

    def test_result(self, *, suite: str = "", passed: int = 0, failed: int = 0, errors: int = 0,
                    skipped: int = 0, total: int | None = None, tests: list[TestCase] | None = None,
                    command: str = "", exit_code: int | None = None, call_id: str = "") -> None:
        """Record a test result on the current tree (the last snapshot's)."""
        tree = self.snapshots.tree_id if self.snapshots else ""
        self.emit(TestsRan(suite=suite, passed=passed, failed=failed, errors=errors, skipped=skipped,
                           total=total if total is not None else passed + failed + errors + skipped,
                           tests=tests or [], tree_id=tree or "", command=command, exit_code=exit_code,
                           call_id=call_id), self.parts or None)

    def usage(self, *, input: int = 0, output: int = 0, cache_read: int = 0, cache_write: int = 0,
              reasoning: int = 0, model: str = "", cost_usd: float | None = None) -> None:
        """Record tokens spent since the last report (a delta, never a running total)."""
        u = Usage(input=input, output=output, cache_read=cache_read, cache_write=cache_write, reasoning=reasoning)
        self.emit(UsageReported(usage=u, model=model, cost_usd=cost_usd), self.parts or None)

    def _redact_text(self, text: str) -> str:
        return self.redactor.redact(text)[0] if text else text

    # -- ending ------------------------------------------------------------------------------

    def end(self, status: str, reason: str = "", *, exit_code: int | None = None, signal: int | None = None) -> RunEnded:
        """Final snapshot, ``run_ended``, close the log, seal the bundle. Idempotent."""
        if self.ended is not None:
            return self.ended
        self._stop.set()
        if self.snapshots is not None:
            snap = self.snapshots.take("final", final=True)
            self._append(snap, part=self.parts or None)
            for part, tests in sorted(self._pending_tests.items()):  # parts that never ended
                for test, ts in tests:
                    self._append(msgspec.structs.replace(test, tree_id=snap.tree_id), part=part, ts=ts)
        reason = self._redact_text(reason)
        ended = RunEnded(status=status, reason=reason, exit_code=exit_code, signal=signal,
                         redactions=self.redactor.count)
        self.writer.append(ended)
        self.store.close_writer(self.writer)
        if self.snapshots is not None:
            self.snapshots.seal()
        if self.shipper is not None:
            try:
                self.shipper.stop(final=True)
            except RemoteError as exc:
                self.warnings.append(f"the final push failed ({exc}); run `agtrace push {self.run_id}`")
        self.ended = ended
        return ended

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.ended is not None:
            return
        if exc_type is None:
            self.end("completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("interrupted", "interrupted by the user")
        else:
            self.end("failed", f"{exc_type.__name__}: {exc}")


_BLOBBED = {
    ToolReturned: ("output", "output_blob"),
    RawRecorded: ("text", "blob"),
    MessageAdded: ("text", "text_blob"),
}


def _title(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


__all__ = ["PartDone", "Recorder", "SnapshotTaken", "ToolCall"]
