"""Capture of an agent running in a sandbox: the agent-process port over any :class:`SandboxAPI`.

:func:`run_agent_in_sandbox` builds the two ports of the capture pipeline for a sandbox (a
:class:`SandboxAgentProcess` and a :class:`~agtrace.capture.RemoteSnapshotter`) and
hands them to :func:`~agtrace.capture.pipeline.run_capture`: the loop, its limits, freezing,
signals and status are the local ones, line for line. The local store holds every event and
every snapshot as they happen, so a preempted or killed sandbox loses nothing that was streamed
back; the run then ends ``failed`` with the reason. Lines cross the network, so a freeze comes
slightly later after the agent prints a part's end than locally.

The agent runs as the leader of its own process group inside the sandbox (its pid is written to
``<scratch>/agent.pgid``), with stdin from ``/dev/null``; freeze, thaw and stop signal that group
with ``kill`` run in the sandbox, and the supervisor runs in the sandbox too, with a lease of
:data:`LEASE_S` (a sandbox keeps a command's stdin open when its client goes away, so the end of
the capture process is seen as keep-alives that stop coming). Its exit code follows the port's convention: a container's
``128 + N`` (killed by signal N) becomes ``-N``, so an agent that itself exits with 129–192 is read
as killed by a signal.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import threading
from collections.abc import Callable, Sequence

from agtrace.eventlog import Redactor, Remote, Store

from ..errors import AgentNotFound, SandboxError
from ..pipeline import RunSummary, adapter_for, run_capture
from ..process import FREEZE_DEADLINE_S, ProcessGroup
from ..recorder import PartDone
from ..runner import model_from_argv, parse_version, version_argv
from ..snapshot import SnapshotPolicy
from .api import SandboxAPI, SandboxProcess, run_checked
from .remote_snapshot import RemoteSnapshotter

# Become the leader of a process group without forking (setsid forks when the caller already
# leads one, and the exit code would then be setsid's), so the pid written is the group's id and
# the exit code reported for the exec is the agent's own.
_WRAPPER = r"""
pgid_file=$1; shift
echo $$ > "$pgid_file"
read -r _ _ _ _ pgrp _ 2>/dev/null < /proc/$$/stat || pgrp=
if [ "$pgrp" = "$$" ]; then exec "$@" < /dev/null; fi
exec setsid "$@" < /dev/null
"""

_FOUND = r'command -v -- "$1" > /dev/null 2>&1'

LEASE_S = 60.0
"""Without a keep-alive for this long, the sandbox's supervisor takes the capture for dead."""


class SandboxAgentProcess(ProcessGroup):
    """An agent command in a sandbox, as the capture pipeline's agent port (see the module
    docstring). Failures of the sandbox itself raise :class:`SandboxError`."""

    def __init__(self, api: SandboxAPI, command: Sequence[str], *, env: dict[str, str] | None = None,
                 stop_signal: int = signal.SIGTERM, freeze_deadline_s: float = FREEZE_DEADLINE_S):
        super().__init__(stop_signal=stop_signal, freeze_deadline_s=freeze_deadline_s, streams=("sandbox",))
        self.api = api
        self.command = list(command)
        self.env = env
        self.pgid_file = f"{api.scratch}/agent.pgid"
        self.proc: SandboxProcess | None = None
        self._exit: int | None = None
        self.unsupervised = ""
        """Why no supervisor guards the agent ("" when one does)."""

    def start(self) -> None:
        check = self._exec(["bash", "-c", _FOUND, "agtrace-check", self.command[0]], env=self.env)
        if self._drain(check) != 0:
            raise AgentNotFound(f"could not start {self.command[0]!r} in the sandbox: not found or not executable")
        self.proc = self._exec(["bash", "-c", _WRAPPER, "agtrace-agent", self.pgid_file, *self.command], env=self.env)
        threading.Thread(target=self._pump, daemon=True, name="agtrace-sandbox-lines").start()
        self.unsupervised = self.supervise(f"@{self.pgid_file}", lease_s=LEASE_S)

    def spawn_supervisor(self, argv: list[str]) -> _StdinChannel:
        return _StdinChannel(self._call(lambda: self.api.exec(argv, workdir=self.api.scratch, stdin=True)))

    def _pump(self) -> None:
        try:
            for stream, text, ts, continued in self.proc.pieces():
                self.lines.put(stream, text, ts, continued=continued)
        except Exception as exc:  # noqa: BLE001 - whatever the backend raises, the sandbox is gone
            self.lines.close("sandbox", _lost(exc))
        else:
            self.lines.close("sandbox")

    def signal_group(self, sig: int) -> None:
        name = signal.Signals(sig).name.removeprefix("SIG")
        p = shlex.quote(self.pgid_file)
        script = f"[ -s {p} ] && kill -{name} -- -$(cat {p}) 2>/dev/null || true"
        self._drain(self._exec(["bash", "-c", script], workdir=self.api.scratch))  # the workdir may be gone

    def group_exists(self) -> bool:
        p = shlex.quote(self.pgid_file)
        script = f"[ -s {p} ] && kill -0 -- -$(cat {p}) 2>/dev/null && echo yes || true"
        proc = self._exec(["bash", "-c", script], workdir=self.api.scratch)
        return self._call(lambda: any(text == "yes" for _s, text, _t in proc.lines()))

    def alive(self) -> bool:
        # asking a remote sandbox costs a round trip; signalling a finished group is harmless
        return self._exit is None and not self.lines.done

    def poll(self) -> int | None:
        if self._exit is None:
            code = self._call(self.proc.poll)
            if code is not None:
                self._exit = -(code - 128) if 128 < code <= 128 + 64 else code
        return self._exit

    def _exec(self, argv: list[str], env: dict[str, str] | None = None, workdir: str | None = None) -> SandboxProcess:
        return self._call(lambda: self.api.exec(argv, env=env, workdir=workdir))

    def _drain(self, proc: SandboxProcess) -> int:
        return self._call(lambda: (list(proc.lines()), proc.wait())[1])

    @staticmethod
    def _call(fn: Callable):
        try:
            return fn()
        except SandboxError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend's own error means the sandbox is gone
            raise _lost(exc) from exc


