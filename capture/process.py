"""The agent process port's shared machinery, and its local adapter.

* :func:`read_pieces`: the lines of a pipe, a line longer than :data:`MAX_LINE_BYTES` in pieces.
* :class:`LineQueue`: lines of both streams, in arrival order, read with a bounded wait and a
  bounded backlog.
* :class:`ProcessGroup`: freeze/thaw/stop of an agent's process group, written once over a few
  primitives (signal the group, does it exist, start a supervisor beside it), so that both the
  local process and the process in a sandbox freeze, thaw and stop the same way. The freeze is
  guarded here and nowhere else: a deadline, a confirming SIGCONT, and a supervisor process
  (:mod:`agtrace.capture.supervisor`) that thaws and stops the agent when the capture dies.
* :class:`LocalProcess`: the agent as a local process in its own session (so its own process
  group), stdin from ``/dev/null``, stdout and stderr read by two threads.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence

from .errors import AgentNotFound
from .port import Line, decode_verbatim
from .supervisor import Channel, Supervisor, supervisor_argv

GRACE_S = 5.0
"""How long a stopped agent has between the stop signal and SIGKILL."""
FREEZE_DEADLINE_S = 60.0
"""The longest the agent stays frozen for one snapshot; then it is thawed whatever the snapshot."""
CONFIRM_S = 0.05
"""How long after a thaw the group gets its confirming SIGCONT (see :class:`ProcessGroup`)."""
SUPERVISOR_SLACK_S = 2.0
"""The supervisor's own deadline is this much later: it is the backstop of the capture's."""
MAX_LINE_BYTES = 8 * 1024 * 1024
"""The most of one line the capture holds (8 MiB): a longer line (an agent that ``cat``s a
binary) is read and stored in pieces of at most this many bytes (:func:`read_pieces`), so that
memory stays bounded whatever the agent prints. Read when a reader starts."""
CUT_WINDOW_BYTES = 64 * 1024
"""A piece ends after the last whitespace within this many bytes of its end, when there is one,
so that a word (a secret the redactor must see whole) is rarely cut in two."""
BACKLOG_PIECES = 4
"""A reader waits while the lines queued for the capture hold more than this many times
:data:`MAX_LINE_BYTES` (the agent then blocks on its full pipe, as it would on a slow terminal)."""


def read_pieces(pipe, cap: int | None = None) -> Iterator[tuple[bytes, bool]]:
    """The lines of a binary ``pipe`` as ``(bytes, continued)``, each without its line end.

    A line of at most ``cap`` bytes (default :data:`MAX_LINE_BYTES`) comes whole with
    ``continued`` False. A longer line comes in pieces of at most ``cap`` bytes: each but the last
    has ``continued`` True and is cut after its last whitespace within :data:`CUT_WINDOW_BYTES` of
    its end, else never inside a UTF-8 character; together they are the line's bytes exactly. At
    most ``cap`` bytes (plus a cut-off tail of at most :data:`CUT_WINDOW_BYTES`) are held at once.
    """
    cap = max(2 * 4, cap or MAX_LINE_BYTES)
    carry = b""
    while True:
        raw = pipe.readline(cap - len(carry))
        if carry:
            raw, carry = carry + raw, b""
        if not raw:
            return
        if raw.endswith(b"\n") or len(raw) < cap:  # a whole line (or the last, unterminated one)
            yield without_line_end(raw), False
            continue
        cut = _cut(raw, window=min(CUT_WINDOW_BYTES, cap // 2))
        carry = raw[cut:]
        yield raw[:cut], True


def without_line_end(line):
    """``line`` (bytes or str) without its one line end, ``\\n`` or ``\\r\\n`` (other CRs are output)."""
    nl, cr = ("\n", "\r") if isinstance(line, str) else (b"\n", b"\r")
    if line.endswith(nl):
        line = line[:-1]
        if line.endswith(cr):
            line = line[:-1]
    return line


def _cut(raw: bytes, window: int) -> int:
    """Where to end a piece of ``raw`` (see :func:`read_pieces`)."""
    low = len(raw) - window
    space = max(raw.rfind(b" ", low), raw.rfind(b"\t", low), raw.rfind(b"\r", low))
    if space >= 0:
        return space + 1
    for back in range(1, 4):  # never inside a UTF-8 sequence
        byte = raw[-back]
        if byte & 0xC0 == 0x80:
            continue
        if byte >= 0xC0 and (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) > back:
            return len(raw) - back
        break
    return len(raw)


class LineQueue:
    """Lines from several producer threads, read by one consumer with a bounded wait.

    Each stream is closed once (:meth:`close`); :attr:`done` is true when every stream is closed
    and every line was read. A producer that fails closes its stream with the error, which
    :meth:`get` raises (after the lines that came before it). The backlog is bounded: :meth:`put`
    waits while the lines not yet read hold more than :data:`BACKLOG_PIECES` times
    :data:`MAX_LINE_BYTES` characters, until the consumer reads or :meth:`abandon` is called.
    """

    def __init__(self, streams: Sequence[str] = ("stdout", "stderr")):
        self._q: queue.Queue = queue.Queue()
        self._open = len(streams)
        self.error: BaseException | None = None
        self._backlog = 0
        self._limit = BACKLOG_PIECES * MAX_LINE_BYTES
        self._room = threading.Condition()
        self._abandoned = False

    def put(self, stream: str, text: str, ts: int | None = None, frozen: int | None = None,
            continued: bool = False) -> None:
        with self._room:
            while self._backlog > self._limit and not self._abandoned:
                self._room.wait()
            self._backlog += len(text)
        self._q.put(Line(stream, text, ts if ts is not None else time.time_ns(), frozen, continued))

    def abandon(self) -> None:
        """The consumer reads no more: producers never wait again (what they put is dropped
        with the queue)."""
        with self._room:
            self._abandoned = True
            self._room.notify_all()

    def close(self, stream: str, error: BaseException | None = None) -> None:
        self._q.put((stream, error))

    @property
    def done(self) -> bool:
        return self._open == 0 and self._q.empty()

    def get(self, timeout: float) -> Line | None:
        """The next line, or None when none came within ``timeout`` s (or all streams ended)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self._open:
            try:
                item = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if isinstance(item, Line):
                with self._room:
                    self._backlog -= len(item.text)
                    self._room.notify_all()
                return item
            self._open -= 1
            if item[1] is not None and self.error is None:
                self.error = item[1]
                raise item[1]
        return None


