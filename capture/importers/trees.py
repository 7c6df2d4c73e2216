"""Repository state an importer brings, kept to what a captured snapshot would record.

An importer fetches foreign objects (the history of an envoi-trace ``repo.bundle``, an ISO-Bench
base commit) into :attr:`ImportedTrees.git`, a scratch repository beside the run being staged,
never the run's own. Each tree it records as a snapshot is :meth:`ImportedTrees.stored`: without
the credential files a snapshot of the same files would leave out (the same rules, with the
secret values of the importing process's environment, as its redactor redacts them). When the
run is complete, :meth:`ImportedTrees.publish` copies only the snapshots into the run's shadow
repository (``repo.git``) and removes the scratch repository: the files left out and the foreign
history never reach the store, its bundles or a remote.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from agtrace.eventlog import Excluded, credential_rules, json_name, secret_values

if TYPE_CHECKING:
    from agtrace.eventlog import GitStore


class ImportedTrees:
    """The scratch repository of one run being imported (``RunSink.trees``)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.secrets = secret_values(os.environ)
        """Values a recorded file may not hold."""
        self.left_out: dict[str, str] = {}
        """Every path a recorded tree left out -> why (the first time)."""
        self._git: GitStore | None = None

    @property
    def git(self) -> GitStore:
        """The scratch repository (created on first use, beside the run's directory)."""
        if self._git is None:
            # pygit2 (~40 ms): loaded only by importers that bring repository state
            from agtrace.eventlog import GitStore

            self._git = GitStore.init(self.run_dir.with_name(f"{self.run_dir.name}.scratch.git"))
        return self._git

    def stored(self, tree: str) -> tuple[str, list[Excluded]]:
        """The tree to record for ``tree`` of :attr:`git`, and what it left out (for
        ``snapshot_taken.excluded``)."""
        kept, left = self.git.without_credentials(tree, self.secrets)
        for path, reason, _ in left:
            self.left_out.setdefault(json_name(path), reason)
        return kept, [Excluded(path=json_name(path), reason=reason, size=size) for path, reason, size in left]

    @property
    def policy(self) -> dict:
        """What :meth:`stored` applied, for ``snapshot_taken.policy`` (beside the source):
        the credential rules' version and how many secret values, never the values."""
        policy = {"credentials": credential_rules()["version"]}
        if self.secrets:
            policy["secret_values"] = len(self.secrets)
        return policy

    def publish(self) -> None:
        """Copy the snapshots into the run's ``repo.git`` and drop the scratch repository."""
        if self._git is None:
            return
        from agtrace.eventlog import GitStore

        scratch, self._git = self._git, None
        if scratch.head is not None:
            GitStore.init(self.run_dir / "repo.git").fetch_snapshots(scratch)
        shutil.rmtree(scratch.path, ignore_errors=True)
