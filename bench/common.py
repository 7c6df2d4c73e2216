"""Helpers shared by the bench scripts: console scripts, timing of processes and calls (wall and
CPU beside it), a git environment free of the user's config, synthetic source trees, and the
key/value print of a script's report."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def console_script(name: str) -> str:
    """The console script ``name`` of this interpreter's environment."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed beside {sys.executable}; pip install -e '.[test]'")
    return found


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one run of ``argv``, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_utime + usage.ru_stime


def clock(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of ``fn()``: CPU is this process's (all threads) plus that of the
    children it waited for, so a call that runs git or the CLI is counted whole."""
    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before, started = time.process_time() + children(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - started, time.process_time() + children() - before
    return wall * 1000, cpu * 1000


def python_env() -> dict[str, str]:
    """The environment of a child as users run it: bytecode caches allowed (an installed
    package has them; without them each start would compile every module)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def git_env(**extra: str) -> dict[str, str]:
    """The environment of a git child: no GIT_* of ours, no global or system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", **extra)
    return env


def build_tree(root: str, files: int, total_bytes: int, rng: random.Random,
               layout: tuple[int, ...] = (20, 9)) -> list[str]:
    """``files`` Python-like text files of ``total_bytes`` together under ``root``, spread over
    nested directories (``layout``: how many at each level, ``pkg``, ``mod``, ``sub``); the
    relative paths."""
    paths, size = [], total_bytes // files
    for i in range(files):
        dirs = [f"{name}{i % n}" for name, n in zip(("pkg", "mod", "sub"), layout, strict=False)]
        rel = "/".join([*dirs, f"file{i}.py"])
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        text = "".join(f"def f{i}_{j}(x):  # {rng.random():.12f}\n" for j in range(size // 30 + 1))
        with open(os.path.join(root, rel), "w") as f:
            f.write(text[:size])
        paths.append(rel)
    return paths


def print_report(report: dict, as_json: bool) -> None:
    """A script's report: JSON, or one ``key  value`` line each."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
