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
``recorder.py`` (`snapshot`: walks, and snapshots from changed paths written as one pack each,
merged by ``packset.py``), ``incremental.py`` (workdir paths into the index), ``checkout.py``
(writing trees into directories), ``diffs.py`` (comparing trees), ``treeedit.py`` (trees from
changed paths), ``treefilter.py`` (imported trees without their credential files) and
``bundle.py`` (the git CLI: bundles, importers' foreign repositories), which reach pygit2
objects only through this module.
"""

from __future__ import annotations

import os
import tempfile

import pygit2
from pygit2.enums import ConfigLevel, DeltaStatus, DiffOption, ObjectType
from pygit2.ffi import C as _C
from pygit2.ffi import ffi as _ffi

from ..errors import GitStoreError
from . import policy
from .bundle import BundleMixin
from .checkout import CheckoutMixin
from .diffs import DiffMixin
from .incremental import IncrementalMixin
from .loose import DamagedObject
from .packed import ObjectReader
from .packset import PackSet
from .recorder import RecorderMixin
from .result import SNAPSHOT_REF
from .treeedit import TreeEditMixin
from .treefilter import TreeFilterMixin

_SIGNATURE_NAME = "agtrace"
_SIGNATURE_EMAIL = "agtrace@localhost"
_DIFF_FLAGS = (
    DiffOption.INCLUDE_UNTRACKED
    | DiffOption.RECURSE_UNTRACKED_DIRS
    | DiffOption.INCLUDE_TYPECHANGE
    | DiffOption.UPDATE_INDEX
)

_OBJECT_TYPES = {b"blob": ObjectType.BLOB, b"tree": ObjectType.TREE, b"commit": ObjectType.COMMIT}


def _isolate_libgit2_config() -> None:
    """Make libgit2 ignore the user's global, XDG and system git configuration (process-wide;
    this module is the only pygit2 user), so snapshots do not depend on the machine."""
    empty = os.path.join(tempfile.gettempdir(), "agtrace-no-git-config")
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM, ConfigLevel.PROGRAMDATA):
        pygit2.settings.search_path[level] = empty


class GitStore(RecorderMixin, CheckoutMixin, BundleMixin, IncrementalMixin, DiffMixin, TreeEditMixin,
               TreeFilterMixin):
    """One shadow repository. Construct with `init`, `open` or `from_bundles`."""

    _GitError = pygit2.GitError  # for the mixins, which do not import pygit2

    def __init__(self, repo: pygit2.Repository, path: str) -> None:
        self._repo = repo
        self.path = path
        self._credentials = True
        self._secrets: tuple[str, ...] = ()  # values a recorded file may not hold (credential.secret_values)
        self._index = None  # (index, its file, the file's signature when we wrote it)
        self._state: tuple = ({}, None)  # agtrace-state.json as last saved, with its signature
        self._objects = ObjectReader(os.path.join(path, "objects"))
        self._edits: list | None = None  # index edits staged by a snapshot from changed paths, in order
        self._staged = None  # the pack (pack.PackWriter) of the objects such a snapshot makes
        self._trees: dict = {}  # parsed trees (treeedit.py)
        self._fresh: dict[str, bytes] = {}  # blob id -> bytes read by the snapshot being recorded
        self._commits: dict[str, str] = {}  # commit -> tree of the snapshots written here
        self._filtered: dict = {}  # secrets -> what without_credentials found (treefilter.py)
        self._workdir: str | None = None
        self._packset = PackSet(path)

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
        self._use_workdir(root)

    def is_ignored(self, rel: str) -> bool:
        """Whether the snapshot policy ignores ``rel`` (relative to the workdir; a directory
        ends with ``/``); after `prepare` or `snapshot`. pygit2 takes only UTF-8 text here: for
        a name that is not (``os.fsdecode`` of other bytes) each byte that is not UTF-8 is asked
        about as a ``?``, so ``*`` and ``?`` patterns answer right and a pattern naming that
        byte does not; a snapshot from changed paths walks instead when it meets such a name
        (libgit2's walk matches the bytes)."""
        try:
            return self._repo.path_is_ignored(rel)
        except UnicodeEncodeError:
            return self._repo.path_is_ignored("".join("?" if 0xD800 <= ord(c) <= 0xDFFF else c for c in rel))

    def has_object(self, oid: str) -> bool:
        """Whether the object ``oid`` (full hex id) is in the store."""
        try:
            return oid in self._repo.odb
        except (TypeError, ValueError):  # not an object id at all (a damaged bundle header)
            return False

    def _resolve_parent(self, parent_commit: str | None) -> str | None:
        if parent_commit is None:
            return self.head
        if parent_commit in self._commits:
            return parent_commit
        try:
            return str(self._repo[parent_commit].peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise GitStoreError(
                f"parent commit {parent_commit} is not in {self.path}; pass a commit_id returned "
                "by an earlier snapshot of this store, or None"
            ) from exc

    # -- primitives for recorder.py ----------------------------------------------------------

    def _use_workdir(self, root: str) -> None:
        if self._workdir != root:
            if self._repo.workdir is None or os.path.realpath(self._repo.workdir) != root:
                self._repo.workdir = root
                self._index = None
            self._workdir = root

    def _tree_of_commit(self, commit: str) -> str:
        tree = self._commits.get(commit)
        return tree if tree is not None else str(self._repo[commit].peel(pygit2.Tree).id)

    def _remember_commit(self, commit: str, tree: str) -> None:
        if len(self._commits) >= 64:
            self._commits.clear()
        self._commits[commit] = tree

    def _create_commit(self, message: str, tree: str, parents: list[str]) -> str:
        sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
        return str(self._repo.create_commit(None, sig, sig, message, pygit2.Oid(hex=tree),
                                            [pygit2.Oid(hex=p) for p in parents]))

    def _write_snapshot_ref(self, commit: str) -> None:
        """Point ``refs/agtrace/snapshots`` at ``commit`` (just written by `snapshot`). A ref file
        that holds an id already (41 bytes) is overwritten in place: one write of 41 bytes within
        a page, seen whole or not at all (only this store writes the ref; neither way is
        fsynced), where git's ``.lock`` file and rename would cost a file creation and a rename
        per snapshot; else it is written as git does, through ``.lock`` and a rename."""
        path = os.path.join(self.path, *SNAPSHOT_REF.split("/"))
        line = commit.encode() + b"\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            try:
                if os.fstat(fd).st_size == len(line) and os.pwrite(fd, line, 0) == len(line):
                    return
            finally:
                os.close(fd)
        lock = path + ".lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise GitStoreError(f"{lock} exists: another snapshot of {self.path} is running; wait for it, "
                                "else remove the stale lock") from None
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        os.replace(lock, path)

    def _read_raw(self, oid: bytes) -> tuple[str, bytes]:
        """``(kind, bytes)`` of object ``oid`` (20 bytes); KeyError when it is missing."""
        kind, data = self._repo.odb.read(pygit2.Oid(raw=oid))
        return ObjectType(kind).name.lower(), data

    def _write_object(self, kind: bytes, body: bytes) -> bytes:
        return self._repo.odb.write(_OBJECT_TYPES[kind], body).raw

    def _drop_pack_handles(self) -> None:
        """Forget deleted packs (merged into another): libgit2 and the Python reader keep every
        pack they opened until their object database is replaced."""
        objects = os.path.join(self.path, "objects")
        self._repo.set_odb(pygit2.Odb(objects))
        self._objects = ObjectReader(objects)

    def _blob_line_stats(self, old: str, new: str) -> tuple[int, int]:
        """Lines added and removed from blob ``old`` to blob ``new`` (0, 0 if either is binary),
        as libgit2's blob diff counts them (the buffers compared: no attribute lookups)."""
        data = [self._fresh.get(oid) or self._blob_data(oid) for oid in (old, new)]
        _, plus, minus = pygit2.Patch.create_from(data[0], data[1], context_lines=0).line_stats
        return plus, minus

    def _workdir_deltas(self, index, root: str) -> list[tuple[str, bool]]:
        """``(path, deleted)`` of every path where the workdir differs from ``index`` (libgit2
        compares stat data, hashes what changed; a new directory ends with ``/``)."""
        try:
            deltas = list(index.diff_to_workdir(flags=_DIFF_FLAGS).deltas)
        except pygit2.GitError as exc:
            raise GitStoreError(f"cannot scan workdir {root}: {exc}") from exc
        return [(d.new_file.path, d.status == DeltaStatus.DELETED) for d in deltas]

    # -- index primitives for incremental.py -------------------------------------------------

    def _create_blob(self, data: bytes):
        if self._staged is not None:  # a snapshot from changed paths: into its pack
            return self._stage_object(b"blob", data)
        return self._repo.create_blob(data)

    def _index_add_stat(self, index, rel: str, oid, mode: int, st: os.stat_result) -> None:
        """Add ``rel`` as blob ``oid`` with the stat data of ``st`` (so a later walk skips it
        while it is unchanged), or stage that while a snapshot from changed paths runs;
        ValueError for a path git refuses."""
        if self._edits is not None:
            self._edits.append((rel, (oid if isinstance(oid, bytes) else oid.raw, mode, st)))
        else:
            self._index_put(index, rel, oid, mode, st)

    def _index_put(self, index, rel: str, oid, mode: int, st: os.stat_result) -> None:
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

    def _index_drop(self, index, rel: str) -> None:
        """Remove ``rel`` and everything below it from ``index`` (or stage that)."""
        if self._edits is not None:
            self._edits.append((rel, None))
        else:
            self._index_drop_now(index, rel)

    def _index_drop_now(self, index, rel: str) -> None:
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
        stack = [(tree_id, None)]  # (object, the kind its entry says: a directory's is a tree)
        odb = self._repo.odb
        while stack:
            oid, says = stack.pop()
            if oid in seen:
                continue
            try:
                kind, data = odb.read(oid)
                if says is not None and (kind == ObjectType.TREE) != (says == ObjectType.TREE):
                    return f"object {oid} is a {'tree' if kind == ObjectType.TREE else 'blob'} where its tree entry " \
                           f"says a {'directory' if says == ObjectType.TREE else 'file'}"
                if kind == ObjectType.TREE:
                    stack.extend((str(e.id), ObjectType.TREE if e.filemode == 0o040000 else ObjectType.BLOB)
                                 for e in self._repo[oid] if e.filemode != 0o160000)
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

    def blob(self, oid: str) -> bytes:
        """The bytes of blob ``oid`` (hex), their hash checked; GitStoreError when it is missing,
        damaged or not a blob."""
        return self._blob_data(oid)

    def files(self, tree_id: str) -> dict[str, str]:
        """Every file (and symlink) of ``tree_id``: path → blob id (hex). Blob ids are content
        hashes, so two repositories name equal contents alike (comparing trees across runs)."""
        out: dict[str, str] = {}
        stack = [("", self._tree(tree_id))]
        while stack:
            prefix, tree = stack.pop()
            for entry in tree:
                if entry.type == ObjectType.TREE:
                    stack.append((f"{prefix}{entry.name}/", self._lookup(entry.id)))
                elif entry.type == ObjectType.BLOB:
                    out[prefix + entry.name] = str(entry.id)
        return out

    def new_files(self, tree_id: str, seen: set[str]) -> list[tuple[str, str]]:
        """``(path, blob id)`` of each file of ``tree_id`` whose blob is not in ``seen``, skipping
        every subtree in ``seen``; adds what it read to ``seen``. Over a run's trees in turn it
        reads each tree and blob id once (what a part did not change is skipped whole)."""
        if tree_id in seen:
            return []
        out: list[tuple[str, str]] = []
        stack = [("", self._tree(tree_id))]
        seen.add(tree_id)
        while stack:
            prefix, tree = stack.pop()
            for entry in tree:
                oid = str(entry.id)
                if oid in seen or entry.type not in (ObjectType.TREE, ObjectType.BLOB):
                    continue
                seen.add(oid)
                if entry.type == ObjectType.TREE:
                    stack.append((f"{prefix}{entry.name}/", self._lookup(entry.id)))
                else:
                    out.append((prefix + entry.name, oid))
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
        """The tree ``oid`` (a tree entry's): GitStoreError when it is missing or another kind of
        object (a damaged or hostile tree pointing a directory at a blob)."""
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError) as exc:  # pygit2's NotFoundError is a KeyError
            raise self._missing(oid) from exc
        if obj.type != ObjectType.TREE:
            raise GitStoreError(f"object {oid} is a {obj.type_str}, not the tree its entry says, in {self.path}: the "
                                "shadow repository is damaged; replay from the run's bundles (`agtrace verify` says "
                                "which are whole)")
        return obj

    def _missing(self, oid) -> GitStoreError:
        return GitStoreError(f"object {oid} is missing from {self.path}: the shadow repository is damaged; replay "
                             "from the run's bundles (`agtrace verify` says which are whole)")

    def _blob_data(self, oid) -> bytes:
        """The bytes of blob ``oid``, their hash checked, without a pygit2 object: checkouts and
        reports read every file this way. A loose or a packed object (whole or a delta) is read
        in Python (``loose.py``, ``packed.py``: the GIL goes while they inflate and hash, so a
        checkout's threads use every core), what those cannot by libgit2. A missing or damaged object raises
        GitStoreError."""
        hex_id = str(oid)
        try:
            found = self._objects.read(hex_id)
        except DamagedObject as exc:
            raise GitStoreError(f"{exc} in {self.path}: the shadow repository is damaged; "
                                "replay from the run's bundles (`agtrace verify` says which are whole)") from None
        if found is None:
            try:
                kind, data = self._repo.odb.read(oid)
            except (KeyError, ValueError) as exc:
                raise self._missing(oid) from exc
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
