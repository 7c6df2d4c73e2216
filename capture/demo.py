"""``agtrace demo``: a real capture of a scripted agent, with no model, no key and no network.

The scripted agent (``demo_agent.py``) runs as a real subprocess in a fresh temporary git
repository and prints the Codex ``exec --json`` format; it is captured through exactly the path
``agtrace run --agent codex`` takes.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from agtrace.eventlog import Store

from .demo_agent import DEMO_TASK, setup_demo_repo
from .errors import WorkdirError
from .recorder import PartDone
from .runner import RunSummary, run_agent


def demo_command(*flags: str) -> list[str]:
    """The argv that starts the scripted agent with this interpreter.

    The agent is started as a script (it needs the standard library only) in isolated mode
    (``-I``: no script directory or user site on ``sys.path``), never as ``python -m
    agtrace.capture.demo_agent``: ``-m`` imports the package ``agtrace.capture`` first, and
    once anything there imports ``demo_agent`` Python prints a ``RuntimeWarning … found in
    sys.modules`` on stderr, which every demo run then recorded as its first transcript line.
    """
    from . import demo_agent

    return [sys.executable, "-I", demo_agent.__file__, *flags]


def run_demo(
    store: Store,
    *,
    workdir: str | Path | None = None,
    fast: bool = False,
    durability: str = "normal",
    on_start: Callable[[str], None] | None = None,
    on_part: Callable[[PartDone], None] | None = None,
) -> tuple[RunSummary, Path]:
    """Set up the demo project (in ``workdir`` or a new temp dir), capture the agent on it.

    Returns the run summary and the workdir, which is left in place so it can be compared
    with a replay. A ``workdir`` that holds anything is refused (:func:`check_demo_workdir`).
    """
    workdir = check_demo_workdir(workdir)
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="agtrace-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    setup_demo_repo(workdir)
    summary = run_agent(
        store,
        # --fast has no pauses, so the agent waits for each part's snapshot (frozen and thawed)
        # instead of running ahead of it (docs: "Snapshots of fast agents")
        demo_command(*(["--fast", "--wait-for-capture"] if fast else [])),
        agent="codex",
        agent_name="demo",
        agent_version=_version(),
        model="scripted (no model)",
        workdir=workdir,
        task=DEMO_TASK,
        task_id="demo/textstats",
        durability=durability,
        tags={"demo": "1"},
        on_start=on_start,
        on_part=on_part,
    )
    return summary, workdir


def check_demo_workdir(workdir: str | Path | None) -> Path | None:
    """``workdir`` as a path when the demo may set up its project there (missing, or an empty
    directory), else :class:`WorkdirError`: the demo writes its own README.md, .gitignore and
    package, commits everything with ``git add -A`` and lets its agent edit and commit, so a
    directory with files in it (a project of yours, an earlier demo's) would be overwritten."""
    if workdir is None:
        return None
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"--workdir {path} is not a directory; pass a new or empty directory, or leave "
                           "--workdir out for a new temporary one (no run was created)")
    if path.is_dir() and any(path.iterdir()):
        raise WorkdirError(f"--workdir {path} is not empty: the demo writes its own project there and commits "
                           "it, which would overwrite what it holds; pass a new or empty directory, or leave "
                           "--workdir out for a new temporary one (no run was created)")
    return path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agtrace")
    except PackageNotFoundError:
        return "unknown"
