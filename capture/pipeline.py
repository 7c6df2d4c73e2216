"""The one capture loop: feed the adapter, freeze and snapshot, tick, enforce limits, end the run.

:func:`run_capture` is the only place where an agent's output becomes a run; ``run_agent``
(a local process) and ``run_agent_in_sandbox`` (a process in a sandbox) only build its two
ports (:mod:`agtrace.capture.port`) and call it. Contracts, the same on every backend:

* Every stdout line is stored verbatim (byte for byte: in ``data`` when it is not UTF-8, its
  ``text`` then showing U+FFFD; redacted: a line is redacted before the adapter sees it,
  private keys over several lines included, and its raw record counts what it lost) as it arrives: a ``raw_recorded`` event for
  structured adapters (Codex, Claude Code, OpenCode), a ``line_logged`` event for ``raw`` (with
  the part it was printed in, stored after the end of the part a marker line closes); every
  stderr line as ``line_logged``. Parsed events follow their raw record. A line the adapter
  cannot parse is stored as a raw record with its parse error; capture never stops for bad output.
  A line longer than :data:`~agtrace.capture.process.MAX_LINE_BYTES` is stored in pieces as it
  arrives (``continued``; see :meth:`_Capture._store_line`), so memory stays bounded.
* When a line (or a tick) ends a part, the agent's process group is frozen, the part's
  snapshot is taken and stored, and the group is thawed, also when the snapshot fails; so the
  tree cannot change under the snapshot and later edits cannot leak into it. A backend that
  reads lines itself (``LocalProcess.freeze_on``) freezes the group the moment a raw marker line
  (or a line the adapter's ``may_end_part`` accepts: Codex's ``item.completed``, Claude Code's
  ``assistant``/``user`` records, OpenCode's ``text``/``reasoning``/``tool_use``) is read,
  before the loop gets to it, so the edits a script makes right after printing its
  marker are not in the previous part's snapshot. The freeze is
  guarded by the agent port (a deadline, a supervisor that thaws and stops the agent if this
  process dies); a freeze the deadline ended is stored as an ``error_occurred`` event and
  warned about, since that part's snapshot may include later changes.
* The loop never waits for a line longer than :data:`TICK_S`: the adapter's ``tick`` runs and
  ``timeout``, ``max_parts`` and SIGINT/SIGTERM (or ``interrupt``) are checked while the agent
  is silent too. Any of them stops the agent (the stop signal, SIGKILL after a grace period);
  the run then ends ``timeout``, ``limit`` or ``interrupted``, after a final snapshot.
* Output never holds the capture forever: once the agent (its group's leader) has exited, its
  streams may stay open :data:`DRAIN_S` longer (a background job finishing its output), then
  the rest of its group is stopped; after a stop, reading ends a grace period after the leader
  exited even if a process that left the group still holds the streams (warned about).
* A snapshotter or backend that fails (a sandbox that went away) does not lose what was
  captured: parts from then on end without a tree, the snapshots taken so far are sealed, and
  the run ends ``failed`` with the reason. Otherwise the status comes from evidence
  (``status.py``), with one exit-code convention (negative = killed by that signal).
* Records of types the adapter does not know (a newer agent version) are kept raw, counted and
  reported in :attr:`RunSummary.warnings` (:func:`run_warnings`); they never fail the run.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agtrace.eventlog import ErrorOccurred, LineLogged, PartEnded, RawRecorded, Store, run_metrics

from . import process
from .adapter import Adapter, Emit, unknown_warning
from .adapters import make_adapter
from .errors import AgentNotFound, CaptureError
from .port import AgentPort, Line, SnapshotPort, SnapshotterFactory, split_undecodable
from .recorder import Recorder
from .status import derive_status

TICK_S = 0.2
"""The longest the loop waits for a line before it ticks the adapter and checks the limits."""
DRAIN_S = 10.0
"""How long the agent's streams may stay open after the agent exited before its group is stopped."""
FREEZE_SWITCH_S = 0.0002
"""The interpreter's thread switch interval while a reader freezes the agent at marker lines."""
EXIT_POLL_S = 1.0
"""While the streams are open and silent, how often the loop asks whether the agent exited."""


