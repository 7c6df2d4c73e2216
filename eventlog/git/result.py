"""What the shadow repository's operations return (plain values, no pygit2 objects) and the
one ref it keeps.

Path lists are sorted and relative to the workdir (or the directory written), with ``/`` as the
separator on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

SNAPSHOT_REF = "refs/agtrace/snapshots"
"""The only ref of a shadow repository: its first-parent chain is the sequence of snapshots."""


class Exclusion(NamedTuple):
    """A path left out of a snapshot: ``reason`` is ``"size"``, ``"nested_git"``,
    ``"invalid_path"``, ``"credential"`` or ``"credential_content"``; ``size`` is in bytes (0
    when not meaningful)."""

    path: str
    reason: str
    size: int


class FileChange(NamedTuple):
    """One path that differs between two trees; ``status`` is ``"added"``, ``"modified"`` or
    ``"deleted"`` (a type change counts as modified). Line counts are 0 for binary files."""

    path: str
    status: str
    lines_added: int
    lines_removed: int


@dataclass(frozen=True)
class SnapshotResult:
    """Outcome of `GitStore.snapshot`; path lists are sorted and compare with the previous
    snapshot's tree (the empty tree for the first one)."""

    tree_id: str
    commit_id: str
    parent_commit: str | None
    created_commit: bool
    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]
    lines_added: int
    lines_removed: int
    excluded: tuple[Exclusion, ...]
    duration_ms: float
    detector: str = "walk"
    """``walk`` (the whole workdir walked), ``paths`` (only the changed paths given) or
    ``paths+walk`` (the paths, then a verifying walk)."""
    fallback: str = ""
    """Why changed paths were given but the workdir was walked instead."""
    missed: tuple[str, ...] = ()
    """With ``paths+walk``: paths the changed paths did not name that differed (sorted)."""

    @classmethod
    def of_changes(cls, changes: list[FileChange], **fields) -> SnapshotResult:
        """The result whose path lists and line counts are those of ``changes``."""
        by_status: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}
        for change in changes:
            by_status[change.status].append(change.path)
        return cls(added=tuple(by_status["added"]), modified=tuple(by_status["modified"]),
                   deleted=tuple(by_status["deleted"]), lines_added=sum(c.lines_added for c in changes),
                   lines_removed=sum(c.lines_removed for c in changes), **fields)


@dataclass(frozen=True)
class SwitchResult:
    """Outcome of `GitStore.switch`: the tree now in the directory and the paths touched (sorted,
    relative; a path in ``written`` may be a directory written whole, a path in ``removed`` a
    directory removed whole)."""

    tree_id: str
    written: tuple[str, ...]
    removed: tuple[str, ...]
    duration_ms: float


_NUL_SCAN = 8000
"""Bytes git and libgit2 look at for a NUL to call a file binary (no line counts)."""


def count_lines(data: bytes) -> int:
    """Lines git's diff counts for an added text file (0 for a binary one)."""
    if not data or b"\0" in data[:_NUL_SCAN]:
        return 0
    return data.count(b"\n") + (not data.endswith(b"\n"))
