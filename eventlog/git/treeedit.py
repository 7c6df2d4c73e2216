"""Trees of a snapshot from changed paths: the new tree written from the parent's by rewriting
only the changed paths' ancestor trees, and the changes between two trees found by descending
only into subtrees that differ.

A snapshot from a watcher's changed paths touches a handful of files of a tree that may hold tens
of thousands; writing the whole index's tree (libgit2 re-reads every tree to rebuild its cache)
and diffing two whole trees cost more than the change. Here the cost is the edited paths' depth.
Trees are git's bytes, parsed and serialized here (``name -> (mode, id)``; ids are 20 bytes),
so no Python object per entry is built by libgit2 and no tree builder round-trips; the trees a
store reads or writes are kept parsed (:data:`TREE_CACHE` of them), so the next snapshot, whose
parent's trees are mostly the ones just written, reads few.

Contracts:

* `edited_tree` gives the tree that the index would write after the same edits, applied in order
  (``(path, (oid, mode, ...))`` sets a file, ``(path, None)`` removes a path and all below it);
  directories left empty are dropped, as git does; a directory whose entries end up as they were
  keeps its id (nothing written).
* `tree_changes` gives what `DiffMixin.diff` gives for the same two trees (sorted `FileChange`s,
  a type change as a deletion plus an addition, line counts 0 for binary files).

No pygit2 here: objects are read and written through `GitStore`'s ``_read_raw`` and
``_stage_object``, blobs compared by its ``_blob_line_stats`` and read by ``_blob_data``
(``_fresh`` holds the blobs the snapshot being recorded has just read).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .result import FileChange, count_lines

if TYPE_CHECKING:
    from .repository import GitStore

MODE_TREE = 0o040000
TREE_CACHE = 4096
"""Parsed trees a store keeps (a tree of a big checkout's directory is a few KB)."""
_MISSING = object()
_TREE, _LINK = b"40000", b"120000"
_MODES = {0o100644: b"100644", 0o100755: b"100755", 0o120000: _LINK, MODE_TREE: _TREE, 0o160000: b"160000"}


def parse_tree(data: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    """``name -> (mode, id)`` of a tree object's bytes; ValueError when they are no tree."""
    out, at, end = {}, 0, len(data)
    try:
        while at < end:
            space = data.index(b" ", at)
            nul = data.index(b"\0", space)
            oid = data[nul + 1: nul + 21]
            if len(oid) != 20:
                raise ValueError("a truncated tree entry")
            out[data[space + 1: nul]] = (data[at:space], oid)
            at = nul + 21
    except ValueError as exc:
        raise ValueError(f"not a tree object: {exc}") from None
    return out


def tree_bytes(entries: dict[bytes, tuple[bytes, bytes]]) -> bytes:
    """A tree object's bytes, entries in git's order (a directory sorts as its name + ``/``)."""
    names = sorted(entries, key=lambda n: n + b"/" if _is_tree(entries[n][0]) else n)
    return b"".join(entries[n][0] + b" " + n + b"\0" + entries[n][1] for n in names)


def _is_tree(mode: bytes) -> bool:
    return mode == _TREE or (mode != b"100644" and int(mode, 8) == MODE_TREE)


def _raw(oid) -> bytes:
    if isinstance(oid, bytes):
        return oid
    if isinstance(oid, str):
        return bytes.fromhex(oid)
    return oid.raw  # a pygit2 Oid


class TreeEditMixin:
    """`GitStore`'s parsed-tree cache and blob comparison, for the functions below."""

    def _tree_entries(self: GitStore, oid: bytes) -> dict[bytes, tuple[bytes, bytes]]:
        """The parsed tree ``oid`` (20 bytes; do not mutate); KeyError when it is missing,
        ValueError when it is no tree."""
        entries = self._trees.get(oid)
        if entries is None:
            kind, data = self._read_raw(oid)
            if kind != "tree":
                raise ValueError(f"object {oid.hex()} is a {kind}, not a tree")
            entries = parse_tree(data)
            self._remember_tree(oid, entries)
        return entries

    def _remember_tree(self: GitStore, oid: bytes, entries: dict) -> None:
        trees = self._trees
        if len(trees) >= TREE_CACHE:
            for key in list(trees)[: TREE_CACHE // 2]:  # the oldest half
                del trees[key]
        trees[oid] = entries


class _Dir:
    """A directory of the new tree: its tree in the parent snapshot (or None) and the entries
    that differ from it (name → ``(oid, mode)``, None for removed, or a `_Dir`)."""

    __slots__ = ("base", "children")

    def __init__(self, base):
        self.base = base
        self.children: dict = {}


def edited_tree(git: GitStore, base_tree, edits) -> str:
    """The id (hex) of ``base_tree`` (an id, or None for the empty tree) after ``edits``; the new
    trees go through ``git._stage_object`` (into the snapshot's pack when one is staged)."""
    root = _Dir(_raw(base_tree) if base_tree is not None else None)
    for rel, entry in edits:
        *dirs, name = (os.fsencode(part) for part in rel.split("/"))
        node = root
        for d in dirs:
            node = _child_dir(git, node, d, create=entry is not None)
            if node is None:
                break
        else:
            node.children[name] = None if entry is None else (_MODES.get(entry[1]) or b"%o" % entry[1], _raw(entry[0]))
    return _write(git, root, top=True).hex()


def _child_dir(git: GitStore, node: _Dir, name: bytes, *, create: bool) -> _Dir | None:
    child = node.children.get(name, _MISSING)
    if isinstance(child, _Dir):
        return child
    base = None
    if child is _MISSING and node.base is not None:
        entry = git._tree_entries(node.base).get(name)
        if entry is not None and _is_tree(entry[0]):
            base = entry[1]
    if base is None and not create:
        return None  # removing below a path that is no directory: nothing to remove
    new = _Dir(base)
    node.children[name] = new
    return new


def _write(git: GitStore, node: _Dir, *, top: bool = False) -> bytes | None:
    base = git._tree_entries(node.base) if node.base is not None else {}
    entries = dict(base)
    for name, child in node.children.items():
        if isinstance(child, _Dir):
            child = (_TREE, sub) if (sub := _write(git, child)) is not None else None
        if child is None:
            entries.pop(name, None)
        else:
            before = base.get(name)
            if before is not None and before[1] != child[1] and not _is_tree(before[0]) and not _is_tree(child[0]):
                git._packset.hint(child[1], before[1])  # the file's new version: a delta in a merge
            entries[name] = child
    if not top and not entries:
        return None
    if node.base is not None and entries == base:
        return node.base
    oid = git._stage_object(b"tree", tree_bytes(entries), node.base)
    git._remember_tree(oid, entries)
    return oid


def tree_changes(git: GitStore, tree_a, tree_b) -> list[FileChange]:
    """Sorted changes from ``tree_a`` (None: the empty tree) to ``tree_b`` (see module doc).
    ``git`` is a `GitStore` (its parsed trees) or anything with ``_lookup`` (trees whose entries
    have ``name``, ``filemode`` and ``id``), ``_blob_data`` and ``_blob_line_stats``, such as
    ``tree_reader.TreeReader``."""
    out: list[FileChange] = []
    if hasattr(type(git), "_tree_entries"):  # the class: a stand-in's __getattr__ is not asked
        entries, fresh = git._tree_entries, git._fresh
    else:
        entries, fresh = (lambda oid: _looked_up(git, oid)), {}
    _compare(git, entries, fresh, None if tree_a is None else _raw(tree_a), _raw(tree_b), "", out)
    out.sort()
    return out


def _looked_up(git, oid: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    return {os.fsencode(e.name): (_MODES.get(int(e.filemode)) or b"%o" % int(e.filemode), _raw(str(e.id)))
            for e in git._lookup(oid.hex())}


def _compare(git: GitStore, entries, fresh: dict, tree_a, tree_b, prefix: str, out: list[FileChange]) -> None:
    if tree_a is not None and tree_b is not None and tree_a == tree_b:
        return
    old = entries(tree_a) if tree_a is not None else {}
    new = entries(tree_b) if tree_b is not None else {}
    for name in old.keys() | new.keys():
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        path = prefix + os.fsdecode(name)
        a_tree = a is not None and _is_tree(a[0])
        b_tree = b is not None and _is_tree(b[0])
        if a_tree or b_tree:
            _compare(git, entries, fresh, a[1] if a_tree else None, b[1] if b_tree else None, path + "/", out)
        if a is not None and b is not None and not a_tree and not b_tree and (a[0] == _LINK) == (b[0] == _LINK):
            plus, minus = git._blob_line_stats(a[1].hex(), b[1].hex())
            out.append(FileChange(path, "modified", plus, minus))
            continue
        if a is not None and not a_tree:
            out.append(FileChange(path, "deleted", 0, _lines(git, fresh, a[1].hex())))
        if b is not None and not b_tree:
            out.append(FileChange(path, "added", _lines(git, fresh, b[1].hex()), 0))


def _lines(git: GitStore, fresh: dict, oid: str) -> int:
    data = fresh.get(oid)
    return count_lines(git._blob_data(oid) if data is None else data)
