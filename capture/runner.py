"""Running an agent as a local process and capturing it, line by line, as it runs.

Contracts:

* Every stdout line is stored verbatim (redacted) as it arrives: a ``raw_recorded`` event for
  structured adapters (Codex, Claude Code, OpenCode), a ``line_logged`` event for ``raw``; every
  stderr line as ``line_logged``. Parsed events follow their raw record. A line the adapter
  cannot parse is stored as a raw record with its parse error; capture never stops for bad output.
* The agent runs in its own process group. ``max_parts``, ``timeout`` and SIGINT/SIGTERM to the
  capturing process stop it (SIGTERM, then SIGKILL after a grace period); the run then ends with
  status ``limit``, ``timeout`` or ``interrupted``, after a final snapshot.
* The final status comes from evidence (see ``status.py``), not from the exit code alone.
* Records of types the adapter does not know (a newer agent version) are kept raw, counted and
  reported in :attr:`RunSummary.warnings` (``run_warnings``); they never fail the run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from agtrace.eventlog import LineLogged, PartEnded, RawRecorded, Remote, Store

from .adapter import unknown_warning
from .adapters import make_adapter
from .errors import AgentNotFound, CaptureError
from .recorder import PartDone, Recorder
from .snapshot import SnapshotPolicy
from .status import derive_status

GRACE_S = 5.0
TICK_S = 0.2


@dataclass
class RunSummary:
    """What `agtrace run --json` prints at the end."""

    run_id: str
    status: str
    reason: str
    exit_code: int | None
    parts: int
    tokens: int
    duration_s: float
    redactions: int
    agent: str
    model: str
    agent_version: str
    bundle: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_agent(
    store: Store,
    command: list[str],
    *,
    agent: str = "raw",
    agent_name: str = "",
    agent_version: str = "",
    workdir: str | os.PathLike = ".",
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
) -> RunSummary:
    """Run ``command`` in ``workdir`` and capture it as a new run; return its summary."""
    adapter = _adapter(agent, adapter_options or {})
    model = model or model_from_argv(command)
    workdir = os.path.abspath(workdir)
    base = _git_head(workdir)
    recorder = Recorder(
        store, workdir=workdir, agent=agent_name or agent, agent_version=agent_version, model=model, task=task, task_id=task_id,
        base_commit=base, command=command, durability=durability, tags=tags,
        parent_run=parent_run, policy=policy, on_part=on_part, remote=remote,
        ship_interval_s=ship_interval_s, bundle_interval_s=ship_interval_s,
        config={"max_parts": max_parts, "timeout": timeout, "adapter": adapter.name},
    )
    if on_start:
        on_start(recorder.run_id)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, start_new_session=True,
        )
    except OSError as exc:
        recorder.end("failed", f"could not start {command[0]!r}: {exc.strerror}")
        raise AgentNotFound(
            f"could not start {command[0]!r}: {exc.strerror}; check the command after `--` "
            f"(run {recorder.run_id} records the failure)"
        ) from None

    lines: queue.Queue = queue.Queue()
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, "stdout", lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, "stderr", lines), daemon=True),
    ]
    for t in readers:
        t.start()
    stop_reason = ""
    interrupted = threading.Event()
    previous = _install_signals(interrupted)
    line_no = {"stdout": 0, "stderr": 0}
    try:
        open_streams = 2
        while open_streams:
            if not stop_reason:
                if interrupted.is_set():
                    stop_reason = "interrupted"
                elif timeout is not None and time.monotonic() - started > timeout:
                    stop_reason = "timeout"
                elif max_parts is not None and recorder.parts >= max_parts:
                    stop_reason = "limit"
                if stop_reason:
                    _stop(proc)
            try:
                stream, raw, ts = lines.get(timeout=TICK_S)
            except queue.Empty:
                for emit in adapter.tick(time.monotonic()):
                    recorder.emit(emit.event, emit.part, emit.ts)
                continue
            if raw is None:
                open_streams -= 1
                continue
            line_no[stream] += 1
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if on_line:
                on_line(stream, text)
            _capture_line(recorder, adapter, stream, text, ts, line_no[stream], proc)
        exit_code = proc.wait()
    finally:
        _restore_signals(previous)
    for emit in adapter.finish():
        recorder.emit(emit.event, emit.part, emit.ts)
    sig = -exit_code if exit_code < 0 else None
    status, reason = derive_status(
        exit_code=exit_code, stop_reason=stop_reason, state=adapter.state, parts=recorder.parts,
        max_parts=max_parts, timeout=timeout, structured=adapter.name != "raw",
    )
    ended = recorder.end(status, reason, exit_code=exit_code, signal=sig)
    bundles = sorted((store.run_dir(recorder.run_id) / "bundles").glob("*.bundle"))
    return RunSummary(
        run_id=recorder.run_id, status=status, reason=reason, exit_code=exit_code,
        parts=recorder.parts, tokens=recorder.tokens, duration_s=round(time.monotonic() - started, 3),
        redactions=ended.redactions, agent=agent_name or agent, model=adapter.state.model or model,
        agent_version=adapter.state.agent_version or agent_version, bundle=str(bundles[-1]) if bundles else None,
        warnings=run_warnings(recorder, adapter),
    )


def run_warnings(recorder: Recorder, adapter) -> list[str]:
    """What the end of a capture warns about: the recorder's problems, then unknown records."""
    unknown = unknown_warning(getattr(adapter.state, "unknown", {}), f"{adapter.name} adapter")
    return [*recorder.warnings, *([unknown] if unknown else [])]


