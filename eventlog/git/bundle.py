"""The git CLI, used only where libgit2 cannot go: bundles, and importers' foreign repositories.

libgit2 (and so pygit2) can neither write nor read git bundles, so writing and unbundling run
``git bundle``. Importers need two more operations on repositories that are not ours, which
libgit2 does not offer with git's semantics: copying a commit out of another repository (``git
fetch`` of a local path: the other repository is only read, through ``rev-parse`` and
``upload-pack``) and applying a unified diff as ``git apply`` does (exact context, binary
patches, renames and modes) to a tree, through a temporary index. Everything else goes through
pygit2 in ``repository.py``; `GitStore` has these operations as the methods of :class:`BundleMixin`.

Every call runs without the caller's ``GIT_*`` variables and without user or system config.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING

from .. import leftover
from ..errors import GitStoreError
from ..segment import fsync_dir
from .result import SNAPSHOT_REF

if TYPE_CHECKING:
    from .repository import GitStore


FULL_REPACK_BYTES = 64 * 1024 * 1024
"""Pack bytes up to which `GitStore.repack_imported` makes one pack at a run's end (a 25 MB
repository's full repack takes ~0.6 s on 2 cores)."""


def _git_env() -> dict[str, str]:
    """Environment for git CLI calls: none of the caller's GIT_* variables, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def _run_git(args: list[str], what: str) -> str:
    """stdout of ``git args``; a failure raises GitStoreError starting with ``what``."""
    try:
        proc = subprocess.run(["git", *args], env=_git_env(), capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise GitStoreError(f"{what}: the git CLI is not installed; install git") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise GitStoreError(f"{what}: git {' '.join(args[:3])} failed: {err}")
    return proc.stdout.decode(errors="replace")


def _bundle_refs(path: str) -> list[tuple[str, str]]:
    """``(object id, ref name)`` of every ref a bundle carries, read from its text header
    (prerequisites and v3 capabilities are skipped)."""
    refs = []
    with open(path, "rb") as f:
        if not f.readline().startswith(b"# v"):
            raise GitStoreError(f"{path} is not a git bundle (no bundle header); pass a file made by git bundle")
        for line in f:
            if line in (b"\n", b""):
                break
            if not line.startswith((b"-", b"@")):
                oid, _, name = line.decode(errors="replace").strip().partition(" ")
                refs.append((oid, name))
    return refs


def bundle_heads(path: str | os.PathLike[str]) -> list[str]:
    """The commit ids a bundle's refs point at, read from its header (not the pack)."""
    return [oid for oid, _ in _bundle_refs(os.fspath(path))]


def check_bundle(path: str | os.PathLike[str], name: str | None = None) -> list[str]:
    """The commit ids a bundle's refs point at, after checking, without git and reading the file
    once, that it is a complete bundle: a header with at least one ref, then a pack whose trailing
    checksum matches its bytes (a truncated or bit-flipped pack fails). With ``name``
    (``<nnnn>-<tip12>.bundle``, its key), one of its refs must point at the tip the name gives.
    Raises :class:`GitStoreError` saying what is wrong. Not checked: whether the pack's objects
    are whole and its prerequisites are met (``agtrace verify`` unbundles for that)."""
    import hashlib

    path = os.fspath(path)
    with open(path, "rb") as f:
        first = f.readline()
        if not first.startswith((b"# v2 git bundle", b"# v3 git bundle")):
            raise GitStoreError("it is not a git bundle (no bundle header)")
        algo, heads = "sha1", []
        while True:
            line = f.readline()
            if not line.endswith(b"\n"):
                raise GitStoreError("its header is cut short (the bundle is truncated)")
            if line == b"\n":
                break
            if line.startswith(b"@object-format="):
                algo = line[len(b"@object-format="):].strip().decode(errors="replace")
            elif not line.startswith((b"-", b"@")):
                heads.append(line.decode(errors="replace").split(" ", 1)[0].strip())
        if not heads:
            raise GitStoreError("its header names no ref")
        if algo not in ("sha1", "sha256"):
            raise GitStoreError(f"its object format {algo!r} is unknown")
        width = 20 if algo == "sha1" else 32
        digest = hashlib.new(algo)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"PACK":
            raise GitStoreError("its pack is missing or cut short (the bundle is truncated)")
        digest.update(head)
        tail = b""
        while chunk := f.read(1 << 20):
            tail += chunk
            if len(tail) > width:
                digest.update(tail[:-width])
                tail = tail[-width:]
        if len(tail) < width or digest.digest() != tail:
            raise GitStoreError("its pack does not match its checksum (the bundle is truncated or damaged)")
    if name is not None:
        tip = name.split("-", 1)[1].split(".", 1)[0] if "-" in name else ""
        if not any(h.startswith(tip) for h in heads) or not tip:
            raise GitStoreError(f"its tip is {heads[-1][:12]}…, not {tip or '?'} as its name {name} says")
    return heads


