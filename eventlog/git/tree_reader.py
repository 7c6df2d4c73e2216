"""A shadow repository read without libgit2: commits, trees and blobs parsed in Python, so that a
replay into a new directory never imports pygit2 (50–80 ms of a cold replay's start).

`TreeReader` stands in for `GitStore` where a replay writes a fresh tree: :meth:`~TreeReader.tree_of`,
:meth:`~TreeReader.checkout` (`CheckoutMixin`'s own, on the trees parsed here, written by
``treewrite.py``) and :meth:`~TreeReader.diff` (``treeedit.tree_changes``, with line counts
computed here where every diff must give the same).

Contract: what is read here is checked as libgit2 checks it (loose objects, whole packed ones
and deltas of one pack, that hash to their name, ``loose.py`` and ``packed.py``; of the kind
their place needs), and a tree is
parsed here only when it is plainly well formed: every entry ``<mode> <name>\\0<20-byte id>`` with
one of git's four modes as git writes them (``100644``, ``100755``, ``120000``, ``40000``) and a
UTF-8 name that is safe to write (``containment.check_name``). Anything else (a REF_DELTA whose
base is in another pack, an object no loose file or pack index holds, a damaged object, a tree this parser does not take, a tag, a
line count that needs a real diff) goes to `GitStore` for that object, opened on first need
(pygit2 is imported then), so libgit2 says what it said before: the same trees, the same errors.
A diff that met any such object is computed by libgit2 whole. Every other `GitStore` attribute is
the `GitStore`'s (looked up on it on first use). Safe to share between a checkout's threads.
"""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING, NamedTuple

from .checkout import CheckoutMixin
from .loose import DamagedObject
from .packed import ObjectReader
from .treewrite import MODE_BLOB, MODE_EXEC, MODE_LINK, MODE_TREE

if TYPE_CHECKING:
    from .repository import GitStore

_HEX40 = re.compile(r"[0-9a-f]{40}").fullmatch
_AGTRACE_COMMIT = re.compile(rb"tree ([0-9a-f]{40})\n(?:parent [0-9a-f]{40}\n)*"
                             rb"author agtrace <agtrace@localhost> [0-9]{1,10} [+-][0-9]{4}\n"
                             rb"committer agtrace <agtrace@localhost> [0-9]{1,10} [+-][0-9]{4}\n\n").match
_OWN = frozenset({"path", "delegated", "_objects", "_git", "_opening"})
_ENTRY = re.compile(rb"(100644|100755|120000|40000) ([^\0/\\]+)\0(.{20})", re.DOTALL)
"""One tree entry with a name that is safe to write (no ``/``, backslash or NUL; not empty)."""
_MODES = {b"100644": MODE_BLOB, b"100755": MODE_EXEC, b"120000": MODE_LINK, b"40000": MODE_TREE}

LINE_STATS_MAX = 8 << 20
"""Blobs larger than this get their line counts from libgit2 (a diff in Python of big files costs
more than importing it)."""


class Entry(NamedTuple):
    """One entry of a tree, read as pygit2's are: ``name``, ``filemode`` and ``id`` (hex)."""

    name: str
    filemode: int
    id: str


class Tree:
    """A tree's entries in stored order, with its ``id`` (hex)."""

    __slots__ = ("entries", "id")

    def __init__(self, oid: str, entries: list[Entry]):
        self.id, self.entries = oid, entries

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def parse_tree(data: bytes) -> list[Entry] | None:
    """The entries of a tree object's bytes, or None when they are not plainly well formed (see
    the module docstring: libgit2 then decides what they are)."""
    entries, at = [], 0
    for found in _ENTRY.finditer(data):
        if found.start() != at:
            return None
        try:
            name = found.group(2).decode()
        except UnicodeDecodeError:
            return None
        if name in (".", "..") or name.lower() == ".git":
            return None
        entries.append(Entry(name, _MODES[found.group(1)], found.group(3).hex()))
        at = found.end()
    return entries if at == len(data) else None


def commit_tree(data: bytes) -> str | None:
    """The tree id of a commit object's bytes when they have the shape of agtrace's own commits
    (``tree``, any ``parent`` lines, agtrace's author and committer, a blank line, the
    message), else None: any other commit is libgit2's to parse or refuse."""
    found = _AGTRACE_COMMIT(data)
    return found.group(1).decode() if found else None


