"""`GitStore.snapshot`: recording a workdir's tree, by a walk or from a list of changed paths.

A walk lets libgit2 compare the private index's stat data with the workdir, hash what changed,
write the index's tree (loose objects) and the index file. A snapshot from changed paths (a file
watcher's report) reads only those paths and writes everything it makes as **one pack**: the
changed files' blobs, the trees on their paths (the parent's trees with the edits applied,
computed here: ``treeedit.py``), and the commit, hashed and deflated in Python. One pack file and
its index instead of ~15 loose object files, each of which cost libgit2 a dozen system calls
(freshen, pack-directory rescan, temp file, link, unlink, read-back). The packs are merged in
tiers as they come (``packset.py``). The index edits wait until the pack is written (libgit2
takes an entry only for an object it has); the index stays in memory (the file is written by the
next walk: it is only a stat cache).

No pygit2 here: commits, trees of commits, the workdir's libgit2 status and index entries go
through `GitStore`'s primitives in ``repository.py``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Collection

from ..errors import GitStoreError
from . import pack, policy
from .incremental import _file_signature, _trusted_state
from .result import Exclusion, FileChange, SnapshotResult
from .treeedit import edited_tree, tree_changes

SIGNATURE = b"agtrace <agtrace@localhost>"


class RecorderMixin:
    """`GitStore.snapshot` (see the module docstring)."""

    def snapshot(
        self,
        workdir: str | os.PathLike[str],
        *,
        exclude: list[str] | tuple[str, ...] = (),
        max_file_bytes: int,
        message: str,
        parent_commit: str | None = None,
        credentials: bool = True,
        secrets: tuple[str, ...] = (),
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

        With ``credentials``, credential files are left out and listed (``eventlog/credential.py``);
        ``secrets`` (:func:`~agtrace.eventlog.credential.secret_values`) adds the values a file may
        not hold: one that holds any is left out as ``credential_content``. They are never written.

        An unchanged tree creates no commit: the result has ``created_commit=False``, the same
        ``tree_id`` and ``commit_id`` equal to the parent, and the ref is set to the parent.
        Changes are computed against the parent's tree, never from the agent's git.
        """
        started = time.perf_counter()
        self._staged = None  # nothing left over from a snapshot that failed half-way
        self._fresh = {}
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
        self._secrets = tuple(secrets) if credentials else ()
        self._use_workdir(root)
        index = self._snapshot_index()
        detector, fallback, missed = "walk", "", ()
        excluded: list[Exclusion] = []
        nested_roots: list[str] = []
        lines: dict[str, int] | None = {} if parent is None else None
        parent_tree = self._tree_of_commit(parent) if parent else None
        if changed is not None:
            fallback = _trusted_state(state, fingerprint, parent)
            if not fallback:
                excluded = [Exclusion(*e) for e in state["excluded"]]
                fallback, edits = self._apply_paths_staged(index, root, changed, max_file_bytes, excluded)
                if fallback:  # the index is untouched: its edits were only staged
                    excluded = []
                else:
                    detector = "paths"
        recorded_in_pack = None
        if detector == "paths" and not verify:
            recorded_in_pack = self._record_staged(index, edits, excluded, parent, parent_tree, message)
        elif detector == "paths":
            self._flush_staged(index, edits, excluded)
            by_paths, excluded_by_paths = self._write_tree(index, root), sorted(excluded)
            excluded = [e for e in excluded_by_paths if _refused(e.path)]  # the walk never lists them
        if detector == "walk" or verify:
            if state.get("policy") != fingerprint:
                self._purge(index, root, max_file_bytes, check_size=True)
            if self._apply_workdir_changes(index, root, max_file_bytes, excluded, nested_roots, lines):
                self._purge(index, root, max_file_bytes, check_size=False)
            for nested in nested_roots:  # libgit2 lists a new nested repository as one entry
                self._add_tree(index, root, nested, max_file_bytes, excluded, lines, nested=True)
        known = [n for n in state.get("nested", []) if os.path.lexists(f"{root}/{n}/.git")]
        nested_all = sorted(set(known) | set(nested_roots))
        recorded = sorted(set(excluded))
        excluded = recorded + [Exclusion(f"{n}/.git", "nested_git", 0) for n in nested_all]
        if recorded_in_pack is not None:
            tree, commit_id = recorded_in_pack
        else:
            tree = self._write_tree(index, root, flush=detector != "paths" or verify)
            commit_id = None
        if detector == "paths" and verify:
            detector = "paths+walk"
            missed = tuple(self.changed_paths(str(by_paths), str(tree)) if by_paths != tree else ())
            missed += tuple(sorted({e.path for e in set(recorded) ^ set(excluded_by_paths)} - set(missed)))
        saved = policy.save_state(self.path, fingerprint, nested_all, recorded, state)
        self._state = (saved, _file_signature(state_file))
        tree = str(tree)
        if parent is not None and parent_tree == tree:
            commit_id, created = parent, False
        else:
            commit_id = commit_id or self._create_commit(message, tree, [parent] if parent else [])
            created = True
            self._remember_commit(commit_id, tree)  # the next snapshot's parent: no lookup
        if move_ref:
            self._write_snapshot_ref(commit_id)
        paths = [e.path for e in index] if parent_tree is None and lines is not None else None
        if paths is not None and all(p in lines for p in paths):  # every file was read just now
            changes = sorted(FileChange(p, "added", lines[p], 0) for p in paths)
        elif detector == "paths":  # a few paths changed: compare only the subtrees that differ
            changes = tree_changes(self, parent_tree, tree)
        else:
            changes = self.diff(parent_tree, tree)
        self._fresh = {}
        return SnapshotResult.of_changes(
            changes,
            tree_id=tree,
            commit_id=commit_id,
            parent_commit=parent,
            created_commit=created,
            excluded=tuple(sorted(excluded)),
            duration_ms=(time.perf_counter() - started) * 1000,
            detector=detector,
            fallback=fallback,
            missed=missed,
        )

    # -- a snapshot from changed paths, as one pack ----------------------------------------

    def _record_staged(self, index, edits: list, excluded: list[Exclusion], parent: str, parent_tree: str,
                       message: str) -> tuple[str, str | None]:
        """Write the staged blobs, the edited trees and the commit as one pack, then apply the
        index edits; ``(tree, commit)`` (commit None: the tree equals the parent's, or it is the
        index's own tree and the caller commits it)."""
        tree = None
        if not any(entry is not None and _refused(rel) for rel, entry in edits):
            try:
                tree = edited_tree(self, parent_tree, edits)
            except (self._GitError, ValueError, KeyError):  # a damaged or foreign parent tree: libgit2 decides
                tree = None
        commit = None
        if tree is not None and tree != parent_tree:
            commit = self._stage_object(b"commit", commit_body(tree, parent, message)).hex()
        elif tree is not None:  # unchanged (files touched, not changed): every blob is the parent's
            self._staged = None
        if not self._flush_staged(index, edits, excluded) or tree is None:
            return str(self._write_tree(index, "", flush=False)), None  # git refused a path: the index's tree
        return tree, commit

    def _flush_staged(self, index, edits: list, excluded: list[Exclusion]) -> bool:
        """Write the staged objects' pack, then apply the staged index edits in order; False when
        libgit2 refused a path (left out as ``invalid_path``; the staged trees do not hold that)."""
        writer, self._staged = self._staged, None
        if writer is not None:
            writer.close()
            self._packs_written(writer)
        whole = True
        for rel, entry in edits:
            if entry is None:
                self._index_drop_now(index, rel)
                continue
            oid, mode, st = entry
            try:
                self._index_put(index, rel, oid, mode, st)
            except ValueError:
                excluded.append(Exclusion(rel, "invalid_path", st.st_size))
                self._index_drop_now(index, rel)
                whole = False
        return whole

    def _stage_object(self, kind: bytes, body: bytes, prev: bytes | None = None) -> bytes:
        """Put an object into the pack being staged (once), or into the store when none is;
        its id (20 bytes). ``prev``: the object it replaces at its path (the parent snapshot's),
        against which a merge of packs stores it as a delta (``packset.py``)."""
        writer = self._staged
        if writer is None:
            return self._write_object(kind, body)
        oid = pack.object_id(kind, body)
        if prev is not None:
            self._packset.hint(oid, prev)
        if oid not in writer:  # one that the store has already is written again (harmless, rare):
            writer.add(*pack.encode_object(kind, body, oid))  # asking libgit2 costs a pack rescan per miss
            if kind == b"blob":
                self._fresh[oid.hex()] = body  # for the line counts of this snapshot's changes
        return oid

    def compact(self) -> None:
        """Merge the repository's packs into one, every new version of a tree or file stored as
        a delta against the one before (``packset.py``): for a run's end, after its last
        snapshot. Safe to interrupt at any moment (the merged pack is written before the packs
        it replaces are deleted)."""
        if self._packset.compact():
            self._drop_pack_handles()

    def _packs_written(self, writer: pack.PackWriter) -> None:
        """Note the packs ``writer`` wrote, merging small ones (``packset.py``)."""
        merged = False
        for path, count in zip(writer.packs, writer.counts, strict=True):
            merged |= self._packset.added(path, count)
        if merged:
            self._drop_pack_handles()

    # -- the walk --------------------------------------------------------------------------

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
        except self._GitError as exc:
            raise GitStoreError(
                f"cannot write snapshot of {root or 'the workdir'} into {self.path}: {exc}; if another "
                "snapshot is running wait for it, else remove a stale index.lock"
            ) from exc
        return tree

    def _apply_workdir_changes(self, index, root, max_file_bytes, excluded, nested_roots, lines=None) -> bool:
        """Bring the index in line with the workdir (libgit2 compares stat data and hashes only
        changed files); return whether any ``.gitignore`` changed."""
        rules_changed = False
        items = []
        for path, deleted in self._workdir_deltas(index, root):
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
            if st is None or deleted or stat.S_ISDIR(st.st_mode):
                self._index_drop_now(index, path)
                continue
            items.append((path, full, st))
        self._add_paths(index, items, max_file_bytes, excluded, lines)
        return rules_changed


def _refused(rel: str) -> bool:
    """Whether libgit2 refuses ``rel`` in an index (then the index, not Python, makes the tree,
    and no tree holding it is ever written)."""
    return any(part in ("", ".", "..") or part.lower() == ".git" for part in rel.split("/"))


def commit_body(tree: str, parent: str | None, message: str, now: float | None = None) -> bytes:
    """A snapshot commit's bytes, as libgit2 writes them for ``pygit2.Signature("agtrace",
    "agtrace@localhost")`` (the current time in the local offset) as author and committer."""
    now = time.time() if now is None else now
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    stamp = b"%d %s%02d%02d" % (int(now), sign.encode(), abs(offset) // 60, abs(offset) % 60)
    person = SIGNATURE + b" " + stamp
    head = b"tree " + tree.encode() + b"\n" + (b"parent " + parent.encode() + b"\n" if parent else b"")
    return head + b"author " + person + b"\ncommitter " + person + b"\n\n" + message.encode()
