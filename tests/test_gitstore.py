"""GitStore against real git repositories: the agent's git is driven with the git CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pygit2
import pytest

from agtrace.eventlog import SNAPSHOT_REF, EventlogError, GitStore, GitStoreError
from agtrace.eventlog.git.checkout import hash_dir

MAX = 1_000_000


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="agent",
        GIT_AUTHOR_EMAIL="agent@example.com",
        GIT_COMMITTER_NAME="agent",
        GIT_COMMITTER_EMAIL="agent@example.com",
    )
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return out.stdout.decode()


def bash(cwd: Path, script: str) -> None:
    subprocess.run(["bash", "-ec", script], cwd=cwd, check=True)


def fingerprint_git_dir(git_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Content hash and mtime of every file under a .git directory."""
    result = {}
    for path in sorted(git_dir.rglob("*")):
        if path.is_file():
            st = path.stat()
            result[str(path.relative_to(git_dir))] = (
                hashlib.sha256(path.read_bytes()).digest(),
                st.st_mtime_ns,
            )
    return result


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    git(wd, "init", "-q", "-b", "main")
    (wd / "README.md").write_text("hello\n")
    (wd / "src").mkdir()
    (wd / "src" / "app.py").write_text("print('a')\nprint('b')\n")
    git(wd, "add", "-A")
    git(wd, "commit", "-qm", "initial")
    return wd


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    return GitStore.init(tmp_path / "runs" / "r1" / "repo.git")


def tree_paths(store: GitStore, tree_id: str) -> set[str]:
    return set(store.changed_paths(None, tree_id))


def test_error_is_under_package_root():
    assert issubclass(GitStoreError, EventlogError)


def test_first_snapshot_records_workdir_and_skips_dot_git(store, workdir):
    result = store.snapshot(workdir, max_file_bytes=MAX, message="part 1")
    assert result.added == ("README.md", "src/app.py")
    assert result.modified == () and result.deleted == ()
    assert result.lines_added == 3 and result.lines_removed == 0
    assert result.parent_commit is None and result.created_commit
    assert store.head == result.commit_id
    assert store.tree_of(result.commit_id) == result.tree_id
    assert store.read_blob(result.tree_id, "src/app.py") == b"print('a')\nprint('b')\n"
    assert not any(p.startswith(".git") for p in tree_paths(store, result.tree_id))


def test_bash_made_changes_are_captured(store, workdir):
    first = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    bash(
        workdir,
        "echo new > new.txt; sed -i 's/a/z/' src/app.py; rm README.md; "
        "mkdir -p deep/er; printf 'x\\ny\\n' > deep/er/f",
    )
    second = store.snapshot(workdir, max_file_bytes=MAX, message="2")
    assert second.added == ("deep/er/f", "new.txt")
    assert second.modified == ("src/app.py",)
    assert second.deleted == ("README.md",)
    assert (second.lines_added, second.lines_removed) == (1 + 2 + 1, 1 + 1)
    assert second.parent_commit == first.commit_id
    commit = store._repo[second.commit_id]
    assert [str(p) for p in commit.parent_ids] == [first.commit_id]
    assert store.read_blob(second.tree_id, "src/app.py") == b"print('z')\nprint('b')\n"
    changes = store.diff(first.tree_id, second.tree_id)
    assert ("src/app.py", "modified", 1, 1) in changes
    assert ("README.md", "deleted", 0, 1) in changes


def test_unchanged_tree_reuses_tree_and_commit(store, workdir):
    first = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    os.utime(workdir / "README.md")  # stat change only
    again = store.snapshot(workdir, max_file_bytes=MAX, message="2")
    assert again.tree_id == first.tree_id
    assert again.commit_id == first.commit_id and not again.created_commit
    assert again.added == again.modified == again.deleted == ()


