"""Comparing two trees of the shadow repository: the paths that differ, their line counts, and
(for reports) their unified diffs and contents, in one pass of libgit2's diff.

No pygit2 here: the diff comes from `GitStore` (``repository.py``), whose ``_GitError`` is
pygit2's error class; deltas are read by ``status_char()``, paths, ids, ``line_stats`` and text.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import GitStoreError
from .result import FileChange


class DiffMixin:
    """Tree comparisons of `GitStore`."""

    def diff(self, tree_a: str | None, tree_b: str) -> list[FileChange]:
        """Paths that differ from ``tree_a`` (None = empty tree) to ``tree_b``, sorted by path,
        with line counts for text files (no rename detection)."""
        return sorted(change for change, _ in self._patches(tree_a, tree_b))

    def diff_patches(self, tree_a: str | None, tree_b: str) -> list[tuple[FileChange, str | None, str | None,
                                                                            str | None]]:
        """:meth:`diff` with, per file, its unified diff as libgit2 writes it (3 lines of context,
        from the ``---`` line; None for a binary file) and the ids (hex) of its two versions (None
        where absent): one pass over the trees, for callers that show every part's diff and read
        each version once (:meth:`blob`), however many parts it appears in."""
        out = []
        for change, patch in self._patches(tree_a, tree_b):
            delta = patch.delta
            old = str(delta.old_file.id) if change.status != "added" else None
            new = str(delta.new_file.id) if change.status != "deleted" else None
            text = None
            if not delta.is_binary:
                text = patch.text or ""
                if not text.startswith("--- "):  # headers first: diff --git, index, modes
                    at = text.find("\n--- ")
                    text = text[at + 1 :] if at >= 0 else ""
                text = text.rstrip("\n")
            out.append((change, text, old, new))
        out.sort(key=lambda item: item[0])
        return out

    def changed_paths(self, tree_a: str | None, tree_b: str) -> list[str]:
        """Sorted paths that differ between the two trees (without line counts)."""
        return sorted(d.new_file.path for d in self._diff(tree_a, tree_b).deltas)

    def _diff(self, tree_a: str | None, tree_b: str):
        try:
            return self._repo.diff(self._tree_or_empty(tree_a), self._tree(tree_b))
        except self._GitError as exc:  # libgit2 refuses a hostile tree (an absolute entry name)
            raise _refused(tree_a, tree_b, exc) from None

    def _patches(self, tree_a: str | None, tree_b: str) -> Iterator[tuple[FileChange, object]]:
        """``(FileChange, patch)`` per path that differs from ``tree_a`` to ``tree_b``."""
        try:
            patches = list(self._diff(tree_a, tree_b))
        except (self._GitError, KeyError) as exc:  # pygit2 1.14 raises KeyError for a file entry naming a tree
            raise _refused(tree_a, tree_b, exc) from None
        for patch in patches:
            delta = patch.delta
            kind = delta.status_char()
            if kind == "A":
                status, path = "added", delta.new_file.path
            elif kind == "D":
                status, path = "deleted", delta.old_file.path
            else:
                status, path = "modified", delta.new_file.path
            _, plus, minus = patch.line_stats
            yield FileChange(path, status, plus, minus), patch

    def _tree_changes(self, tree_a: str, tree_b: str) -> list[tuple[str, str, bool]]:
        """``(old path, new path, deleted)`` of every delta from ``tree_a`` to ``tree_b``."""
        a, b = self._tree(tree_a), self._tree(tree_b)
        if a.id == b.id:
            return []
        return [(d.old_file.path, d.new_file.path, d.status_char() == "D") for d in self._repo.diff(a, b).deltas]


def _refused(tree_a: str | None, tree_b: str, exc: Exception) -> GitStoreError:
    return GitStoreError(f"tree {tree_b} cannot be compared with {tree_a or 'the empty tree'}: it is "
                         f"hostile or damaged ({exc}); refused")
