"""The local scorer sandbox: run a scorer command on this machine, in a directory, with a timeout.

Satisfies ``agtrace.replay.sandbox.Sandbox`` by shape (capture does not import replay) and
returns :class:`agtrace.eventlog.CommandResult`. The
command runs as ``bash -c CMD`` in its own session (so its own process group), with stdin from
``/dev/null`` and an environment scrubbed of secrets: variables named ``AWS_*``, ``AZURE_*``,
``GOOGLE_APPLICATION_CREDENTIALS`` or containing ``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD`` or
``CREDENTIAL`` are removed (a scorer has no business with the agent's credentials). At the
timeout the whole process group gets SIGTERM, then SIGKILL after a short grace, so a scorer that
forks test workers cannot outlive it.

Nothing the scorer started outlives it, also when it exits on its own: when its shell has ended
(or was killed), what is left of its process group gets SIGKILL, and so does every process that
carries its mark (:data:`SCORER_MARK` in the environment, a value unique to this run of it),
which finds the processes that left the group (``setsid``, a daemonizing test server) on Linux,
where ``/proc`` shows each process's environment. A process that cleared its environment
and left the group is the one that can escape. While the scorer runs, a supervisor
(:mod:`agtrace.capture.supervisor`, the capture's) holds a pipe from this process: if this
process dies (SIGKILL, OOM), the supervisor sends the scorer's group SIGTERM, then SIGKILL after
the grace, so a killed ``agtrace rescore`` leaves no scorer running (its scratch directory in
``$TMPDIR`` stays, ``agtrace-rescore-*``).
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from agtrace.eventlog import CommandResult, is_secret_name

from ..errors import SandboxError
from ..process import spawn_local_supervisor
from ..supervisor import Supervisor, supervisor_argv

KILL_GRACE_S = 2.0
OUTPUT_KEEP_BYTES = 4 * 1024 * 1024
"""Only the last 4 MiB of a scorer's output are kept (summaries are at the end)."""
RESULT_FILE_MAX_BYTES = 64 * 1024 * 1024

SCORER_MARK = "AGTRACE_SCORER"
"""The environment variable that marks a scorer's processes (see the module docstring)."""
_SWEEPS = 20

_SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_APPLICATION_CREDENTIALS")


def scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without variables that look like credentials (see the module docstring)."""
    return {
        k: v
        for k, v in env.items()
        if not k.upper().startswith(_SECRET_PREFIXES)
        and not is_secret_name(k)
    }


class LocalSandbox:
    """Runs scorer commands with ``bash -c`` on this machine. Thread-safe."""

    def __init__(self, env: Mapping[str, str] | None = None, *, label: str = ""):
        self.env = scrub_env(os.environ if env is None else env)
        self.label = label
        self._description: dict[str, str] | None = None
        self._live: set[subprocess.Popen] = set()
        self._mu = threading.Lock()

    def describe(self) -> dict[str, str]:
        """``sandbox=local``, the OS and machine, and the versions of bash and python3 on PATH."""
        if self._description is None:
            desc = {
                "sandbox": "local",
                "system": f"{platform.system()} {platform.machine()}",
                "bash": _first_line(["bash", "--version"], self.env),
                "python3": _first_line(["python3", "--version"], self.env),
            }
            if self.label:
                desc["label"] = self.label
            self._description = desc
        return dict(self._description)

    def run(
        self, tree_dir: Path, cmd: str, timeout: float, *, files: Sequence[str] = ()
    ) -> CommandResult:
        """Run ``cmd`` in ``tree_dir``; never raises for the command's own failure or timeout."""
        bash = shutil.which("bash", path=self.env.get("PATH"))
        if bash is None:
            raise SandboxError("bash is not on PATH; install bash or fix PATH for the scorer")
        if not Path(tree_dir).is_dir():
            raise SandboxError(f"{tree_dir} is not a directory; nothing to score")
        started = time.perf_counter()
        mark = f"{os.getpid()}-{secrets.token_hex(8)}"
        proc = subprocess.Popen(
            [bash, "-c", cmd],
            cwd=tree_dir,
            env={**self.env, SCORER_MARK: mark},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self._mu:
            self._live.add(proc)
        guard = _supervise(proc.pid)
        tail = bytearray()
        reader = threading.Thread(target=_drain, args=(proc.stdout, tail), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave nothing behind
                _kill_group(proc)
            _kill_leftovers(proc.pid, mark)
            if guard is not None:
                guard.release()
            with self._mu:
                self._live.discard(proc)
        duration = (time.perf_counter() - started) * 1000
        reader.join(timeout=KILL_GRACE_S)  # a daemonized grandchild may hold the pipe open
        return CommandResult(
            exit_code=None if timed_out else proc.returncode,
            output=bytes(tail).decode(errors="replace"),
            duration_ms=duration,
            timed_out=timed_out,
            files={} if timed_out else _read_files(Path(tree_dir), files),
        )

    def cancel(self) -> None:
        """Kill every command still running (with its process group); their runs return as
        timed out. For a caller that is giving up (interrupted)."""
        with self._mu:
            live = list(self._live)
        for proc in live:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _drain(stream, tail: bytearray) -> None:
    try:
        while chunk := stream.read1(65536):
            tail.extend(chunk)
            if len(tail) > 2 * OUTPUT_KEEP_BYTES:
                del tail[: len(tail) - OUTPUT_KEEP_BYTES]
    finally:
        stream.close()
    if len(tail) > OUTPUT_KEEP_BYTES:
        del tail[: len(tail) - OUTPUT_KEEP_BYTES]


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; make sure nothing of its group is left either
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def _supervise(group: int) -> Supervisor | None:
    """A supervisor for the scorer's group (see the module docstring); None if none can start
    (the scorer then runs unguarded against this process's death, as before)."""
    argv = supervisor_argv(str(group), deadline_s=0, grace_s=KILL_GRACE_S, stop_signal="TERM")
    try:
        channel = spawn_local_supervisor(argv)
    except OSError:
        return None
    return Supervisor(channel) if channel is not None else None


def _kill_leftovers(group: int, mark: str) -> None:
    """SIGKILL what is left of the scorer's group, then every process carrying its mark, until
    none is left (a process may fork while it is killed; the sweeps are bounded)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(_SWEEPS):
        pids = _marked(mark)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _marked(mark: str) -> list[int]:
    """The pids whose environment holds ``SCORER_MARK=mark`` ([] where /proc cannot tell)."""
    needle = f"{SCORER_MARK}={mark}".encode()
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


def _read_files(root: Path, names: Sequence[str]) -> dict[str, bytes]:
    """The result files that exist, read without following a path out of ``root``."""
    out = {}
    real_root = os.path.realpath(root)
    for name in names:
        full = os.path.realpath(root / name)
        if os.path.commonpath([real_root, full]) != real_root or not os.path.isfile(full):
            continue
        if os.path.getsize(full) > RESULT_FILE_MAX_BYTES:
            continue
        with open(full, "rb") as f:
            out[name] = f.read()
    return out


def _first_line(argv: list[str], env: Mapping[str, str]) -> str:
    try:
        proc = subprocess.run(argv, env=dict(env), capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    text = (proc.stdout or proc.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "unknown"
