"""Objects read out of git packs in Python (``eventlog/git/packed.py``): whole ones and deltas
(OFS_DELTA and REF_DELTA) read as libgit2 reads them, checked by name; objects in no pack and
unreadable indexes are left to libgit2; a damaged entry is refused by name. The packs are
written by the real git CLI."""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agtrace.eventlog.git.loose import DamagedObject
from agtrace.eventlog.git.packed import PackReader


def _git(work: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", "-C", str(work), *args], env=env, capture_output=True, check=True).stdout.decode()


def _repo(tmp_path: Path, *, window: int, offsets: bool = True) -> tuple[pygit2.Repository, list[str]]:
    """A repository packed by `git repack` (``window=0``: no deltas; ``offsets``: deltas name
    their base by offset, OFS_DELTA, else by id, REF_DELTA), and its blob ids."""
    work = tmp_path / "w"
    work.mkdir()
    _git(work, "init", "-q")
    for i in range(60):
        (work / f"f{i}.txt").write_bytes(os.urandom(50 * i).hex().encode())
    (work / "big.txt").write_text("".join(f"line {n}\n" for n in range(200_000)))  # > one read
    (work / "big2.txt").write_text((work / "big.txt").read_text() + "one more\n")  # a delta candidate
    (work / "empty").write_bytes(b"")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "x")
    _git(work, "-c", f"repack.usedeltabaseoffset={str(offsets).lower()}", "repack", "-q", "-a", "-d", "-f",
         f"--window={window}", "--depth=50")
    repo = pygit2.Repository(str(work))
    return repo, [str(e.id) for e in repo.head.peel(pygit2.Tree)]


@pytest.mark.parametrize("inflate", [zlib, None], ids=["zlib", "default"])
def test_every_whole_object_reads_as_libgit2_reads_it(tmp_path, inflate):
    repo, blobs = _repo(tmp_path, window=0)
    reader = PackReader(os.path.join(repo.path, "objects"), inflate)
    assert not any((Path(repo.path) / "objects" / oid[:2] / oid[2:]).exists() for oid in blobs)  # all packed
    for oid in blobs:
        assert reader.read(oid) == (b"blob", repo[oid].data)
    commit = str(repo.head.target)
    assert reader.read(commit)[0] == b"commit"
    assert reader.read("0" * 40) is None  # in no pack


@pytest.mark.parametrize("offsets", [True, False], ids=["ofs-delta", "ref-delta"])
def test_a_delta_reads_as_libgit2_reads_it(tmp_path, offsets):
    repo, blobs = _repo(tmp_path, window=50, offsets=offsets)
    pack_dir = Path(repo.path) / "objects" / "pack"
    listing = _git(Path(repo.workdir), "verify-pack", "-v", str(next(pack_dir.glob("*.idx"))))
    assert "chain length = 1" in listing  # git stored one of the big files as a delta
    reader = PackReader(os.path.join(repo.path, "objects"))
    for oid in [*blobs, str(repo.head.target), str(repo.head.peel(pygit2.Tree).id)]:
        kind, data = reader.read(oid)
        assert data == repo[oid].read_raw()


def test_a_pack_added_later_is_found(tmp_path):
    repo, blobs = _repo(tmp_path, window=0)
    reader = PackReader(os.path.join(repo.path, "objects"))
    assert reader.read(blobs[0]) is not None
    work = Path(repo.workdir)
    (work / "new.txt").write_text("written after the reader opened its packs\n")
    _git(work, "add", "new.txt")
    _git(work, "commit", "-qm", "y")
    _git(work, "repack", "-q", "-d", "--window=0")  # a second pack beside the first
    new = _git(work, "rev-parse", "HEAD:new.txt").strip()
    assert reader.read(new) == (b"blob", b"written after the reader opened its packs\n")


def test_a_damaged_entry_is_refused_by_name_and_a_bad_index_is_skipped(tmp_path):
    repo, blobs = _repo(tmp_path, window=0)
    pack_dir = Path(repo.path) / "objects" / "pack"
    pack = next(pack_dir.glob("*.pack"))
    big = str(repo.revparse_single("HEAD:big.txt").id)
    listed = _git(Path(repo.workdir), "verify-pack", "-v", str(pack.with_suffix(".idx")))
    offset = next(int(line.split()[4]) for line in listed.splitlines() if line.startswith(big))
    data = bytearray(pack.read_bytes())
    data[offset + 40] ^= 0xFF  # inside the deflated bytes
    pack.write_bytes(bytes(data))
    with pytest.raises(DamagedObject, match=big):
        PackReader(str(pack_dir.parent)).read(big)
    idx = next(pack_dir.glob("*.idx"))
    idx.write_bytes(b"not an index")
    assert PackReader(str(pack_dir.parent)).read(big) is None  # libgit2 says what is wrong


