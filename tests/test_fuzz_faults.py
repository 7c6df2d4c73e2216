"""Hard faults (issue 12, item 7): SIGKILL of `append`, `import`, `push`, `pull` and `replay` at
random moments, and a full disk.

Every kill comes after the child shows it started (it took the run's lock, made its staging
directory, put its first file on the remote or in the store, wrote its first file out), then
after a random further delay. After each kill the store verifies, nothing it had stored is lost
or altered, and the same command works again and completes. The full disk is a real tmpfs
(mounted as root; skipped where mounting is not allowed). Trials per command:
``AGTRACE_FAULT_TRIALS`` (default 3); ``bench/soak_fuzz.py --faults`` runs more. The counts
are printed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.eventlog import MessageAdded, RunStarted, Store
from agtrace.eventlog.lock import is_locked

from .conftest import FIXTURES, run_agtrace

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("AGTRACE_FAULT_TRIALS", "3"))
COUNTS: dict[str, list[int]] = {}


def agtrace(args: list[str], store: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "AGTRACE_HOME": str(store)}
    return subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def kill_after_start(proc: subprocess.Popen, started, rng: random.Random, max_delay: float = 0.15) -> bool:
    """SIGKILL ``proc`` once ``started()`` is true, after a random further delay. False when the
    child finished before it could be killed (the trial still counts: it then must be complete)."""
    for _ in range(6000):  # the child reports by what it does, not by the clock
        if started() or proc.poll() is not None:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0, max_delay))
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return not finished


def count(name: str, killed: bool) -> None:
    c = COUNTS.setdefault(name, [0, 0])
    c[0] += 1
    c[1] += killed


@pytest.fixture
def print_counts(capsys):
    yield
    with capsys.disabled():
        for name, (tried, killed) in sorted(COUNTS.items()):
            if name == "full disk":
                print(f"\nfault full disk: {tried} trial(s): clear errors, nothing earlier lost, appends resumed")
                continue
            print(f"\nfault SIGKILL {name}: {tried} trials ({killed} killed mid-way, {tried - killed} had "
                  "finished), all verified and resumed")
        COUNTS.clear()


def _lines(start: int, n: int) -> bytes:
    return b"".join(json.dumps({"kind": "message_added", "role": "user", "text": f"line {i} " * 20}).encode() + b"\n"
                    for i in range(start, start + n))


def test_sigkill_of_append(tmp_path, print_counts):
    rng = random.Random(1)
    store_path = tmp_path / "s"
    store = Store(store_path)
    writer = store.create_run(RunStarted(agent="t"), durability="strict")
    run_id = writer.run_id
    store.close_writer(writer)
    sent = 0
    for _ in range(TRIALS):
        feed = tmp_path / "feed.jsonl"
        feed.write_bytes(_lines(sent, 20_000))
        with open(feed, "rb") as stdin:
            proc = agtrace(["append", run_id], store_path, stdin=stdin)
            killed = kill_after_start(proc, lambda: is_locked(store.run_dir(run_id) / "lock"), rng)
        count("append", killed)
        texts = [r.event.text for r in list(Store(store_path).read(run_id))[1:]]
        assert texts == [f"line {i} " * 20 for i in range(len(texts))], "appended lines lost or altered"
        sent = len(texts)
        assert Store(store_path).verify(run_id).ok
    proc = run_agtrace(["append", run_id, "--json"], store_path, input=_lines(sent, 5), check=True)
    assert json.loads(proc.stdout)["first_seq"] == sent + 2


def test_sigkill_of_import(tmp_path, print_counts):
    rng = random.Random(2)
    sources = tmp_path / "src"
    sources.mkdir()
    for sub in ("codex-rollout", "claude-code", "codex-exec-json"):
        for f in (FIXTURES / sub).iterdir():
            if "edge_cases" not in f.name:  # bad records on purpose: import exits 1 for them
                shutil.copy(f, sources / f"{sub}-{f.name}")
    reference = Store(tmp_path / "ref")
    run_agtrace(["import", str(sources)], tmp_path / "ref", check=True)
    expected = sorted(reference.run_ids())
    store_path = tmp_path / "s"
    staging = store_path / "staging"
    for _ in range(TRIALS):
        if (store_path / "runs").is_dir() and len(list((store_path / "runs").iterdir())) == len(expected):
            shutil.rmtree(store_path)  # all imported already: the next import would have nothing to do
        proc = agtrace(["import", str(sources)], store_path)
        # the whole import takes ~0.2 s once its first staging directory is there (0.5 s: no trial
        # of the soak's 10 was killed mid-way; later imports found every run there and did nothing)
        killed = kill_after_start(proc, lambda: staging.is_dir() and any(staging.iterdir()), rng, 0.15)
        count("import", killed)
        store = Store(store_path)
        assert store.verify().ok  # atomic: a run is in the store whole or not at all
        assert set(store.run_ids()) <= set(expected)
    run_agtrace(["import", str(sources)], store_path, check=True)
    store = Store(store_path)
    assert sorted(store.run_ids()) == expected and store.verify().ok
    assert not list((store_path / "staging").iterdir())  # the killed imports' staging is gone


def _captured(store_path: Path, work: Path, files: int = 200) -> str:
    from agtrace.capture import Recorder

    work.mkdir()
    store = Store(store_path)
    with Recorder(store, workdir=work, agent="t") as rec:
        for part in range(3):
            for i in range(files):
                (work / f"d{i % 10}" / f"f{i}.txt").parent.mkdir(exist_ok=True)
                (work / f"d{i % 10}" / f"f{i}.txt").write_text(f"part {part} file {i}\n" * 30)
            call = rec.tool_call("shell", command=f"step {part}")
            rec.tool_result(call, output="x" * 70_000, exit_code=0)  # a blob too
    return rec.run_id


def _hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file()]


def test_sigkill_of_push_and_pull(tmp_path, print_counts):
    rng = random.Random(3)
    store_path = tmp_path / "s"
    run_id = _captured(store_path, tmp_path / "w")
    store = Store(store_path)
    for _ in range(3):
        writer = store.create_run(RunStarted(agent="more"), durability="off")
        for i in range(3000):
            writer.append(MessageAdded(role="user", text=f"m{i} " * 30))
        store.close_writer(writer)
    remote_dir = tmp_path / "remote"
    url = f"file://{remote_dir}"
    for _ in range(TRIALS):
        shutil.rmtree(remote_dir, ignore_errors=True)
        remote_dir.mkdir()
        proc = agtrace(["push", "--all", "--remote", url], store_path)
        killed = kill_after_start(proc, lambda: any(remote_dir.rglob("*")), rng, 0.1)
        count("push", killed)
        assert Store(store_path).verify().ok
        run_agtrace(["push", "--all", "--remote", url], store_path, check=True)
        assert not _hidden(remote_dir), _hidden(remote_dir)  # the killed push's temp files are gone
    ids = sorted(store.run_ids())
    fresh = tmp_path / "fresh"
    for _ in range(TRIALS):
        shutil.rmtree(fresh, ignore_errors=True)
        proc = agtrace(["pull", "--all", "--remote", url], fresh)
        killed = kill_after_start(proc, lambda: (fresh / "runs").is_dir() and any((fresh / "runs").iterdir()),
                                  rng, 0.05)
        count("pull", killed)
        assert Store(fresh).verify().ok  # a pulled run is a gapless prefix, or not there
        run_agtrace(["pull", "--all", "--remote", url], fresh, check=True)
        pulled = Store(fresh)
        assert sorted(pulled.run_ids()) == ids and pulled.verify().ok
        for rid in ids:
            assert [r.event for r in pulled.read(rid)] == [r.event for r in store.read(rid)]
    out = tmp_path / "out"
    run_agtrace(["replay", run_id, "--part", "2", "--out", str(out)], tmp_path / "fresh", check=True)


def test_sigkill_of_replay(tmp_path, print_counts):
    rng = random.Random(4)
    store_path = tmp_path / "s"
    run_id = _captured(store_path, tmp_path / "w", files=600)
    out = tmp_path / "out"
    for trial in range(TRIALS):
        part = str(1 + trial % 3)
        proc = agtrace(["replay", run_id, "--part", part, "--out", str(out), "--force"], store_path)
        killed = kill_after_start(proc, lambda: out.is_dir() and any(out.iterdir()), rng, 0.1)
        count("replay", killed)
        assert Store(store_path).verify(run_id).ok
        done = run_agtrace(["replay", run_id, "--part", part, "--out", str(out), "--force"], store_path, check=True)
        assert b"verified" in done.stdout
        assert (out / "d1" / "f1.txt").read_text() == f"part {int(part) - 1} file 1\n" * 30


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    try:  # the last few bytes too
        with open(path, "ab") as fh:
            while True:
                fh.write(b"\0")
                fh.flush()
    except OSError:
        pass


def _append_until_full(run_dir: Path, run_id: str) -> None:
    """The writer itself on a full disk: ENOSPC, raised to the caller."""
    import errno

    from agtrace.eventlog import RunWriter

    writer = None
    with pytest.raises(OSError) as err:
        writer = RunWriter(run_dir, run_id, durability="strict")
        for i in range(100_000):
            writer.append(MessageAdded(role="user", text=f"{i} " * 400))
    assert err.value.errno == errno.ENOSPC
    if writer is not None:
        writer.abandon()


def test_a_full_disk_gives_a_clear_error_loses_nothing_and_appends_resume(small_disk, print_counts):
    store_path = small_disk / "s"
    run_id = run_agtrace(["new", "--agent", "t"], store_path, check=True).stdout.decode().strip()
    run_agtrace(["append", run_id], store_path, input=_lines(0, 100), check=True)
    before = [r.event for r in Store(store_path).read(run_id)]
    filler = small_disk / "filler"
    _fill(filler)
    proc = run_agtrace(["append", run_id], store_path, input=_lines(100, 2000))
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert ("full" in err or "No space left" in err) and "free some space" in err, err
    (store_path / "catalog.db").unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(store_path / "catalog.db") + suffix).unlink(missing_ok=True)
    _fill(small_disk / "filler2")
    proc = run_agtrace(["ls"], store_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "full" in err and "free some space" in err, err
    assert [r.event for r in Store(store_path).read(run_id)][: len(before)] == before  # nothing earlier lost
    _append_until_full(Store(store_path, create=False).run_dir(run_id), run_id)
    assert [r.event for r in Store(store_path).read(run_id)][: len(before)] == before
    filler.unlink()
    (small_disk / "filler2").unlink()
    run_agtrace(["append", run_id], store_path, input=_lines(5000, 10), check=True)  # appends resume
    events = [r.event for r in Store(store_path).read(run_id)]
    assert events[: len(before)] == before and events[-1].text == "line 5009 " * 20
    assert run_agtrace(["ls"], store_path, check=True).returncode == 0
    assert run_agtrace(["verify"], store_path).returncode == 0
    count("full disk", True)


def _store_of_runs(store_path: Path) -> str:
    """A store with a few runs of many events (an export of them needs more than a few kB)."""
    store = Store(store_path)
    for r in range(2):
        writer = store.create_run(RunStarted(agent="t"), durability="off")
        for i in range(2000):
            writer.append(MessageAdded(role="user", text=f"run {r} message {i} " * 10))
        store.close_writer(writer)
    return writer.run_id


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "atif", "otlp"])
def test_an_export_to_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, small_disk, fmt):
    store_path = tmp_path / "s"
    _store_of_runs(store_path)
    _fill(small_disk / "filler")
    out = small_disk / f"export.{fmt}"
    proc = run_agtrace(["export", "--all", "--format", fmt, "-o", str(out)], store_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err and "Exception ignored" not in err, err
    assert str(out) in err and "full" in err and "free some space" in err, err
    assert str(store_path) not in err, err  # the store's disk is not the full one
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no partial export, no temp files
    (small_disk / "filler").unlink()
    run_agtrace(["export", "--all", "--format", fmt, "-o", str(out)], store_path, check=True)
    assert Store(store_path).verify().ok


def test_a_copy_into_a_store_on_a_full_disk_names_that_store(tmp_path, small_disk):
    store_path = tmp_path / "s"
    run_id = _store_of_runs(store_path)
    other = small_disk / "other"
    run_agtrace(["new", "--agent", "t"], other, check=True)  # a store there already
    before = sorted(Store(other).run_ids())
    _fill(small_disk / "filler")
    proc = run_agtrace(["cp", run_id, "--to", str(other)], store_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert str(other) in err and "free some space" in err, err
    assert str(store_path) not in err, err  # the source's disk has room
    assert sorted(Store(other).run_ids()) == before and Store(store_path).verify().ok
    (small_disk / "filler").unlink()
    copy = run_agtrace(["cp", run_id, "--to", str(other)], store_path, check=True).stdout.decode().strip()
    assert [r.event for r in Store(other).read(copy)][1:] == [r.event for r in Store(store_path).read(run_id)][1:]


def test_a_replay_onto_a_full_disk_names_out_leaves_nothing_and_does_not_retry(tmp_path, small_disk):
    """A disk-full checkout is the output's fault, not the shadow repository's: the error names
    --out and says to free space, the tree half written into a new or empty --out is removed,
    and no second checkout from the bundles is tried (it would write more to the full disk and
    unbundle into the store's cache)."""
    from agtrace.capture import Recorder

    store_path, work = tmp_path / "s", tmp_path / "w"
    work.mkdir()
    with Recorder(Store(store_path), workdir=work, agent="t") as rec:
        for i in range(80):  # 5 MB of files that do not compress: more than the 4 MB disk
            (work / f"f{i}.bin").write_bytes(random.Random(i).randbytes(64 * 1024))
        rec.tool_result(rec.tool_call("shell", command="make"), output="ok", exit_code=0)
    assert (store_path / "runs" / rec.run_id / "bundles").is_dir()
    out = small_disk / "out"
    for exists in (False, True):  # a new --out, then an empty one the user made
        if exists:
            out.mkdir()
        proc = run_agtrace(["replay", rec.run_id, "--part", "last", "--out", str(out)], store_path)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "Traceback" not in err, err
        assert f"--out {out}" in err and "No space left" in err and "free some space" in err, err
        assert out.is_dir() == exists and (not exists or not any(out.iterdir())), err
        assert sorted(p.name for p in small_disk.iterdir()) == (["out"] if exists else [])
        assert not (store_path / "cache").exists() or not any((store_path / "cache").rglob("*.json"))
        assert not (store_path / "cache" / rec.run_id).exists()  # no retry from the bundles


def _tag_of(pid: int) -> str:
    from agtrace.eventlog.leftover import tag

    return tag().replace(f"-{os.getpid()}@", f"-{pid}@")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "atif", "otlp"])