class _StdinChannel:
    """The supervisor's stdin in the sandbox."""

    def __init__(self, proc: SandboxProcess):
        self.proc = proc

    def write(self, data: bytes) -> None:
        self.proc.write_stdin(data)

    def close(self) -> None:
        self.proc.close_stdin()


def _lost(exc: BaseException) -> SandboxError:
    return SandboxError(f"the sandbox was lost: {type(exc).__name__}: {exc}")


def run_agent_in_sandbox(
    store: Store,
    api: SandboxAPI,
    command: list[str],
    *,
    agent: str = "raw",
    agent_name: str = "",
    agent_version: str = "",
    task: str = "",
    task_id: str = "",
    model: str = "",
    max_parts: int | None = None,
    timeout: float | None = None,
    durability: str = "normal",
    env: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    parent_run: str = "",
    policy: SnapshotPolicy | None = None,
    adapter_options: dict | None = None,
    remote: Remote | None = None,
    ship_interval_s: float = 10.0,
    on_start: Callable[[str], None] | None = None,
    on_part: Callable[[PartDone], None] | None = None,
    on_line: Callable[[str, str], None] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> RunSummary:
    """Run ``command`` in ``api.workdir`` inside the sandbox and capture it as a new local run.

    Same arguments and result as :func:`agtrace.capture.run_agent` (the workdir is the
    sandbox's). See the module docstring for the contracts. The sandbox is not terminated.
    """
    probe = None if agent_version else version_argv(command, agent)
    if probe is not None:  # the agent CLI's version, asked in the sandbox (15 s at most, failures ignored)
        script = f"timeout 15 {shlex.join(probe)} 2>/dev/null </dev/null || true"
        agent_version = parse_version(run_checked(api, script, env=env, what="asking the agent CLI for its version"))
    adapter = adapter_for(agent, {"agent_version": agent_version, **(adapter_options or {})})
    base = run_checked(api, "git rev-parse --verify -q HEAD || true", what="reading the workdir's HEAD").strip()
    return run_capture(
        store, SandboxAgentProcess(api, command, env=env, stop_signal=stop_signal), adapter,
        # only the agent's env: the host's secrets are not in the sandbox, and must not be sent there
        snapshotter=functools.partial(RemoteSnapshotter, api, policy=(policy or SnapshotPolicy()).with_env_secrets(env or {})),
        max_parts=max_parts, timeout=timeout, on_start=on_start, on_line=on_line,
        config={"backend": "sandbox", "sandbox": api.describe(), "sandbox_workdir": api.workdir,
                "stop_signal": signal.Signals(stop_signal).name},
        agent=agent_name or agent, agent_version=agent_version, model=model or model_from_argv(command),
        task=task, task_id=task_id, base_commit=base, command=command, durability=durability, tags=tags,
        parent_run=parent_run, on_part=on_part, remote=remote, ship_interval_s=ship_interval_s,
        bundle_interval_s=ship_interval_s, redactor=Redactor.from_env({**os.environ, **(env or {})}),
    )
