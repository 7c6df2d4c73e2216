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

The snapshot policy (what is recorded, what is left out and how it is reported) is written
out in ``policy.py``.

Durability: objects, index and refs written by `snapshot` are not fsynced; a snapshot becomes
durable when it is written into a bundle (`write_bundle` fsyncs and renames). Only one
`snapshot` may run at a time on one store; a concurrent one fails on the index lock.

This is the only module of agtrace that imports pygit2. `GitStore` also has the methods of
``checkout.py`` (writing trees into directories), ``diffs.py`` (comparing trees), ``treeedit.py``
(trees from changed paths) and ``bundle.py``
(the git CLI: bundles, importers' foreign repositories), which reach pygit2 objects only through
this module.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Collection

import pygit2
from pygit2.enums import ConfigLevel, DeltaStatus, DiffOption, ObjectType
from pygit2.ffi import C as _C
from pygit2.ffi import ffi as _ffi

from ..errors import GitStoreError
from . import policy
from .bundle import BundleMixin
from .checkout import CheckoutMixin
from .diffs import DiffMixin
from .incremental import IncrementalMixin, _file_signature, _trusted_state
from .loose import DamagedObject
from .packed import ObjectReader
from .result import SNAPSHOT_REF, Exclusion, FileChange, SnapshotResult
from .treeedit import TreeEditMixin, tree_changes

_SIGNATURE_NAME = "agtrace"
_SIGNATURE_EMAIL = "agtrace@localhost"
_DIFF_FLAGS = (
    DiffOption.INCLUDE_UNTRACKED
    | DiffOption.RECURSE_UNTRACKED_DIRS
    | DiffOption.INCLUDE_TYPECHANGE
    | DiffOption.UPDATE_INDEX
)

def _isolate_libgit2_config() -> None:
    """Make libgit2 ignore the user's global, XDG and system git configuration (process-wide;
    this module is the only pygit2 user), so snapshots do not depend on the machine."""
    empty = os.path.join(tempfile.gettempdir(), "agtrace-no-git-config")
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM, ConfigLevel.PROGRAMDATA):
        pygit2.settings.search_path[level] = empty


