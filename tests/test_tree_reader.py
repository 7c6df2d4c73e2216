"""The pygit2-free reader of a shadow repository (``eventlog/git/tree_reader.py``): the trees it
writes are libgit2's, byte for byte (modes, symlinks, exec bits, empty files, nested
directories, big files); a delta, a missing object or a tree it does not take goes to libgit2,
which says what it said before; hostile names are refused before anything is written; whatever
the bytes of a tree or a commit, the outcome is libgit2's and nothing lands outside the
target. A replay into a new directory through the library imports no pygit2."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agtrace.eventlog import GitStore, GitStoreError, TreeReader
from agtrace.eventlog.git.checkout import hash_dir
from agtrace.eventlog.git.tree_reader import commit_tree, forced_line_stats, parse_tree

MAX = 1 << 20


def _git(git_dir: Path | str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], env=env, capture_output=True,
                          check=True).stdout.decode()


def _recorded(tmp_path: Path, *, files: int = 80) -> tuple[GitStore, list[str]]:
    """Three trees of a shadow repository: nested directories, an executable, an empty file, a
    file and a directory symlink, a big file; then a file turned into a directory. With 80 files
    the first snapshot writes a pack (whole objects), the later ones loose objects."""
    work = tmp_path / "work"
    (work / "src" / "deep" / "er").mkdir(parents=True)
    for i in range(files):
        (work / "src" / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n" * (i + 1))
    (work / "src" / "deep" / "big.bin").write_bytes(os.urandom(300_000))
    (work / "src" / "deep" / "er" / "leaf.txt").write_text("leaf\n")
    (work / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "run.sh").chmod(0o755)
    (work / "empty").write_bytes(b"")
    (work / "no-newline.txt").write_text("last line without one")
    os.symlink("src/m1.py", work / "link")
    os.symlink("src/deep", work / "dirlink")
    store = GitStore.init(tmp_path / "repo.git")
    trees = [store.snapshot(work, max_file_bytes=MAX, message="1").tree_id]
    (work / "src" / "m3.py").write_text("changed\n")
    (work / "run.sh").chmod(0o644)
    (work / "no-newline.txt").write_text("last line without one, and more\nand a new one\n")
    with open(work / "src" / "m5.py", "a") as f:
        f.write("# appended\n")
    trees.append(store.snapshot(work, max_file_bytes=MAX, message="2").tree_id)
    (work / "empty").unlink()
    (work / "empty").mkdir()
    (work / "empty" / "inside").write_text("now a directory\n")
    (work / "link").unlink()
    (work / "link").write_text("a file where a link was\n")
    (work / "src" / "deep" / "big.bin").write_bytes(b"\0binary now\n" * 10)
    trees.append(store.snapshot(work, max_file_bytes=MAX, message="3").tree_id)
    return store, trees


def _listing(root: Path) -> dict[str, tuple]:
    """Everything under ``root``: path → (kind, mode bits, bytes or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if full.is_symlink():
                out[rel] = ("link", 0, os.readlink(full))
            elif full.is_dir():
                out[rel] = ("dir", 0, b"")
            else:
                out[rel] = ("file", st.st_mode & 0o111, full.read_bytes())
    return out


def _disk_tree(out: Path) -> str:
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return hash_dir(fd)
    finally:
        os.close(fd)


def _outcome(git, tree: str, out: Path):
    """What a checkout did: ("ok", tree id written, listing) or (exception type, message). A
    KeyError's message is its object id (libgit2's names it by an ``Oid``, the reader by hex)."""
    try:
        written = git.checkout(tree, out)
    except Exception as exc:  # noqa: BLE001 - compared between the two readers
        return type(exc).__name__, str(exc).replace(str(out), "OUT").strip("'")
    return "ok", written, _listing(out)


def _put(repo: Path | str, kind: bytes, data: bytes) -> str:
    """Store ``data`` as a loose object of ``kind`` (whatever the bytes) and return its id."""
    raw = b"%s %d\0" % (kind, len(data)) + data
    oid = hashlib.sha1(raw).hexdigest()
    path = Path(repo) / "objects" / oid[:2] / oid[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(zlib.compress(raw))
    return oid


def _entry(mode: bytes, name: bytes, oid: str) -> bytes:
    return mode + b" " + name + b"\0" + bytes.fromhex(oid)


# -- the same trees ------------------------------------------------------------------------------


def test_every_tree_is_written_as_libgit2_writes_it_without_libgit2(tmp_path):
    store, trees = _recorded(tmp_path)
    assert list((Path(store.path) / "objects" / "pack").glob("*.pack")), "the first snapshot is packed"
    for i, tree in enumerate(trees):
        reader = TreeReader(store.path)
        stats: dict = {}
        assert reader.checkout(tree, tmp_path / f"r{i}", stats=stats) == tree
        assert store.checkout(tree, tmp_path / f"g{i}") == tree
        assert reader.delegated == 0, "every object was read in Python"
        assert _listing(tmp_path / f"r{i}") == _listing(tmp_path / f"g{i}")
        assert _disk_tree(tmp_path / f"r{i}") == tree
        assert set(stats) == set(_listing(tmp_path / f"r{i}"))
    first = _listing(tmp_path / "r0")
    assert first["run.sh"][1] == 0o111 and first["empty"] == ("file", 0, b"")
    assert first["link"] == ("link", 0, "src/m1.py") and first["dirlink"] == ("link", 0, "src/deep")
    assert len(first["src/deep/big.bin"][2]) == 300_000
    assert TreeReader(store.path).checkout(tree, tmp_path / "disk", verify="disk") == tree


def test_a_commit_names_its_tree_and_the_diff_is_libgit2s(tmp_path):
    store, trees = _recorded(tmp_path)
    reader = TreeReader(store.path)
    assert reader.tree_of(store.head) == trees[-1] == reader.tree_of(trees[-1])
    for a, b in [(None, trees[0]), (trees[0], trees[1]), (trees[1], trees[2]), (trees[0], trees[2]),
                 (trees[2], trees[0])]:
        reader = TreeReader(store.path)
        assert reader.diff(a, b) == store.diff(a, b)
    reader = TreeReader(store.path)
    reader.diff(trees[0], trees[1])
    assert reader.delegated == 0, "text edits are counted in Python"


# -- falling back to libgit2 ---------------------------------------------------------------------


def test_a_repacked_repository_with_deltas_gives_the_same_tree(tmp_path):
    store, trees = _recorded(tmp_path)
    _git(store.path, "repack", "-adfq", "--window=50")
    assert not any((Path(store.path) / "objects").glob("??/*")), "everything is packed now"
    reader = TreeReader(store.path)
    for i, tree in enumerate(trees):
        assert reader.checkout(tree, tmp_path / f"r{i}") == tree
        assert _disk_tree(tmp_path / f"r{i}") == tree
    listing = _git(store.path, "verify-pack", "-v", str(next((Path(store.path) / "objects" / "pack").glob("*.idx"))))
    assert "chain length = 1" in listing  # some objects are deltas
    assert reader.delegated == 0, "deltas are resolved in Python: libgit2 was not needed"
    assert reader.diff(trees[0], trees[1]) == store.diff(trees[0], trees[1])


def test_a_missing_or_damaged_object_fails_as_it_did_before(tmp_path):
    store, trees = _recorded(tmp_path)
    blob = store.files(trees[1])["src/m3.py"]  # loose: written by the second snapshot
    path = Path(store.path) / "objects" / blob[:2] / blob[2:]
    data = path.read_bytes()
    path.unlink()
    missing = [_outcome(git, trees[1], tmp_path / f"{name}-missing")
               for name, git in (("r", TreeReader(store.path)), ("g", GitStore.open(store.path)))]
    assert missing[0] == missing[1] and missing[0][0] != "ok"
    path.write_bytes(data[:-3] + b"xyz")
    damaged = [_outcome(git, trees[1], tmp_path / f"{name}-damaged")
               for name, git in (("r", TreeReader(store.path)), ("g", GitStore.open(store.path)))]
    assert damaged[0] == damaged[1] and damaged[0][0] == "GitStoreError" and blob in damaged[0][1]
    unknown = "0" * 40
    with pytest.raises(GitStoreError, match=unknown):
        TreeReader(store.path).checkout(unknown, tmp_path / "unknown")


def test_an_unusual_mode_is_left_to_libgit2(tmp_path):
    store, trees = _recorded(tmp_path)
    blob = store.files(trees[0])["run.sh"]
    legacy = _put(store.path, b"tree", _entry(b"100664", b"old-mode", blob))  # old git wrote these
    gitlink = _put(store.path, b"tree", _entry(b"160000", b"sub", blob))
    for tree in (legacy, gitlink):
        reader = TreeReader(store.path)
        got = _outcome(reader, tree, tmp_path / f"r-{tree}")
        assert got == _outcome(GitStore.open(store.path), tree, tmp_path / f"g-{tree}")
        assert reader.delegated > 0


def test_a_directory_entry_pointing_at_a_blob_is_damage_for_both_readers(tmp_path):
    """Found by the mutation test below (a flipped byte made an entry `40000 empty` name the
    empty blob): the checkout iterated the blob and a TypeError reached the user."""
    store, trees = _recorded(tmp_path)
    blob = store.files(trees[0])["run.sh"]
    tree = _put(store.path, b"tree", _entry(b"100644", b"a", blob) + _entry(b"40000", b"d", blob))
    outcomes = [_outcome(git, tree, tmp_path / f"out-{name}") for name, git in
                (("r", TreeReader(store.path)), ("g", GitStore.open(store.path)))]
    assert outcomes[0] == outcomes[1] and outcomes[0][0] == "GitStoreError", outcomes
    assert f"object {blob} is a blob, not the tree its entry says" in outcomes[0][1]
    for git in (TreeReader(store.path), GitStore.open(store.path)):  # the file listing (viewer, cat --list)
        with pytest.raises(GitStoreError, match="is a blob, not the tree its entry says"):
            git.files(tree)
    git = GitStore.open(store.path)  # and verify names it (it said the tree was whole)
    assert git.damage_in(tree, set()) == f"object {blob} is a blob where its tree entry says a directory"
    assert git.damage_in(trees[0], set()) is None


HOSTILE = [b"..", b".", b".git", b".GIT", b"a/b", b"/abs", b"", b"back\\slash", b"\xff\xfe"]


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(n) for n in HOSTILE])
def test_a_hostile_name_is_refused_as_before_and_nothing_lands_outside(tmp_path, name):
    store, trees = _recorded(tmp_path)
    blob = store.files(trees[0])["run.sh"]
    inner = _put(store.path, b"tree", _entry(b"100644", b"x", blob))
    tree = _put(store.path, b"tree", _entry(b"100644", b"a", blob) + _entry(b"40000", name, inner))
    box = tmp_path / "box"
    box.mkdir()
    got = _outcome(TreeReader(store.path), tree, box / "out")
    assert os.listdir(box) in ([], ["out"]) and not (tmp_path / "x").exists()  # [] when refused at once
    assert got == _outcome(GitStore.open(store.path), tree, tmp_path / "g-out")
    if got[0] == "ok":  # a name libgit2 and the checkout take (a non-UTF-8 one): written inside
        assert _disk_tree(box / "out") == tree
    else:
        assert got[0] == "GitStoreError"