def test_a_killed_export_leaves_a_tagged_temp_that_the_next_export_removes(tmp_path, fmt, print_counts):
    """SIGKILL of a real export while it builds -o: its temp sibling names the export's pid, and
    the next export to that path removes it (and never a live process's)."""
    store_path = tmp_path / "s"
    _store_of_runs(store_path)
    outdir = tmp_path / "o"
    outdir.mkdir()
    out = outdir / f"e.{fmt}"
    rng = random.Random(fmt)
    left: list[Path] = []
    for _ in range(20):  # until a kill lands while the temp sibling is there
        proc = agtrace(["export", "--all", "--format", fmt, "-o", str(out)], store_path)
        killed = kill_after_start(proc, lambda: any(p.name.startswith(f".{out.name}.") for p in outdir.iterdir()),
                                  rng, 0.0)
        count("export", killed)
        left = [p for p in outdir.iterdir() if p.name.startswith(f".{out.name}.")]
        if left:
            assert [p.name for p in left if _tag_of(proc.pid) in p.name] == [left[0].name]
            break
        _remove(out)
    assert left, "no kill landed while the export was being built"
    live = outdir / f".{out.name}.{_tag_of(os.getpid())}building"  # this test's: alive
    live.mkdir()
    _remove(out)
    run_agtrace(["export", "--all", "--format", fmt, "-o", str(out)], store_path, check=True)
    assert sorted(p.name for p in outdir.iterdir()) == sorted([out.name, live.name])


def test_report_temp_files_are_per_process_and_a_dead_ones_are_removed(tmp_path):
    store_path = tmp_path / "s"
    run_id = _store_of_runs(store_path)
    out = tmp_path / "r.html"
    dead = tmp_path / f".r.html.{_tag_of(_dead_pid())}0000.tmp"
    live = tmp_path / f".r.html.{_tag_of(os.getpid())}0000.tmp"
    fixed = tmp_path / ".r.html.tmp"  # the name every report used: two at once shared it
    for p in (dead, live, fixed):
        p.write_text("half a report")
    run_agtrace(["report", run_id, "-o", str(out)], store_path, check=True)
    assert out.stat().st_size > 0
    assert not dead.exists() and live.read_text() == fixed.read_text() == "half a report"