@dataclass
class RunSummary:
    """What `agtrace run --json` prints at the end."""

    run_id: str
    status: str
    reason: str
    exit_code: int | None
    parts: int
    tokens: int
    duration_s: float | None
    """The run's ``duration_s`` of the metrics (``ended_at - started_at``), as ``metrics`` and ``ls`` show it."""
    redactions: int
    agent: str
    model: str
    agent_version: str
    bundle: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_capture(
    store: Store,
    process: AgentPort,
    adapter: Adapter,
    *,
    snapshotter: SnapshotterFactory | None = None,
    max_parts: int | None = None,
    timeout: float | None = None,
    interrupt: threading.Event | None = None,
    config: dict[str, Any] | None = None,
    on_start: Callable[[str], None] | None = None,
    on_line: Callable[[str, str], None] | None = None,
    **recorder_options: Any,
) -> RunSummary:
    """Start ``process``, capture it as a new run in ``store`` and return the run's summary.

    ``recorder_options`` go to :class:`Recorder` (agent, model, task, workdir, …); ``config``
    is recorded in ``run_started`` next to the limits and the adapter's name. ``interrupt``,
    when set, stops the agent like SIGINT does (the signal handlers are installed only when
    this runs in the main thread). Raises ``AgentNotFound`` (or ``SandboxError``) when the
    agent cannot start; the run then ends ``failed`` with that reason.
    """
    guarded = (lambda run_dir: _GuardedSnapshots(snapshotter(run_dir))) if snapshotter else None
    recorder = Recorder(
        store, snapshotter=guarded,
        config={"max_parts": max_parts, "timeout": timeout, "adapter": adapter.name, **(config or {})},
        **recorder_options,
    )
    if on_start:
        on_start(recorder.run_id)
    # a raw marker line, or a line a structured adapter says may end a part (Codex: item.completed)
    ends_part = getattr(adapter, "starts_part", None) or getattr(adapter, "may_end_part", None)
    if ends_part is not None and hasattr(process, "freeze_on") and recorder.snapshots is not None:
        process.freeze_on = ends_part  # freeze at the line's arrival, not when the loop gets to it
    switch = sys.getswitchinterval()
    if getattr(process, "freeze_on", None) is not None:  # the reader gets the GIL within this, not 5 ms
        sys.setswitchinterval(min(switch, FREEZE_SWITCH_S))
    interrupt = interrupt or threading.Event()
    loop = _Capture(recorder, adapter, process, max_parts, timeout, interrupt, on_line)
    previous = _install_signals(interrupt)
    try:
        try:
            process.start()
        except CaptureError as exc:
            recorder.end("failed", str(exc))
            hint = "; check the command after `--`" if isinstance(exc, AgentNotFound) else ""
            raise type(exc)(f"{exc}{hint} (run {recorder.run_id} records the failure)") from None
        ended = loop.run()
    finally:
        _release(process)
        _restore_signals(previous)
        sys.setswitchinterval(switch)
    bundles = sorted((store.run_dir(recorder.run_id) / "bundles").glob("*.bundle"))
    agent = recorder_options.get("agent", "")
    return RunSummary(
        run_id=recorder.run_id, status=ended.status, reason=ended.reason, exit_code=ended.exit_code,
        parts=recorder.parts, tokens=recorder.tokens, duration_s=run_metrics(store, recorder.run_id).duration_s,
        redactions=ended.redactions, agent=agent,
        model=store.info(recorder.run_id).model or adapter.state.model or recorder_options.get("model", ""),
        agent_version=adapter.state.agent_version or recorder_options.get("agent_version", ""),
        bundle=str(bundles[-1]) if bundles else None, warnings=run_warnings(recorder, adapter),
    )


def _release(process: AgentPort) -> None:
    try:
        process.close()
    except Exception:  # noqa: BLE001 - the backend is gone, and with it the agent
        pass


