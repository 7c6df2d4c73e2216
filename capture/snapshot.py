"""Workspace snapshots of one run: the policy, the shadow repository, and sealing into bundles.

The shadow repository (``runs/<id>/repo.git``) has its own GIT_DIR; the agent's ``.git`` and
any nested ``.git`` are never read for state nor written, so an agent that commits, resets or
rebases cannot orphan or hide a snapshot, and bash-made changes are captured like edits.
A snapshot is taken as soon as a part completes, and once more when the run ends.

Sealing writes the snapshot history as git bundles in ``runs/<id>/bundles/``: the first bundle
holds everything so far, each later one only what came after the previous bundle's tip, so a
long run can make progress durable remotely without re-bundling its history.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agtrace.eventlog import Excluded, SnapshotTaken, credential_rules, json_name, secret_values

from .errors import WorkdirError
from .watcher import TreeWatcher, open_watcher

if TYPE_CHECKING:
    from agtrace.eventlog import GitStore

DEFAULT_EXCLUDES = (
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "node_modules/",
)
"""Left out of every snapshot unless the policy says otherwise: rebuildable caches (ignored,
not listed). Credential files are left out by the policy's ``credentials`` rules, and listed."""


@dataclass(frozen=True)
class SnapshotPolicy:
    """What snapshots leave out. Recorded in every ``snapshot_taken`` event.

    Attributes:
        max_file_bytes: files larger than this are left out (reason ``size``).
        exclude: gitignore-style patterns left out, on top of the workdir's ``.gitignore``.
        credentials: leave out credential files by name and by content (reasons ``credential``
            and ``credential_content``; the rules are ``agtrace.eventlog.credential_rules()``,
            recorded by their version).
        secrets: with ``credentials``, values a recorded file may not hold (a file holding one is
            left out as ``credential_content``): the agent's environment's secrets, see
            :meth:`with_env_secrets`. Only how many there are is recorded.
    """

    max_file_bytes: int = 10 * 1024 * 1024
    exclude: tuple[str, ...] = field(default=DEFAULT_EXCLUDES)
    credentials: bool = True
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        out = {"max_file_bytes": self.max_file_bytes, "exclude": list(self.exclude), "gitignore": True}
        if self.credentials:  # the rules' version: docs/format.md lists each version's rules
            out["credentials"] = credential_rules()["version"]
            if self.secrets:
                out["secret_values"] = len(self.secrets)
        return out

    def with_env_secrets(self, environ: Mapping[str, str]) -> SnapshotPolicy:
        """This policy, also leaving out files that hold the value of one of ``environ``'s
        secret-named variables (the ones the redactor redacts as ``env:<NAME>``)."""
        return dataclasses.replace(self, secrets=tuple(sorted({*self.secrets, *secret_values(environ)})))


class ShadowSnapshotter:
    """What every snapshotter of a run shares: the run's local shadow repository
    (``runs/<id>/repo.git``), the chain of snapshot commits in it, and sealing into bundles.

    Subclasses (:class:`Snapshotter` here, ``RemoteSnapshotter`` for a sandbox) record trees
    into :attr:`git` and keep :attr:`tree_id`/:attr:`commit_id` at the chain's tip; both satisfy
    :class:`~agtrace.capture.port.SnapshotPort`. One per run; not threadsafe.
    """

    workdir: str | os.PathLike

    def __init__(self, run_dir: str | os.PathLike, policy: SnapshotPolicy | None = None):
        self.run_dir = Path(run_dir)
        self.policy = policy or SnapshotPolicy()
        from agtrace.eventlog import GitStore  # pygit2 (~40 ms): not for `run --help`

        self.git = GitStore.init(self.run_dir / "repo.git")
        self.tree_id: str | None = None
        self.commit_id: str | None = None
        self._bundled: str | None = None

    def take(self, label: str, *, part_ended_ts: int | None = None, final: bool = False) -> SnapshotTaken:
        raise NotImplementedError

    def seal(self) -> Path | None:
        """Write the snapshots made since the last seal as the next bundle; None if nothing new."""
        if self.commit_id is not None and self.git.head != self.commit_id:
            self.git.set_head(self.commit_id)  # snapshots chain by commit id; the ref follows here
        path = write_next_bundle(self.git, self.run_dir, self.commit_id, self._bundled)
        if path is not None:
            self._bundled = self.commit_id
        return path