def forced_line_stats(old: bytes, new: bytes) -> tuple[int, int] | None:
    """``(lines added, lines removed)`` from ``old`` to ``new`` when every correct line diff
    counts the same, else None (ask libgit2). Lines are compared whole, with their newline, as
    git's diff does. After the lines the two share at their start and at their end (which git's
    diff trims first) are set aside, what is left is forced when either side is empty or the
    two sides share no line at all (nothing can be kept, so everything is removed and added).
    Text only: any NUL byte (git's binary test looks for one) or a blob over
    :data:`LINE_STATS_MAX` goes to libgit2."""
    if old == new:
        return 0, 0
    if len(old) > LINE_STATS_MAX or len(new) > LINE_STATS_MAX or b"\0" in old or b"\0" in new:
        return None
    a, b = _lines(old), _lines(new)
    shortest, head = min(len(a), len(b)), 0
    while head < shortest and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shortest - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a, b = a[head : len(a) - tail], b[head : len(b) - tail]
    if a and b and not set(a).isdisjoint(b):
        return None
    return len(b), len(a)


def _lines(data: bytes) -> list[bytes]:
    """The lines of ``data``; a last line without its newline is marked (by a NUL, which text
    here never holds) so that it differs from the same line with one."""
    lines = data.split(b"\n")
    if lines[-1]:
        lines[-1] += b"\0"
    else:
        lines.pop()
    return lines


class TreeReader:
    """The shadow repository at ``path`` (a bare repository made by `GitStore.init`) read in
    Python where it can be (see the module docstring)."""

    checkout = CheckoutMixin.checkout

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.path.abspath(path)
        self._objects = ObjectReader(os.path.join(self.path, "objects"))
        self._git: GitStore | None = None
        self._opening = threading.Lock()
        self.delegated = 0
        """How many objects libgit2 was asked for (0 when pygit2 was never needed)."""

    # -- what a checkout and a diff read -----------------------------------------------------

    def tree_of(self, commit_or_tree: str) -> str:
        """Tree id (hex) of a commit or tree id; errors as `GitStore.tree_of`'s."""
        return str(self._tree(commit_or_tree).id)

    def diff(self, tree_a: str | None, tree_b: str) -> list:
        """`GitStore.diff`: sorted `FileChange`s from ``tree_a`` (None: the empty tree) to
        ``tree_b``; libgit2's own when any object of either tree had to be read by it."""
        from .treeedit import tree_changes

        before = self.delegated
        try:
            a = self.tree_of(tree_a) if tree_a else None
            changes = tree_changes(self, a, self.tree_of(tree_b))
        except Exception:  # noqa: BLE001 - libgit2 says what is wrong, as it did before
            changes = None
        if changes is None or self.delegated != before:
            return self._libgit2().diff(tree_a, tree_b)
        return changes

    def _tree(self, tree_id: str) -> Tree:
        found, oid = self._read(tree_id), tree_id
        if found is not None and found[0] == b"commit":
            oid = commit_tree(found[1]) or ""
            found = self._read(oid)
        tree = self._parsed(oid, found)  # not `or`: an empty Tree is falsy
        return tree if tree is not None else self._wrap(self._libgit2()._tree(tree_id))

    def _lookup(self, oid) -> Tree:
        hex_id = str(oid)
        tree = self._parsed(hex_id, self._read(hex_id))
        return tree if tree is not None else self._wrap(self._libgit2()._lookup(oid))

    @staticmethod
    def _parsed(oid: str, found: tuple[bytes, bytes] | None) -> Tree | None:
        """The tree ``oid`` from what `_read` gave, when it is a tree this parser takes."""
        if found is None or found[0] != b"tree":
            return None
        entries = parse_tree(found[1])
        return None if entries is None else Tree(oid, entries)

    def _blob_data(self, oid) -> bytes:
        found = self._read(str(oid))
        if found is not None and found[0] == b"blob":
            return found[1]
        return self._libgit2()._blob_data(oid)  # the error it raised before, or the object it alone finds

    def _blob_line_stats(self, old, new) -> tuple[int, int]:
        stats = forced_line_stats(self._blob_data(old), self._blob_data(new))
        return stats if stats is not None else self._libgit2()._blob_line_stats(old, new)

    def _read(self, oid: str) -> tuple[bytes, bytes] | None:
        """``(kind, bytes)`` of ``oid`` read in Python, or None (libgit2's to read or refuse)."""
        if type(oid) is not str or _HEX40(oid) is None:
            return None
        try:
            return self._objects.read(oid)
        except (DamagedObject, ValueError, OSError):
            return None

    # -- libgit2, when it is needed ------------------------------------------------------------

    def _libgit2(self) -> GitStore:
        with self._opening:
            self.delegated += 1
            if self._git is None:
                from .repository import GitStore

                self._git = GitStore.open(self.path)
            return self._git

    @staticmethod
    def _wrap(tree) -> Tree:
        """A libgit2 tree as a `Tree` (hex ids, so both kinds compare alike in a diff)."""
        return Tree(str(tree.id), [Entry(e.name, e.filemode, str(e.id)) for e in tree])

    def __getattr__(self, name: str):
        if name.startswith("__") or name in _OWN:
            raise AttributeError(name)
        return getattr(self._libgit2(), name)
