"""Trees of a snapshot from changed paths: the new tree written from the parent's by rewriting
only the changed paths' ancestor trees, and the changes between two trees found by descending
only into subtrees that differ.

A snapshot from a watcher's changed paths touches a handful of files of a tree that may hold tens
of thousands; writing the whole index's tree (libgit2 re-reads every tree to rebuild its cache)
and diffing two whole trees cost more than the change. Here the cost is the edited paths' depth.

Contracts:

* `edited_tree` gives the tree that the index would write after the same edits, applied in order
  (``(path, (oid, mode))`` sets a file, ``(path, None)`` removes a path and all below it);
  directories left empty are dropped, as git does.
* `tree_changes` gives what `DiffMixin.diff` gives for the same two trees (sorted `FileChange`s,
  a type change as a deletion plus an addition, line counts 0 for binary files).

No pygit2 here: trees come from `GitStore`'s ``_lookup`` and ``_blob_data`` and from its pygit2
repository's ``TreeBuilder`` and blob diff; its ``_GitError`` is pygit2's error class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .checkout import MODE_LINK
from .incremental import count_lines
from .result import FileChange

if TYPE_CHECKING:
    from .repository import GitStore

MODE_TREE = 0o040000
_MISSING = object()


class TreeEditMixin:
    """`GitStore`'s methods for trees from changed paths."""

    def _edited_tree(self: GitStore, index, root: str, parent_tree, edits: list):
        """The parent's tree with ``edits`` (the index's changes) applied, rewriting only their
        ancestors; the index's own tree where libgit2 refuses an entry the index took."""
        try:
            return edited_tree(self, parent_tree, edits)
        except (self._GitError, ValueError):
            return self._write_tree(index, root, flush=False)

    def _tree_builder(self: GitStore, tree_id):
        repo = self._repo
        return repo.TreeBuilder(repo[tree_id]) if tree_id is not None else repo.TreeBuilder()

    def _blob_line_stats(self: GitStore, old, new) -> tuple[int, int]:
        """Lines added and removed from blob ``old`` to blob ``new`` (0, 0 if either is binary)."""
        _, plus, minus = self._repo[old].diff(self._repo[new]).line_stats
        return plus, minus


class _Dir:
    """A directory of the new tree: its tree in the parent snapshot (or None) and the entries
    that differ from it (name → ``(oid, mode)``, None for removed, or a `_Dir`)."""

    __slots__ = ("base", "children")

    def __init__(self, base):
        self.base = base
        self.children: dict = {}


def edited_tree(git: GitStore, base_tree, edits) -> object:
    """The id of ``base_tree`` (a tree id, or None for the empty tree) after ``edits``."""
    root = _Dir(base_tree)
    for rel, entry in edits:
        *dirs, name = rel.split("/")
        node = root
        for d in dirs:
            node = _child_dir(git, node, d, create=entry is not None)
            if node is None:
                break
        else:
            node.children[name] = entry
    return _write(git, root, top=True)


def _child_dir(git: GitStore, node: _Dir, name: str, *, create: bool) -> _Dir | None:
    child = node.children.get(name, _MISSING)
    if isinstance(child, _Dir):
        return child
    base = None
    if child is _MISSING and node.base is not None:
        entry = _entry(git._lookup(node.base), name)
        if entry is not None and entry[1] == MODE_TREE:
            base = entry[0]
    if base is None and not create:
        return None  # removing below a path that is no directory: nothing to remove
    new = _Dir(base)
    node.children[name] = new
    return new


def _entry(tree, name: str):
    try:
        obj = tree[name]
    except KeyError:
        return None
    return obj.id, obj.filemode


def _write(git: GitStore, node: _Dir, *, top: bool = False):
    builder = git._tree_builder(node.base)
    for name, child in node.children.items():
        if isinstance(child, _Dir):
            child = (sub, MODE_TREE) if (sub := _write(git, child)) is not None else None
        if child is None:
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            builder.insert(name, child[0], child[1])
    if not top and len(builder) == 0:
        return None
    return builder.write()


def tree_changes(git: GitStore, tree_a, tree_b) -> list[FileChange]:
    """Sorted changes from ``tree_a`` (None: the empty tree) to ``tree_b`` (see module doc)."""
    out: list[FileChange] = []
    _compare(git, tree_a, tree_b, "", out)
    out.sort()
    return out


def _entries(git: GitStore, tree) -> dict:
    if tree is None:
        return {}
    return {obj.name: (obj.id, obj.filemode) for obj in git._lookup(tree)}


def _compare(git: GitStore, tree_a, tree_b, prefix: str, out: list[FileChange]) -> None:
    if tree_a is not None and tree_b is not None and tree_a == tree_b:
        return
    old, new = _entries(git, tree_a), _entries(git, tree_b)
    for name in old.keys() | new.keys():
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        path = prefix + name
        a_tree = a is not None and a[1] == MODE_TREE
        b_tree = b is not None and b[1] == MODE_TREE
        if a_tree or b_tree:
            _compare(git, a[0] if a_tree else None, b[0] if b_tree else None, path + "/", out)
        if a is not None and b is not None and not a_tree and not b_tree and (a[1] == MODE_LINK) == (b[1] == MODE_LINK):
            plus, minus = git._blob_line_stats(a[0], b[0])
            out.append(FileChange(path, "modified", plus, minus))
            continue
        if a is not None and not a_tree:
            out.append(FileChange(path, "deleted", 0, _lines(git, a[0])))
        if b is not None and not b_tree:
            out.append(FileChange(path, "added", _lines(git, b[0]), 0))


def _lines(git: GitStore, oid) -> int:
    return count_lines(git._blob_data(oid))