class BundleMixin:
    """`GitStore`'s methods that run the git CLI (see the module docstring)."""

    @classmethod
    def from_bundles(cls: type[GitStore], bundles: list[str | os.PathLike[str]],
                     cache_dir: str | os.PathLike[str]) -> GitStore:
        """Open the store rebuilt from ``bundles`` (full first, then incrementals, in the order
        they were written) at ``cache_dir``. The first call unbundles into a temporary sibling
        directory and renames it into place, so a crash never leaves a half-built cache; later
        calls reuse the cache and unbundle only bundles whose heads it lacks. The snapshot ref is
        set to the last bundle's head."""
        cache_dir = os.path.abspath(cache_dir)
        paths = [os.path.abspath(b) for b in bundles]
        if not paths:
            raise GitStoreError("from_bundles needs at least one bundle")
        heads = [[oid for oid, _ in _bundle_refs(p)] for p in paths]
        if os.path.isdir(cache_dir):
            store = cls.open(cache_dir)
            _unbundle(store, paths, heads)
            return store
        os.makedirs(os.path.dirname(cache_dir), exist_ok=True)
        building = tempfile.mkdtemp(prefix=".unbundle-", dir=os.path.dirname(cache_dir))
        _unbundle(cls.init(building), paths, heads)
        try:
            os.rename(building, cache_dir)
        except OSError:  # another process won the race; use its cache
            shutil.rmtree(building, ignore_errors=True)
        return cls.open(cache_dir)

    def write_bundle(self: GitStore, path: str | os.PathLike[str], since_commit: str | None = None) -> str:
        """Write a git bundle of ``refs/agtrace/snapshots`` to ``path`` and return the tip
        commit it carries: the whole history, or only commits after ``since_commit`` (an
        earlier tip). Atomic and durable on return: temp file, fsync, rename, fsync dir.

        The temp file is named by its owner (``leftover.tag``); the temp files of bundles in the
        same directory whose owner was killed (a SIGKILL leaves them) are removed first."""
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
        leftover.remove_stale(directory, ".")
        tmp = str(leftover.temp_beside(path))
        revs = [SNAPSHOT_REF] + ([f"^{since_commit}"] if since_commit else [])
        try:
            _run_git([f"--git-dir={self.path}", "bundle", "create", "-q", tmp, *revs], f"writing bundle {path}")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        fsync_dir(directory)
        return tip

    def import_bundle(self: GitStore, path: str | os.PathLike[str]) -> list[str]:
        """Fetch every ref of a git bundle made by another tool (e.g. envoi-trace's
        ``repo.bundle``) into ``refs/imported/*`` and return the commit ids the bundle's refs
        point at. The snapshot ref is not touched. A file that is not a complete bundle (a
        truncated pack, a missing prerequisite) raises GitStoreError and imports nothing that
        any ref names."""
        path = os.path.abspath(path)
        refs = _bundle_refs(path)
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

    def fetch_snapshots(self: GitStore, other: GitStore) -> str | None:
        """Copy the snapshots of ``other`` (its ``refs/agtrace/snapshots`` and the objects they
        reach, nothing else) into this repository and point the snapshot ref at them; return the
        tip, None when ``other`` has none. An importer's scratch repository is published so: the
        foreign history it fetched and the files the snapshots left out stay behind."""
        tip = other.head
        if tip is None:
            return None
        _run_git([f"--git-dir={self.path}", "fetch", "-q", "--no-tags", "--no-write-fetch-head", other.path,
                  f"+{SNAPSHOT_REF}:{SNAPSHOT_REF}"], f"copying the snapshots of {other.path}")
        self._packset.forget()
        self._drop_pack_handles()
        return tip

    def repack_imported(self: GitStore, *, final: bool = False) -> None:
        """Keep the packs that `import_bundle` brought in few. Each bundle becomes one pack of
        git's, whose deltas against earlier bundles are REF_DELTAs (``packset.py`` leaves such
        packs alone), and `commit_tree` writes loose commits: a sandbox run of N parts would
        hold N packs and N loose objects. Git rolls them up geometrically (``--geometric=2``:
        each object rewritten O(log N) times, O(log N) packs), and with ``final`` (a run's end)
        into one pack, reusing git's deltas, when the packs hold at most
        :data:`FULL_REPACK_BYTES` (a bigger repository is rolled up geometrically then too: a
        full repack of it would cost seconds at the run's end). Every object is kept, reachable
        or not; the packs a repack replaces are deleted only after the new pack is in place
        (git's own order)."""
        pack_dir = os.path.join(self.path, "objects", "pack")
        held = sum(e.stat().st_size for e in os.scandir(pack_dir) if e.name.endswith(".pack"))
        full = final and held <= FULL_REPACK_BYTES
        how = ["-a", "--keep-unreachable"] if full else ["--geometric=2"]
        _run_git(["-c", "repack.writeBitmaps=false", "-c", "pack.writeReverseIndex=false",
                  f"--git-dir={self.path}", "repack", "-d", "-q", *how], f"repacking {self.path}")
        self._packset.forget()
        self._drop_pack_handles()

    def fetch_commit(self: GitStore, repo_dir: str | os.PathLike[str], rev: str, *, history: bool = True) -> str:
        """Copy commit ``rev`` (full or abbreviated id, or a ref name) and everything it reaches
        from the git repository at ``repo_dir`` into ``refs/imported/<id>``; return its full id.
        With ``history=False`` only the commit and its tree (``fetch --depth=1``: a repository
        with years of history, a vLLM checkout, gives its tree in a fraction of the time), or
        everything where the other git refuses a shallow fetch. The other repository is only read
        (``rev-parse`` and ``upload-pack``)."""
        repo_dir = os.path.abspath(repo_dir)
        full = _run_git(["-C", repo_dir, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                       f"looking up {rev} in {repo_dir}").strip()
        if self.resolve(full) is None:
            fetch = [f"--git-dir={self.path}", "fetch", "-q", "--no-tags", "--no-write-fetch-head", repo_dir,
                     f"+{full}:refs/imported/{full}"]
            try:
                _run_git([*fetch[:3], "--depth=1", *fetch[3:]] if not history else fetch,
                         f"fetching {full} from {repo_dir}")
            except GitStoreError:
                if history:
                    raise
                _run_git(fetch, f"fetching {full} from {repo_dir}")
        return full

    def apply_patch(self: GitStore, base_tree: str, patch: str | bytes) -> str:
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


def _unbundle(store: GitStore, paths: list[str], heads: list[list[str]]) -> None:
    for path, bundle_heads in zip(paths, heads, strict=True):
        if bundle_heads and all(store.has_object(h) for h in bundle_heads):
            continue
        _run_git(
            [f"--git-dir={store.path}", "bundle", "unbundle", path],
            f"unbundling {path} (bundles must be given in the order they were written)",
        )
    if heads[-1]:
        store.set_head(heads[-1][0])



def unreachable_objects(git_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Objects of a repository that no ref reaches (``git fsck --unreachable``): id → type."""
    out = _run_git([f"--git-dir={os.fspath(git_dir)}", "fsck", "--unreachable", "--no-reflogs", "--no-progress"],
                   f"checking {os.fspath(git_dir)}")
    found = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "unreachable":
            found[words[2]] = words[1]
    return found


def prune_repository(git_dir: str | os.PathLike[str], *, prune: bool, packs: bool = False) -> None:
    """Pack the loose objects its refs reach and drop the loose copies (``git repack -d``); with
    ``prune``, first delete the loose objects no ref reaches (``git prune``), and with ``packs``
    as well, rewrite every pack into one holding only what the refs reach (``git repack -a -d``:
    packed objects no ref reaches are dropped, and the many small packs of snapshots are merged).
    The caller decides ``prune`` only after checking that no recorded tree is among
    :func:`unreachable_objects`."""
    where = os.fspath(git_dir)
    if prune:
        _run_git([f"--git-dir={where}", "prune", "--expire=now"], f"pruning {where}")
    whole = ["-a"] if prune and packs else []
    _run_git([f"--git-dir={where}", "repack", *whole, "-d", "-q"], f"packing {where}")