# -- whatever the bytes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutations")
    work = root / "work"
    (work / "d").mkdir(parents=True)
    (work / "a.txt").write_text("alpha\n")
    (work / "d" / "b.sh").write_text("#!/bin/sh\n")
    (work / "d" / "b.sh").chmod(0o755)
    (work / "empty").write_bytes(b"")
    os.symlink("a.txt", work / "l")
    store = GitStore.init(root / "repo.git")
    result = store.snapshot(work, max_file_bytes=MAX, message="m")
    raw = zlib.decompress((Path(store.path) / "objects" / result.tree_id[:2] / result.tree_id[2:]).read_bytes())
    commit = zlib.decompress((Path(store.path) / "objects" / result.commit_id[:2]
                              / result.commit_id[2:]).read_bytes())
    return root, store, raw.split(b"\0", 1)[1], commit.split(b"\0", 1)[1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["tree", "commit"]),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["flip", "cut", "insert"]),
                                st.integers(0, 255)), min_size=1, max_size=4))
def test_whatever_the_bytes_the_outcome_is_libgit2s_and_nothing_lands_outside(small_store, which, edits):
    root, store, tree_bytes, commit_bytes = small_store
    data = bytearray(tree_bytes if which == "tree" else commit_bytes)
    for at, how, value in edits:
        at %= len(data) + 1
        if how == "flip" and at < len(data):
            data[at] ^= value or 1
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([value])
        if not data:
            data = bytearray(b"\0")
    oid = _put(store.path, which.encode(), bytes(data))
    box = root / f"box-{oid}"
    shutil.rmtree(box, ignore_errors=True)
    box.mkdir()
    reader = TreeReader(store.path)
    got = _outcome(reader, oid, box / "out")
    assert os.listdir(box) in ([], ["out"]), "nothing written beside the target"
    want = _outcome(GitStore.open(store.path), oid, root / f"g-{oid}")
    shutil.rmtree(root / f"g-{oid}", ignore_errors=True)
    assert got == want
    event(f"{which}: {got[0]}, {'read here' if reader.delegated == 0 else 'libgit2 asked'}")
    if got[0] == "ok":
        assert _disk_tree(box / "out") == store.tree_of(oid)
    if which == "tree" and parse_tree(bytes(data)) is not None and reader.delegated == 0:
        assert got[0] in ("ok", "GitStoreError")  # parsed here: written, or refused by name
    shutil.rmtree(box)


