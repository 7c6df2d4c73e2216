"""Re-scoring real runs with a real local sandbox: results, dedupe, resume, timeouts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from agtrace.capture import LocalSandbox, scrub_env
from agtrace.capture.demo import run_demo
from agtrace.capture.recorder import Recorder
from agtrace.eventlog import BadPartSelection, Scored, Store, TestsRan
from agtrace.replay import select_runs
from agtrace.replay.rescoring import (
    RescoreError,
    rescore,
    scorer_digest,
    scores,
    select_parts,
)
from agtrace.replay.results import ResultSpec
from agtrace.replay.sandbox import Sandbox

from .conftest import run_agtrace

VALUE = ResultSpec("regex", pattern=r"^v=(?P<value>\d+)")


def make_run(store: Store, workdir: Path, values: list[int], tags: dict | None = None) -> str:
    """A run whose part N leaves ``n.txt`` holding ``values[N-1]`` (trees repeat when values do)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "n.txt").write_text("0\n")
    with Recorder(store, workdir=workdir, agent="t", tags=tags or {}) as rec:
        for v in values:
            call = rec.tool_call("shell", command=f"echo {v} > n.txt")
            (workdir / "n.txt").write_text(f"{v}\n")
            rec.tool_result(call, output="", exit_code=0)
    return rec.run_id


def score_events(store: Store, run_id: str) -> list[Scored]:
    return [r.event for r in store.read(run_id, stream="scores")]


def test_local_sandbox_satisfies_the_protocol_and_scrubs_secrets(tmp_path):
    sandbox = LocalSandbox(
        {
            "PATH": os.environ["PATH"],
            "AWS_SECRET_ACCESS_KEY": "x" * 40,
            "OPENAI_API_KEY": "sk-1",
            "GH_TOKEN": "t",
            "HOME": "/h",
            "LANG": "C",
        }
    )
    assert isinstance(sandbox, Sandbox)
    ran = sandbox.run(tmp_path, "env; echo out >&2; exit 3", 10)
    assert ran.exit_code == 3 and not ran.timed_out
    assert "HOME=/h" in ran.output and "out" in ran.output
    for secret in ("AWS_SECRET", "OPENAI_API_KEY", "GH_TOKEN"):
        assert secret not in ran.output
    assert scrub_env({"MY_PASSWORD": "p", "USER": "u"}) == {"USER": "u"}


@pytest.mark.slow
def test_demo_run_rescored_gives_the_recorded_test_curve(tmp_path):
    store_dir = tmp_path / "store"
    with Store(store_dir) as store:
        summary, _ = run_demo(store, workdir=tmp_path / "demo")
        run_id = summary.run_id
        recorded = {r.part: r.event for r in store.read(run_id) if isinstance(r.event, TestsRan)}
        events_dir = store.run_dir(run_id) / "events"
        before = {p.name: p.read_bytes() for p in events_dir.iterdir()}
    assert len(recorded) == 3
    cmd = [
        "rescore",
        run_id[:8],
        "--name",
        "unit",
        "--cmd",
        "python3 -m unittest -v",
        "--parts",
        "all",
        "--jobs",
        "2",
        "--json",
    ]
    first = json.loads(run_agtrace(cmd, store_dir, check=True).stdout)
    assert first["selected"] == summary.parts and first["skipped"] == 0
    assert first["ran"] == len({r["tree_id"] for r in first["results"]}) < summary.parts
    curve = json.loads(
        run_agtrace(["scores", run_id, "--name", "unit", "--json"], store_dir, check=True).stdout
    )
    by_part = {row["scored_part"]: row for row in curve}
    assert sorted(by_part) == list(range(1, summary.parts + 1))
    for part, test in recorded.items():
        row = by_part[part]
        # capture and rescore count with the one parser: same numbers, errors apart
        assert (row["passed"], row["failed"], row["total"]) == (
            test.passed,
            test.failed,
            test.total,
        )
        assert row["tree_id"] == test.tree_id and row["status"] == "ok"
    second = json.loads(run_agtrace(cmd, store_dir, check=True).stdout)
    assert (second["ran"], second["reused"], second["skipped"]) == (0, 0, summary.parts)
    with Store(store_dir) as store:
        assert {
            p.name: p.read_bytes() for p in events_dir.iterdir()
        } == before  # the run is untouched
        assert len(score_events(store, run_id)) == summary.parts
        for event in score_events(store, run_id):  # reused results carry the counts too
            if event.scored_part in recorded:
                test = recorded[event.scored_part]
                assert (event.errors, event.skipped) == (test.errors, test.skipped)
        assert store.verify(run_id).ok
    human = run_agtrace(["scores", run_id], store_dir, check=True).stdout.decode()
    assert "unit" in human and "5/5" in human and "2/3" in human