def test_agent_git_operations_do_not_disturb_snapshots(store, workdir):
    dot_git = workdir / ".git"
    before = fingerprint_git_dir(dot_git)
    s1 = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    assert fingerprint_git_dir(dot_git) == before, "snapshot touched the agent's .git"

    git(workdir, "checkout", "-q", "-b", "feature")
    (workdir / "feature.txt").write_text("f\n")
    git(workdir, "add", "feature.txt")
    git(workdir, "commit", "-qm", "feature")
    before = fingerprint_git_dir(dot_git)
    s2 = store.snapshot(workdir, max_file_bytes=MAX, message="2")
    assert fingerprint_git_dir(dot_git) == before
    assert s2.added == ("feature.txt",)

    git(workdir, "checkout", "-q", "main")
    git(workdir, "reset", "-q", "--hard", "HEAD")
    git(workdir, "branch", "-q", "-D", "feature")
    git(workdir, "gc", "-q", "--prune=now")
    before = fingerprint_git_dir(dot_git)
    s3 = store.snapshot(workdir, max_file_bytes=MAX, message="3")
    assert fingerprint_git_dir(dot_git) == before
    assert s3.deleted == ("feature.txt",)
    assert s3.tree_id == s1.tree_id
    # every snapshot survives the agent deleting its branch
    assert store.read_blob(s2.tree_id, "feature.txt") == b"f\n"
    assert store.tree_of(s2.commit_id) == s2.tree_id
    config = (Path(store.path) / "config").read_text()
    assert "worktree" not in config and str(workdir) not in config


def test_gitignore_info_exclude_and_exclude_patterns(store, workdir):
    bash(
        workdir,
        "echo '*.log' > .gitignore; echo x > a.log; mkdir -p build; echo o > build/out.o; "
        "echo scratch > notes.tmp; echo 'build/' >> .git/info/exclude; echo keep > keep.txt",
    )
    result = store.snapshot(workdir, exclude=["notes.tmp"], max_file_bytes=MAX, message="1")
    paths = tree_paths(store, result.tree_id)
    assert {".gitignore", "keep.txt", "README.md", "src/app.py"} == paths
    # a newly ignored, previously recorded path is dropped
    bash(workdir, "echo 'keep.txt' >> .gitignore")
    result = store.snapshot(workdir, exclude=["notes.tmp"], max_file_bytes=MAX, message="2")
    assert "keep.txt" in result.deleted
    # removing an exclude pattern brings the file in
    result = store.snapshot(workdir, exclude=[], max_file_bytes=MAX, message="3")
    assert result.added == ("notes.tmp",)


def test_size_policy_excludes_and_reports(store, workdir):
    (workdir / "big.bin").write_bytes(b"\0" * 5000)
    (workdir / "small.txt").write_text("s\n")
    result = store.snapshot(workdir, max_file_bytes=4096, message="1")
    assert ("big.bin", "size", 5000) in result.excluded
    assert "big.bin" not in tree_paths(store, result.tree_id)
    assert "small.txt" in result.added
    # reported again on the next snapshot while it is still there
    again = store.snapshot(workdir, max_file_bytes=4096, message="2")
    assert ("big.bin", "size", 5000) in again.excluded
    # a recorded file that grows past the limit is removed and reported
    (workdir / "small.txt").write_bytes(b"y" * 4097)
    grown = store.snapshot(workdir, max_file_bytes=4096, message="3")
    assert grown.deleted == ("small.txt",)
    assert ("small.txt", "size", 4097) in grown.excluded
    # a looser policy brings both in
    loose = store.snapshot(workdir, max_file_bytes=10_000, message="4")
    assert set(loose.added) == {"big.bin", "small.txt"}
    assert loose.excluded == ()


def test_bytes_are_exact_despite_attributes(store, workdir):
    bash(
        workdir,
        "printf '* text=auto eol=lf\\n' > .gitattributes; printf 'a\\r\\nb\\r\\n' > crlf.txt",
    )
    result = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    assert store.read_blob(result.tree_id, "crlf.txt") == b"a\r\nb\r\n"


