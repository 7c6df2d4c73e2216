"""Where a scorer runs: a small interface that re-scoring gets by injection.

``agtrace.replay`` never starts processes itself and never imports ``agtrace.capture``: the
caller (the CLI, a notebook) hands :func:`~agtrace.replay.rescoring.rescore` an object with the
two methods below. ``agtrace.capture.sandbox.LocalSandbox`` runs the command on this machine; a
Modal sandbox can satisfy the same Protocol later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SandboxResult:
    """What one scorer run gave.

    Attributes:
        exit_code: the command's exit code (None when it was killed).
        output: stdout and stderr interleaved, decoded as UTF-8 with replacement; a sandbox may
            keep only the end of a very long output (the summaries parsers read are at the end).
        duration_ms: wall time of the command.
        timed_out: the command ran past its timeout and was killed (with its whole process group).
        files: the requested result files (relative to the tree) that exist after the run, by path.
    """

    exit_code: int | None
    output: str
    duration_ms: float
    timed_out: bool = False
    files: dict[str, bytes] = field(default_factory=dict)


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
    ) -> SandboxResult:
        """Run ``cmd`` with ``tree_dir`` as its working directory; kill it after ``timeout`` s.

        ``files`` are result files (relative to ``tree_dir``) to return after the command ends.
        """
        ...