def test_identical_trees_scored_once_across_parts_and_runs(store, tmp_path):
    a = make_run(store, tmp_path / "a", [1, 2, 2, 1])
    b = make_run(store, tmp_path / "b", [2, 3])
    report = rescore(
        store,
        [a, b],
        name="v",
        cmd="echo v=$(cat n.txt)",
        sandbox=LocalSandbox(),
        parts="all",
        result=VALUE,
        jobs=2,
    )
    assert (report.selected, report.ran, report.reused) == (6, 3, 3)
    events = {run: score_events(store, run) for run in (a, b)}
    values = {run: {e.scored_part: e.value for e in evs} for run, evs in events.items()}
    assert values == {a: {1: 1.0, 2: 2.0, 3: 2.0, 4: 1.0}, b: {1: 2.0, 2: 3.0}}
    originals = {(run, i + 1): e for run, evs in events.items() for i, e in enumerate(evs)}
    for evs in events.values():
        for e in evs:
            if e.reused_from:
                run, seq = e.reused_from.split(":")
                source = originals[(run, int(seq))]
                assert (
                    source.tree_id == e.tree_id and not source.reused_from and e.output_tail == ""
                )
    again = rescore(
        store,
        [a, b],
        name="v",
        cmd="echo v=$(cat n.txt)",
        sandbox=LocalSandbox(),
        parts="all",
        result=VALUE,
    )
    assert (again.ran, again.reused, again.skipped) == (0, 0, 6)
    other = rescore(
        store,
        [a],
        name="v",
        cmd="echo v=$(cat n.txt) ",
        sandbox=LocalSandbox(),
        parts="final",
        result=VALUE,
    )
    assert other.ran == 1 and other.scorer_digest != report.scorer_digest