def test_the_packs_a_big_snapshot_writes_are_read_whole(tmp_path):
    """A snapshot of many files writes its blobs as packs (``pack.py``): every blob of them is
    read here, none left to libgit2, and a checkout of the tree gives the files' bytes."""
    from agtrace.eventlog import GitStore

    work = tmp_path / "work"
    work.mkdir()
    for i in range(150):
        (work / f"f{i}.txt").write_bytes(os.urandom(40 + 30 * i))
    store = GitStore.init(tmp_path / "repo.git")
    tree = store.snapshot(work, max_file_bytes=1 << 20, message="1").tree_id
    objects = tmp_path / "repo.git" / "objects"
    assert list((objects / "pack").glob("*.pack"))
    repo = pygit2.Repository(str(tmp_path / "repo.git"))
    reader = PackReader(str(objects))
    for entry in repo[tree].peel(pygit2.Tree):
        assert reader.read(str(entry.id)) == (b"blob", (work / entry.name).read_bytes())
    out = tmp_path / "out"
    store.checkout(tree, out)
    assert all((out / f"f{i}.txt").read_bytes() == (work / f"f{i}.txt").read_bytes() for i in range(150))


def test_an_entry_deflated_past_zlibs_bound_is_read_as_git_reads_it(tmp_path):
    """A valid zlib stream may be longer than zlib's own bound (another deflater, or flushes
    every few bytes): git reads it, so the reader must too, not call the pack damaged."""
    from agtrace.eventlog.git import pack

    repo, _ = _repo(tmp_path, window=0)
    body = os.urandom(3000)
    deflater = zlib.compressobj(1)
    stream = b"".join(deflater.compress(body[i : i + 8]) + deflater.flush(zlib.Z_FULL_FLUSH)
                      for i in range(0, len(body), 8)) + deflater.flush()
    assert len(stream) > len(body) + 2 * (len(body) >> 12) + 64  # past the bound the reader looks in first
    oid = pack.object_id(b"blob", body)
    entry = pack.entry_header(len(body)) + stream
    writer = pack.PackWriter(repo.path)
    writer.add(oid, entry, zlib.crc32(entry))
    writer.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    shown = subprocess.run(["git", "-C", repo.workdir, "cat-file", "blob", oid.hex()], env=env,
                           capture_output=True, check=True)
    assert shown.stdout == body  # git reads it
    assert PackReader(os.path.join(repo.path, "objects")).read(oid.hex()) == (b"blob", body)


_PRISTINE: dict = {}
"""The packed files and blobs the mutation test starts from (made once for each kind of pack)."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["idx", "pack"]), deltas=st.sampled_from([0, 1, 2]), flips=st.lists(st.tuples(st.integers(0), st.integers(1, 255)),
                                                            min_size=1, max_size=4),
       cut=st.none() | st.integers(0))
def test_a_mutated_pack_or_index_gives_the_object_none_or_a_named_refusal(tmp_path_factory, which, deltas, flips,
                                                                          cut):
    """Packs come from pulled bundles too: whatever bytes an index or a pack holds (whole
    entries, OFS_DELTA or REF_DELTA ones), a read gives the object as libgit2 has it, None
    (libgit2 decides), or DamagedObject naming the object."""
    if deltas not in _PRISTINE:
        repo, blobs = _repo(tmp_path_factory.mktemp("pristine"), window=50 if deltas else 0, offsets=deltas == 1)
        pack_dir = Path(repo.path) / "objects" / "pack"
        _PRISTINE[deltas] = ({p.suffix: p.read_bytes() for p in pack_dir.iterdir() if p.suffix in (".idx", ".pack")},
                             {oid: repo[oid].data for oid in blobs})
    files, blobs = _PRISTINE[deltas]
    work = tmp_path_factory.mktemp("mutant")
    data = bytearray(files["." + which])
    for at, mask in flips:
        data[at % len(data)] ^= mask
    if cut is not None:
        del data[cut % len(data):]
    (work / "pack").mkdir()
    for suffix, content in files.items():
        (work / "pack" / f"pack-x{suffix}").write_bytes(bytes(data) if suffix == "." + which else content)
    reader = PackReader(str(work))
    for oid, expected in blobs.items():
        try:
            got = reader.read(oid)
        except DamagedObject as exc:
            assert oid in str(exc)
            continue
        assert got is None or got == (b"blob", expected)

