"""Shadow git repository that records the trees of an agent's work directory.

A `GitStore` wraps one bare repository (``runs/<id>/repo.git``) that belongs to agtrace alone.
The agent's work directory is only ever *read as files*: its own ``.git`` (index, refs, objects)
is never opened, written or locked, so whatever the agent does with git (commit, reset, rebase,
checkout) cannot orphan or corrupt a snapshot. The single exception is the read-only use of the
workdir's ``.git/info/exclude`` as extra ignore rules.

What the shadow repository holds: git objects, a private index (``<GIT_DIR>/index``, stat cache
of the last snapshot), a small state file (``<GIT_DIR>/agtrace-state.json``), its own config,
``info/exclude`` and ``info/attributes`` files, and one ref, ``refs/agtrace/snapshots``, whose
first-parent chain is the sequence of snapshots.

Snapshot policy:

* Ignored: paths matched by the workdir's ``.gitignore`` files, its ``.git/info/exclude`` and the
  caller's ``exclude`` patterns (gitignore syntax, relative to the workdir root). Ignored paths
  are not listed in ``excluded`` (that list would be unbounded, e.g. ``node_modules``).
* ``.git`` entries (directories or gitfiles) are never recorded, at any depth.
* Nested repositories (a directory below the root holding a ``.git``): their working files are
  recorded as plain files (their own ``.gitignore`` files apply), their ``.git`` is skipped and
  ``<root>/.git`` is listed in ``excluded`` with reason ``"nested_git"``, size 0, so that replay
  knows a repository was there.
* Regular files larger than ``max_file_bytes`` are left out and listed with reason ``"size"``.
* Bytes are recorded exactly: no end-of-line conversion, ident or filter attributes apply, and
  the user's global/system git configuration is not consulted by libgit2 in this process.
* Executable bits and symlinks (as links, never followed) are kept.

Durability: objects, index and refs written by `snapshot` are not fsynced; a snapshot becomes
durable when it is written into a bundle (`write_bundle` fsyncs and renames). Only one
`snapshot` may run at a time on one store; a concurrent one fails on the index lock.

This is the only module of agtrace that imports pygit2. The git CLI is used only for bundles,
which libgit2 can neither write nor read, and by importers: fetching a commit from another
repository and ``git apply`` of a patch to a tree (through a temporary index).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import NamedTuple

import pygit2
from pygit2.enums import ConfigLevel, DeltaStatus, DiffOption, ObjectType

from .errors import GitStoreError
from .segment import fsync_dir

__all__ = [
    "GitStore",
    "GitStoreError",
    "SnapshotResult",
    "SwitchResult",
    "Exclusion",
    "FileChange",
    "SNAPSHOT_REF",
]

SNAPSHOT_REF = "refs/agtrace/snapshots"
_STATE_FILE = "agtrace-state.json"
_SIGNATURE_NAME = "agtrace"
_SIGNATURE_EMAIL = "agtrace@localhost"
_DIFF_FLAGS = (
    DiffOption.INCLUDE_UNTRACKED
    | DiffOption.RECURSE_UNTRACKED_DIRS
    | DiffOption.INCLUDE_TYPECHANGE
    | DiffOption.UPDATE_INDEX
)
# Attributes that would make recorded bytes differ from the bytes on disk.
_ATTRIBUTES = b"* -text !eol -ident -filter !working-tree-encoding\n"
_CONFIG = {
    "core.autocrlf": "false",
    "core.safecrlf": "false",
    "core.filemode": "true",
    "core.symlinks": "true",
    "core.ignorecase": "false",
    "core.precomposeunicode": "false",
    "core.protectNTFS": "false",
    "core.protectHFS": "false",
    "core.logAllRefUpdates": "false",
    "gc.auto": "0",
}
_MODE_BLOB, _MODE_EXEC, _MODE_LINK, _MODE_TREE = 0o100644, 0o100755, 0o120000, 0o040000


class Exclusion(NamedTuple):
    """A path left out of a snapshot: ``reason`` is ``"size"``, ``"nested_git"`` or
    ``"invalid_path"``; ``size`` is in bytes (0 when not meaningful)."""

    path: str
    reason: str
    size: int


class FileChange(NamedTuple):
    """One path that differs between two trees; ``status`` is ``"added"``, ``"modified"`` or
    ``"deleted"`` (a type change counts as modified). Line counts are 0 for binary files."""

    path: str
    status: str
    lines_added: int
    lines_removed: int


@dataclass(frozen=True)
class SnapshotResult:
    """Outcome of `GitStore.snapshot`; path lists are sorted and compare with the previous
    snapshot's tree (the empty tree for the first one)."""

    tree_id: str
    commit_id: str
    parent_commit: str | None
    created_commit: bool
    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]
    lines_added: int
    lines_removed: int
    excluded: tuple[Exclusion, ...]
    duration_ms: float


