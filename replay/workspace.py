"""The repository at any part: pick a part, find its tree, write it out, verify it.

Part ``0`` is the workspace before the agent's first part (the base snapshot). Trees come from
the run's shadow repository when it is there, else from its bundles, unbundled once into a
per-run cache (``<store>/cache/<run id>/repo.git``); later replays of any part only check out.
A read-only store's bundles are unbundled into a temporary directory instead, removed on exit.
What is written is hashed and must equal the recorded tree id (see ``GitStore.checkout``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agtrace.eventlog import (
    BadPartSelection,
    CheckoutWriteFailed,
    GitStoreError,
    PartEnded,
    RunStarted,
    SnapshotTaken,
    Store,
    ToolCalled,
    latest_test_result,
    parse_parts,
    previous_tree_part,
)

from .errors import NoSuchPart, OutputNotEmpty, PartNotFound, ReplayError

if TYPE_CHECKING:
    from agtrace.eventlog import GitStore, TreeReader


@dataclass
class PartView:
    """What part N was, for people and for ``--json``."""

    run_id: str
    part: int
    tree_id: str
    kind: str = ""
    title: str = ""
    tool: str = ""
    command: str = ""
    changed: list[dict] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)
    """Files the snapshot of this tree left out by policy (``path``, ``reason``, ``size``): not in
    the tree, so not written (a credential file, one over the size limit, a nested ``.git``)."""
    tests: dict | None = None
    out: str = ""
    how: str = ""  # checkout, switch (only the difference written) or same

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def resolve_part(store: Store, run_id: str, *, part: str | int | None = None, at_seq: int | None = None,
                 at_time_ns: int | None = None) -> int:
    """The one part named by ``part`` (``N``, ``first`` or ``last``, see
    :mod:`agtrace.eventlog.part_selection`; 0 = the base tree), an event seq, or a wall clock.

    ``at_seq`` and ``at_time_ns`` pick the last part that had ended at that seq or time (0 if
    none had: the base tree).
    """
    store.sync(run_id)

    def last_ended(where: str = "", *args) -> int | None:  # one indexed query, whatever the run's length
        return store.catalog.conn.execute(
            f"SELECT max(part) FROM parts WHERE run_id=? AND kind IS NOT NULL {where}", [run_id, *args]
        ).fetchone()[0]

    if part is not None:
        ended = [r[0] for r in store.catalog.conn.execute(  # part numbers only (no rows built)
            "SELECT part FROM parts WHERE run_id=? AND kind IS NOT NULL ORDER BY part", [run_id])]
        try:
            selection = parse_parts(part)
        except BadPartSelection as exc:
            raise NoSuchPart(str(exc)) from None
        try:
            n = selection.one(ended, run_id=run_id)
        except BadPartSelection as exc:
            damaged = _unreadable(store, run_id, part) if selection.single else None
            raise damaged or NoSuchPart(str(exc)) from None
        _refuse_last_of_damaged(store, run_id, selection, ended)
        return n
    if at_seq is not None:
        return last_ended("AND last_seq<=?", at_seq) or 0
    if at_time_ns is not None:
        return last_ended("AND coalesce(ts, 0)<=?", at_time_ns) or 0
    raise NoSuchPart("name a part: --part N|first|last, --at-seq S or --at-time T")


def resolve_parts(store: Store, run_id: str, parts: str | int | Sequence[int], *, base: bool = False,
                  unfinished: bool = False) -> list[int]:
    """The part numbers a selection names in a run (``3-7``, ``1,4,9``, ``all``, ``changed``,
    ``last``…; see :mod:`agtrace.eventlog.part_selection`), ascending. ``base`` admits part 0;
    ``unfinished`` counts a part still in progress (a live run's) as one of the run's parts."""
    store.sync(run_id)
    selection = parse_parts(parts)
    rows = [r for r in store.catalog.part_rows(run_id) if unfinished or r["kind"] is not None]
    changed = None
    if selection.needs_trees:
        changed, previous = [], base_tree(store, run_id)
        for r in rows:
            if r["tree_id"] and r["tree_id"] != previous:
                changed.append(r["part"])
            previous = r["tree_id"] or previous
    have = [r["part"] for r in rows]
    try:
        numbers = selection.resolve(have, run_id=run_id, changed=changed, base=base)
    except BadPartSelection:
        damaged = _unreadable(store, run_id, parts)
        if damaged is None:
            raise
        raise damaged from None
    _refuse_last_of_damaged(store, run_id, selection, have)
    return numbers


def _unreadable(store: Store, run_id: str, parts) -> PartNotFound | None:
    """A part selection the run does not have, when its events cannot be read past some seq
    (a damaged segment): the damage is the failure (exit 1), not the words (bad input)."""
    damage = store.damage(run_id)
    if damage is None:
        return None
    return PartNotFound(f"part {parts} of run {run_id} cannot be found: {damage}")


def _refuse_last_of_damaged(store: Store, run_id: str, selection, have: Sequence[int]) -> None:
    """``last`` of a run that cannot be read to its end is not known: the last part before the
    damage would be taken for it."""
    words = [w for item in selection.items for w in (item if isinstance(item, tuple) else (item,))]
    if "last" not in words:
        return
    damage = store.damage(run_id)
    if damage is not None:
        readable = f"; parts {have[0]}..{have[-1]}, before it, can be named by number" if have else ""
        raise PartNotFound(f"the last part of run {run_id} is not known: {damage}{readable}")


def base_tree(store: Store, run_id: str) -> str:
    """The tree before the first part (the run's first snapshot), or "" if none was taken."""
    for rec in store.read(run_id, 1, 50):
        if isinstance(rec.event, SnapshotTaken) and rec.part is None:
            return rec.event.tree_id
    return ""


def tree_of_part(store: Store, run_id: str, part: int) -> str:
    """The workspace tree recorded at the end of ``part`` (part 0: the base tree)."""
    if part == 0:
        tree = base_tree(store, run_id)
    else:
        tree = _recorded_tree(store, run_id, part)
        if tree is None:
            n = store.info(run_id).parts
            raise NoSuchPart(f"run {run_id} has no part {part}; it has parts 1..{n}")
    if not tree:
        raise PartNotFound(missing_trees_reason(store, run_id)
                           or f"run {run_id} recorded no snapshot for part {part} (the snapshot failed?)")
    return tree


def _recorded_tree(store: Store, run_id: str, part: int) -> str | None:
    """The tree ``part`` ended with, read from its events (None: no such part). The catalog
    only says where the part's events are; a row whose tree disagrees with them (or that points
    at events of another part) is rebuilt from the segments, never trusted."""
    for attempt in range(2):
        row = store.catalog.part_row(run_id, part)
        if row is None:
            if attempt == 0:
                store.sync(run_id)
                continue
            return None
        tree, ended = "", False
        for rec in store.read(run_id, row["first_seq"], row["last_seq"]):
            if rec.part != part:
                continue
            ev = rec.event
            if isinstance(ev, SnapshotTaken) and not ev.final:
                tree = ev.tree_id
            elif isinstance(ev, PartEnded):
                tree, ended = ev.tree_id or tree, True
        if ended == (row["kind"] is not None) and tree == (row["tree_id"] or ""):
            return tree  # the row agrees with the events (a part still going has no tree yet)
        if attempt == 0:
            store.rebuild(run_id)
    return tree if ended else None


def snapshots(store: Store, run_id: str, *, bundles_only: bool = False) -> GitStore:
    """The run's snapshot repository: its shadow repo, or its bundles unbundled once into a cache
    (``bundles_only``: the bundles even when the shadow repo is there)."""
    from agtrace.eventlog import GitStore

    run_dir = store.run_dir(run_id)
    shadow = run_dir / "repo.git"
    if (shadow / "HEAD").exists() and not bundles_only:
        return GitStore.open(shadow)
    bundles = sorted((run_dir / "bundles").glob("*.bundle"))
    if not bundles:
        raise PartNotFound(missing_trees_reason(store, run_id))
    cache = _private_cache(run_id) if store.read_only else store.root / "cache" / run_id / "repo.git"
    return GitStore.from_bundles(bundles, cache)


def _private_cache(run_id: str) -> Path:
    """Where a read-only store's bundles are unbundled (its cache cannot be written): a
    temporary directory of this process, removed when it exits."""
    import atexit
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=f"agtrace-unbundle-{run_id}-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root / "repo.git"


def fresh_snapshots(store: Store, run_id: str) -> TreeReader | None:
    """The run's shadow repository read in Python (:class:`~agtrace.eventlog.TreeReader`: no
    pygit2 unless an object needs it) for writing a tree into a new directory; None when the
    trees are only in bundles (their cache is libgit2's to read: unbundled packs hold deltas)."""
    shadow = store.run_dir(run_id) / "repo.git"
    if not (shadow / "HEAD").exists() or not (shadow / "objects").is_dir():
        return None
    from agtrace.eventlog import TreeReader

    return TreeReader(shadow)


def has_trees(store: Store, run_id: str) -> bool:
    """Whether the run's repository state is here (a shadow repository or bundles)."""
    run_dir = store.run_dir(run_id)
    return (run_dir / "repo.git" / "HEAD").exists() or any((run_dir / "bundles").glob("*.bundle"))


def missing_trees_reason(store: Store, run_id: str) -> str:
    """Why a run's trees cannot be written, in words naming the cause ("" when they can):
    imported or appended without repository state, captured without a workdir, or a
    repository that is gone from a captured run."""
    if has_trees(store, run_id):
        return ""
    first = next(store.read(run_id, 1, 1), None)
    started = first.event if first is not None and isinstance(first.event, RunStarted) else RunStarted()
    source = started.source or ""
    if source.startswith("import"):
        return (f"run {run_id} was imported without repository state ({source}): its parts have no "
                f"trees to write; `agtrace replay {run_id} --transcript` shows its conversation")
    if source == "append":
        return (f"run {run_id} holds copied events only, without repository state (made with `agtrace new` "
                "and `agtrace append`, which copy events, not repositories); `agtrace cp RUN` copies a run "
                "with its repository")
    if not base_tree(store, run_id):
        return f"run {run_id} recorded no snapshots (captured without a workdir): it has no trees to write"
    return (f"run {run_id} recorded snapshots but neither its shadow repository nor its bundles are in "
            f"{store.run_dir(run_id)}; if it came from a remote, `agtrace pull {run_id}` fetches its bundles")


def describe_part(store: Store, run_id: str, part: int, git: GitStore | TreeReader | None = None) -> PartView:
    """What part N was: kind, tool and command, files changed since N-1, the files its snapshot
    left out, tests at that point."""
    tree = tree_of_part(store, run_id, part)
    view = PartView(run_id=run_id, part=part, tree_id=tree)
    view.left_out = [{"path": e.path, "reason": e.reason, "size": e.size} for e in left_out(store, run_id, part, tree)]
    if part == 0:
        view.kind, view.title = "base", "the workspace before the first part"
        return view
    for rec in store.read_part(run_id, part):
        ev = rec.event
        if isinstance(ev, PartEnded):
            view.kind, view.title, view.tool = ev.part_kind, ev.title, ev.tool
        elif isinstance(ev, ToolCalled):
            view.command = ev.command
    row = store.catalog.part_row(run_id, part)
    view.tests = latest_test_result(store.catalog.conn, run_id, row["last_seq"])
    git = git or snapshots(store, run_id)
    previous = _previous_tree(store, run_id, part)
    view.changed = [
        {"path": c.path, "status": c.status, "lines_added": c.lines_added, "lines_removed": c.lines_removed}
        for c in git.diff(previous or None, tree)
    ]
    return view


def left_out(store: Store, run_id: str, part: int, tree: str) -> list:
    """What the snapshot that recorded ``tree`` at ``part`` left out by policy (its
    ``excluded``: credential files, files over the size limit, nested ``.git``); [] when the
    part's events hold no such snapshot."""
    records = store.read(run_id, 1, 50) if part == 0 else store.read_part(run_id, part)
    for rec in records:
        ev = rec.event
        if isinstance(ev, SnapshotTaken) and ev.tree_id == tree and (part or rec.part is None):
            return list(ev.excluded)
    return []


def _previous_tree(store: Store, run_id: str, part: int) -> str:
    p = previous_tree_part(store.catalog.conn, run_id, part)
    if p is not None:  # the catalog says where; the part's own events say which tree
        return _recorded_tree(store, run_id, p) or ""
    return base_tree(store, run_id)


def materialize(store: Store, run_id: str, part: int, out: str | os.PathLike, *, force: bool = False,
                progress=None) -> PartView:
    """Write the repository as it was after ``part`` into ``out`` and verify its tree id.

    Refuses a non-empty ``out`` unless ``force``; with ``force`` it still refuses a directory
    that no replay from this store wrote, naming what it holds, so a real repository or a home
    directory is never emptied. What a replay wrote where is recorded in the store
    (``cache/checkouts/``, with the directory's device and inode, so a directory replaced since
    by another one at the same path is not taken for it), not in ``out``: ``out`` holds exactly
    the tree. A directory an earlier replay wrote is switched (only the differing paths written,
    edits since put right). Nothing is written outside ``out``, whatever the tree holds. A tree
    the shadow repository cannot give (damaged) is taken from the bundles. ``progress(files
    written)`` follows a whole checkout.
    """
    from .checkout_cache import load_scratch, save_scratch

    out = Path(out)
    made = not out.exists()
    known = load_scratch(store, out)  # an earlier replay into `out`: switch, don't rewrite
    if out.exists() and any(out.iterdir()):
        if not force:
            raise OutputNotEmpty(f"{out} is not empty; choose another --out, or pass --force if an earlier "
                                 "`agtrace replay` wrote it")
        if known.tree_id is None and not known.interrupted:
            raise OutputNotEmpty(f"refusing to replace {out}: no `agtrace replay` from {store.root} wrote it, "
                                 f"and it holds {_contents(out)}; --force replaces only a directory an earlier "
                                 "replay wrote" + (" (a read-only store remembers none)" if store.read_only else "")
                                 + ": choose another --out, or empty it yourself")

    def write(git: GitStore | TreeReader, scratch) -> PartView:
        view = describe_part(store, run_id, part, git)
        if scratch.tree_id is None:
            save_scratch(store, scratch, writing=True)  # a kill from here on leaves it ours
        view.how = scratch.show(git, view.tree_id, progress).how
        save_scratch(store, scratch)
        view.out = str(out)
        return view

    try:  # a new directory is a full checkout: read in Python, pygit2 only if an object needs it
        fresh = fresh_snapshots(store, run_id) if known.tree_id is None else None
        return write(fresh or snapshots(store, run_id), known)
    except CheckoutWriteFailed as exc:  # the disk of --out, not the repository: no retry
        raise _output_failed(store, out, exc, whole=known.tree_id is None, made=made) from exc
    except GitStoreError:  # a damaged shadow repository: the bundles may still hold the tree
        run_dir = store.run_dir(run_id)
        if not (run_dir / "repo.git" / "HEAD").exists() or not any((run_dir / "bundles").glob("*.bundle")):
            _drop_if_made_empty(out, made)
            raise
        retry = load_scratch(store, out)
        if retry.tree_id is None and out.exists():
            _empty(out)  # what the failed attempt wrote (out was empty or a replay's before it)
        return write(snapshots(store, run_id, bundles_only=True), retry)
    except ReplayError:  # no tree to write (imported without one, no snapshot): nothing is left behind
        _drop_if_made_empty(out, made)
        raise


def _drop_if_made_empty(out: Path, made: bool) -> None:
    """Remove ``out`` when this replay made it and wrote nothing into it (it failed before)."""
    if made:
        with contextlib.suppress(OSError):  # not empty, or gone: leave it as it is
            out.rmdir()


def _output_failed(store: Store, out: Path, exc: CheckoutWriteFailed, *, whole: bool, made: bool) -> ReplayError:
    """The error of a replay that could not write ``out``, after removing what a full checkout
    wrote there (``out`` was new or empty, or a replay's that was being emptied anyway): the
    directory made is removed, one that was there is left empty. A switched directory (a
    replay's) is left as it is: the next replay with --force puts it right."""
    from .checkout_cache import forget_scratch

    if whole and out.is_dir():
        if made:
            shutil.rmtree(out, ignore_errors=True)
        else:
            _empty(out)
        forget_scratch(store, out)
        left = "nothing was left in it" if made else "it was emptied again"
    else:
        left = "it is partly switched: replay into it again with --force once this is fixed"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space there (or pick an --out on another disk) and replay again"
    else:
        todo = "check its permissions and filesystem (or pick another --out) and replay again"
    return ReplayError(f"cannot write the replay into --out {out}: {exc}; {left}; {todo}")


def _contents(directory: Path, shown: int = 5) -> str:
    """What a directory holds, in words: ``.git/ (a git repository), src/, README.md and 3 more``."""
    names = sorted(directory.iterdir(), key=lambda p: (p.name != ".git", p.name))
    words = []
    for p in names[:shown]:
        if p.name == ".git":
            words.append(".git/ (a git repository)")
        else:
            words.append(p.name + ("/" if p.is_dir() and not p.is_symlink() else ""))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(words) + more


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
