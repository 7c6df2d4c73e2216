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
``checkout.py`` (writing trees into directories) and ``bundle.py`` (the git CLI: bundles,
importers' foreign repositories), which reach pygit2 objects only through this module.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time

import pygit2
from pygit2.enums import ConfigLevel, DeltaStatus, DiffOption, ObjectType

from ..errors import GitStoreError
from . import policy
from .bundle import BundleMixin
from .checkout import MODE_BLOB, MODE_EXEC, MODE_LINK, CheckoutMixin
from .result import SNAPSHOT_REF, Exclusion, FileChange, SnapshotResult

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


class GitStore(CheckoutMixin, BundleMixin):
    """One shadow repository. Construct with `init`, `open` or `from_bundles`."""

    def __init__(self, repo: pygit2.Repository, path: str) -> None:
        self._repo = repo
        self.path = path
        self._credentials = True

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
        self._repo.references.create(SNAPSHOT_REF, commit, force=True)

    def has_object(self, oid: str) -> bool:
        """Whether the object ``oid`` (full hex id) is in the store."""
        return oid in self._repo.odb

    def snapshot(
        self,
        workdir: str | os.PathLike[str],
        *,
        exclude: list[str] | tuple[str, ...] = (),
        max_file_bytes: int,
        message: str,
        parent_commit: str | None = None,
        credentials: bool = True,
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
        state = policy.load_state(self.path)
        fingerprint = policy.install_ignore_rules(self.path, root, exclude, max_file_bytes)
        fingerprint = policy.credentials_fingerprint(fingerprint, credentials)
        self._credentials = credentials
        repo.workdir = root
        index = repo.index
        index.read(True)
        if state.get("policy") != fingerprint:
            self._purge(index, root, max_file_bytes, check_size=True)
        excluded: list[Exclusion] = []
        nested_roots: list[str] = []
        if self._apply_workdir_changes(index, root, max_file_bytes, excluded, nested_roots):
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
        policy.save_state(self.path, fingerprint, nested_all)
        parent_tree = repo[parent].peel(pygit2.Tree).id if parent else None
        if parent is not None and parent_tree == tree:
            commit_id, created = parent, False
        else:
            sig = pygit2.Signature(_SIGNATURE_NAME, _SIGNATURE_EMAIL)
            parents = [pygit2.Oid(hex=parent)] if parent else []
            commit_id = str(repo.create_commit(None, sig, sig, message, tree, parents))
            created = True
        self.set_head(commit_id)
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
            if reason := policy.credential_exclusion(path, full, st, self._credentials):
                excluded.append(Exclusion(path, reason, st.st_size))
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
        for entry in list(index):
            path = entry.path
            if self._repo.path_is_ignored(path):
                _remove(index, path)
            elif check_size:
                full = os.path.join(root, path)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                too_big = stat.S_ISREG(st.st_mode) and st.st_size > max_file_bytes
                if too_big or policy.credential_exclusion(path, full, st, self._credentials):
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
                        index.add(pygit2.IndexEntry(rel, oid, MODE_LINK))
                    elif not stat.S_ISREG(st.st_mode):
                        continue
                    elif st.st_size > max_file_bytes:
                        excluded.append(Exclusion(rel, "size", st.st_size))
                    elif reason := policy.credential_exclusion(rel, full, st, self._credentials):
                        excluded.append(Exclusion(rel, reason, st.st_size))
                    else:
                        oid = repo.create_blob_fromdisk(full)
                        mode = MODE_EXEC if st.st_mode & 0o100 else MODE_BLOB
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
        try:
            obj = self._tree(tree_id)[path]
        except KeyError as exc:
            raise GitStoreError(f"{path} is not in tree {tree_id}") from exc
        if obj.type != ObjectType.BLOB:
            raise GitStoreError(f"{path} in tree {tree_id} is a directory, not a file")
        return obj.data

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

    def diff(self, tree_a: str | None, tree_b: str) -> list[FileChange]:
        """Paths that differ from ``tree_a`` (None = empty tree) to ``tree_b``, sorted by path,
        with line counts for text files (no rename detection)."""
        changes = []
        try:
            patches = list(self._repo.diff(self._tree_or_empty(tree_a), self._tree(tree_b)))
        except pygit2.GitError as exc:  # libgit2 refuses a hostile tree (an absolute entry name)
            raise GitStoreError(f"tree {tree_b} cannot be compared with {tree_a or 'the empty tree'}: it is "
                                f"hostile or damaged ({exc}); refused") from None
        for patch in patches:
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

    def diff_texts(self, tree_a: str | None, tree_b: str) -> list[tuple[FileChange, str | None, bytes | None,
                                                                          bytes | None]]:
        """:meth:`diff` with, per file, its unified diff as libgit2 writes it (3 lines of context,
        from the ``---`` line; None for a binary file) and the bytes of its two versions (None
        where absent): one pass over the trees, for callers that show every part's diff."""
        out = []
        for patch in self._repo.diff(self._tree_or_empty(tree_a), self._tree(tree_b)):
            delta = patch.delta
            if delta.status == DeltaStatus.ADDED:
                status, path = "added", delta.new_file.path
            elif delta.status == DeltaStatus.DELETED:
                status, path = "deleted", delta.old_file.path
            else:
                status, path = "modified", delta.new_file.path
            _, plus, minus = patch.line_stats
            old = self._repo[delta.old_file.id].data if status != "added" else None
            new = self._repo[delta.new_file.id].data if status != "deleted" else None
            text = None
            if not delta.is_binary:
                text = patch.text or ""
                if not text.startswith("--- "):  # headers first: diff --git, index, modes
                    at = text.find("\n--- ")
                    text = text[at + 1 :] if at >= 0 else ""
                text = text.rstrip("\n")
            out.append((FileChange(path, status, plus, minus), text, old, new))
        out.sort(key=lambda item: item[0])
        return out

    def changed_paths(self, tree_a: str | None, tree_b: str) -> list[str]:
        """Sorted paths that differ between the two trees (without line counts)."""
        try:
            deltas = self._repo.diff(self._tree_or_empty(tree_a), self._tree(tree_b)).deltas
        except pygit2.GitError as exc:
            raise GitStoreError(f"tree {tree_b} cannot be compared with {tree_a or 'the empty tree'}: it is "
                                f"hostile or damaged ({exc}); refused") from None
        return sorted(d.new_file.path for d in deltas)

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

    def _tree_changes(self, tree_a: str, tree_b: str) -> list[tuple[str, str, bool]]:
        """``(old path, new path, deleted)`` of every delta from ``tree_a`` to ``tree_b``."""
        a, b = self._tree(tree_a), self._tree(tree_b)
        if a.id == b.id:
            return []
        return [(d.old_file.path, d.new_file.path, d.status == DeltaStatus.DELETED)
                for d in self._repo.diff(a, b).deltas]


def _remove(index: pygit2.Index, path: str) -> None:
    if path in index:
        index.remove(path)