@dataclass(frozen=True)
class SwitchResult:
    """Outcome of `GitStore.switch`: the tree now in the directory and the paths touched (sorted,
    relative; a path in ``written`` may be a directory written whole, a path in ``removed`` a
    directory removed whole)."""

    tree_id: str
    written: tuple[str, ...]
    removed: tuple[str, ...]
    duration_ms: float


def _isolate_libgit2_config() -> None:
    """Make libgit2 ignore the user's global, XDG and system git configuration (process-wide;
    this module is the only pygit2 user), so snapshots do not depend on the machine."""
    empty = os.path.join(tempfile.gettempdir(), "agtrace-no-git-config")
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM, ConfigLevel.PROGRAMDATA):
        pygit2.settings.search_path[level] = empty


def _git_env() -> dict[str, str]:
    """Environment for git CLI calls: none of the caller's GIT_* variables, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def _run_git(args: list[str], what: str) -> str:
    try:
        proc = subprocess.run(["git", *args], env=_git_env(), capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise GitStoreError(f"{what}: the git CLI is not installed; install git") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise GitStoreError(f"{what}: git {' '.join(args[:3])} failed: {err}")
    return proc.stdout.decode(errors="replace")


def _read_bundle_heads(path: str) -> list[str]:
    """Object ids of the refs a bundle carries, read from its text header."""
    heads = []
    with open(path, "rb") as f:
        if not f.readline().startswith(b"# v"):
            raise GitStoreError(f"{path} is not a git bundle; pass files made by write_bundle")
        for line in f:
            if line in (b"\n", b""):
                break
            if not line.startswith((b"-", b"@")):
                heads.append(line.split(b" ", 1)[0].decode())
    return heads


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class GitStore:
    """One shadow repository. Construct with `init`, `open` or `from_bundles`."""

    def __init__(self, repo: pygit2.Repository, path: str) -> None:
        self._repo = repo
        self.path = path

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike[str]) -> GitStore:
        """Create the bare shadow repository at ``path`` (or open it if it is already one).
        Idempotent; the configuration written makes recorded bytes exact (see module doc)."""
        _isolate_libgit2_config()
        path = os.path.abspath(path)
        try:
            repo = pygit2.init_repository(path, bare=True)
        except pygit2.GitError as exc:
            raise GitStoreError(f"cannot create shadow repository at {path}: {exc}") from exc
        for key, value in _CONFIG.items():
            repo.config[key] = value
        info = os.path.join(path, "info")
        os.makedirs(info, exist_ok=True)
        _write_atomic(os.path.join(info, "attributes"), _ATTRIBUTES)
        repo.config["core.attributesFile"] = os.path.join(info, "attributes")
        repo.config["core.excludesFile"] = os.path.join(info, "exclude")
        return cls(repo, path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> GitStore:
        """Open an existing shadow repository made by `init` or `from_bundles`."""
        _isolate_libgit2_config()
        path = os.path.abspath(path)
        try:
            repo = pygit2.Repository(path)
        except pygit2.GitError as exc:
            raise GitStoreError(
                f"no shadow repository at {path} ({exc}); create it with GitStore.init"
            ) from exc
        if not repo.is_bare:
            raise GitStoreError(f"{path} is not a bare repository; it cannot be a shadow store")
        return cls(repo, path)

    @classmethod
    def from_bundles(
        cls, bundles: list[str | os.PathLike[str]], cache_dir: str | os.PathLike[str]
    ) -> GitStore:
        """Open the store rebuilt from ``bundles`` (full first, then incrementals, in the order
        they were written) at ``cache_dir``. The first call unbundles into a temporary sibling
        directory and renames it into place, so a crash never leaves a half-built cache; later
        calls reuse the cache and unbundle only bundles whose heads it lacks. The snapshot ref is
        set to the last bundle's head."""
        cache_dir = os.path.abspath(cache_dir)
        paths = [os.path.abspath(b) for b in bundles]
        if not paths:
            raise GitStoreError("from_bundles needs at least one bundle")
        heads = [_read_bundle_heads(p) for p in paths]
        if os.path.isdir(cache_dir):
            store = cls.open(cache_dir)
        else:
            os.makedirs(os.path.dirname(cache_dir), exist_ok=True)
            building = tempfile.mkdtemp(prefix=".unbundle-", dir=os.path.dirname(cache_dir))
            store = cls.init(building)
            store._unbundle(paths, heads)
            try:
                os.rename(building, cache_dir)
            except OSError:  # another process won the race; use its cache
                shutil.rmtree(building, ignore_errors=True)
            return cls.open(cache_dir)
        store._unbundle(paths, heads)
        return store

    def _unbundle(self, paths: list[str], heads: list[list[str]]) -> None:
        odb = self._repo.odb
        for path, bundle_heads in zip(paths, heads, strict=True):
            if bundle_heads and all(h in odb for h in bundle_heads):
                continue
            _run_git(
                [f"--git-dir={self.path}", "bundle", "unbundle", path],
                f"unbundling {path} (bundles must be given in the order they were written)",
            )
        tip = heads[-1][0] if heads[-1] else None
        if tip is not None:
            self._repo.references.create(SNAPSHOT_REF, tip, force=True)

    # -- snapshots ---------------------------------------------------------------------------

    @property
    def head(self) -> str | None:
        """Commit id at the tip of ``refs/agtrace/snapshots``, or None before the first one."""
        ref = self._repo.references.get(SNAPSHOT_REF)
        return None if ref is None else str(ref.target)

    def snapshot(
        self,
        workdir: str | os.PathLike[str],
        *,
        exclude: list[str] | tuple[str, ...] = (),
        max_file_bytes: int,
        message: str,
        parent_commit: str | None = None,
    ) -> SnapshotResult:
        """Record the current tree of ``workdir`` and chain it on ``refs/agtrace/snapshots``.

        Incremental: the private index keeps stat data, so only files whose stat changed are read
        and hashed. ``parent_commit`` defaults to the ref's tip; when given (e.g. the last commit
        the caller recorded), the new commit chains from it and the ref is moved to the new
        commit even if it pointed elsewhere (an unrecorded tip is dropped from the chain).

        An unchanged tree creates no commit: the result has ``created_commit=False``, the same
        ``tree_id`` and ``commit_id`` equal to the parent, and the ref is set to the parent.
        Changes are computed against the parent's tree, never from the agent's git.
        """
        started = time.perf_counter()
        repo = self._repo
        root = os.path.realpath(workdir)
        if not os.path.isdir(root):
            raise GitStoreError(f"workdir {workdir} is not a directory; nothing to snapshot")
        parent = self._resolve_parent(parent_commit)
        state = self._load_state()
        policy = self._install_ignore_rules(root, exclude, max_file_bytes)
        repo.workdir = root
        index = repo.index
        index.read(True)
        if state.get("policy") != policy:
            self._purge(index, root, max_file_bytes, check_size=True)
        excluded: list[Exclusion] = []
        nested_roots: list[str] = []
        rules_changed = self._apply_workdir_changes(
            index, root, max_file_bytes, excluded, nested_roots
        )
        if rules_changed:
            self._purge(index, root, max_file_bytes, check_size=False)
        self._sync_nested(index, root, nested_roots, max_file_bytes, excluded)
        known = [n for n in state.get("nested", []) if os.path.lexists(f"{root}/{n}/.git")]
        nested_all = sorted(set(known) | set(nested_roots))
        excluded.extend(Exclusion(f"{n}/.git", "nested_git", 0) for n in nested_all)
        try:
            tree = index.write_tree()
            index.write()
        except pygit2.GitError as exc:
            raise GitStoreError(
                f"cannot write snapshot of {root} into {self.path}: {exc}; if another snapshot "
                "is running wait for it, else remove a stale index.lock"
            ) from exc
        _write_atomic(
            os.path.join(self.path, _STATE_FILE),
            json.dumps({"policy": policy, "nested": nested_all}).encode(),
        )
        parent_tree = repo[parent].peel(pygit2.Tree).id if parent else None
        if parent is not None and parent_tree == tree:
            commit_id, created = parent, False
        else:
            sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
            parents = [pygit2.Oid(hex=parent)] if parent else []
            commit_id = str(repo.create_commit(None, sig, sig, message, tree, parents))
            created = True
        repo.references.create(SNAPSHOT_REF, commit_id, force=True)
        changes = self.diff(str(parent_tree) if parent_tree else None, str(tree))
        by_status: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}
        for change in changes:
            by_status[change.status].append(change.path)
        return SnapshotResult(
            tree_id=str(tree),
            commit_id=commit_id,
            parent_commit=parent,
            created_commit=created,
            added=tuple(by_status["added"]),
            modified=tuple(by_status["modified"]),
            deleted=tuple(by_status["deleted"]),
            lines_added=sum(c.lines_added for c in changes),
            lines_removed=sum(c.lines_removed for c in changes),
            excluded=tuple(sorted(excluded)),
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _resolve_parent(self, parent_commit: str | None) -> str | None:
        if parent_commit is None:
            return self.head
        try:
            return str(self._repo[parent_commit].peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise GitStoreError(
                f"parent commit {parent_commit} is not in {self.path}; pass a commit_id returned "
                "by an earlier snapshot of this store, or None"
            ) from exc

    def _load_state(self) -> dict:
        try:
            with open(os.path.join(self.path, _STATE_FILE), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    def _install_ignore_rules(self, root: str, exclude, max_file_bytes: int) -> str:
        """Write the workdir's ``.git/info/exclude`` plus ``exclude`` as the shadow's own
        ``info/exclude`` (rewritten only when it changes); return a fingerprint of the policy."""
        rules = b""
        own_exclude = os.path.join(root, ".git", "info", "exclude")
        if os.path.isdir(os.path.join(root, ".git")) and os.path.isfile(own_exclude):
            with open(own_exclude, "rb") as f:
                rules += f.read() + b"\n"
        rules += "".join(f"{p}\n" for p in exclude).encode()
        target = os.path.join(self.path, "info", "exclude")
        try:
            with open(target, "rb") as f:
                current = f.read()
        except OSError:
            current = None
        if current != rules:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _write_atomic(target, rules)
        return hashlib.sha256(rules + b"\0%d" % max_file_bytes).hexdigest()

    def _apply_workdir_changes(self, index, root, max_file_bytes, excluded, nested_roots) -> bool:
        """Bring the index in line with the workdir (libgit2 compares stat data and hashes only
        changed files); return whether any ``.gitignore`` changed."""
        rules_changed = False
        try:
            deltas = list(index.diff_to_workdir(flags=_DIFF_FLAGS).deltas)
        except pygit2.GitError as exc:
            raise GitStoreError(f"cannot scan workdir {root}: {exc}") from exc
        for delta in deltas:
            path = delta.new_file.path
            if path.endswith("/"):
                if os.path.lexists(os.path.join(root, path, ".git")):
                    nested_roots.append(path[:-1])
                continue
            if path == ".gitignore" or path.endswith("/.gitignore"):
                rules_changed = True
            full = os.path.join(root, path)
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):  # gone, or a parent became a file
                st = None
            if st is None or delta.status == DeltaStatus.DELETED or stat.S_ISDIR(st.st_mode):
                _remove(index, path)
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size > max_file_bytes:
                excluded.append(Exclusion(path, "size", st.st_size))
                _remove(index, path)
                continue
            try:
                index.add(path)
            except pygit2.GitError:
                excluded.append(Exclusion(path, "invalid_path", st.st_size))
                _remove(index, path)
        return rules_changed

    def _purge(self, index, root: str, max_file_bytes: int, *, check_size: bool) -> None:
        """Drop index entries that the current policy excludes (run when the policy or a
        ``.gitignore`` changed; libgit2 alone would keep tracking once-recorded paths)."""
        repo = self._repo
        for entry in list(index):
            path = entry.path
            if repo.path_is_ignored(path):
                _remove(index, path)
            elif check_size:
                try:
                    st = os.lstat(os.path.join(root, path))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size > max_file_bytes:
                    _remove(index, path)

    def _sync_nested(self, index, root: str, new_roots: list[str], max_file_bytes: int, excluded):
        """Record the working files of newly found nested repositories as plain files. libgit2
        reports a nested repository as one untracked entry until the index holds paths below it;
        from then on its scan descends into it (skipping its ``.git``) like any directory."""
        repo = self._repo
        for nested in new_roots:
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, nested)):
                rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
                keep = []
                for d in dirnames:
                    if d == ".git" or repo.path_is_ignored(f"{rel_dir}/{d}/"):
                        continue
                    if os.path.islink(os.path.join(dirpath, d)):
                        filenames.append(d)
                    else:
                        keep.append(d)
                dirnames[:] = keep
                for name in filenames:
                    rel = f"{rel_dir}/{name}"
                    if name == ".git" or repo.path_is_ignored(rel):
                        continue
                    full = os.path.join(dirpath, name)
                    st = os.lstat(full)
                    if stat.S_ISLNK(st.st_mode):
                        oid = repo.create_blob(os.fsencode(os.readlink(full)))
                        index.add(pygit2.IndexEntry(rel, oid, _MODE_LINK))
                    elif not stat.S_ISREG(st.st_mode):
                        continue
                    elif st.st_size > max_file_bytes:
                        excluded.append(Exclusion(rel, "size", st.st_size))
                    else:
                        oid = repo.create_blob_fromdisk(full)
                        mode = _MODE_EXEC if st.st_mode & 0o100 else _MODE_BLOB
                        index.add(pygit2.IndexEntry(rel, oid, mode))

    # -- reading -----------------------------------------------------------------------------

    def tree_of(self, commit_or_tree: str) -> str:
        """Tree id (hex) of a commit or tree id."""
        try:
            return str(self._repo[commit_or_tree].peel(pygit2.Tree).id)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise GitStoreError(
                f"{commit_or_tree} is not a commit or tree in {self.path}; use an id returned "
                "by snapshot"
            ) from exc

    def read_blob(self, tree_id: str, path: str) -> bytes:
        """Bytes of the file (or symlink target) at ``path`` in ``tree_id``."""
        tree = self._repo[self.tree_of(tree_id)]
        try:
            obj = tree[path]
        except KeyError as exc:
            raise GitStoreError(f"{path} is not in tree {tree_id}") from exc
        if obj.type != ObjectType.BLOB:
            raise GitStoreError(f"{path} in tree {tree_id} is a directory, not a file")
        return obj.data

    def diff(self, tree_a: str | None, tree_b: str) -> list[FileChange]:
        """Paths that differ from ``tree_a`` (None = empty tree) to ``tree_b``, sorted by path,
        with line counts for text files (no rename detection)."""
        repo = self._repo
        b = repo[self.tree_of(tree_b)]
        a = repo[self.tree_of(tree_a)] if tree_a else repo[repo.TreeBuilder().write()]
        changes = []
        for patch in repo.diff(a, b):
            delta = patch.delta
            if delta.status == DeltaStatus.ADDED:
                status, path = "added", delta.new_file.path
            elif delta.status == DeltaStatus.DELETED:
                status, path = "deleted", delta.old_file.path
            else:
                status, path = "modified", delta.new_file.path
            _, plus, minus = patch.line_stats
            changes.append(FileChange(path, status, plus, minus))
        changes.sort()
        return changes

    def changed_paths(self, tree_a: str | None, tree_b: str) -> list[str]:
        """Sorted paths that differ between the two trees (without line counts)."""
        repo = self._repo
        b = repo[self.tree_of(tree_b)]
        a = repo[self.tree_of(tree_a)] if tree_a else repo[repo.TreeBuilder().write()]
        return sorted(d.new_file.path for d in repo.diff(a, b).deltas)

    # -- checkout ----------------------------------------------------------------------------

    def checkout(
        self, tree_id: str, out_dir: str | os.PathLike[str], *, verify: bool = True
    ) -> str:
        """Write exactly tree ``tree_id`` into ``out_dir`` (created; must be absent or empty)
        and return the tree id of what was written, re-hashed from disk.

        Nothing is ever written outside ``out_dir``: every entry name is validated (no ``..``,
        ``.``, ``/``, NUL, ``.git``, duplicates), every file, link and directory is created
        fresh relative to an open directory descriptor without following symlinks. A hostile
        or unsupported tree raises GitStoreError and leaves ``out_dir`` partially written
        (delete it). With ``verify`` the written tree's id must equal ``tree_id``."""
        tree = self._repo[self.tree_of(tree_id)]
        out = os.path.abspath(out_dir)
        os.makedirs(out, exist_ok=True)
        if os.listdir(out):
            raise GitStoreError(f"checkout target {out} is not empty; pass a new directory")
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._write_tree(tree, fd, tree_id)
            written = _hash_dir(fd) if verify else str(tree.id)
        finally:
            os.close(fd)
        if written != str(tree.id):
            raise GitStoreError(
                f"checkout of {tree_id} into {out} wrote tree {written}; the disk or the store "
                "is corrupt, check both"
            )
        return written

    def _write_tree(self, tree: pygit2.Tree, dir_fd: int, tree_id: str) -> None:
        names: set[str] = set()
        for entry in tree:
            name = entry.name
            if (
                not name
                or name in (".", "..")
                or "/" in name
                or "\0" in name
                or name.lower() == ".git"
                or name in names
            ):
                raise GitStoreError(f"tree {tree_id} has a hostile entry name {name!r}; refused")
            names.add(name)
            try:
                self._write_entry(dir_fd, name, entry, tree_id)
            except OSError as exc:
                raise GitStoreError(f"checkout of {tree_id} failed at {name!r}: {exc}") from exc

    # -- switching ---------------------------------------------------------------------------

    def switch(
        self,
        from_tree: str,
        to_tree: str,
        out_dir: str | os.PathLike[str],
        *,
        dirty: list[str] | tuple[str, ...] | set[str] = (),
        verify: bool = True,
    ) -> SwitchResult:
        """Turn ``out_dir``, which holds exactly ``from_tree`` (as written by `checkout` or an
        earlier `switch`) except for the paths in ``dirty``, into exactly ``to_tree``, by
        writing and removing only the paths that differ. Cost grows with the change, not with
        the tree.

        ``dirty`` lists relative paths the caller knows may differ from ``from_tree`` (a file
        modified, added or replaced after it was written; a directory that appeared); each is
        made to match ``to_tree``: written afresh, or removed with everything below it.

        Safety is that of `checkout`: every path component is validated, directories are
        opened relative to descriptors with ``O_NOFOLLOW`` (a symlink planted where ``to_tree``
        has a directory is removed, never followed), files are created fresh; exec bits and
        symlinks are kept. Nothing is written outside ``out_dir``. With ``verify`` every written
        path is re-hashed from disk and must equal ``to_tree``'s entry, and every removed path
        must be gone; the rest of the directory is the caller's claim (``from_tree`` plus
        ``dirty``) and is not re-read. On GitStoreError the directory is in an unknown state:
        empty it and `checkout` again."""
        started = time.perf_counter()
        repo = self._repo
        target = repo[self.tree_of(to_tree)]
        source = repo[self.tree_of(from_tree)]
        paths = {p.strip("/") for p in dirty}
        if source.id != target.id:
            new_paths = []
            for delta in repo.diff(source, target).deltas:
                paths.add(delta.old_file.path)
                paths.add(delta.new_file.path)
                if delta.status != DeltaStatus.DELETED:
                    new_paths.append(delta.new_file.path)
            _refuse_conflicts(new_paths, to_tree)
        out = os.path.abspath(out_dir)
        root = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        written: list[str] = []
        removed: set[str] = set()
        done: set[str] = set()
        try:
            for path in sorted(paths):
                if not path:
                    continue
                parts = path.split("/")
                if any("/".join(parts[:i]) in done for i in range(1, len(parts))):
                    continue  # an ancestor was written or removed whole
                entry = _entry_at(target, path)
                for name in parts:
                    _check_name(name, to_tree, writing=entry is not None)
                if entry is None:
                    gone = _highest_absent(target, parts)
                    self._remove_path(root, gone.split("/"))
                    removed.add(gone)
                    done.add(gone)
                else:
                    self._write_path(root, parts, entry, to_tree)
                    written.append(path)
                    done.add(path)
            if verify:
                self._verify_paths(root, target, written, removed, to_tree, out)
        except OSError as exc:
            raise GitStoreError(
                f"switch of {out} to {to_tree} failed: {exc}; check it out afresh"
            ) from exc
        finally:
            os.close(root)
        return SwitchResult(
            tree_id=str(target.id),
            written=tuple(written),
            removed=tuple(sorted(removed)),
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _write_path(self, root: int, parts: list[str], entry, tree_id: str) -> None:
        """Write ``entry`` at ``parts`` below ``root``, making (or replacing by) directories on
        the way; whatever is at the path is removed first."""
        fd = _open_dirs(root, parts[:-1], create=True)
        try:
            _remove_entry(fd, parts[-1])
            self._write_entry(fd, parts[-1], entry, tree_id)
        finally:
            if fd != root:
                os.close(fd)

    def _write_entry(self, dir_fd: int, name: str, entry, tree_id: str) -> None:
        repo = self._repo
        mode = entry.filemode
        if mode == _MODE_TREE:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                self._write_tree(repo[entry.id], sub, tree_id)
            finally:
                os.close(sub)
        elif mode == _MODE_LINK:
            os.symlink(repo[entry.id].data, os.fsencode(name), dir_fd=dir_fd)
        elif mode in (_MODE_BLOB, _MODE_EXEC):
            perm = 0o755 if mode == _MODE_EXEC else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, perm, dir_fd=dir_fd)
            try:
                view = memoryview(repo[entry.id].data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, perm)
            finally:
                os.close(fd)
        else:
            raise GitStoreError(f"tree {tree_id} has entry {name!r} of unsupported mode {mode:o}")

    @staticmethod
    def _remove_path(root: int, parts: list[str]) -> bool:
        """Remove whatever is at ``parts`` (a directory with its content); False if absent."""
        try:
            fd = _open_dirs(root, parts[:-1], create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            return _remove_entry(fd, parts[-1])
        finally:
            if fd != root:
                os.close(fd)

    def _verify_paths(self, root, target, written, removed, tree_id: str, out: str) -> None:
        for path in written:
            parts = path.split("/")
            entry = target[path]
            fd = _open_dirs(root, parts[:-1], create=False)
            try:
                found = _hash_entry(fd, parts[-1])
            finally:
                if fd != root:
                    os.close(fd)
            if found != (entry.filemode, str(entry.id)):
                raise GitStoreError(
                    f"switch of {out} to {tree_id} wrote {path} as {found}, expected "
                    f"{(entry.filemode, str(entry.id))}; the disk or the store is corrupt, check both"
                )
        for path in removed:
            if _entry_at(target, path) is None and os.path.lexists(os.path.join(out, path)):
                raise GitStoreError(f"switch of {out} to {tree_id} left {path} in place")

    # -- bundles -----------------------------------------------------------------------------

    def write_bundle(self, path: str | os.PathLike[str], since_commit: str | None = None) -> str:
        """Write a git bundle of ``refs/agtrace/snapshots`` to ``path`` and return the tip
        commit it carries: the whole history, or only commits after ``since_commit`` (an
        earlier tip). Atomic and durable on return: temp file, fsync, rename, fsync dir.
        Uses the git CLI (libgit2 cannot write bundles)."""
        tip = self.head
        if tip is None:
            raise GitStoreError(f"{self.path} has no snapshots yet; take one before bundling")
        if since_commit is not None:
            self.tree_of(since_commit)  # raises if unknown
            if since_commit == tip:
                raise GitStoreError(f"no snapshots after {since_commit}; skip this bundle")
        path = os.path.abspath(path)
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
        revs = [SNAPSHOT_REF] + ([f"^{since_commit}"] if since_commit else [])
        try:
            _run_git(
                [f"--git-dir={self.path}", "bundle", "create", "-q", tmp, *revs],
                f"writing bundle {path}",
            )
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        fsync_dir(directory)
        return tip

    # -- importing ---------------------------------------------------------------------------

    def import_bundle(self, path: str | os.PathLike[str]) -> list[str]:
        """Fetch every ref of a git bundle made by another tool (e.g. envoi-trace's
        ``repo.bundle``) into ``refs/imported/*`` and return the commit ids the bundle's refs
        point at. The snapshot ref is not touched. A file that is not a complete bundle (a
        truncated pack, a missing prerequisite) raises GitStoreError and imports nothing that
        any ref names."""
        path = os.path.abspath(path)
        refs: list[tuple[str, str]] = []
        with open(path, "rb") as f:
            if not f.readline().startswith(b"# v"):
                raise GitStoreError(f"{path} is not a git bundle (no bundle header)")
            for line in f:
                if line in (b"\n", b""):
                    break
                if not line.startswith((b"-", b"@")):
                    oid, _, name = line.decode(errors="replace").strip().partition(" ")
                    refs.append((oid, name))
        if not refs:
            raise GitStoreError(f"{path} is a bundle without refs; nothing to import")
        _run_git([f"--git-dir={self.path}", "bundle", "verify", "-q", path], f"verifying bundle {path}")
        specs = []
        for _, name in refs:
            dest = name[len("refs/"):] if name.startswith("refs/") else name
            specs.append(f"+{name}:refs/imported/{dest}")
        _run_git([f"--git-dir={self.path}", "fetch", "-q", "--no-tags", "--no-write-fetch-head", path, *specs],
                 f"importing bundle {path}")
        return list(dict.fromkeys(oid for oid, _ in refs))

    def fetch_commit(self, repo_dir: str | os.PathLike[str], rev: str) -> str:
        """Copy commit ``rev`` (full or abbreviated id, or a ref name) and everything it reaches
        from the git repository at ``repo_dir`` into ``refs/imported/<id>``; return its full id.
        The other repository is only read (``rev-parse`` and ``upload-pack``)."""
        repo_dir = os.path.abspath(repo_dir)
        full = _run_git(["-C", repo_dir, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                        f"looking up {rev} in {repo_dir}").strip()
        if self.resolve(full) is None:
            _run_git([f"--git-dir={self.path}", "fetch", "-q", "--no-tags", "--no-write-fetch-head", repo_dir,
                      f"+{full}:refs/imported/{full}"], f"fetching {full} from {repo_dir}")
        return full

    def resolve(self, rev: str) -> str | None:
        """Full id of the commit named by ``rev`` (an id or a prefix of one), None if absent."""
        try:
            return str(self._repo.revparse_single(rev).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            return None

    def first_parents(self, commit: str) -> list[str]:
        """The first-parent chain of ``commit``, newest first, ending at a root commit."""
        chain = []
        obj = self._repo[self.resolve(commit) or commit].peel(pygit2.Commit)
        while True:
            chain.append(str(obj.id))
            if not obj.parent_ids:
                return chain
            obj = self._repo[obj.parent_ids[0]]

    def commit_tree(self, tree_id: str, parent: str | None, message: str) -> str:
        """Record ``tree_id`` (already in the store) as a snapshot commit on top of ``parent``
        and move ``refs/agtrace/snapshots`` to it; return the commit id. Used by importers,
        whose trees come from another repository instead of a workdir."""
        tree = self._repo[self.tree_of(tree_id)]
        sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
        parents = [pygit2.Oid(hex=parent)] if parent else []
        commit_id = str(self._repo.create_commit(None, sig, sig, message, tree.id, parents))
        self._repo.references.create(SNAPSHOT_REF, commit_id, force=True)
        return commit_id

    def apply_patch(self, base_tree: str, patch: str | bytes) -> str:
        """The tree id of ``base_tree`` with the unified diff ``patch`` applied (``git apply``
        semantics: exact context, binary patches, renames and modes). Nothing but objects is
        written; a patch that does not apply raises GitStoreError."""
        tree = self.tree_of(base_tree)
        data = patch.encode() if isinstance(patch, str) else patch
        fd, index = tempfile.mkstemp(prefix="agtrace-index-", dir=self.path)
        os.close(fd)
        os.unlink(index)
        env = {**_git_env(), "GIT_INDEX_FILE": index}
        try:
            for args, stdin in ((["read-tree", tree], None), (["apply", "--cached", "--binary", "-"], data),
                                (["write-tree"], None)):
                proc = subprocess.run(["git", f"--git-dir={self.path}", *args], input=stdin, env=env,
                                      capture_output=True, check=False)
                if proc.returncode != 0:
                    err = proc.stderr.decode(errors="replace").strip()
                    raise GitStoreError(f"the patch does not apply to tree {tree}: git {args[0]}: {err}")
            return proc.stdout.decode().strip()
        except FileNotFoundError as exc:
            raise GitStoreError("applying a patch needs the git CLI; install git") from exc
        finally:
            if os.path.exists(index):
                os.unlink(index)


def _remove(index: pygit2.Index, path: str) -> None:
    if path in index:
        index.remove(path)


def _check_name(name: str, tree_id: str, *, writing: bool) -> None:
    """Refuse traversal in any path, and ``.git`` in a path to write (removing one is fine)."""
    if not name or name in (".", "..") or "\0" in name or (writing and name.lower() == ".git"):
        raise GitStoreError(f"path component {name!r} for tree {tree_id} is hostile; refused")


def _refuse_conflicts(paths: list[str], tree_id: str) -> None:
    """A well-formed tree never has a path twice, nor a file that is also a directory."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise GitStoreError(f"tree {tree_id} has a duplicate entry; refused")
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise GitStoreError(f"tree {tree_id} has {path} below a file; refused")


def _entry_at(tree: pygit2.Tree, path: str):
    """The entry at ``path`` in ``tree``, or None (also when an ancestor is not a directory)."""
    try:
        return tree[path]
    except KeyError:
        return None


def _highest_absent(tree: pygit2.Tree, parts: list[str]) -> str:
    """The shortest prefix of ``parts`` that ``tree`` lacks (a path it lacks is removed whole)."""
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        entry = _entry_at(tree, prefix)
        if entry is None or (i < len(parts) and entry.filemode != _MODE_TREE):
            return prefix
    return "/".join(parts)


def _open_dirs(root: int, names: list[str], *, create: bool) -> int:
    """A descriptor of the directory ``names`` below ``root``, never following a symlink. With
    ``create``, a missing directory is made and a non-directory in the way is replaced."""
    fd = root
    for name in names:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            sub = os.open(name, flags, dir_fd=fd)
        except OSError as exc:
            if not create or exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                if fd != root:
                    os.close(fd)
                raise
            _remove_entry(fd, name)  # a file or symlink where a directory belongs
            os.mkdir(name, 0o755, dir_fd=fd)
            sub = os.open(name, flags, dir_fd=fd)
        if fd != root:
            os.close(fd)
        fd = sub
    return fd


def _remove_entry(dir_fd: int, name: str) -> bool:
    """Remove ``name`` in ``dir_fd`` (a real directory recursively, symlinks not followed)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
    return True


def _hash_entry(dir_fd: int, name: str) -> tuple[int, str] | None:
    """``(git mode, object id)`` of ``name`` as it is on disk, or None when absent."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            return _MODE_TREE, _hash_dir(sub)
        finally:
            os.close(sub)
    if stat.S_ISLNK(st.st_mode):
        return _MODE_LINK, _hash_object(b"blob", os.fsencode(os.readlink(name, dir_fd=dir_fd)))
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    return (_MODE_EXEC if st.st_mode & 0o100 else _MODE_BLOB), _hash_object(b"blob", data)


def _hash_dir(dir_fd: int) -> str:
    """Git tree id of a directory as it is on disk (symlinks not followed, exec bit kept);
    writes no objects."""
    entries = []
    for name in os.listdir(dir_fd):
        st = os.lstat(name, dir_fd=dir_fd)
        bname = os.fsencode(name)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                oid = _hash_dir(sub)
            finally:
                os.close(sub)
            entries.append((bname + b"/", b"40000", bname, oid))
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dir_fd)
            entries.append((bname, b"120000", bname, _hash_object(b"blob", os.fsencode(target))))
        else:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                data = f.read()
            mode = b"100755" if st.st_mode & 0o100 else b"100644"
            entries.append((bname, mode, bname, _hash_object(b"blob", data)))
    entries.sort()
    body = b"".join(m + b" " + n + b"\0" + bytes.fromhex(o) for _, m, n, o in entries)
    return _hash_object(b"tree", body)


def _hash_object(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()