def test_the_parsers_take_only_what_git_writes():
    oid = "ab" * 20
    assert parse_tree(_entry(b"100644", b"f", oid) + _entry(b"40000", b"d", oid)) == [
        ("f", 0o100644, oid), ("d", 0o040000, oid)]
    assert parse_tree(b"") == []
    for bad in (_entry(b"040000", b"d", oid), _entry(b"100644", b"f", oid)[:-1], b"100644 f",
                _entry(b"100644", b"..", oid), _entry(b"1006440", b"f", oid)):
        assert parse_tree(bad) is None
    sig = b"agtrace <agtrace@localhost> 1796218126 +0000\n"
    ours = b"tree " + oid.encode() + b"\nparent " + oid.encode() + b"\nauthor " + sig + b"committer " + sig + b"\nm"
    assert commit_tree(ours) == oid
    assert commit_tree(ours.replace(b"tree " + oid.encode(), b"tree " + oid.upper().encode())) is None
    assert commit_tree(ours.replace(b"author", b"bauthor")) is None  # libgit2's to parse, or refuse
    assert commit_tree(b"tree " + oid.encode() + b"\nauthor x\n") is None


# -- line counts ---------------------------------------------------------------------------------

LINES = st.lists(st.sampled_from([b"a\n", b"b\n", b"c\n", b"\n", b"a", b"b\r\n", b"d e\n"]), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=LINES, new=LINES)
def test_line_counts_made_here_are_libgit2s(small_store, old, new):
    _root, store, _tree, _commit = small_store
    a, b = b"".join(old), b"".join(new)
    forced = forced_line_stats(a, b)
    if forced is not None:
        oa, ob = store._repo.create_blob(a), store._repo.create_blob(b)  # noqa: SLF001 - libgit2's count
        assert forced == store._blob_line_stats(oa, ob)  # noqa: SLF001