def _adapter(agent: str, options: dict):
    try:
        return make_adapter(agent, **options)
    except KeyError as exc:
        raise CaptureError(str(exc.args[0])) from None


def _capture_line(recorder: Recorder, adapter, stream: str, text: str, ts: int, n: int, proc) -> None:
    """Store one line verbatim, then what the adapter made of it.

    While a part's snapshot is taken the agent's process group is stopped (SIGSTOP/SIGCONT), so
    the tree cannot change under the snapshot and later edits cannot leak into it.
    """
    emits = adapter.feed(text, stream)
    frozen = any(isinstance(e.event, PartEnded) for e in emits) and proc.poll() is None
    if frozen:
        _signal_group(proc, signal.SIGSTOP)
    try:
        _store_line(recorder, adapter, stream, text, ts, n, emits)
    finally:
        if frozen:
            _signal_group(proc, signal.SIGCONT)


def _store_line(recorder: Recorder, adapter, stream: str, text: str, ts: int, n: int, emits) -> None:
    if stream == "stderr" or adapter.name == "raw":
        recorder.emit(LineLogged(stream=stream, text=text), ts=ts)
    elif not any(isinstance(e.event, RawRecorded) for e in emits):
        recorder.emit(RawRecorded(source=adapter.name, text=text, location=f"stdout:{n}"), ts=ts)
    for emit in emits:
        event = emit.event
        if isinstance(event, RawRecorded) and not event.location:
            event = msgspec.structs.replace(event, location=f"{stream}:{n}")
        recorder.emit(event, emit.part, emit.ts or ts)


def _pump(pipe, stream: str, out: queue.Queue) -> None:
    """Forward lines from a pipe with their arrival time; ``None`` marks the end."""
    try:
        for line in iter(pipe.readline, b""):
            out.put((stream, line, time.time_ns()))
    finally:
        out.put((stream, None, time.time_ns()))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the agent's process group, SIGKILL it after the grace period (in the background)."""
    def kill_later() -> None:
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)

    _signal_group(proc, signal.SIGTERM)
    threading.Thread(target=kill_later, daemon=True).start()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
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


def model_from_argv(argv: list[str]) -> str:
    """The model an agent CLI was told to use (``--model X``, ``-m X``, ``--model=X``,
    Codex's ``-c model=X``), or "" — the model as actually called, not from a config file."""
    for i, arg in enumerate(argv):
        if arg in ("--model", "-m") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg in ("-c", "--config") and i + 1 < len(argv) and argv[i + 1].startswith("model="):
            return argv[i + 1].split("=", 1)[1].strip("\"'")
    return ""


def _git_head(workdir: str) -> str:
    """The workdir's HEAD commit if it is a git checkout (read with the git CLI, read-only)."""
    try:
        out = subprocess.run(
            ["git", "-C", workdir, "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