def test_exec_bit_and_symlink_round_trip(store, workdir, tmp_path):
    bash(
        workdir,
        "printf '#!/bin/sh\\necho hi\\n' > run.sh; chmod +x run.sh; "
        "ln -s src/app.py link.py; ln -s /etc/passwd outside; ln -s src linkdir",
    )
    result = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    tree = store._repo[result.tree_id]
    assert tree["run.sh"].filemode == 0o100755
    assert tree["link.py"].filemode == 0o120000
    assert store.read_blob(result.tree_id, "outside") == b"/etc/passwd"
    assert "linkdir/app.py" not in tree_paths(store, result.tree_id)

    out = tmp_path / "out"
    assert store.checkout(result.tree_id, out) == result.tree_id
    assert os.stat(out / "run.sh").st_mode & 0o111 == 0o111
    assert not os.stat(out / "README.md").st_mode & 0o111
    assert os.readlink(out / "link.py") == "src/app.py"
    assert os.readlink(out / "outside") == "/etc/passwd"
    assert (out / "src" / "app.py").read_bytes() == (workdir / "src" / "app.py").read_bytes()
    assert not (out / ".git").exists()


def test_checkout_refuses_non_empty_target(store, workdir, tmp_path):
    result = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    with pytest.raises(GitStoreError, match="not empty"):
        store.checkout(result.tree_id, out)


def raw_tree(repo: pygit2.Repository, entries: list[tuple[int, bytes, pygit2.Oid]]) -> str:
    """Write a tree object without libgit2's name validation (as a hostile bundle could)."""
    body = b"".join(b"%o %s\0" % (mode, name) + oid.raw for mode, name, oid in entries)
    return str(repo.odb.write(pygit2.enums.ObjectType.TREE, body))


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "case", ["dotdot", "slash", "dotgit", "symlink_then_dir", "symlink_then_file", "absolute"]
)
def test_hostile_tree_writes_nothing_outside(store, tmp_path, case):
    repo = store._repo
    payload = repo.create_blob(b"pwned\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    inner = raw_tree(repo, [(0o100644, b"pwned", payload)])
    link = repo.create_blob(str(victim).encode())
    entries = {
        "dotdot": [(0o040000, b"..", inner)],
        "slash": [(0o100644, b"../victim/pwned", payload)],
        "absolute": [(0o100644, str(victim / "pwned").encode(), payload)],
        "dotgit": [(0o040000, b".git", inner)],
        "symlink_then_dir": [(0o120000, b"a", link), (0o040000, b"a", inner)],
        "symlink_then_file": [
            (0o120000, b"a", link),
            (0o100644, b"a", payload),
        ],
    }[case]
    tree = raw_tree(repo, [(m, n, pygit2.Oid(hex=str(o))) for m, n, o in entries])
    sandbox = tmp_path / "sandbox"
    out = sandbox / "out"
    out.parent.mkdir()
    before = listing(tmp_path)
    with pytest.raises(GitStoreError):
        store.checkout(tree, out)
    assert listing(victim) == set()
    new = listing(tmp_path) - before
    assert all(p.startswith("sandbox/out") for p in new), new


@pytest.mark.parametrize("mode", [0o100644, 0o120000])
def test_file_entry_naming_a_tree_is_refused(store, tmp_path, mode):
    """A file or symlink entry whose id is a tree object (a hostile or damaged repository) is a
    GitStoreError naming it, in checkouts and in diffs, not a pygit2 attribute error."""
    repo = store._repo
    inner = raw_tree(repo, [(0o100644, b"f", repo.create_blob(b"x\n"))])
    tree = raw_tree(repo, [(mode, b"a", pygit2.Oid(hex=inner))])
    for jobs in (1, 4):
        with pytest.raises(GitStoreError, match=f"object {inner} is a tree"):
            store.checkout(tree, tmp_path / f"out-{jobs}", jobs=jobs)
    with pytest.raises(GitStoreError, match="hostile or damaged"):
        store.diff_patches(None, tree)


def test_nested_repo_files_are_plain_files(store, workdir):
    nested = workdir / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "lib.py").write_text("x = 1\n")
    git(nested, "add", "lib.py")
    git(nested, "commit", "-qm", "lib")
    nested_before = fingerprint_git_dir(nested / ".git")
    first = store.snapshot(workdir, max_file_bytes=MAX, message="1")
    assert "vendor/lib/lib.py" in first.added
    assert ("vendor/lib/.git", "nested_git", 0) in first.excluded
    assert not any("/.git/" in p for p in tree_paths(store, first.tree_id))
    (nested / "more.py").write_text("y = 2\n")
    (nested / "lib.py").unlink()
    second = store.snapshot(workdir, max_file_bytes=MAX, message="2")
    assert second.added == ("vendor/lib/more.py",)
    assert second.deleted == ("vendor/lib/lib.py",)
    assert ("vendor/lib/.git", "nested_git", 0) in second.excluded
    assert fingerprint_git_dir(nested / ".git") == nested_before