class InterruptAfter:
    """A progress callback that interrupts the rescore after ``n`` recorded parts."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, done: int, total: int) -> None:
        if done >= self.n:
            raise KeyboardInterrupt


def test_interrupted_rescore_resumes_where_it_stopped(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 2, 3, 4, 5, 6])
    kwargs = dict(
        name="v", cmd="echo v=$(cat n.txt)", sandbox=LocalSandbox(), parts="all", result=VALUE
    )
    with pytest.raises(KeyboardInterrupt):
        rescore(store, [run_id], progress=InterruptAfter(2), **kwargs)
    assert [e.scored_part for e in score_events(store, run_id)] == [1, 2]
    store.close()  # a new process, as after a crash
    store2 = Store(store.root)
    report = rescore(store2, [run_id], **kwargs)
    assert (report.skipped, report.ran) == (2, 4)
    events = score_events(store2, run_id)
    assert sorted(e.scored_part for e in events) == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in sorted(events, key=lambda e: e.scored_part)] == [
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
        6.0,
    ]
    store2.close()


def test_hanging_scorer_is_killed_with_its_process_group(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1])
    pidfile = tmp_path / "child.pid"
    cmd = f"sleep 300 & echo $! > {pidfile}; echo started; sleep 300"
    report = rescore(store, [run_id], name="hang", cmd=cmd, sandbox=LocalSandbox(), timeout=1.0)
    (event,) = score_events(store, run_id)
    assert event.status == "timeout" and event.exit_code is None and "started" in event.output_tail
    assert report.timeout == 1
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 30
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)  # the forked child died with its group


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped, as under a container's init, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_junit_result_and_no_stale_result_file_between_parts(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 2])
    junit = '<testsuite tests="2" failures="1"><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>'
    cmd = f"if [ $(cat n.txt) = 1 ]; then echo '{junit}' > report.xml; fi"
    rescore(
        store,
        [run_id],
        name="j",
        cmd=cmd,
        sandbox=LocalSandbox(),
        parts="all",
        result=ResultSpec("junit", path="report.xml"),
    )
    by_part = {e.scored_part: e for e in score_events(store, run_id)}
    assert (by_part[1].status, by_part[1].passed, by_part[1].total) == ("ok", 1, 2)
    assert by_part[2].status == "error" and "report.xml" in by_part[2].output_tail


def test_part_selection(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 1, 2, 2, 3])
    trees = {p: t for p, t, _ in select_parts(store, run_id, "all")}
    assert sorted(trees) == [1, 2, 3, 4, 5]
    assert [p for p, _, _ in select_parts(store, run_id, "changed")] == [1, 3, 5]
    assert select_parts(store, run_id, "final") == [(5, trees[5], False)]  # the last part's tree
    assert [p for p, _, _ in select_parts(store, run_id, [0, 2])] == [0, 2]
    with pytest.raises(BadPartSelection, match=f"run {run_id} has no part 9; it has parts 1..5"):
        select_parts(store, run_id, [9])


def test_a_part_the_run_does_not_have_is_bad_input(store, tmp_path):
    """`rescore --parts 99` (and an empty range) exited 1 after a summary line, with the
    "lists its parts" hint twice; now it says what `log --part 99` says, once, exit 2, and
    nothing is scored."""
    run_id = make_run(store, tmp_path / "w", [1, 2])
    store.close()
    for parts, says in (("99", f"run {run_id} has no part 99; it has parts 1..2; "
                                f"`agtrace show {run_id} --parts` lists its parts"),
                        ("2-1", "the range 2-1 is empty: write the lower part first")):
        proc = run_agtrace(["rescore", run_id, "--name", "n", "--cmd", "true", "--parts", parts], store.root)
        assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
        assert proc.stderr.decode() == f"error: {says}\n"
    with Store(store.root) as again:
        assert score_events(again, run_id) == []


def test_named_runs_with_all_or_where_are_refused(store, tmp_path):
    """`rescore --all RUN` scored RUN alone ("on 1 run(s)": --all ignored); now run ids with
    --all or --where are refused as `export` refuses them, before anything is scored."""
    a = make_run(store, tmp_path / "a", [1])
    make_run(store, tmp_path / "b", [2])
    store.close()
    for extra in (["--all"], ["--where", "agent=t"]):
        proc = run_agtrace(["rescore", *extra, a, "--name", "n", "--cmd", "true"], store.root)
        assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
        assert proc.stderr == b"error: name runs or use --all/--where, not both\n"
    with Store(store.root) as again:
        assert all(score_events(again, r) == [] for r in again.run_ids())


def test_select_runs_by_where(store, tmp_path):
    a = make_run(store, tmp_path / "a", [1], tags={"campaign": "x"})
    b = make_run(store, tmp_path / "b", [1], tags={"campaign": "y"})
    assert select_runs(store, where={"campaign": "y"}) == [b]
    assert select_runs(store, all_runs=True) == [a, b]
    assert select_runs(store, [a[:10]]) == [a]
    with pytest.raises(ValueError, match="name runs"):
        select_runs(store)


def test_scores_table_is_rebuilt_identically_from_the_streams(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 2, 1])
    rescore(
        store,
        [run_id],
        name="v",
        cmd="echo v=$(cat n.txt)",
        sandbox=LocalSandbox(),
        parts="all",
        result=VALUE,
    )
    before = store.catalog.dump()["scores"]
    assert len(before) == 3  # maintained as the score stream was written
    store.reindex()  # deletes the catalog and folds every stream again
    assert store.catalog.dump()["scores"] == before
    assert sorted(r["scored_part"] for r in scores(store, run_id)) == [1, 2, 3]
    names = [r[0] for r in store.catalog.conn.execute("SELECT name FROM migrations WHERE owner='scores'")]
    assert names == ["m001_scores", "m002_output_tail", "m003_final"]


def test_digest_covers_command_environment_and_parser():
    class Fixed:
        def __init__(self, env):
            self.env = env

        def describe(self):
            return self.env

        def run(self, tree_dir, cmd, timeout, *, files=()):
            raise AssertionError("not run")

    base = scorer_digest("pytest", Fixed({"image": "a"}), ResultSpec())
    assert base == scorer_digest("pytest", Fixed({"image": "a"}), ResultSpec())
    assert base != scorer_digest("pytest -x", Fixed({"image": "a"}), ResultSpec())
    assert base != scorer_digest("pytest", Fixed({"image": "b"}), ResultSpec())
    assert base != scorer_digest("pytest", Fixed({"image": "a"}), ResultSpec("exit"))


@pytest.mark.parametrize("jobs", [1, 2])  # 1: on the calling thread; 2: on worker threads
def test_a_broken_sandbox_stops_the_rescore_and_records_nothing(store, tmp_path, jobs):
    run_id = make_run(store, tmp_path / "w", [1, 2])

    class Broken(LocalSandbox):
        def run(self, tree_dir, cmd, timeout, *, files=()):
            raise OSError(signal.SIGTERM, "the sandbox is gone")

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(RescoreError, match="sandbox failed"):
        rescore(store, [run_id], name="v", cmd="true", sandbox=Broken(), parts="all", jobs=jobs,
                scratch_dir=scratch)
    assert score_events(store, run_id) == []
    assert list(scratch.iterdir()) == []  # the scratch trees are gone


def test_an_interrupt_during_a_one_job_rescore_stays_an_interrupt(store, tmp_path):
    """With one job the scorer runs on the calling thread: Ctrl-C there is a KeyboardInterrupt
    (the CLI exits 130), not a sandbox failure; what was scored before it is kept."""
    run_id = make_run(store, tmp_path / "w", [1, 2])
    calls = []

    class Interrupted(LocalSandbox):
        def run(self, tree_dir, cmd, timeout, *, files=()):
            calls.append(tree_dir)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().run(tree_dir, cmd, timeout, files=files)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(KeyboardInterrupt):
        rescore(store, [run_id], name="v", cmd="true", sandbox=Interrupted(), parts="all", scratch_dir=scratch)
    assert [e.scored_part for e in score_events(store, run_id)] == [1]
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("swap", ["symlink", "deleted", "file"])
def test_a_scorer_that_replaces_its_scratch_directory_cannot_aim_the_next_switch(store, tmp_path, swap):
    """The scorer replaced its own directory (with a link to the user's files, a file, or
    nothing): the next part is written into a fresh private directory, exactly, and the
    user's files are untouched (the switch used to follow the link: it deleted them)."""
    run_id = make_run(store, tmp_path / "w", [1, 2, 3])
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me\n")
    replace = {"symlink": f'ln -s {victim} "$d"', "deleted": ":", "file": 'echo x > "$d"'}[swap]
    cmd = f'echo v=$(cat n.txt); ls; d=$(pwd -P); cd ..; rm -rf "$d"; {replace}'
    report = rescore(store, [run_id], name="swap", cmd=cmd, sandbox=LocalSandbox(), parts="all",
                     result=VALUE)
    assert sorted(os.listdir(victim)) == ["precious"]
    assert (victim / "precious").read_text() == "keep me\n"
    events = {e.scored_part: e for e in score_events(store, run_id)}
    assert report.ok == 3 and [events[p].value for p in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert all(events[p].output_tail.split("\n")[1:2] == ["n.txt"] for p in (1, 2, 3))


@pytest.mark.parametrize("ends", ["exits", "hangs"])
def test_nothing_a_scorer_started_outlives_it(store, tmp_path, ends):
    """A scorer's background process (same group) and one that left the group (setsid, as a
    daemonizing test server does) both die with the scorer, whether it exits or times out."""
    run_id = make_run(store, tmp_path / "w", [1])
    pids = tmp_path / "pids"
    cmd = (f"sleep 300 & echo $! >> {pids}; setsid sleep 301 & echo $! >> {pids}; "
           f"(setsid bash -c 'sleep 302 & echo $! >> {pids}; wait' &); "
           f"until [ $(wc -l < {pids}) = 3 ]; do sleep 0.01; done; echo v=1")
    if ends == "hangs":
        cmd += "; sleep 303"
    rescore(store, [run_id], name="leftovers", cmd=cmd, sandbox=LocalSandbox(), timeout=2.0, result=VALUE)
    (event,) = score_events(store, run_id)
    assert event.status == ("ok" if ends == "exits" else "timeout")
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    assert [p for p in started if alive(p)] == []


@pytest.mark.slow
def test_a_killed_rescore_leaves_no_scorer_running_and_resumes(store, tmp_path):
    """SIGKILL of `agtrace rescore` while a scorer runs: the scorer's group is stopped by its
    supervisor (it used to run on, orphaned); the rerun records each part once."""
    import subprocess
    import sys

    run_id = make_run(store, tmp_path / "w", [1, 2])
    store.close()
    pids = tmp_path / "pids"
    cmd = (f"if [ $(cat n.txt) = 2 ] && [ ! -e {tmp_path}/rerun ]; then sleep 300 & echo $! >> {pids}; "
           f"echo $$ >> {pids}; wait; fi; echo v=$(cat n.txt)")
    args = ["rescore", run_id, "--name", "k", "--cmd", cmd, "--parts", "all", "--regex", r"^v=(?P<value>\d+)"]
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                            env={**os.environ, "AGTRACE_HOME": str(store.root)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        started = [int(p) for p in pids.read_text().split()]
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in started if alive(p)] == []
    (tmp_path / "rerun").touch()
    run_agtrace(args, store.root, check=True)
    reopened = Store(store.root)
    events = score_events(reopened, run_id)
    assert sorted((e.scored_part, e.value) for e in events) == [(1, 1.0), (2, 2.0)]
    reopened.close()


def test_a_secret_cut_by_the_output_tail_is_not_stored_in_part(store, tmp_path):
    """The stored output is the last 4,000 characters; a token that straddled that cut was
    kept as its second half (redaction ran on the cut text, where it no longer looks like one)."""
    run_id = make_run(store, tmp_path / "w", [1])
    token = "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789"
    cmd = f"echo 'token {token}'; python3 -c 'print(\"x\" * 3980)'; echo v=1"
    rescore(store, [run_id], name="tail", cmd=cmd, sandbox=LocalSandbox(), result=VALUE)
    (event,) = score_events(store, run_id)
    assert event.status == "ok" and event.output_tail.endswith("v=1\n")
    assert token[-12:] not in event.output_tail


@pytest.mark.slow
def test_export_metrics_carries_the_scores_that_scores_prints(store, tmp_path):
    """`export --metrics` wrote run and part metrics but no re-score at all (and `--kind scored`
    none either): the scores table beside the export holds exactly `agtrace scores --json`'s rows."""
    import pyarrow.parquet as pq

    run_id = make_run(store, tmp_path / "w", [1, 2, 1])
    rescore(store, [run_id], name="v", cmd="echo v=$(cat n.txt)", sandbox=LocalSandbox(), parts="all",
            result=VALUE)
    store.close()
    want = json.loads(run_agtrace(["scores", run_id, "--json"], store.root, check=True).stdout)
    assert sorted((r["scored_part"], r["value"]) for r in want) == [(1, 1.0), (2, 2.0), (3, 1.0)]
    run_agtrace(["export", run_id, "--metrics", "-o", str(tmp_path / "x.jsonl")], store.root, check=True)
    rows = [json.loads(line) for line in (tmp_path / "x.scores.jsonl").read_text().splitlines()]
    assert rows == want
    run_agtrace(["export", run_id, "--metrics", "--format", "parquet", "-o", str(tmp_path / "pq")], store.root,
                check=True)
    assert pq.read_table(tmp_path / "pq" / "_metrics" / "scores.parquet").to_pylist() == want


@pytest.mark.slow
def test_sigterm_to_rescore_is_an_interrupt(store, tmp_path):
    """SIGTERM (how a batch scheduler stops a job) ends `rescore` as Ctrl-C does: exit 130, the
    scorer stopped, its scratch directory removed (it used to exit 143 and leave it in $TMPDIR)."""
    import subprocess
    import sys

    run_id = make_run(store, tmp_path / "w", [1])
    store.close()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    pid = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "rescore", run_id,
                             "--name", "t", "--cmd", f"echo $$ > {pid}; sleep 300"],
                            env={**os.environ, "AGTRACE_HOME": str(store.root), "TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (pid.exists() and pid.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        scorer = int(pid.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    assert not alive(scorer)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("agtrace-rescore-")] == []


def test_compare_and_the_runs_index_give_a_run_the_same_score(store, tmp_path):
    """A run that ends on an earlier tree (1, 2, 1): part 3's result is reused from part 1's and
    appended before part 2's, so compare's (and the report's) `score`, "the last re-score" in
    append order, was part 2's 2.0 while its own `scorers` and `agtrace view` said 1.0 at part 3."""
    from agtrace.eventlog import IndexQuery, index_runs
    from agtrace.replay import compare_table

    runs = [make_run(store, tmp_path / f"w{i}", values) for i, values in enumerate(([1, 2, 1], [2, 1]))]
    rescore(store, runs, name="v", cmd="echo v=$(cat n.txt)", sandbox=LocalSandbox(), parts="all", result=VALUE)
    rows = {r["id"]: r for r in compare_table(store, runs)}
    indexed = {r["id"]: r["score"] for r in index_runs(store, IndexQuery()).rows}
    assert [rows[r]["score"] for r in runs] == [1.0, 1.0] == [indexed[r] for r in runs]
    assert [rows[r]["scorers"]["v"]["value"] for r in runs] == [1.0, 1.0]


@pytest.mark.parametrize("path", ["/etc/hostname", "../../../etc/passwd", "out/../../x.xml"])
def test_a_result_file_outside_the_tree_is_refused_before_any_scorer_runs(store, tmp_path, path):
    """`--junit /etc/hostname` ran the scorer on every part and recorded an error result for each
    ("the scorer wrote no /etc/hostname"), which a rerun then skipped as already scored."""
    run_id = make_run(store, tmp_path / "w", [1])
    store.close()
    proc = run_agtrace(["rescore", run_id, "--name", "j", "--cmd", "true", "--junit", path], store.root)
    assert proc.returncode == 2 and b"relative to the tree" in proc.stderr and b"Traceback" not in proc.stderr
    assert score_events(Store(store.root), run_id) == []
