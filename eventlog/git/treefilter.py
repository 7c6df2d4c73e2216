"""Trees that an importer brings, with their credential files left out.

A captured snapshot never hashes a credential file (``policy.py``), but an importer brings trees
that another tool recorded: the commits of an envoi-trace ``repo.bundle``, an ISO-Bench base
commit with the agent's patch applied. `without_credentials` gives such a tree as a snapshot of
the same files would have recorded it: the same credential rules (``agtrace.eventlog.credential``,
by name and by content, with the secret values of the environment), the paths it left out (path,
reason, size), directories left empty dropped, as git does.

The cost is the change, not the tree: the result is remembered per (tree, path) and the verdict
per (blob, path), so the next part of a run, whose trees are mostly the last part's, reads only
the blobs of the files that changed. A tree with nothing to leave out keeps its id.

The filtered trees are written to the repository they were read from; the importer's scratch
repository is never the store's (see ``RunSink.trees.git``, an ``ImportedTrees``), so the
objects left out, and the history of the foreign repository, never reach the run's shadow
repository or its bundles.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import credential
from .treeedit import tree_bytes

if TYPE_CHECKING:
    from .repository import GitStore

_DIRS = (b"40000", b"040000")  # git writes the first; old tools wrote the second
_NOT_FILES = (b"120000", b"160000")  # a symlink, a submodule: judged by name only
Left = tuple[str, str, int | None]
"""A path left out: ``(path, reason, size)``, as `SnapshotResult.excluded` holds them."""


class TreeFilterMixin:
    """`GitStore.without_credentials`."""

    def without_credentials(self: GitStore, tree_id: str, secrets: tuple[str, ...] = ()) -> tuple[str, list[Left]]:
        """``tree_id`` without its credential files, and what was left out (sorted by path).

        A file is left out for the reasons a snapshot gives (``credential`` by name,
        ``credential_content`` by its first bytes or a value of ``secrets``); a symlink or a
        submodule only by name. An empty tree stays the empty tree."""
        memo = self._filtered.setdefault(secrets, ({}, {}))
        new, left = _filter(self, bytes.fromhex(tree_id), b"", secrets, memo)
        return (new or self._write_object(b"tree", b"")).hex(), sorted(left)


def _filter(git: GitStore, oid: bytes, prefix: bytes, secrets: tuple[str, ...],
            memo: tuple[dict, dict]) -> tuple[bytes | None, tuple[Left, ...]]:
    """``(new tree id or None when nothing is left, what was left out)`` for tree ``oid`` at
    ``prefix`` (``dir/``). Depth-first without recursion: a hostile tree may nest deeper than
    Python's stack."""
    trees, blobs = memo
    stack = [(oid, prefix, None)]  # (tree, its path, its entries once its subtrees are queued)
    while stack:
        tree, at, entries = stack[-1]
        if (tree, at) in trees:
            stack.pop()
            continue
        if entries is None:
            entries = git._tree_entries(tree)  # noqa: SLF001
            stack[-1] = (tree, at, entries)
            stack.extend((child, at + name + b"/", None) for name, (mode, child) in entries.items()
                         if mode in _DIRS and (child, at + name + b"/") not in trees)
            continue
        stack.pop()
        kept: dict[bytes, tuple[bytes, bytes]] = {}
        left: list[Left] = []
        for name, (mode, child) in entries.items():
            rel = at + name
            if mode in _DIRS:
                sub, sub_left = trees[(child, rel + b"/")]
                left.extend(sub_left)
                if sub is not None:
                    kept[name] = (mode, sub)
                continue
            verdict = blobs.get((child, rel))
            if verdict is None:
                verdict = blobs[(child, rel)] = _verdict(git, rel, mode, child, secrets)
            if verdict[0]:
                left.append((os.fsdecode(rel), *verdict))
            else:
                kept[name] = (mode, child)
        if not left:
            new = tree
        elif kept:
            new = git._write_object(b"tree", tree_bytes(kept))  # noqa: SLF001
        else:
            new = None
        trees[(tree, at)] = (new, tuple(left))
    return trees[(oid, prefix)]


def _verdict(git: GitStore, rel: bytes, mode: bytes, oid: bytes, secrets: tuple[str, ...]) -> tuple[str, int | None]:
    """``(reason, size)`` of a file entry; reason "" keeps it."""
    path = os.fsdecode(rel)
    if mode in _NOT_FILES:  # as a snapshot judges them (any other mode is a file: 100644, 100664, …)
        return ("credential" if credential.credential_name(path) else "", None)
    if credential.credential_name(path):
        return "credential", None
    data = git._blob_data(oid.hex())  # noqa: SLF001
    reason = "credential_content" if credential.credential_content(path, data, secrets) else ""
    return reason, len(data)