class Snapshotter(ShadowSnapshotter):
    """Takes snapshots of a local workdir into a run's shadow repository (with pygit2).

    Changed paths come from a file watcher (Linux inotify, ``watcher.py``) started with the
    first snapshot, so a snapshot reads what changed and does not walk the tree; the first
    snapshot walks it, and so does any snapshot after the watcher lost events (its queue
    overflowed) or could not be trusted (a ``.gitignore`` changed, a nested repository
    appeared). The final snapshot (``final=True``) uses the watcher's paths and then walks the
    whole tree to verify them: what the watcher missed is recorded anyway and listed in the
    event's ``missed``. Each event says which ``detector`` found its changes. ``watch=False``
    (or no inotify) walks every time."""

    def __init__(self, run_dir: str | os.PathLike, workdir: str | os.PathLike, policy: SnapshotPolicy | None = None,
                 *, watch: bool = True):
        self.workdir = Path(workdir).resolve()
        if not self.workdir.is_dir():
            raise WorkdirError(f"workdir {workdir} does not exist; create it or pass --workdir")
        super().__init__(run_dir, policy)
        self.watch = watch
        self._watcher: TreeWatcher | None = None

    def take(self, label: str, *, part_ended_ts: int | None = None, final: bool = False) -> SnapshotTaken:
        """Record the workdir's tree now; return the event describing it (changes since the last)."""
        changed, fallback = self._changes()
        result = self.git.snapshot(
            self.workdir,
            exclude=list(self.policy.exclude),
            max_file_bytes=self.policy.max_file_bytes,
            message=label,
            parent_commit=self.commit_id,
            credentials=self.policy.credentials,
            secrets=self.policy.secrets,
            changed=changed,
            verify=final and changed is not None,
            move_ref=True,  # the ref follows every snapshot: a crashed capture still bundles its trees
        )
        self.tree_id, self.commit_id = result.tree_id, result.commit_id
        detector = {"paths": "inotify", "paths+walk": "inotify+walk"}.get(result.detector, "walk")
        if self._watcher is not None and changed is not None and result.detector == "walk":
            fallback = result.fallback
            self._watcher.rescan()  # a .gitignore or a nested repository: watch what it uncovered
        if final:
            self.close()
            self.git.compact()  # the run's packs into one, with deltas: nobody waits for it now
        return SnapshotTaken(
            tree_id=result.tree_id,
            commit_id=result.commit_id,
            added=[json_name(p) for p in result.added],
            modified=[json_name(p) for p in result.modified],
            deleted=[json_name(p) for p in result.deleted],
            lines_added=result.lines_added,
            lines_removed=result.lines_removed,
            excluded=[Excluded(path=json_name(e.path), reason=e.reason, size=e.size) for e in result.excluded],
            policy=self.policy.as_dict(),
            part_ended_ts=part_ended_ts,
            duration_ms=round(result.duration_ms, 3),
            final=final,
            detector=detector,
            fallback=fallback,
            missed=[json_name(p) for p in result.missed],
        )

    def _changes(self) -> tuple[set[str] | None, str]:
        """The paths the watcher saw change (None: walk the tree) and, if it cannot tell, why."""
        if self._watcher is None:
            if self.watch and self.tree_id is None:  # before the first snapshot's walk
                self.git.prepare(self.workdir, exclude=list(self.policy.exclude),
                                 max_file_bytes=self.policy.max_file_bytes)
                git = self.git  # not self: a dropped Snapshotter frees its watcher at once (no cycle)
                self._watcher = open_watcher(self.workdir, skip=lambda rel: git.is_ignored(rel + "/"))
            return None, ""
        changed = self._watcher.changes()
        if changed is not None:
            return changed, ""
        reason = self._watcher.lost
        self._watcher.rescan()  # directories made while events were lost are watched from now on
        return None, reason

    def close(self) -> None:
        """Stop watching the workdir (the run's last snapshot does it)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self.watch = False


def write_next_bundle(git: GitStore, run_dir: Path, tip: str | None, bundled: str | None) -> Path | None:
    """Write ``runs/<id>/bundles/<nnnn>-<tip12>.bundle`` holding the commits after ``bundled``
    up to ``tip`` (all of them when ``bundled`` is None); None when there is nothing new."""
    if tip is None or tip == bundled:
        return None
    bundles = run_dir / "bundles"
    bundles.mkdir(exist_ok=True)
    n = len(list(bundles.glob("*.bundle"))) + 1
    path = bundles / f"{n:04d}-{tip[:12]}.bundle"
    git.write_bundle(path, since_commit=bundled)
    return path