def test_parent_commit_must_exist(store, workdir):
    with pytest.raises(GitStoreError, match="not in"):
        store.snapshot(workdir, max_file_bytes=MAX, message="1", parent_commit="ab" * 20)


def test_bundle_verifies_and_restores_every_snapshot(store, workdir, tmp_path):
    trees = []
    for i in range(4):
        (workdir / f"f{i}.txt").write_text(f"{i}\n")
        trees.append(store.snapshot(workdir, max_file_bytes=MAX, message=f"{i}").tree_id)
    bundle = tmp_path / "out" / "repo.bundle"
    tip = store.write_bundle(bundle)
    assert tip == store.head
    git(tmp_path, "--git-dir", store.path, "bundle", "verify", str(bundle))
    copy = tmp_path / "elsewhere" / "repo.bundle"
    copy.parent.mkdir()
    shutil.copy(bundle, copy)
    restored = GitStore.from_bundles([copy], tmp_path / "cache" / "r1")
    assert restored.head == store.head
    for tree in trees:
        out = tmp_path / f"restore-{tree}"
        assert restored.checkout(tree, out) == tree
    assert (tmp_path / f"restore-{trees[-1]}" / "f3.txt").read_text() == "3\n"
    again = GitStore.from_bundles([copy], tmp_path / "cache" / "r1")  # reuses the cache
    assert again.head == store.head


def test_incremental_bundles_restore_everything(store, workdir, tmp_path):
    first_trees = []
    for i in range(2):
        (workdir / f"a{i}.txt").write_text(f"{i}\n")
        first_trees.append(store.snapshot(workdir, max_file_bytes=MAX, message=f"a{i}").tree_id)
    tip1 = store.write_bundle(tmp_path / "b1.bundle")
    later_trees = []
    for i in range(2):
        (workdir / f"b{i}.txt").write_text(f"{i}\n")
        later_trees.append(store.snapshot(workdir, max_file_bytes=MAX, message=f"b{i}").tree_id)
    tip2 = store.write_bundle(tmp_path / "b2.bundle", since_commit=tip1)
    assert tip2 != tip1
    header = (tmp_path / "b2.bundle").read_bytes().split(b"\n\n", 1)[0]
    assert b"-" + tip1.encode() in header  # incremental: requires the first bundle
    with pytest.raises(GitStoreError, match="no snapshots after"):
        store.write_bundle(tmp_path / "b3.bundle", since_commit=tip2)

    restored = GitStore.from_bundles([tmp_path / "b1.bundle"], tmp_path / "cache")
    assert restored.head == tip1
    restored = GitStore.from_bundles(
        [tmp_path / "b1.bundle", tmp_path / "b2.bundle"], tmp_path / "cache"
    )
    assert restored.head == tip2
    fresh = GitStore.from_bundles(
        [tmp_path / "b1.bundle", tmp_path / "b2.bundle"], tmp_path / "cache2"
    )
    for tree in first_trees + later_trees:
        out = tmp_path / f"o-{tree}"
        assert fresh.checkout(tree, out) == tree
    assert fresh._repo.references[SNAPSHOT_REF].target == pygit2.Oid(hex=tip2)


