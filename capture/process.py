"""The agent process port's shared machinery, and its local adapter.

* :class:`LineQueue`: lines of both streams, in arrival order, read with a bounded wait.
* :class:`ProcessGroup`: freeze/thaw/stop of an agent's process group, written once over one
  primitive (send a signal to the group), so that both the local process and the process in a
  sandbox freeze, thaw and stop the same way. The freeze is guarded here and nowhere else: a
  later supervisor or freeze deadline belongs in :meth:`ProcessGroup.freeze`/``thaw``.
* :class:`LocalProcess`: the agent as a local process in its own session (so its own process
  group), stdin from ``/dev/null``, stdout and stderr read by two threads.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from .errors import AgentNotFound
from .port import Line

GRACE_S = 5.0
"""How long a stopped agent has between SIGTERM and SIGKILL."""


class LineQueue:
    """Lines from several producer threads, read by one consumer with a bounded wait.

    Each stream is closed once (:meth:`close`); :attr:`done` is true when every stream is closed
    and every line was read. A producer that fails closes its stream with the error, which
    :meth:`get` raises (after the lines that came before it).
    """

    def __init__(self, streams: Sequence[str] = ("stdout", "stderr")):
        self._q: queue.Queue = queue.Queue()
        self._open = len(streams)
        self.error: BaseException | None = None

    def put(self, stream: str, text: str, ts: int | None = None) -> None:
        self._q.put(Line(stream, text, ts if ts is not None else time.time_ns()))

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
                return item
            self._open -= 1
            if item[1] is not None and self.error is None:
                self.error = item[1]
                raise item[1]
        return None


class ProcessGroup:
    """Freeze, thaw and stop an agent's process group; subclasses provide :meth:`signal_group`
    and :meth:`poll` (and the rest of :class:`~agtrace.capture.port.AgentPort`). See :class:`~agtrace.capture.port.AgentPort` for the contracts.
    """

    grace_s = GRACE_S

    def __init__(self) -> None:
        self.frozen = False
        self.stopping = False
        self._mu = threading.Lock()

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to every process of the agent's group; no error if it is gone."""
        raise NotImplementedError

    def poll(self) -> int | None:
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether the agent may still run (a backend where asking is costly may guess True)."""
        return self.poll() is None

    def freeze(self) -> None:
        """SIGSTOP the group (while a snapshot is taken), unless the agent exited or is stopping."""
        with self._mu:
            if self.frozen or self.stopping or not self.alive():
                return
            self.frozen = True
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the group if :meth:`freeze` stopped it; idempotent."""
        with self._mu:
            if not self.frozen:
                return
            self.frozen = False
        self.signal_group(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (and SIGCONT) the group now, SIGKILL after :attr:`grace_s` (in the background)."""
        with self._mu:
            if self.stopping:
                return
            self.stopping = True
            self.frozen = False
        self.signal_group(signal.SIGTERM)
        self.signal_group(signal.SIGCONT)
        threading.Thread(target=self._kill_later, daemon=True, name="agtrace-kill-later").start()

    def _kill_later(self) -> None:
        deadline = time.monotonic() + self.grace_s
        try:
            while self.poll() is None:
                if time.monotonic() >= deadline:
                    self.signal_group(signal.SIGKILL)
                    return
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - the backend is gone, and with it the agent
            return

    def wait(self, timeout: float | None = None) -> int | None:
        """:meth:`poll` until the agent exits or ``timeout`` s passed (then None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return code


class LocalProcess(ProcessGroup):
    """The agent as a local process (see the module docstring)."""

    def __init__(self, command: Sequence[str], *, cwd: str | os.PathLike, env: dict[str, str] | None = None):
        super().__init__()
        self.command = list(command)
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen | None = None
        self.lines = LineQueue()

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

    def _pump(self, pipe, stream: str) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                self.lines.put(stream, raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        finally:
            self.lines.close(stream)

    def read(self, timeout: float) -> Line | None:
        return self.lines.get(timeout)

    @property
    def done(self) -> bool:
        return self.lines.done

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
