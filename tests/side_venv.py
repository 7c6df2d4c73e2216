"""Cached side virtual environments for the other side of an interchange test.

Harbor (ATIF's reference models) needs Python >= 3.12 and Arize Phoenix (an OTLP receiver)
brings hundreds of packages; neither belongs in the project's own test environment. Each is
installed once, from the package registry by its pinned version, into
``$AGTRACE_TEST_CACHE`` (default ``~/.cache/agtrace-tests``)/``<name>-<hash of python and
requirements>``, and reused until the pins change. The tests run the side environment's Python
as a subprocess. A venv is built under a lock and marked complete only when its install
succeeded, so concurrent test runs neither use nor build a half-made one.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HARBOR = ("harbor==0.25.0",)
"""Harbor's ATIF models (``harbor.models.trajectories``); 0.25.0 reads ATIF v1.0-v1.8."""
PHOENIX = ("arize-phoenix==20.26.1", "arize-phoenix-client==3.5.0")
"""An OTLP/HTTP receiver with a span store, and the client that reads spans back."""


def cache_root() -> Path:
    return Path(os.environ.get("AGTRACE_TEST_CACHE") or Path.home() / ".cache" / "agtrace-tests")


def python_at_least(major: int, minor: int) -> str | None:
    """A working Python interpreter of at least ``major.minor``: this one, one of pyenv's
    versions, or one on PATH (pyenv's shims on PATH fail for versions not selected: each
    candidate is tried)."""
    if sys.version_info >= (major, minor):
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = []
    for m in range(minor, minor + 8):
        candidates += sorted(glob.glob(f"{root}/versions/{major}.{m}.*/bin/python{major}.{m}"))
        candidates += [found for found in [shutil.which(f"python{major}.{m}")] if found]
    for exe in candidates:
        try:
            ok = subprocess.run([exe, "-c", f"import sys; sys.exit(sys.version_info < ({major}, {minor}))"],
                                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return exe
    return None


def side_venv(name: str, requirements: tuple[str, ...], python: str = sys.executable, *,
              timeout: float = 1800) -> Path:
    """The directory of a venv with ``requirements`` installed (built on first use)."""
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    key = hashlib.sha256("\n".join([version, *requirements]).encode()).hexdigest()[:12]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"{name}-py{version}-{key}"
    marker = dest / ".complete"
    if marker.exists():
        return dest
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return dest
        shutil.rmtree(dest, ignore_errors=True)  # an earlier build that did not finish
        subprocess.run([python, "-m", "venv", str(dest)], check=True, timeout=300)
        pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        proc = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise RuntimeError(f"installing {' '.join(requirements)} into a side venv failed:\n{proc.stderr[-3000:]}")
        marker.write_text("\n".join(requirements) + "\n")
    return dest
