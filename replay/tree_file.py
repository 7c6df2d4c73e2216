"""The files of a run's repository at any part, read from its snapshots without writing a tree.

A part's tree comes from the run's shadow repository, or from its bundles unbundled once into
the per-run cache (as :func:`agtrace.replay.materialize` does); nothing is checked out. Part 0
is the base tree. Used by ``agtrace cat`` and the viewer's file browser.
"""

from __future__ import annotations

from dataclasses import dataclass

from agtrace.eventlog import GitStoreError, Store, json_name, unquote_name

from .diff import _is_binary
from .errors import FileNotInTree
from .workspace import left_out, snapshots, tree_of_part

_REASONS = {"credential": "a credential file by its name", "credential_content": "it holds a credential",
            "size": "over the size limit", "nested_git": "a nested repository's .git"}


@dataclass(frozen=True)
class TreeFile:
    """One file of a tree: its path and blob id (a content hash: equal ids, equal contents)."""

    path: str
    blob: str

    def to_dict(self) -> dict:
        """For JSON: a path that is not UTF-8 in its quoted form (``json_name``)."""
        return {"path": json_name(self.path), "blob": self.blob}


@dataclass(frozen=True)
class FileContent:
    """One file as it was at a part: its bytes and whether they look binary (a NUL byte in the
    first 8 KiB, as git decides)."""

    run_id: str
    part: int
    path: str
    data: bytes

    @property
    def binary(self) -> bool:
        return _is_binary(self.data)

    def text(self) -> str:
        """The content as text (invalid UTF-8 replaced); for binary files, what they are."""
        if self.binary:
            return f"(binary file, {len(self.data):,} bytes)"
        return self.data.decode("utf-8", "replace")


def tree_files(store: Store, run_id: str, part: int) -> list[TreeFile]:
    """Every file of the run's tree at ``part``, sorted by path.

    Raises:
        PartNotFound: the run has no such part or no snapshot of it.
    """
    tree = tree_of_part(store, run_id, part)
    git = snapshots(store, run_id)
    return [TreeFile(path, blob) for path, blob in sorted(git.files(tree).items())]


def read_file(store: Store, run_id: str, part: int, path: str) -> FileContent:
    """The file at ``path`` (relative to the repository root) as it was after ``part``; ``path``
    may also be a name in the quoted form that ``cat --list`` prints (``quote_name``).

    Raises:
        PartNotFound: the run has no such part or no snapshot of it.
        FileNotInTree: the tree has no file at ``path`` (or it is a directory).
    """
    tree = tree_of_part(store, run_id, part)
    git = snapshots(store, run_id)
    clean = path.strip().removeprefix("./").strip("/")
    try:
        data = git.read_blob(tree, clean)
    except GitStoreError:
        data = None
    shown = unquote_name(path.strip()) if data is None else None  # the quoted form that --list prints
    if shown is not None:
        clean = shown.removeprefix("./").strip("/")
        try:
            data = git.read_blob(tree, clean)
        except GitStoreError:
            pass
    if data is None:
        why = {e.path: e.reason for e in left_out(store, run_id, part, tree)}.get(json_name(clean))
        if why is not None:
            raise FileNotInTree(f"{path!r} was left out when part {part} of run {run_id} was recorded "
                                f"({why}: {_REASONS.get(why, 'by the snapshot policy')}): no tree of the store "
                                "holds it (docs/format.md, \"Workspace snapshots\")")
        raise FileNotInTree(f"{path!r} is not a file of run {run_id} at part {part}; "
                            f"`agtrace cat {run_id[:10]} --part {part} --list` lists its files")
    return FileContent(run_id, part, clean, data)