class GitStore(CheckoutMixin, BundleMixin, IncrementalMixin, DiffMixin, TreeEditMixin):
    """One shadow repository. Construct with `init`, `open` or `from_bundles`."""

    _GitError = pygit2.GitError  # for the mixins, which do not import pygit2

    def __init__(self, repo: pygit2.Repository, path: str) -> None:
        self._repo = repo
        self.path = path
        self._credentials = True
        self._index = None  # (index, its file, the file's signature when we wrote it)
        self._state: tuple = ({}, None)  # agtrace-state.json as last saved, with its signature
        self._objects = ObjectReader(os.path.join(path, "objects"))
        self._edits: list | None = None  # index edits of a snapshot from changed paths, in order

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
        for key, value in policy.CONFIG.items():
            repo.config[key] = value
        info = os.path.join(path, "info")
        os.makedirs(info, exist_ok=True)
        policy.write_atomic(os.path.join(info, "attributes"), policy.ATTRIBUTES)
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

    # -- snapshots ---------------------------------------------------------------------------

    @property
    def head(self) -> str | None:
        """Commit id at the tip of ``refs/agtrace/snapshots``, or None before the first one."""
        ref = self._repo.references.get(SNAPSHOT_REF)
        return None if ref is None else str(ref.target)

    def set_head(self, commit: str) -> None:
        """Point ``refs/agtrace/snapshots`` at ``commit`` (which must be in the store)."""
        try:
            self._repo.references.create(SNAPSHOT_REF, commit, force=True)
        except (TypeError, ValueError, pygit2.GitError) as exc:
            raise GitStoreError(f"commit {commit} is not in {self.path} ({exc}); a bundle's header names a "
                                "commit its pack lacks: the bundle is damaged, pull it again") from exc

    def prepare(self, workdir: str | os.PathLike[str], *, exclude=(), max_file_bytes: int) -> None:
        """Install the ignore rules of a snapshot of ``workdir`` (as `snapshot` does), so that
        `is_ignored` answers for it before the first snapshot."""
        root = os.path.realpath(workdir)
        policy.install_ignore_rules(self.path, root, exclude, max_file_bytes)
        if self._repo.workdir is None or os.path.realpath(self._repo.workdir) != root:
            self._repo.workdir = root
            self._index = None

    def is_ignored(self, rel: str) -> bool:
        """Whether the snapshot policy ignores ``rel`` (relative to the workdir; a directory
        ends with ``/``); after `prepare` or `snapshot`."""
        return self._repo.path_is_ignored(rel)

    def has_object(self, oid: str) -> bool:
        """Whether the object ``oid`` (full hex id) is in the store."""
        try:
            return oid in self._repo.odb
        except (TypeError, ValueError):  # not an object id at all (a damaged bundle header)
            return False

    def snapshot(
        self,
        workdir: str | os.PathLike[str],
        *,
        exclude: list[str] | tuple[str, ...] = (),
        max_file_bytes: int,
        message: str,
        parent_commit: str | None = None,
        credentials: bool = True,
        changed: Collection[str] | None = None,
        verify: bool = False,
        move_ref: bool = True,
    ) -> SnapshotResult:
        """Record the current tree of ``workdir`` and chain it on ``refs/agtrace/snapshots``.

        Incremental: the private index keeps stat data, so only files whose stat changed are read
        and hashed. With ``changed`` (relative paths that may differ from the parent snapshot,
        e.g. from a file watcher; the caller vouches that nothing else did) only those are
        looked at, and the workdir is not walked (``detector="paths"``) unless that cannot be
        trusted (first snapshot, policy or a ``.gitignore`` changed, a nested repository
        appeared: ``detector="walk"``, ``fallback`` says why). With ``verify`` as well, the
        whole workdir is walked afterwards and what the paths missed is put right and listed in
        ``missed`` (``detector="paths+walk"``).

        ``parent_commit`` defaults to the ref's tip; when given (e.g. the last commit the caller
        recorded), the new commit chains from it and the ref is moved to the new commit even if
        it pointed elsewhere (an unrecorded tip is dropped from the chain). ``move_ref=False``
        leaves the ref alone (a caller that chains by ``parent_commit`` and moves the ref with
        `set_head` before bundling saves a ref write per snapshot).

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
        state_file = os.path.join(self.path, policy.STATE_FILE)
        cached_state, signature = self._state
        state = cached_state if signature and _file_signature(state_file) == signature else policy.load_state(self.path)
        fingerprint = policy.install_ignore_rules(self.path, root, exclude, max_file_bytes)
        fingerprint = policy.credentials_fingerprint(fingerprint, credentials)
        self._credentials = credentials
        if repo.workdir is None or os.path.realpath(repo.workdir) != root:
            repo.workdir = root
            self._index = None
        index = self._snapshot_index()
        detector, fallback, missed = "walk", "", ()
        excluded: list[Exclusion] = []
        nested_roots: list[str] = []
        lines: dict[str, int] | None = {} if parent is None else None
        if changed is not None:
            fallback = _trusted_state(state, fingerprint, parent)
            if not fallback:
                excluded = [Exclusion(*e) for e in state["excluded"]]
                fallback, edits = self._apply_paths_recorded(index, root, changed, max_file_bytes, excluded)
                if fallback:
                    index.read(True)
                    self._index = None
                    excluded = []
                else:
                    detector = "paths"
        if detector == "paths" and verify:
            by_paths, excluded_by_paths = self._write_tree(index, root), sorted(excluded)
            excluded = []
        if detector == "walk" or verify:
            if state.get("policy") != fingerprint:
                self._purge(index, root, max_file_bytes, check_size=True)
            if self._apply_workdir_changes(index, root, max_file_bytes, excluded, nested_roots, lines):
                self._purge(index, root, max_file_bytes, check_size=False)
            for nested in nested_roots:  # libgit2 lists a new nested repository as one entry
                self._add_tree(index, root, nested, max_file_bytes, excluded, lines, nested=True)
        known = [n for n in state.get("nested", []) if os.path.lexists(f"{root}/{n}/.git")]
        nested_all = sorted(set(known) | set(nested_roots))
        recorded = sorted(excluded)
        excluded = recorded + [Exclusion(f"{n}/.git", "nested_git", 0) for n in nested_all]
        parent_tree = repo[parent].peel(pygit2.Tree).id if parent else None
        tree = (self._edited_tree(index, root, parent_tree, edits) if detector == "paths" and not verify
                else self._write_tree(index, root, flush=detector != "paths" or verify))
        if detector == "paths" and verify:
            detector = "paths+walk"
            missed = tuple(self.changed_paths(str(by_paths), str(tree)) if by_paths != tree else ())
            missed += tuple(sorted({e.path for e in set(recorded) ^ set(excluded_by_paths)} - set(missed)))
        saved = policy.save_state(self.path, fingerprint, nested_all, recorded, state)
        self._state = (saved, _file_signature(state_file))
        if parent is not None and parent_tree == tree:
            commit_id, created = parent, False
        else:
            sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
            parents = [pygit2.Oid(hex=parent)] if parent else []
            commit_id = str(repo.create_commit(None, sig, sig, message, tree, parents))
            created = True
        if move_ref:
            self.set_head(commit_id)
        paths = [e.path for e in index] if parent_tree is None and lines is not None else None
        if paths is not None and all(p in lines for p in paths):  # every file was read just now
            changes = sorted(FileChange(p, "added", lines[p], 0) for p in paths)
        elif detector == "paths":  # a few paths changed: compare only the subtrees that differ
            changes = tree_changes(self, parent_tree, tree)
        else:
            changes = self.diff(str(parent_tree) if parent_tree else None, str(tree))
        return SnapshotResult.of_changes(
            changes,
            tree_id=str(tree),
            commit_id=commit_id,
            parent_commit=parent,
            created_commit=created,
            excluded=tuple(sorted(excluded)),
            duration_ms=(time.perf_counter() - started) * 1000,
            detector=detector,
            fallback=fallback,
            missed=missed,
        )

    def _snapshot_index(self):
        """The private index, kept in memory between snapshots of this store (re-read when the
        file changed under it: another store object wrote it)."""
        cached = self._index
        if cached is not None and _file_signature(cached[1]) == cached[2]:
            return cached[0]
        index = self._repo.index
        path = os.path.join(self.path, "index")
        signature = _file_signature(path)
        index.read(True)
        self._index = (index, path, signature)
        return index

    def _write_tree(self, index, root: str, *, flush: bool = True):
        """Write the index's tree; with ``flush`` write the index file too (a snapshot from
        changed paths leaves it to the next walk: the file is only a stat cache, and a stale one
        costs re-hashing, never a wrong tree)."""
        try:
            tree = index.write_tree()
            if flush:
                index.write()
                path = os.path.join(self.path, "index")
                self._index = (index, path, _file_signature(path))
        except pygit2.GitError as exc:
            raise GitStoreError(
                f"cannot write snapshot of {root} into {self.path}: {exc}; if another snapshot "
                "is running wait for it, else remove a stale index.lock"
            ) from exc
        return tree

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

    def _apply_workdir_changes(self, index, root, max_file_bytes, excluded, nested_roots, lines=None) -> bool:
        """Bring the index in line with the workdir (libgit2 compares stat data and hashes only
        changed files); return whether any ``.gitignore`` changed."""
        rules_changed = False
        try:
            deltas = list(index.diff_to_workdir(flags=_DIFF_FLAGS).deltas)
        except pygit2.GitError as exc:
            raise GitStoreError(f"cannot scan workdir {root}: {exc}") from exc
        items = []
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
            items.append((path, full, st))
        self._add_paths(index, items, max_file_bytes, excluded, lines)
        return rules_changed

    # -- index primitives for incremental.py -------------------------------------------------

    def _create_blob(self, data: bytes):
        return self._repo.create_blob(data)

    def _index_add_stat(self, index, rel: str, oid, mode: int, st: os.stat_result) -> None:
        """Add ``rel`` as blob ``oid`` with the stat data of ``st`` (so a later walk skips it
        while it is unchanged); ValueError for a path git refuses."""
        entry = _ffi.new("git_index_entry *")
        _ffi.buffer(_ffi.addressof(entry, "id"))[:] = oid if isinstance(oid, bytes) else oid.raw
        entry.mode = mode
        entry.ctime.seconds, entry.ctime.nanoseconds = st.st_ctime_ns // 10**9 & 0x7FFFFFFF, st.st_ctime_ns % 10**9
        entry.mtime.seconds, entry.mtime.nanoseconds = st.st_mtime_ns // 10**9 & 0x7FFFFFFF, st.st_mtime_ns % 10**9
        entry.dev, entry.ino = st.st_dev & 0xFFFFFFFF, st.st_ino & 0xFFFFFFFF
        entry.uid, entry.gid = st.st_uid & 0xFFFFFFFF, st.st_gid & 0xFFFFFFFF
        entry.file_size = st.st_size & 0xFFFFFFFF
        path = _ffi.new("char[]", os.fsencode(rel))
        entry.path = path
        if _C.git_index_add(index._index, entry) != 0:  # noqa: SLF001 - pygit2 has no stat setter
            raise ValueError(f"git refuses the path {rel!r}")
        self._record_edit(rel, (oid.hex() if isinstance(oid, bytes) else oid, mode))

    def _index_drop(self, index, rel: str) -> None:
        """Remove ``rel`` and everything below it from ``index``."""
        self._record_edit(rel, None)
        _remove(index, rel)
        if hasattr(index, "remove_directory"):
            index.remove_directory(rel)
        else:  # pygit2 before 1.18.2 has no remove_directory
            below = rel + "/"
            for path in [e.path for e in index if e.path.startswith(below)]:
                index.remove(path)

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

    def damage_in(self, tree_id: str, seen: set[str]) -> str | None:
        """None when ``tree_id`` and every tree and blob it reaches are in the store and read back
        whole (libgit2 re-hashes what it reads); else which object is missing or damaged.
        ``seen`` holds objects already found intact (shared between calls: trees of a run share
        most of their objects) and is added to."""
        stack = [tree_id]
        odb = self._repo.odb
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            try:
                kind, data = odb.read(oid)
                if kind == ObjectType.TREE:
                    stack.extend(str(e.id) for e in self._repo[oid] if e.filemode != 0o160000)
            except (KeyError, ValueError, pygit2.GitError) as exc:
                return f"object {oid} is missing or damaged ({' '.join(str(exc).split()) or type(exc).__name__})"
            seen.add(oid)
        return None

    def read_blob(self, tree_id: str, path: str) -> bytes:
        """Bytes of the file (or symlink target) at ``path`` in ``tree_id``."""
        try:
            obj = self._tree(tree_id)[path]
        except KeyError as exc:
            raise GitStoreError(f"{path} is not in tree {tree_id}") from exc
        if obj.type != ObjectType.BLOB:
            raise GitStoreError(f"{path} in tree {tree_id} is a directory, not a file")
        return self._blob_data(obj.id)

    def files(self, tree_id: str) -> dict[str, str]:
        """Every file (and symlink) of ``tree_id``: path → blob id (hex). Blob ids are content
        hashes, so two repositories name equal contents alike (comparing trees across runs)."""
        out: dict[str, str] = {}
        stack = [("", self._tree(tree_id))]
        while stack:
            prefix, tree = stack.pop()
            for entry in tree:
                if entry.type == ObjectType.TREE:
                    stack.append((f"{prefix}{entry.name}/", self._repo[entry.id]))
                elif entry.type == ObjectType.BLOB:
                    out[prefix + entry.name] = str(entry.id)
        return out

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
        tree = self._tree(tree_id)
        sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
        parents = [pygit2.Oid(hex=parent)] if parent else []
        commit_id = str(self._repo.create_commit(None, sig, sig, message, tree.id, parents))
        self.set_head(commit_id)
        return commit_id

    # -- trees for checkout.py (pygit2 objects, read by name, filemode, id and data) ----------

    def _tree(self, tree_id: str):
        try:  # one object lookup: a tree id is the common case
            obj = self._repo[tree_id]
            return obj if obj.type == ObjectType.TREE else obj.peel(pygit2.Tree)
        except (KeyError, ValueError, pygit2.GitError):
            return self._repo[self.tree_of(tree_id)]  # raises the error that names the id

    def _tree_or_empty(self, tree_id: str | None):
        return self._tree(tree_id) if tree_id else self._repo[self._repo.TreeBuilder().write()]

    def _lookup(self, oid):
        return self._repo[oid]

    def _blob_data(self, oid) -> bytes:
        """The bytes of blob ``oid``, their hash checked, without a pygit2 object: checkouts and
        reports read every file this way. A loose or a whole packed object is read in Python
        (``loose.py``, ``packed.py``: the GIL goes while they inflate and hash, so a checkout's
        threads use every core), a delta by libgit2. A missing object raises KeyError, a
        damaged one GitStoreError."""
        hex_id = str(oid)
        try:
            found = self._objects.read(hex_id)
        except DamagedObject as exc:
            raise GitStoreError(f"{exc} in {self.path}: the shadow repository is damaged; "
                                "replay from the run's bundles (`agtrace verify` says which are whole)") from None
        if found is None:
            kind, data = self._repo.odb.read(oid)
            kind = ObjectType(kind).name.lower()
        else:
            kind, data = found[0].decode(errors="replace"), found[1]
        if kind != "blob":
            raise GitStoreError(f"object {oid} is a {kind} where a file's contents "
                                "belong: the shadow repository is damaged or hostile; refused")
        return data


def _remove(index: pygit2.Index, path: str) -> None:
    if path in index:
        index.remove(path)
