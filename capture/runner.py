"""Running an agent as a local process and capturing it: ``agtrace run --backend local``.

:func:`run_agent` builds the two ports of the capture pipeline for this machine (a
:class:`~agtrace.capture.process.LocalProcess` and a local
:class:`~agtrace.capture.snapshot.Snapshotter` of the workdir) and hands them to
:func:`~agtrace.capture.pipeline.run_capture`, whose docstring states the contracts (what is
stored, freezing, limits, signals, status). The agent runs in its own process group, with stdin
from ``/dev/null`` and this process's environment plus ``env``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import signal
import subprocess
from collections.abc import Callable

from agtrace.eventlog import Redactor, Remote, Store

from .errors import AgentNotFound, WorkdirError
from .pipeline import RunSummary, adapter_for, run_capture
from .process import LocalProcess
from .recorder import PartDone
from .snapshot import SnapshotPolicy, Snapshotter


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
    stop_signal: int = signal.SIGTERM,
) -> RunSummary:
    """Run ``command`` in ``workdir`` and capture it as a new run; return its summary.

    ``stop_signal`` is what the agent's process group gets when the capture stops it (limits,
    interrupts) or dies; SIGKILL follows after a grace period."""
    workdir = check_workdir(workdir)
    check_command(command, workdir, env)
    # the agent inherits this environment: a file holding one of its secrets is left out
    policy = without_store(policy or SnapshotPolicy(), store.root, workdir).with_env_secrets({**os.environ, **(env or {})})
    agent_version = agent_version or cli_version(command, agent, cwd=workdir, env=env)
    adapter = adapter_for(agent, {"agent_version": agent_version, **local_options(agent, env),
                                  **(adapter_options or {})})
    return run_capture(
        store, LocalProcess(command, cwd=workdir, env=env, stop_signal=stop_signal), adapter,
        snapshotter=functools.partial(Snapshotter, workdir=workdir, policy=policy),
        max_parts=max_parts, timeout=timeout, on_start=on_start, on_line=on_line,
        config={"stop_signal": signal.Signals(stop_signal).name}, workdir=workdir, agent=agent_name or agent, agent_version=agent_version,
        model=model or model_from_argv(command), task=task, task_id=task_id,
        base_commit=_git_head(workdir), command=command, durability=durability, tags=tags,
        parent_run=parent_run, on_part=on_part, remote=remote, ship_interval_s=ship_interval_s,
        bundle_interval_s=ship_interval_s, redactor=Redactor.from_env({**os.environ, **(env or {})}),
    )


def local_options(agent: str, env: dict[str, str] | None) -> dict:
    """The options ``agent``'s adapter takes from an agent run on this machine with ``env``
    (its ``local_options``: Codex's home, whose rollout the adapter follows), else none."""
    from .adapters import ADAPTERS

    options = getattr(ADAPTERS.get(agent), "local_options", None)
    return options(env) if options is not None else {}


def without_store(policy: SnapshotPolicy, store_root: str | os.PathLike, workdir: str) -> SnapshotPolicy:
    """``policy``, leaving out the store when it lies inside the workdir (``--store .agtrace``
    in the project): else every snapshot held the store's own catalog, segments and shadow
    repository, each part listed them as changed files, and each snapshot stored the objects
    of the one before. The store's path is added to ``exclude`` as an anchored pattern, so the
    snapshots record that it was left out."""
    store, work = os.path.realpath(store_root), os.path.realpath(workdir)
    if store == work or os.path.commonpath([store, work]) != work:
        return policy
    rel = os.path.relpath(store, work).replace(os.sep, "/")
    pattern = "/" + re.sub(r"([\\*?\[\] ])", r"\\\1", rel) + "/"  # the name, literally
    return dataclasses.replace(policy, exclude=(*policy.exclude, pattern))


def check_workdir(workdir: str | os.PathLike) -> str:
    """The absolute workdir, or :class:`WorkdirError` when it is not a directory (before any
    run is created)."""
    path = os.path.abspath(workdir)
    if not os.path.exists(path):
        raise WorkdirError(f"workdir {path} does not exist; create it or pass another --workdir (no run was created)")
    if not os.path.isdir(path):
        raise WorkdirError(f"workdir {path} is not a directory; pass a directory as --workdir (no run was created)")
    return path


def check_command(command: list[str], workdir: str, env: dict[str, str] | None = None) -> None:
    """Raise :class:`AgentNotFound` unless ``command[0]`` can be executed from ``workdir``:
    found on ``PATH`` (this process's plus ``env``), or a path (relative to the workdir) to an
    executable file. Checked before a run is created, so a typo leaves no run behind."""
    import shutil

    if not command:
        raise AgentNotFound("no command to run: give the agent command after `--` (no run was created)")
    program = command[0]
    if "/" in program:
        path = os.path.normpath(os.path.join(os.path.abspath(workdir), program))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
        why = "is not executable (chmod +x it)" if os.path.isfile(path) else "does not exist"
        where = "" if os.path.isabs(program) else f" (looked up relative to the workdir {workdir})"
        raise AgentNotFound(f"cannot run {program!r}: {path} {why}{where}; check the command after `--` "
                            "(no run was created)")
    search = {**os.environ, **(env or {})}.get("PATH", os.defpath)
    if shutil.which(program, path=search) is None:
        raise AgentNotFound(f"cannot run {program!r}: no such command on PATH; check the command after `--` "
                            "(no run was created)")


def model_from_argv(argv: list[str]) -> str:
    """The model an agent CLI was told to use (``--model X``, ``-m X``, ``--model=X``,
    Codex's ``-c model=X``), or "" — the model as actually called, not from a config file.

    A Python interpreter's own ``-m MODULE`` (``python -m my_agent --model X``) names a module,
    not a model: the search starts after it.
    """
    start = _after_interpreter(argv)
    for i in range(start, len(argv)):
        arg = argv[i]
        if arg in ("--model", "-m") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
        if arg in ("-c", "--config") and i + 1 < len(argv) and argv[i + 1].startswith("model="):
            return argv[i + 1].split("=", 1)[1].strip("\"'")
    return ""


_PYTHON = re.compile(r"python[0-9.]*")


def _after_interpreter(argv: list[str]) -> int:
    """Index of the first word the agent itself gets: past ``python [-u -X dev …] -m MODULE``
    or ``python [options] SCRIPT`` (0 for any other program)."""
    if not argv or not _PYTHON.fullmatch(os.path.basename(argv[0])):
        return 0
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "-m":
            return i + 2
        if argv[i].startswith("-m"):  # -mpkg
            return i + 1
        i += 2 if argv[i] in ("-X", "-W", "-c") else 1
    return i + 1


def cli_version(command: list[str], agent: str, *, cwd: str | None = None, env: dict[str, str] | None = None,
                timeout_s: float = 15.0) -> str:
    """The agent CLI's version (``codex --version`` → ``0.46.0``), or "" when unknown.

    Only for a command whose program is the CLI of ``agent``'s adapter (:func:`version_argv`),
    so nothing else is ever started; a CLI that fails, hangs past ``timeout_s`` or prints no
    version gives "".
    """
    argv = version_argv(command, agent)
    if argv is None:
        return ""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                             stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return parse_version(out.stdout) if out.returncode == 0 else ""


def version_argv(command: list[str], agent: str) -> list[str] | None:
    """``[program, "--version"]`` when ``command`` runs the CLI of ``agent``'s adapter (its
    ``programs``: ``codex``, ``claude``, ``opencode``), else None."""
    from .adapters import ADAPTERS

    programs = getattr(ADAPTERS.get(agent), "programs", ())
    if not command or os.path.basename(command[0]) not in programs:
        return None
    return [command[0], "--version"]


def parse_version(text: str) -> str:
    """The first version number in a CLI's ``--version`` output (``codex-cli 0.46.0`` → ``0.46.0``)."""
    m = _VERSION.search(text or "")
    return m.group(0) if m else ""


_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?")


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
