"""The difference between the final trees of two runs: what one run's work left that another's did not.

Each run keeps its own shadow repository, so the two trees are compared by their files' blob
ids (content hashes, equal across repositories for equal contents); only the files that differ
are read, from each run's own repository. Patches are git style, as :func:`agtrace.replay.diff_parts`
makes them (``a/`` is the first run's file, ``b/`` the other's); a run without workspace
snapshots (an imported transcript) has no final tree, and the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agtrace.eventlog import GitStoreError, Store

from .diff import MAX_PATCH_BYTES, FileDiff, FileTotals, TreeDiff, _is_binary, unified
from .errors import ReplayError
from .workspace import snapshots


@dataclass
class RunTreesDiff(FileTotals):
    """From ``run_a``'s final tree to ``run_b``'s; ``reason`` (and no files) when either has none."""

    run_a: str
    run_b: str
    tree_a: str = ""
    tree_b: str = ""
    part_a: int | None = None
    part_b: int | None = None
    files: list[FileDiff] = field(default_factory=list)
    reason: str = ""

    def _as_tree_diff(self) -> TreeDiff:
        return TreeDiff(self.run_b, self.part_a or 0, self.part_b or 0, self.tree_a, self.tree_b, self.files)

    def stat(self, width: int = 80) -> str:
        """A diffstat like ``git diff --stat``."""
        return self._as_tree_diff().stat(width)

    def patch(self) -> str:
        """The whole diff as text, git style."""
        return self._as_tree_diff().patch()


def final_tree(store: Store, run_id: str) -> tuple[int | None, str]:
    """``(part, tree id)`` of the run's last snapshotted part (part 0: the base tree only), or
    ``(None, "")`` when it recorded no snapshot."""
    rows = [r for r in store.catalog.part_rows(run_id) if r["tree_id"]]
    if rows:
        return rows[-1]["part"], rows[-1]["tree_id"]
    from .workspace import base_tree

    base = base_tree(store, run_id)
    return (0, base) if base else (None, "")


def diff_final_trees(store: Store, run_a: str, run_b: str, *, patches: bool = True, context: int = 3) -> RunTreesDiff:
    """The files that differ between the final trees of ``run_a`` and ``run_b`` (sorted by path)."""
    return diff_run_trees(store, run_a, run_b, patches=patches, context=context)


def diff_run_trees(store: Store, run_a: str, run_b: str, *, part_a: int | None = None, part_b: int | None = None,
                   patches: bool = True, context: int = 3) -> RunTreesDiff:
    """The files that differ between ``run_a``'s tree at ``part_a`` and ``run_b``'s at ``part_b``
    (sorted by path); a part left out is the run's final tree, part 0 its base tree.

    Raises:
        PartNotFound: a named part does not exist or has no snapshot.
    """
    from .workspace import tree_of_part

    result = RunTreesDiff(run_a, run_b)
    for side, run_id, part in (("a", run_a, part_a), ("b", run_b, part_b)):
        found = final_tree(store, run_id) if part is None else (part, tree_of_part(store, run_id, part))
        setattr(result, f"part_{side}", found[0])
        setattr(result, f"tree_{side}", found[1])
    missing = [r for r, t in ((run_a, result.tree_a), (run_b, result.tree_b)) if not t]
    if missing:
        result.reason = (f"run {missing[0]} recorded no workspace snapshot (imported or appended without "
                         "repository state, or captured without a workdir), so it has no final tree to compare")
        return result
    try:
        git_a, git_b = snapshots(store, run_a), snapshots(store, run_b)
        files_a, files_b = git_a.files(result.tree_a), git_b.files(result.tree_b)
    except (ReplayError, GitStoreError) as exc:
        result.reason = str(exc)
        return result
    for path in sorted(set(files_a) | set(files_b)):
        oid_a, oid_b = files_a.get(path), files_b.get(path)
        if oid_a == oid_b:
            continue
        status = "added" if oid_a is None else "deleted" if oid_b is None else "modified"
        old = git_a.read_blob(result.tree_a, path) if oid_a else b""
        new = git_b.read_blob(result.tree_b, path) if oid_b else b""
        f = FileDiff(path, status, 0, 0, binary=_is_binary(old) or _is_binary(new), size_a=len(old), size_b=len(new))
        if not f.binary:
            if max(len(old), len(new)) > MAX_PATCH_BYTES:
                f.note = f"not patched: over {MAX_PATCH_BYTES // (1024 * 1024)} MiB"
            else:
                text = unified(old, new, path, status, context)
                body = [line for line in text.splitlines() if not line.startswith(("+++", "---"))]
                f.lines_added = sum(1 for line in body if line.startswith("+"))
                f.lines_removed = sum(1 for line in body if line.startswith("-"))
                f.patch = text if patches else ""
        result.files.append(f)
    return result