def test_user_git_env_does_not_leak(store, workdir, tmp_path, monkeypatch):
    store.snapshot(workdir, max_file_bytes=MAX, message="1")
    monkeypatch.setenv("GIT_DIR", str(workdir / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "bogus-index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    store.write_bundle(tmp_path / "x.bundle")
    restored = GitStore.from_bundles([tmp_path / "x.bundle"], tmp_path / "c")
    assert restored.head == store.head
    assert not (tmp_path / "bogus-index").exists()


def test_a_directory_replaced_by_a_file_and_back_is_snapshotted(tmp_path):
    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "mod.py").write_text("x = 1\n")
    store = GitStore.init(tmp_path / "shadow.git")
    first = store.snapshot(work, max_file_bytes=MAX, message="dir")
    shutil.rmtree(work / "pkg")
    (work / "pkg").write_text("now a file\n")
    second = store.snapshot(work, max_file_bytes=MAX, message="file")
    assert second.added == ("pkg",) and second.deleted == ("pkg/mod.py",)
    (work / "pkg").unlink()
    (work / "pkg").mkdir()
    (work / "pkg" / "mod.py").write_text("x = 2\n")
    third = store.snapshot(work, max_file_bytes=MAX, message="dir again")
    assert store.read_blob(third.tree_id, "pkg/mod.py") == b"x = 2\n"
    assert third.deleted == ("pkg",) and first.tree_id != third.tree_id


@pytest.mark.parametrize("jobs", [1, 8])
def test_parallel_checkout_writes_exactly_the_tree(tmp_path, jobs):
    work = tmp_path / "work"
    for d in range(300):  # more directories than a checkout holds open at once
        (work / f"d{d % 30}" / f"e{d}").mkdir(parents=True)
        (work / f"d{d % 30}" / f"e{d}" / "f.txt").write_bytes(b"%d\n" % d * (d + 1))
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    (work / "empty").write_bytes(b"")
    os.symlink("d0/e0/f.txt", work / "link")
    os.symlink("d1", work / "dirlink")
    store = GitStore.init(tmp_path / "repo.git")
    tree = store.snapshot(work, max_file_bytes=1 << 20, message="t").tree_id
    out = tmp_path / f"out-{jobs}"
    assert store.checkout(tree, out, jobs=jobs) == tree
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert hash_dir(fd) == tree  # what is on disk, re-read
    finally:
        os.close(fd)
    assert os.access(out / "run.sh", os.X_OK) and not os.access(out / "empty", os.X_OK)
    assert os.readlink(out / "dirlink") == "d1"
    assert store.checkout(tree, tmp_path / f"disk-{jobs}", verify="disk") == tree


def test_a_bundle_temp_file_of_a_killed_writer_is_removed_by_the_next_write(store, workdir, tmp_path):
    """A SIGKILL during `write_bundle` left `.NAME.tmp-PID` forever (before: nothing removed it).
    A real process makes the temp file as `write_bundle` names it and is killed by its pid; the
    next bundle written in that directory removes it, and keeps a live writer's."""
    import signal
    import sys

    store.snapshot(workdir, max_file_bytes=MAX, message="1")
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    child = ("import sys; from agtrace.eventlog import temp_beside; p = temp_beside(sys.argv[1]); "
             "p.write_bytes(b'half a bundle'); print(p.name, flush=True); sys.stdin.read()")
    procs = [subprocess.Popen([sys.executable, "-c", child, str(bundles / f"000{i}-x.bundle")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in (1, 2)]
    killed, alive = (p.stdout.readline().strip() for p in procs)
    os.kill(procs[0].pid, signal.SIGKILL)
    procs[0].wait()
    try:
        store.write_bundle(bundles / "0003-y.bundle")
        names = sorted(p.name for p in bundles.iterdir())
        assert killed not in names and alive in names and "0003-y.bundle" in names
    finally:
        procs[1].stdin.close()
        procs[1].wait()
