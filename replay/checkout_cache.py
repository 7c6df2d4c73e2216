"""Warm replay: keep a directory holding one tree and switch it from part to part.

`materialize` writes a whole tree (about a second for 2,000 files / 25 MB); a directory that
already holds part M needs only the paths that differ to become part N. Two ways to use it:

* :func:`switch_to` — the caller says which tree the directory holds (it wrote it with
  ``materialize`` or an earlier ``switch_to`` and left it alone); only the difference is written.
* :class:`ScratchTree` — a private directory that also lets someone else (a scorer) run in it
  between switches: it keeps the stat data of what it wrote, finds what was changed, added or
  removed since, and puts those paths right on the next switch. Re-scoring uses one per worker.

Both verify what they write (a checkout by the tree id of the bytes it wrote, a switch by
re-hashing from disk what it wrote) and never write outside the directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agtrace.eventlog import CheckoutWriteFailed, GitStoreError, Store, SwitchResult

from .errors import ReplayError
from .workspace import snapshots, tree_of_part

if TYPE_CHECKING:
    from agtrace.eventlog import GitStore

# The clock the kernel stamps files with (coarse on Linux); see ScratchTree._settle.
_FILE_CLOCK = getattr(time, "CLOCK_REALTIME_COARSE", 5 if os.uname().sysname == "Linux" else None)


def switch_to(
    store: Store,
    run_id: str,
    part: int,
    out_dir: str | os.PathLike,
    from_tree: str,
    *,
    git: GitStore | None = None,
) -> SwitchResult:
    """Make ``out_dir``, which holds exactly tree ``from_tree`` of this run, hold part ``part``.

    Writes and removes only the paths that differ, then re-hashes what it wrote. The caller
    vouches that nothing else in ``out_dir`` changed since it was written; if that may not
    hold, use :class:`ScratchTree` or ``materialize(..., force=True)``. Pass ``git`` (from
    :func:`~agtrace.replay.workspace.snapshots`) to skip opening the repository per call.
    """
    git = git or snapshots(store, run_id)
    return git.switch(from_tree, tree_of_part(store, run_id, part), out_dir)


@dataclass(frozen=True)
class Shown:
    """How :meth:`ScratchTree.show` got its tree: ``checkout``, ``switch`` or ``same``, with
    the number of paths it rewrote because someone changed them."""

    how: str
    repaired: int
    duration_ms: float


class ScratchTree:
    """A private directory that holds one tree at a time and is switched between trees.

    Between two :meth:`show` calls anything may happen in the directory (a scorer writes
    caches, result files, even edits or deletes tracked files): the next :meth:`show` finds
    every path whose type, size, inode, mtime or ctime differs from what was written, or that
    appeared or vanished, and rewrites or removes it, so the directory then holds exactly the
    requested tree. Detection is by stat data, as git's index does; after writing, ``show``
    waits until the file clock has ticked past the newest write, so a later change cannot carry
    the same timestamps. Not thread-safe: one per worker.

    The directory itself is held by identity (device, inode, the real path of its parent): if
    someone removed it or put a link or a file in its place (a scorer that ran ``rm -rf "$PWD";
    ln -s ~/src "$PWD"``), ``show`` never writes or deletes through the new entry; it removes
    just that entry and checks the tree out into a new directory made there. If the parent
    itself moved (a link now stands on its path), ``show`` raises :class:`ReplayError` and
    writes nothing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._identity = self._identify()
        self.tree_id: str | None = None
        self.interrupted = False
        """A replay into this directory was killed while it wrote it (see :func:`save_scratch`)."""
        self._git: GitStore | None = None
        self._stats: dict[str, tuple] = {}

    def show(self, git: GitStore, tree_id: str, progress=None) -> Shown:
        """Make the directory hold exactly ``tree_id`` of ``git`` (verified); see the class doc.
        ``progress(files written)`` follows a whole checkout (a switch writes few files)."""
        started = time.perf_counter()
        if self._identify() != self._identity:
            self._recreate()
        dirty = self._dirty() if self.tree_id is not None else []
        if self.tree_id is not None and not self._knows(git, self.tree_id):
            self.tree_id = None
        if self.tree_id is None:
            _empty(self.path)
            written: dict[str, os.stat_result] = {}
            git.checkout(tree_id, self.path, stats=written, progress=progress)  # stat data as written: no second walk
            self._stats = {rel: _signature(st) for rel, st in written.items()}
            how, newest = "checkout", max((s[3] for s in self._stats.values()), default=0)
        elif self.tree_id == tree_id and not dirty:
            how, newest = "same", 0
        else:
            try:
                result = git.switch(self.tree_id, tree_id, self.path, dirty=dirty)
            except CheckoutWriteFailed:  # the disk, not the tree: a full checkout would fail too
                self.tree_id = None
                raise
            except GitStoreError:
                self.tree_id = None
                return self.show(git, tree_id, progress)
            newest = self._update(result)
            how = "switch"
        self.tree_id, self._git = tree_id, git
        self._settle(newest)
        return Shown(how, len(dirty), (time.perf_counter() - started) * 1000)

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.tree_id = None

    def _identify(self) -> tuple | None:
        """(real path of the parent, device, inode) of the directory; None if no directory
        (not a link to one) is there."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        return (os.path.realpath(self.path.parent), st.st_dev, st.st_ino)

    def _recreate(self) -> None:
        """Put a new, empty directory where ours was (see the class doc); forget what it held."""
        if os.path.realpath(self.path.parent) != self._identity[0]:
            raise ReplayError(
                f"the directory around {self.path} was moved or replaced (by a scorer?); nothing "
                "was written there: rerun, and keep the scorer inside its tree"
            )
        if os.path.islink(self.path) or (os.path.lexists(self.path) and not os.path.isdir(self.path)):
            os.unlink(self.path)
        elif os.path.lexists(self.path):
            shutil.rmtree(self.path)  # a directory someone else made in our place, in our parent
        self.path.mkdir()
        self._identity = self._identify()
        self.tree_id, self._stats = None, {}

    def _knows(self, git: GitStore, tree_id: str) -> bool:
        if git is self._git:
            return True
        try:
            git.tree_of(tree_id)  # trees are content-addressed: same id, same files
            return True
        except GitStoreError:
            return False

    def _dirty(self) -> list[str]:
        """Paths that differ from what was written: changed, added (topmost only) or missing."""
        seen: set[str] = set()
        dirty: list[str] = []
        stack = [("", str(self.path))]
        while stack:
            rel_dir, full = stack.pop()
            with os.scandir(full) as it:
                for entry in it:
                    rel = f"{rel_dir}{entry.name}"
                    seen.add(rel)
                    st = entry.stat(follow_symlinks=False)
                    sig = _signature(st)
                    if self._stats.get(rel) != sig:
                        dirty.append(rel)
                    elif stat.S_ISDIR(st.st_mode):
                        stack.append((rel + "/", entry.path))
        dirty.extend(p for p in self._stats if p not in seen and _parent_seen(p, seen))
        return dirty

    def _update(self, result: SwitchResult) -> int:
        """Refresh the stat data of the paths a switch touched; the newest mtime written."""
        newest = 0
        for path in result.removed:
            self._forget(path)
        for path in result.written:
            self._forget(path)
            parts = path.split("/")
            for i in range(1, len(parts)):  # directories the switch may have made
                parent = "/".join(parts[:i])
                self._stats[parent] = _signature(os.lstat(self.path / parent))
            st = os.lstat(self.path / path)
            self._stats[path] = _signature(st)
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            if stat.S_ISDIR(st.st_mode):
                for rel, sig in _scan(self.path / path, path + "/"):
                    self._stats[rel] = sig
                    newest = max(newest, sig[3], sig[4])
        return newest

    def _forget(self, path: str) -> None:
        self._stats.pop(path, None)
        prefix = path + "/"
        for key in [k for k in self._stats if k.startswith(prefix)]:
            del self._stats[key]

    @staticmethod
    def _settle(newest_ns: int) -> None:
        """Wait until the file clock is past ``newest_ns`` (at most one tick, a few ms), so a
        change made after we return gets a later mtime/ctime than the one we recorded."""
        if not newest_ns:
            return
        while True:
            now = (
                time.clock_gettime_ns(_FILE_CLOCK)
                if _FILE_CLOCK is not None
                else time.time_ns() - 20_000_000
            )
            if now > newest_ns:
                return
            time.sleep(0.001)


def _signature(st: os.stat_result) -> tuple:
    if stat.S_ISDIR(st.st_mode):
        return (stat.S_IFMT(st.st_mode), 0, st.st_ino, 0, 0)
    return (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _scan(root: Path, prefix: str):
    """``(relative path, signature)`` of everything below ``root`` (symlinks not followed)."""
    stack = [(prefix, str(root))]
    while stack:
        rel_dir, full = stack.pop()
        with os.scandir(full) as it:
            for entry in it:
                rel = f"{rel_dir}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                yield rel, _signature(st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((rel + "/", entry.path))


def _parent_seen(path: str, seen: set[str]) -> bool:
    """A missing path counts only if its parent was listed (else the parent is already dirty)."""
    parent = path.rpartition("/")[0]
    return not parent or parent in seen


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _state_path(store: Store, out: Path) -> Path:
    import hashlib

    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:24]
    return store.root / "cache" / "checkouts" / f"{key}.json"


def load_scratch(store: Store, out: str | os.PathLike) -> ScratchTree:
    """The :class:`ScratchTree` for a replay directory, with what an earlier replay wrote there.

    The state lives in the store's cache (``cache/checkouts/``), not in the directory, so the
    directory holds exactly the tree; a directory edited since is repaired by its stat data.
    A directory that is not the one written (another device or inode at that path) is unknown:
    its ``tree_id`` is None.
    """
    import json

    scratch = ScratchTree(out)
    try:
        state = json.loads(_state_path(store, Path(out)).read_text())
        st = os.stat(out)
    except (OSError, ValueError):
        return scratch
    if state.get("path") != str(Path(out).resolve()) or state.get("dir") != [st.st_dev, st.st_ino]:
        return scratch
    stats = {k: tuple(v) for k, v in state["stats"].items()}
    if state.get("writing"):  # claimed before the first file was written: whatever is there is ours
        scratch.interrupted = True
        return scratch
    if _same_directory(Path(out), stats):
        scratch.tree_id = state["tree_id"]
        scratch._stats = stats  # noqa: SLF001
    return scratch


def _same_directory(out: Path, stats: dict[str, tuple]) -> bool:
    """Whether ``out`` is still the directory a replay wrote, not another one made since at the
    same path (inodes are reused): some file written is still there unchanged (when any file was
    written), and no git repository appeared at its top."""
    if ".git" not in stats and os.path.lexists(out / ".git"):
        return False
    files = [(rel, sig) for rel, sig in stats.items() if not stat.S_ISDIR(sig[0])]
    for rel, sig in files:
        try:
            if _signature(os.lstat(out / rel)) == sig:
                return True
        except OSError:
            continue
    return not files


def forget_scratch(store: Store, out: str | os.PathLike) -> None:
    """Forget what a replay directory held (it was removed, or what it holds is unknown)."""
    _state_path(store, Path(out)).unlink(missing_ok=True)


def save_scratch(store: Store, scratch: ScratchTree, *, writing: bool = False) -> None:
    """Remember what a replay directory holds (temp file + rename). ``writing``: claim it before
    a full checkout into it, so that a replay killed while writing leaves a directory the next
    replay recognises as its own (and empties) rather than refusing it as someone else's.
    A read-only store remembers nothing (its cache cannot be written): the next replay into that
    directory needs an empty one."""
    import json

    if store.read_only:
        return

    path = _state_path(store, scratch.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    st = os.stat(scratch.path)
    tmp.write_text(json.dumps({"path": str(scratch.path.resolve()), "dir": [st.st_dev, st.st_ino],
                               "tree_id": None if writing else scratch.tree_id, "writing": writing,
                               "stats": {} if writing else scratch._stats}))  # noqa: SLF001
    os.replace(tmp, path)
