"""The per-part diffs a report embeds: what changed in each part, within the report's size caps.

:class:`DiffsAside` diffs the tree of every part against the previous part's tree (once per
distinct pair), in a child process while the report folds the run's events; file lists and line
counts are git's (:meth:`GitStore.diff`), so is the unified diff text (libgit2's, 3 lines of
context, from its ``---`` line). :class:`DiffBudget` carries what is left
of the caps in :class:`~agtrace.replay.report.ReportLimits`; every cut is noted.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agtrace.eventlog import Store, end_child, fork_computing

from .errors import ReplayError
from .workspace import base_tree, snapshots

if TYPE_CHECKING:
    from agtrace.eventlog import GitStore  # pygit2: loaded with the first repository opened

    from .report import ReportLimits



@dataclass
class DiffBudget:
    """What is left of the diff and file-version caps while a report is built, and what is known
    of every file version read so far (each is read once, whichever parts show it)."""

    limits: ReportLimits
    diff_left: int = 0
    blob_left: int = 0
    blobs: dict[str, str] = field(default_factory=dict)
    cut_parts: int = 0
    seen: dict[str, tuple[int, bool]] = field(default_factory=dict)
    """blob id -> (size, whether it is text)"""

    def __post_init__(self):
        self.diff_left = self.limits.diff_total_bytes
        self.blob_left = self.limits.blob_total_bytes


def _text(data: bytes | None) -> str | None:
    """The bytes as text, or None when they look binary."""
    if data is None or b"\0" in data[:8192]:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _key(oid: str) -> str:
    """A file version's name in the report's ``blobs`` (its blob id, shortened)."""
    return oid[:16]


def _version(git: GitStore, oid: str, budget: DiffBudget) -> tuple[int, bool]:
    """``(size, is text)`` of blob ``oid``, read the first time it is asked for; its text is kept
    in ``budget.blobs`` then, while the caps allow (a version the caps left out stays out: they
    only shrink)."""
    known = budget.seen.get(oid)
    if known is None:
        data = git.blob(oid)
        text = _text(data)
        known = budget.seen[oid] = (len(data), text is not None)
        if text is not None and len(data) <= budget.limits.blob_file_bytes and len(data) <= budget.blob_left:
            budget.blobs[_key(oid)] = text
            budget.blob_left -= len(data)
    return known


def part_changes(git: GitStore, tree_a: str, tree_b: str, budget: DiffBudget) -> list[list]:
    """Files that differ from ``tree_a`` to ``tree_b`` as ``[path, status, +, -, key_a, key_b, diff, note]``.

    ``diff`` is a unified diff (3 lines of context) or None with ``note`` saying why; ``key_*``
    name the two versions in ``budget.blobs`` (None where the file is absent).
    """
    lim = budget.limits
    out = []
    part_left = lim.diff_part_bytes
    for c, patch, old, new in git.diff_patches(tree_a or None, tree_b):
        versions = [_version(git, oid, budget) if oid is not None else None for oid in (old, new)]
        diff, note = None, ""
        if any(v is not None and not v[1] for v in versions):
            note = "binary file"
        elif max(v[0] if v is not None else 0 for v in versions) > lim.blob_file_bytes:
            note = f"file over {lim.blob_file_bytes // 1024} KiB; `agtrace replay` writes it out"
        elif part_left <= 0 or budget.diff_left <= 0:
            note = "left out: the report's diff size cap was reached; `agtrace replay` shows it"
        else:
            diff = patch or ""
            size = len(diff.encode())
            if size > min(part_left, budget.diff_left):
                keep = max(0, min(part_left, budget.diff_left))
                diff = diff.encode()[:keep].decode(errors="ignore") + "\n… [diff cut at the size cap]"
                budget.cut_parts += 1
            part_left -= size
            budget.diff_left -= size
        keys = [_key(oid) if oid is not None else None for oid in (old, new)]
        out.append([c.path, c.status, c.lines_added, c.lines_removed, keys[0], keys[1], diff, note])
    return out


class DiffsAside:
    """Per-part changes for every part (``(part, tree)`` in part order; parts without a tree
    left out) whose tree differs from the previous part's, computed in a child process so that
    the caller folds the run's events on the other core meanwhile: call it for the diffs (it
    waits for them), or :meth:`cancel` it. The repository is opened before the fork, and the
    child touches neither the catalog nor any file it did not open itself. Where there is no ``fork``, or the child fails, the diffs are
    computed in this process when they are asked for: the result is the same either way."""

    def __init__(self, store: Store, run_id: str, part_trees: list[tuple[int, str]], limits: ReportLimits):
        self._pid: int | None = None
        prepared = _prepare(store, run_id, part_trees)
        if isinstance(prepared, dict):
            self._here = lambda: prepared
            return
        self._here = functools.partial(_diff_parts, *prepared, limits)
        if not hasattr(os, "fork"):
            return
        import msgspec

        self._pid, self._pipe = fork_computing(lambda: msgspec.json.encode(self._here()))

    def __call__(self) -> dict:
        if self._pid is None:
            return self._here()
        import msgspec

        data = self._pipe.read()
        self._pipe.close()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return msgspec.json.decode(data) if status == 0 else self._here()

    def cancel(self) -> None:
        """End the child (the report failed or was interrupted meanwhile); closing twice is harmless."""
        if self._pid is not None:
            end_child(self._pid)
            self._pid = None
            self._pipe.close()


def _prepare(store: Store, run_id: str, part_trees: list[tuple[int, str]]):
    """``(todo, repository, base tree)`` for :func:`_diff_parts`, or the finished result of a
    run that has nothing to diff."""
    todo = [(n, tree) for n, tree in part_trees if tree]
    if not todo:
        return {"parts": {}, "blobs": {}, "note": "This run recorded no workspace snapshots, so it has no diffs."}
    try:
        git = snapshots(store, run_id)
    except ReplayError as exc:
        return {"parts": {}, "blobs": {}, "note": str(exc)}
    return todo, git, base_tree(store, run_id)


def _diff_parts(todo: list[tuple[int, str]], git: GitStore, previous: str, limits: ReportLimits) -> dict:
    budget = DiffBudget(limits)
    changes: dict[str, list] = {}
    cache: dict[tuple[str, str], list] = {}
    for n, tree in todo:
        if tree != previous:
            pair = (previous, tree)
            if pair not in cache:
                cache[pair] = part_changes(git, previous, tree, budget)
            changes[str(n)] = cache[pair]
        previous = tree
    note = ""
    if budget.diff_left <= 0 or budget.cut_parts:
        note = "Some diffs were cut or left out at the report's size caps; `agtrace replay ID --part N` writes any part out."
    return {"parts": changes, "blobs": budget.blobs, "note": note,
            "blobs_complete": budget.blob_left > 0}
