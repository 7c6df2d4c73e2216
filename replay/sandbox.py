"""Where a scorer runs: a small interface that re-scoring gets by injection.

``agtrace.replay`` never starts processes itself and never imports ``agtrace.capture``: the
caller (the CLI, a notebook) hands :func:`~agtrace.replay.rescoring.rescore` an object with the
two methods below. capture's ``LocalSandbox`` (this machine) and ``ModalScorer`` (a Modal
sandbox) satisfy it by shape. Both return :class:`agtrace.eventlog.CommandResult`, the one
result type, defined in ``eventlog`` because capture and replay may not import each other.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from agtrace.eventlog import CommandResult


@runtime_checkable
class Sandbox(Protocol):
    """Runs a scorer command in a directory holding a reconstructed tree.

    Contract: :meth:`run` is safe to call from several threads at once (one call per tree
    directory), never raises because the command failed or timed out (that is in the result),
    and raises only when the sandbox itself cannot work (then nothing is recorded).
    :meth:`describe` is deterministic for a given environment: it goes into the scorer digest,
    so an identical (tree, command, environment) is scored once.
    """

    def describe(self) -> dict[str, str]:
        """What the result depends on besides the tree and the command (image, tool versions)."""
        ...

    def run(
        self, tree_dir: Path, cmd: str, timeout: float, *, files: Sequence[str] = ()
    ) -> CommandResult:
        """Run ``cmd`` with ``tree_dir`` as its working directory; kill it after ``timeout`` s.

        ``files`` are result files (relative to ``tree_dir``) to return after the command ends.
        """
        ...


def command_program(cmd: str, path: str | None) -> str:
    """The program the first word of ``cmd`` runs, as ``<resolved path> <size> <mtime_ns>``
    (symlinks followed), "" if the command does not start with a word found on ``path`` (a
    shell builtin, a variable assignment, text that does not split). Only the first program: a
    pipeline's or a script's later programs are not described."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return ""
    found = shutil.which(words[0], path=path) if words else None
    if found is None:
        return ""
    real = os.path.realpath(found)
    try:
        st = os.stat(real)
    except OSError:
        return ""
    return f"{real} {st.st_size} {st.st_mtime_ns}"