def test_line_counts_that_need_a_real_diff_or_are_binary_go_to_libgit2():
    assert forced_line_stats(b"a\nb\nc\n", b"b\nx\na\n") is None  # lines shared out of order
    assert forced_line_stats(b"a\0\n", b"b\n") is None
    assert forced_line_stats(b"x\n" * 3, b"x\n" * 5) == (2, 0)
    assert forced_line_stats(b"keep\nold\nkeep\n", b"keep\nnew\nnewer\nkeep\n") == (2, 1)
    assert forced_line_stats(b"no newline", b"no newline\n") == (1, 1)


# -- the replay path -----------------------------------------------------------------------------


def test_a_replay_into_a_new_directory_imports_no_pygit2(tmp_path):
    from agtrace.capture.recorder import Recorder
    from agtrace.eventlog import Store

    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    for i in range(70):
        (work / "pkg" / f"f{i}.py").write_text(f"x = {i}\n")
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60) as rec:
        call = rec.tool_call("shell", command="edit")
        (work / "pkg" / "f1.py").write_text("x = 'one'\n")
        (work / "pkg" / "new.py").write_text("y = 2\n")
        rec.tool_result(call, output="", exit_code=0)
    store.close()
    script = (
        "import json, sys\n"
        "from agtrace.eventlog import Store\n"
        "from agtrace.replay import materialize\n"
        f"view = materialize(Store({str(tmp_path / 'store')!r}), {rec.run_id!r}, 1, {str(tmp_path / 'out')!r})\n"
        "rules = [m for m in ('agtrace.eventlog.credential', 'agtrace.eventlog.secret') if m in sys.modules]\n"
        "print(json.dumps([view.tree_id, view.how, view.changed, 'pygit2' in sys.modules, rules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, text=True)
    import json

    tree, how, changed, pygit2_loaded, rules = json.loads(done.stdout)
    assert not pygit2_loaded and how == "checkout"
    assert not rules  # the credential rules are a snapshot's: a replay's diff counts lines without them (~7 ms)
    assert _disk_tree(tmp_path / "out") == tree
    assert [(c["path"], c["status"], c["lines_added"], c["lines_removed"]) for c in changed] == [
        ("pkg/f1.py", "modified", 1, 1), ("pkg/new.py", "added", 1, 0)]
