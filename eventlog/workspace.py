"""Events of the agent's workspace: files it changed, and the snapshots of its tree.

Part of the one tagged union of ``events.py``, whose evolution rules they follow.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .envelope import Event


class Excluded(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A path a snapshot left out by policy.

    Attributes:
        path: workdir-relative path.
        reason: ``size``, ``pattern`` or ``nested_git`` (and future reasons).
        size: the file's size in bytes, when known.
    """

    path: str
    reason: str
    size: int | None = None


class FileChanged(Event, tag="file_changed"):
    """A file was added, modified, deleted or renamed.

    Attributes:
        path: workdir-relative path after the change.
        change: ``add``, ``modify``, ``delete`` or ``rename``.
        old_path: the path before a rename.
        origin: ``agent`` when the agent reported it, ``snapshot`` when computed from trees.
        lines_added: added lines (text files, when computed from trees).
        lines_removed: removed lines.
    """

    path: str
    change: str
    old_path: str = ""
    origin: str = "snapshot"
    lines_added: int | None = None
    lines_removed: int | None = None


class SnapshotTaken(Event, tag="snapshot_taken"):
    """The workspace tree was recorded in the run's shadow repository.

    Attributes:
        tree_id: git tree id of the workspace.
        commit_id: the shadow repository's commit holding the tree.
        added: paths added since the previous snapshot.
        modified: paths modified since the previous snapshot.
        deleted: paths deleted since the previous snapshot.
        lines_added: text lines added since the previous snapshot.
        lines_removed: text lines removed.
        excluded: paths left out by policy.
        policy: the snapshot policy in force (size limit, patterns).
        part_ended_ts: wall clock (ns) when the part completed, to compare with the envelope ts.
        duration_ms: time the snapshot took.
        final: true for the snapshot taken when the run ended.
        detector: how the changed paths were found: ``walk`` (the whole workdir was walked),
            ``inotify`` (only the paths a file watcher reported were read), ``inotify+walk``
            (the watcher's paths, then a walk of the whole workdir that verified them: the
            run's last snapshot). Empty in events written before agtrace recorded it.
        fallback: why the workdir was walked although a watcher ran (its queue overflowed, a
            ``.gitignore`` changed, a nested repository appeared, ...); empty otherwise.
        missed: with ``inotify+walk``, the paths the verifying walk found changed that the
            watcher had not reported (they are in the tree); empty when it missed nothing.
    """

    tree_id: str
    commit_id: str = ""
    added: list[str] = []
    modified: list[str] = []
    deleted: list[str] = []
    lines_added: int = 0
    lines_removed: int = 0
    excluded: list[Excluded] = []
    policy: dict[str, Any] = {}
    part_ended_ts: int | None = None
    duration_ms: float | None = None
    final: bool = False
    detector: str = ""
    fallback: str = ""
    missed: list[str] = []
