"""Differences between the workspace trees of two parts of a run.

Part ``0`` is the base tree (the workspace before the first part); ``last`` names the last
completed part. File lists and line counts come from the snapshot repository (git's own diff,
no rename detection); unified patches are made with :mod:`difflib` from the blob contents, in
git's format (``diff --git`` header, ``/dev/null`` for added and deleted files, ``\\ No newline
at end of file``), which ``git apply`` and ``patch -p1`` accept. File modes are not compared
(an executable bit shows as 100644 on added files). A file with a NUL byte in its first 8,000 bytes is binary (git's rule): it is
listed with its sizes, never patched. Nothing here writes to the store.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from agtrace.eventlog import Store, json_name, quote_name, unquote_name

from .errors import PartNotFound
from .workspace import has_trees, missing_trees_reason, resolve_part, snapshots, tree_of_part

MAX_PATCH_BYTES = 4 * 1024 * 1024
"""Files larger than this (either side) are listed with their counts but not patched."""


@dataclass
class FileDiff:
    """One path that differs. ``status`` is ``added``, ``modified`` or ``deleted``."""

    path: str
    status: str
    lines_added: int
    lines_removed: int
    binary: bool = False
    size_a: int = 0
    size_b: int = 0
    patch: str = ""
    note: str = ""


class FileTotals:
    """Line totals over ``self.files`` (a list of :class:`FileDiff`), and a dict with them."""

    @property
    def lines_added(self) -> int:
        return sum(f.lines_added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.lines_removed for f in self.files)

    def to_dict(self) -> dict:
        """For JSON: a path that is not UTF-8 in its quoted form (``json_name``)."""
        out = {**asdict(self), "lines_added": self.lines_added, "lines_removed": self.lines_removed}
        for f in out.get("files", ()):
            f["path"] = json_name(f["path"])
        return out


@dataclass
class TreeDiff(FileTotals):
    """The difference from part ``part_a``'s tree to part ``part_b``'s."""

    run_id: str
    part_a: int
    part_b: int
    tree_a: str
    tree_b: str
    files: list[FileDiff] = field(default_factory=list)

    def patch(self) -> str:
        """The whole diff as text, git style."""
        return "".join(_file_patch_text(f) for f in self.files)

    def name_only(self) -> str:
        return "".join(quote_name(f.path) + "\n" for f in self.files)

    def stat(self, width: int = 80) -> str:
        """A diffstat like ``git diff --stat``: path, count and a +/- bar, then a summary line.
        Names that are not plain text are quoted as git quotes them (``quote_name``)."""
        if not self.files:
            return " 0 files changed\n"
        names = {f.path: quote_name(f.path) for f in self.files}
        name_w = max(len(name) for name in names.values())
        count_w = max(len(str(f.lines_added + f.lines_removed)) for f in self.files)
        most = max(f.lines_added + f.lines_removed for f in self.files)
        room = max(8, width - name_w - count_w - 6)
        lines = []
        for f in self.files:
            if f.binary:
                lines.append(f" {names[f.path]:<{name_w}} | {'Bin':>{count_w}} {f.size_a} -> {f.size_b} bytes")
                continue
            plus, minus = f.lines_added, f.lines_removed
            if most > room:
                plus, minus = _scale(plus, most, room), _scale(minus, most, room)
            bar = "+" * plus + "-" * minus
            lines.append(f" {names[f.path]:<{name_w}} | {f.lines_added + f.lines_removed:>{count_w}} {bar}".rstrip())
        n = len(self.files)
        summary = f" {n} file{'s' if n != 1 else ''} changed"
        if self.lines_added or not self.lines_removed:
            summary += f", {self.lines_added} insertion{'s' if self.lines_added != 1 else ''}(+)"
        if self.lines_removed:
            summary += f", {self.lines_removed} deletion{'s' if self.lines_removed != 1 else ''}(-)"
        return "\n".join(lines) + "\n" + summary + "\n"


def _scale(n: int, most: int, room: int) -> int:
    """git's scaling: non-zero counts keep at least one mark."""
    return 0 if n == 0 else max(1, n * room // most)


def diff_parts(store: Store, run_id: str, a: str | int, b: str | int, paths: list[str] | None = None,
               *, patches: bool = True, context: int = 3) -> TreeDiff:
    """The difference between the trees after parts ``a`` and ``b`` (numbers, ``0`` or ``last``).

    ``paths`` limits it to those files or directories (workdir-relative), each given as its
    name or in the quoted form that text output prints (``quote_name``: ``"bad\\377name"``,
    ``"a\\nb"``), as ``cat`` takes them. With ``patches``
    false only names, statuses, counts and binary flags are computed (no blob is read except to
    tell binary files apart). Raises :class:`~agtrace.replay.PartNotFound` for an unknown part.
    """
    part_a = resolve_part(store, run_id, part=a)
    part_b = resolve_part(store, run_id, part=b)
    tree_a, tree_b = tree_of_part(store, run_id, part_a), tree_of_part(store, run_id, part_b)
    result = TreeDiff(run_id=run_id, part_a=part_a, part_b=part_b, tree_a=tree_a, tree_b=tree_b)
    if not has_trees(store, run_id):  # also when both parts name one tree: "no change" would be a guess
        raise PartNotFound(missing_trees_reason(store, run_id))
    if tree_a == tree_b:
        return result
    git = snapshots(store, run_id)
    prefixes = path_prefixes(paths) if paths else None
    for change in git.diff(tree_a, tree_b):
        if prefixes is not None and not is_under(change.path, prefixes):
            continue
        old = git.read_blob(tree_a, change.path) if change.status != "added" else b""
        new = git.read_blob(tree_b, change.path) if change.status != "deleted" else b""
        f = FileDiff(change.path, change.status, change.lines_added, change.lines_removed,
                     binary=_is_binary(old) or _is_binary(new), size_a=len(old), size_b=len(new))
        if patches and not f.binary:
            if max(len(old), len(new)) > MAX_PATCH_BYTES:
                f.note = f"not patched: over {MAX_PATCH_BYTES // (1024 * 1024)} MiB"
            else:
                f.patch = unified(old, new, change.path, change.status, context)
        result.files.append(f)
    return result


def path_prefixes(given: Iterable[str]) -> set[str]:
    """The tree paths that PATH arguments name (``diff RUN A B PATH``, ``cat --list PATH``): each
    as typed and, when it is in the quoted form that text output prints (``quote_name``:
    ``"bad\\377name"``, ``"d\\377"``), unquoted; normalized (``./src/`` is ``src``, and ``.``
    or ``/``, the whole tree, is ``""``)."""
    out = set()
    for path in given:
        for p in (path, unquote_name(path.strip())):
            if p is not None:
                p = posixpath.normpath(p).strip("/")
                out.add("" if p == "." else p)
    return out


def is_under(path: str, prefixes: set[str]) -> bool:
    """Whether tree path ``path`` is one of ``prefixes`` (see :func:`path_prefixes`) or lies under one."""
    return any(not p or path == p or path.startswith(p + "/") for p in prefixes)


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8000]


def unified(old: bytes, new: bytes, path: str, status: str = "modified", context: int = 3) -> str:
    """A git-style unified diff of one text file (without the ``diff --git`` line)."""
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    from_name = "/dev/null" if status == "added" else quote_name(f"a/{path}")
    to_name = "/dev/null" if status == "deleted" else quote_name(f"b/{path}")
    out = []
    for line in difflib.unified_diff(a, b, from_name, to_name, n=context):
        if line.startswith(("---", "+++")) and line.endswith("\n"):
            line = line.rstrip("\n").rstrip() + "\n"  # difflib pads an empty date with a space
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)


def _file_patch_text(f: FileDiff) -> str:
    a, b = quote_name(f"a/{f.path}"), quote_name(f"b/{f.path}")  # git quotes them so too
    head = f"diff --git {a} {b}\n"
    if f.status == "added":
        head += "new file mode 100644\n"
    elif f.status == "deleted":
        head += "deleted file mode 100644\n"
    if f.binary:
        return head + f"Binary files {'/dev/null' if f.status == 'added' else a} and " \
                      f"{'/dev/null' if f.status == 'deleted' else b} differ\n"
    if f.note:
        return head + f"({f.note})\n"
    return head + f.patch