def run_warnings(recorder: Recorder, adapter: Adapter) -> list[str]:
    """What the end of a capture warns about: the recorder's problems, then unknown records."""
    unknown = unknown_warning(getattr(adapter.state, "unknown", {}), f"{adapter.name} adapter")
    return [*recorder.warnings, *getattr(adapter.state, "warnings", []), *([unknown] if unknown else [])]


def adapter_for(agent: str, options: dict | None = None) -> Adapter:
    """A new adapter for agent output format ``agent``; :class:`CaptureError` if there is none."""
    try:
        return make_adapter(agent, **(options or {}))
    except KeyError as exc:
        raise CaptureError(str(exc.args[0])) from None


class _SnapshotFailed(Exception):
    """A snapshot could not be taken (carries the snapshotter's own exception as ``cause``)."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class _GuardedSnapshots:
    """The run's snapshotter, with its failures told apart from every other error."""

    def __init__(self, inner: SnapshotPort):
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def take(self, label: str, **kwargs):
        try:
            return self.inner.take(label, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the snapshotter is handled alike
            raise _SnapshotFailed(exc) from exc

    def seal(self):
        return self.inner.seal()


class _Capture:
    """The state of one capture loop (see the module docstring for what it guarantees)."""

    def __init__(self, recorder: Recorder, adapter: Adapter, process: AgentPort, max_parts: int | None,
                 timeout: float | None, interrupt: threading.Event, on_line):
        self.recorder, self.adapter, self.process = recorder, adapter, process
        self.max_parts, self.timeout, self.interrupt, self.on_line = max_parts, timeout, interrupt, on_line
        self.deadline = None
        self.stop_reason = ""
        self.failure = ""
        self.dropped: SnapshotPort | None = None
        self.line_no = {"stdout": 0, "stderr": 0}
        self.piece = {"stdout": 0, "stderr": 0}
        """Per stream: how many pieces of a long line (:attr:`Line.continued`) came before this."""
        self.exited_at: float | None = None
        self.stopped_at: float | None = None
        self.next_exit_poll = 0.0

    def run(self):
        """Capture until the agent exits; end the run; return its ``run_ended`` event."""
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
        unsupervised = getattr(self.process, "unsupervised", "")
        if unsupervised:
            self.recorder.warnings.append(f"{unsupervised}; if this process dies while the agent is frozen, "
                                          "continue it with `kill -CONT -- -<pgid>`")
        exit_code = None
        try:
            try:
                self._read_until_closed()
                exit_code = self._wait_for_exit()
            except CaptureError as exc:  # the backend went away: keep what was captured
                self._lose(exc, "")
                self._stop_quietly()
            self._store(self.adapter.finish(), freeze=False)
            return self._end(exit_code)
        except BaseException as exc:
            self._stop_quietly()
            self._end_quietly(exc)
            raise

    # -- reading -----------------------------------------------------------------------------

    def _read_until_closed(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while True:
            self._check_limits()
            line = self.process.read(self._wait_s(next_tick))
            now = time.monotonic()
            if line is not None:
                self._store_line(line)
            elif self.process.done:
                return
            if self._streams_held(now):
                return
            if now >= next_tick:
                self._store(self.adapter.tick(now))
                next_tick = now + TICK_S

    def _streams_held(self, now: float) -> bool:
        """Whether to stop reading: the agent exited long ago and something else holds its
        streams (see the module docstring). Asks the backend at most every :data:`EXIT_POLL_S`."""
        if self.exited_at is None:
            if now < self.next_exit_poll:
                return False
            self.next_exit_poll = now + EXIT_POLL_S
            if self.process.poll() is None:
                return False
            self.exited_at = now
        if self.stopped_at is None:
            if now - self.exited_at < DRAIN_S:
                return False
            self.stopped_at = now
            self.process.stop()
        grace = getattr(self.process, "grace_s", 5.0)
        if now - max(self.exited_at, self.stopped_at) < grace + EXIT_POLL_S:
            return False
        self.recorder.warnings.append(
            f"the agent exited but its output stayed open {now - self.exited_at:.0f} s longer (held by a "
            "process it left behind); agtrace stopped its process group and stopped reading")
        return True

    def _wait_for_exit(self) -> int:
        """The streams are closed; the agent may still run (it closed them itself)."""
        while (code := self.process.wait(self._wait_s(time.monotonic() + TICK_S))) is None:
            self._check_limits()
        return code

    def _wait_s(self, next_tick: float) -> float:
        until = next_tick if self.deadline is None or self.stop_reason else min(next_tick, self.deadline)
        return max(0.0, until - time.monotonic())

    def _check_limits(self) -> None:
        if self.stop_reason:
            return
        if self.interrupt.is_set():
            self.stop_reason = "interrupted"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop_reason = "timeout"
        elif self.max_parts is not None and self.recorder.parts >= self.max_parts:
            self.stop_reason = "limit"
        if self.stop_reason:
            self.stopped_at = time.monotonic()
            self.process.stop()

    # -- storing -----------------------------------------------------------------------------

    def _store_line(self, line: Line) -> None:
        """Redact the line (with its stream's state: a private key spans lines) before the
        adapter, the live view or the log see it; its raw record says how many it lost. A line
        that is not valid UTF-8 is redacted as it came (its bad bytes as lone surrogates), then
        every text consumer sees it with U+FFFD for them, and its record keeps the exact bytes
        in ``data``.

        A line longer than the reader's piece size comes in pieces (:attr:`Line.continued`),
        each stored as it comes with ``continued`` on all but the last, so memory stays bounded:
        the raw adapter sees the first piece as the line (its marker or title), a structured
        adapter none of them (a JSON record can only be parsed whole): they are kept as raw
        records, with a parse error saying why."""
        stream = line.stream
        piece = self.piece[stream]
        if not piece:
            self.line_no[stream] += 1
        self.piece[stream] = piece + 1 if line.continued else 0
        text, n = self.recorder.redactor.redact_line(line.text, stream)
        redactions = n or int(text != line.text)  # a key's body line: the block was counted once
        text, data = split_undecodable(text)  # bytes that are not UTF-8: kept in data
        if text != line.text:
            line = Line(stream, text, line.ts, line.frozen, line.continued, data)
        if self.on_line:
            self.on_line(stream, line.text)
        long_line = bool(piece) or line.continued
        if piece or (long_line and self.adapter.name != "raw" and stream == "stdout"):
            self._store([], line=line, redactions=redactions, long_line=long_line)
        else:
            self._store(self.adapter.feed(line.text, stream), line=line, redactions=redactions)
        if long_line:  # written out now: the writer's buffer is bounded by time, not by size
            self.recorder.writer.flush(sync=False)

    def _store(self, emits: Iterable[Emit], *, line: Line | None = None, freeze: bool = True,
               redactions: int = 0, long_line: bool = False) -> None:
        """Store a line's verbatim record and what the adapter made of it (or a tick's emits);
        a part that ends among them is snapshotted with the agent frozen."""
        emits = list(emits)
        frozen = freeze and self.recorder.snapshots is not None and any(
            isinstance(e.event, PartEnded) for e in emits)
        prefrozen = line is not None and line.frozen is not None  # the reader froze it at this line
        ticket = line.frozen if prefrozen else None  # the hold this line owns, to thaw
        if frozen or prefrozen:
            early = line.frozen if prefrozen else getattr(self.process, "deadline_thaws", 0)
        if frozen and (ticket is None or ticket != getattr(self.process, "deadline_thaws", 0)):
            try:  # not frozen for this line, or the deadline ended the reader's freeze: freeze now
                ticket = self.process.freeze()
            except CaptureError as exc:
                self._lose(exc, "")
        try:
            raw = self.adapter.name == "raw"
            if line is not None and not raw:
                self._store_verbatim(line, emits, redactions, long_line)
            ts = line.ts if line is not None else None
            for emit in emits:
                self._emit(emit, ts)
            if line is not None and raw:  # after the part it ended: the line belongs to the next
                self._store_verbatim(line, emits, redactions, long_line)
        finally:
            if ticket is not None:
                try:
                    self.process.thaw(ticket)
                except CaptureError as exc:
                    self._lose(exc, "")
            if frozen and getattr(self.process, "deadline_thaws", 0) > early:
                self._deadline_passed(emits)

    def _deadline_passed(self, emits: list[Emit]) -> None:
        part = next((e.part for e in emits if isinstance(e.event, PartEnded)), None)
        deadline = getattr(self.process, "freeze_deadline_s", 0)
        message = (f"the snapshot of part {part} took longer than the freeze deadline ({deadline:g} s): the agent "
                   "was thawed before it ended, so it may include changes made after the part")
        self.recorder.warnings.append(message)
        self.recorder.emit(ErrorOccurred(message=message, origin="capture"), part)

    def _store_verbatim(self, line: Line, emits: list[Emit], redactions: int, long_line: bool = False) -> None:
        logged = LineLogged(stream=line.stream, text=line.text, data=line.data, redactions=redactions,
                            continued=line.continued)
        if self.adapter.name == "raw":  # in the part it was printed in
            self.recorder.emit(logged, getattr(self.adapter, "line_part", None), ts=line.ts)
        elif line.stream == "stderr":
            self.recorder.emit(logged, ts=line.ts)
        elif not any(isinstance(e.event, RawRecorded) for e in emits):
            problem = (f"a line longer than {process.MAX_LINE_BYTES} bytes, kept in pieces and not parsed"
                       if long_line else "")
            self.recorder.emit(RawRecorded(source=self.adapter.name, text=line.text, data=line.data,
                                           redactions=redactions,
                                           location=f"stdout:{self.line_no['stdout']}", parse_error=problem,
                                           continued=line.continued), ts=line.ts)
        for i, emit in enumerate(emits):
            if isinstance(emit.event, RawRecorded) and not emit.event.location:
                location = f"{line.stream}:{self.line_no[line.stream]}"
                raw = msgspec.structs.replace(emit.event, location=location, data=emit.event.data or line.data,
                                              redactions=emit.event.redactions + redactions)
                emits[i] = Emit(raw, emit.part, emit.ts)

    def _emit(self, emit: Emit, ts: int | None) -> None:
        try:
            self.recorder.emit(emit.event, emit.part, emit.ts or ts)
        except _SnapshotFailed as exc:  # nothing of this part's end was stored: store it without a tree
            self._lose(exc.cause, "a snapshot failed")
            self.recorder.emit(emit.event, emit.part, emit.ts or ts)

    def _lose(self, exc: BaseException, what: str) -> None:
        """Snapshots are no longer possible: parts end without a tree, the run will end failed."""
        if not self.failure:
            detail = str(exc) if isinstance(exc, CaptureError) else f"{type(exc).__name__}: {exc}"
            self.failure = f"{what}: {detail}" if what else detail
        dropped = self.recorder.drop_snapshots()
        if dropped is not None:
            self.dropped = dropped

    # -- ending ------------------------------------------------------------------------------

    def _end(self, exit_code: int | None):
        sig = -exit_code if exit_code is not None and exit_code < 0 else None
        if not self.failure:
            status, reason = derive_status(
                exit_code=exit_code, stop_reason=self.stop_reason, state=self.adapter.state,
                parts=self.recorder.parts, max_parts=self.max_parts, timeout=self.timeout,
                structured=self.adapter.name != "raw",
            )
            try:
                return self.recorder.end(status, reason, exit_code=exit_code, signal=sig)
            except _SnapshotFailed as exc:  # the final snapshot failed before anything was appended
                self._lose(exc.cause, "the final snapshot failed")
        ended = self.recorder.end("failed", self.failure, exit_code=exit_code, signal=sig)
        if self.dropped is not None:
            self.dropped.seal()  # the snapshots taken before the loss
        return ended

    def _stop_quietly(self) -> None:
        try:
            self.process.stop()
        except Exception:  # noqa: BLE001 - the backend is gone, and with it the agent
            pass

    def _end_quietly(self, exc: BaseException) -> None:
        """An unexpected error (a bug, a full disk): end the run if the log still takes it."""
        try:
            self.recorder.drop_snapshots()
            self.recorder.end("failed", f"the capture failed: {type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass


def _install_signals(flag: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        flag.set()

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous) -> None:
    if previous:
        for s, h in previous.items():
            signal.signal(s, h)
