"""What running one command in a sandbox gave: the one result type of every sandbox.

It lives here, in the package every other one may import, because both sides need it and may
not import each other: capture's sandboxes (``LocalSandbox``, ``ModalScorer``) return it, and
replay's re-scoring reads it through its ``Sandbox`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommandResult:
    """What one command run (a scorer) gave.

    Attributes:
        exit_code: the command's exit code (None when it was killed at its timeout).
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