class ProcessGroup:
    """Freeze, thaw and stop an agent's process group, guarded; subclasses provide the backend's
    primitives (:meth:`signal_group`, :meth:`group_exists`, :meth:`poll`, and optionally
    :meth:`spawn_supervisor`) and the rest of :class:`~agtrace.capture.port.AgentPort`.

    The guard, for every backend alike:

    * **Deadline**: a freeze lasts at most :attr:`freeze_deadline_s`; then a guard thread thaws
      the group itself and counts it in :attr:`deadline_thaws` (the snapshot being taken may then
      see changes made after the part ended).
    * **Confirmation**: :data:`CONFIRM_S` after each thaw the group gets a second SIGCONT (unless
      it was frozen again meanwhile). A process the agent was forking while the SIGSTOP and the
      SIGCONT went out can get both signals queued and act on the SIGSTOP last (Linux delivers
      group signals to a child being forked); it would stay stopped, its parent would wait for it
      forever, and so would the capture. A lone SIGCONT has no such race.
    * **Supervisor** (:mod:`agtrace.capture.supervisor`): started by the subclass once the agent
      runs; told of every freeze and thaw; if the capture process dies it continues the group,
      sends :attr:`stop_signal` and SIGKILLs what is left after the grace period.
    * **Stop**: :meth:`stop` sends :attr:`stop_signal` and SIGCONT, then SIGKILL after
      :attr:`grace_s` if *any* process of the group is left (not only while the leader lives:
      a child that ignores the signal would otherwise keep the output open forever).

    Signals are sent with the lock held, so a late thaw can never continue a later freeze.
    """

    grace_s = GRACE_S

    def __init__(self, *, stop_signal: int = signal.SIGTERM, freeze_deadline_s: float = FREEZE_DEADLINE_S,
                 streams: Sequence[str] = ("stdout", "stderr")):
        self.lines = LineQueue(streams)
        """The agent's lines, put by the backend's reader threads."""
        self.frozen = False
        self._holds = 0  # freezes not yet thawed (see freeze)
        self.stopping = False
        self.stop_signal = signal.Signals(stop_signal)
        self.freeze_deadline_s = freeze_deadline_s
        self.deadline_thaws = 0
        """How many freezes the deadline ended (the capture warns about them)."""
        self.supervisor: Supervisor | None = None
        self._cv = threading.Condition()
        self._thaw_by = 0.0
        self._confirm_at: float | None = None
        self._lease_s = 0.0
        self._keep_alive_at: float | None = None
        self._guard: threading.Thread | None = None
        self._closed = False

    # -- the backend's primitives ----------------------------------------------------------------

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of the agent's group; no error if it is gone."""
        raise NotImplementedError

    def group_exists(self) -> bool:
        """Whether any process of the agent's group is left (an unreaped leader counts)."""
        raise NotImplementedError

    def poll(self) -> int | None:
        raise NotImplementedError

    def spawn_supervisor(self, argv: list[str]) -> Channel | None:
        """Start ``argv`` where the agent runs, in its own session, with a pipe to its stdin;
        return that pipe's write end, or None when the backend cannot."""
        return None

    def alive(self) -> bool:
        """Whether the agent may still run (a backend where asking is costly may guess True)."""
        return self.poll() is None

    def read(self, timeout: float) -> Line | None:
        return self.lines.get(timeout)

    @property
    def done(self) -> bool:
        return self.lines.done

    # -- the guarded pair ------------------------------------------------------------------------

    def supervise(self, group: str, *, lease_s: float = 0.0) -> str:
        """Start the supervisor for ``group`` (a group id or ``@FILE``); called by subclasses once
        the agent runs. Returns "" or why the agent runs unsupervised (the capture warns)."""
        argv = supervisor_argv(group, deadline_s=self.freeze_deadline_s + SUPERVISOR_SLACK_S, grace_s=self.grace_s,
                               stop_signal=self.stop_signal.name.removeprefix("SIG"), lease_s=lease_s)
        try:
            channel = self.spawn_supervisor(argv)
        except Exception as exc:  # noqa: BLE001 - without a supervisor the capture still works
            return f"no supervisor could be started ({type(exc).__name__}: {exc})"
        if channel is None:
            return "no supervisor could be started (is bash installed?)"
        self.supervisor = Supervisor(channel)
        if lease_s > 0:
            with self._cv:
                self._lease_s = lease_s
                self._keep_alive_at = time.monotonic() + lease_s / 4
                self._ensure_guard()
        return ""

    def freeze(self) -> int | None:
        """SIGSTOP the group (while a snapshot is taken), unless the agent exited or is stopping;
        returns the hold's ticket for :meth:`thaw` (None: no hold was taken).

        A freeze while frozen is one more hold (a second marker line read before the first's
        snapshot was taken): the group stays stopped until every hold was thawed, so the agent
        cannot run between two parts whose markers it printed together. Each hold gives the
        deadline its full length again. The ticket is :attr:`deadline_thaws` at the hold: a
        deadline thaw ends every hold, and a thaw with an older ticket then does nothing."""
        with self._cv:
            if self.stopping or not self.alive():
                return None
            self._thaw_by = time.monotonic() + self.freeze_deadline_s
            if self.frozen:
                self._holds += 1
                return self.deadline_thaws
            self.frozen = True
            self._holds = 1
            self._confirm_at = None
            if self.supervisor is not None:
                self.supervisor.frozen()  # first: should the capture die now, the group is continued
            self.signal_group(signal.SIGSTOP)
            self._ensure_guard()
            self._cv.notify()
            return self.deadline_thaws

    def thaw(self, ticket: int | None = None) -> None:
        """Release one hold (``ticket``: what :meth:`freeze` returned; None: any) and SIGCONT
        the group once none is left (and again :data:`CONFIRM_S` later); a no-op when the group
        is not frozen or the deadline ended that hold already."""
        with self._cv:
            if not self.frozen or (ticket is not None and ticket != self.deadline_thaws):
                return
            self._holds -= 1
            if self._holds > 0:
                return
            self._continue()

    def _continue(self) -> None:
        self.frozen = False
        self._holds = 0
        try:
            self.signal_group(signal.SIGCONT)
        finally:
            self._confirm_at = time.monotonic() + CONFIRM_S
            if self.supervisor is not None:
                self.supervisor.thawed()
            self._cv.notify()

    def stop(self) -> None:
        """Send the stop signal (and SIGCONT) to the group now, SIGKILL after :attr:`grace_s` if
        any of it is left (in the background)."""
        with self._cv:
            if self.stopping:
                return
            self.stopping = True
            self.frozen = False
            self._holds = 0
            self._confirm_at = None
            self.signal_group(self.stop_signal)
            self.signal_group(signal.SIGCONT)
        threading.Thread(target=self._kill_later, daemon=True, name="agtrace-kill-later").start()

    def close(self) -> None:
        """The capture is done with the agent. The supervisor leaves quietly, unless a stop is
        under way and the group is still there: then it is handed the stop to finish (its
        SIGKILL after the grace period must not depend on this process living that long)."""
        self.lines.abandon()
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self.supervisor is None:
            return
        try:
            hand_over = self.stopping and self.group_exists()
        except Exception:  # noqa: BLE001 - the backend is gone, and with it the agent
            hand_over = False
        if hand_over:
            self.supervisor.hand_over()
        else:
            self.supervisor.release()

    def _kill_later(self) -> None:
        deadline = time.monotonic() + self.grace_s
        try:
            while time.monotonic() < deadline:
                # poll first: it reaps the leader, so that a zombie does not count as the group
                if self.poll() is not None and not self.group_exists():
                    return
                time.sleep(0.05)
            self.signal_group(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - the backend is gone, and with it the agent
            return

    def _ensure_guard(self) -> None:
        if self._guard is None:
            self._guard = threading.Thread(target=self._guard_loop, daemon=True, name="agtrace-freeze-guard")
            self._guard.start()

    def _guard_loop(self) -> None:
        """The deadline, the confirming SIGCONT and the supervisor's keep-alives (lock held)."""
        with self._cv:
            while not self._closed:
                now = time.monotonic()
                due = []
                if self.frozen:
                    if now >= self._thaw_by:
                        self.deadline_thaws += 1
                        self._quietly(self._continue)
                        continue
                    due.append(self._thaw_by)
                elif self._confirm_at is not None:
                    if now >= self._confirm_at:
                        self._confirm_at = None
                        if not self.stopping:
                            self._quietly(lambda: self.signal_group(signal.SIGCONT))
                        continue
                    due.append(self._confirm_at)
                if self._keep_alive_at is not None and self.supervisor is not None:
                    if now >= self._keep_alive_at:
                        self.supervisor.keep_alive()
                        self._keep_alive_at = now + self._lease_s / 4
                        continue
                    due.append(self._keep_alive_at)
                self._cv.wait(min(due) - now if due else None)

    @staticmethod
    def _quietly(action) -> None:
        try:
            action()
        except Exception:  # noqa: BLE001 - a backend that went away: the loop sees it on its next call
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        """:meth:`poll` until the agent exits or ``timeout`` s passed (then None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return code


def spawn_local_supervisor(argv: list[str]) -> Channel | None:
    """Start the supervisor ``argv`` (:func:`~agtrace.capture.supervisor.supervisor_argv`) on
    this machine, in its own session; its stdin is the channel. None without bash."""
    if shutil.which(argv[0]) is None:
        return None
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    return _PipeChannel(popen)


class _PipeChannel:
    """The supervisor's stdin, as a local pipe."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen

    def write(self, data: bytes) -> None:
        self.popen.stdin.write(data)
        self.popen.stdin.flush()

    def close(self) -> None:
        self.popen.stdin.close()
        threading.Thread(target=self.popen.wait, daemon=True, name="agtrace-supervisor-reaper").start()


class LocalProcess(ProcessGroup):
    """The agent as a local process (see the module docstring)."""

    def __init__(self, command: Sequence[str], *, cwd: str | os.PathLike, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGTERM, freeze_deadline_s: float = FREEZE_DEADLINE_S):
        super().__init__(stop_signal=stop_signal, freeze_deadline_s=freeze_deadline_s)
        self.command = list(command)
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen | None = None
        self.unsupervised = ""
        """Why no supervisor guards the agent ("" when one does)."""
        self.freeze_on = None
        """``freeze_on(text, stream)``: whether a line ends a part (set by the capture before
        :meth:`start`). Such a line freezes the agent the moment it is read, before it is queued,
        so the part's snapshot cannot see what the agent does right after printing it; the
        capture thaws it once that snapshot is taken (:attr:`Line.frozen`)."""
        self._output_seen = False

    def start(self) -> None:
        try:
            self.popen = subprocess.Popen(
                self.command, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self.env, start_new_session=True,
            )
        except OSError as exc:
            raise AgentNotFound(f"could not start {self.command[0]!r}: {exc.strerror}") from None
        for pipe, name in ((self.popen.stdout, "stdout"), (self.popen.stderr, "stderr")):
            threading.Thread(target=self._pump, args=(pipe, name), daemon=True, name=f"agtrace-{name}").start()
        self.unsupervised = self.supervise(str(self.popen.pid))

    def spawn_supervisor(self, argv: list[str]) -> Channel | None:
        return spawn_local_supervisor(argv)

    def _pump(self, pipe, stream: str) -> None:
        """Queue the lines of one stream (a long line in pieces: :func:`read_pieces`); a whole
        line that ends a part freezes the agent first (:attr:`freeze_on`)."""
        try:
            inside = False  # the previous piece was continued: this one is not a line's start
            for raw, continued in read_pieces(pipe):
                text = decode_verbatim(raw)
                frozen = None
                if (not inside and not continued and self.freeze_on is not None and self._output_seen
                        and self.freeze_on(text, stream)):
                    frozen = self.freeze()
                self._output_seen = self._output_seen or bool(text.strip())
                self.lines.put(stream, text, frozen=frozen, continued=continued)
                inside = continued
        finally:
            self.lines.close(stream)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def group_exists(self) -> bool:
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
