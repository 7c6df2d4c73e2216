"""`rescore --parts last` scores the run's final tree; when that tree is not the last part's own,
the score says so (``final``), and no reader takes it for the part's."""

from __future__ import annotations

import json
from pathlib import Path

from agtrace.capture import LocalSandbox
from agtrace.capture.recorder import Recorder
from agtrace.eventlog import IndexQuery, Scored, Store, index_runs, latest_score, score_rows
from agtrace.replay.report import report_data
from agtrace.replay.rescoring import rescore, scorer_digest, select_parts
from agtrace.replay.results import ResultSpec

from .conftest import run_agtrace

CMD = "echo v=$(cat n.txt)"
SCORE = ["--name", "v", "--cmd", CMD, "--regex", r"^v=(?P<value>\d+)"]
VALUE = ResultSpec("regex", pattern=r"^v=(?P<value>\d+)")


def make_run(store: Store, workdir: Path, values: list[int], after: int | None = None) -> str:
    """Part N writes ``values[N-1]`` to ``n.txt``; ``after``, if given, is written once the last
    part ended and before the run closes (so only the final snapshot holds it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "n.txt").write_text("0\n")
    with Recorder(store, workdir=workdir, agent="t") as rec:
        for v in values:
            call = rec.tool_call("shell", command=f"echo {v} > n.txt")
            (workdir / "n.txt").write_text(f"{v}\n")
            rec.tool_result(call, output="", exit_code=0)
        if after is not None:
            (workdir / "n.txt").write_text(f"{after}\n")
    return rec.run_id


def agtrace_json(root: Path, *args: str):
    return json.loads(run_agtrace([*args, "--json"], root, check=True).stdout)


def test_last_then_all_keeps_the_final_tree_apart_from_the_last_part(store, tmp_path):
    """Before: `rescore --parts last` recorded the final tree (9) as part 2, `--parts all` then
    part 2's own tree (2) under the same number, and `scores`, `compare`, the export, the report
    and the index each showed one or the other. Now the final tree's score is ``final``."""
    run_id = make_run(store, tmp_path / "w", [1, 2], after=9)
    root = store.root
    store.close()
    reports = [agtrace_json(root, "rescore", run_id, *SCORE, "--parts", parts) for parts in ("last", "all", "last")]
    assert [(r["ran"], r["skipped"]) for r in reports] == [(1, 0), (2, 0), (0, 1)]  # 9, then 1 and 2
    rows = agtrace_json(root, "scores", run_id)
    assert [(r["scored_part"], r["final"], r["value"]) for r in rows] == [(2, True, 9.0), (1, False, 1.0),
                                                                            (2, False, 2.0)]
    table = run_agtrace(["scores", run_id], root, check=True).stdout.decode().splitlines()
    assert [line.split()[1] for line in table[1:]] == ["1", "2", "final"]
    logged = run_agtrace(["log", run_id, "--kind", "scored"], root, check=True).stdout.decode().splitlines()
    assert [("scored_part=2" in line, "final=True" in line) for line in logged] == [(True, True), (False, False),
                                                                                   (True, False)]
    one = run_agtrace(["log", run_id, "--part", "1", "--kind", "scored", "--json"], root, check=True).stdout
    assert [json.loads(line)["scored_part"] for line in one.splitlines()] == [1]
    with Store(tmp_path / "other") as other:
        fresh = make_run(other, tmp_path / "w2", [3])  # never scored: no scores stream at all
    assert run_agtrace(["log", fresh, "--kind", "scored"], other.root, check=True).stdout == b""

    (compared,) = agtrace_json(root, "compare", run_id)
    assert compared["score"] == 9.0
    series = compared["scorers"]["v"]["series"]
    assert [(s["part"], s["final"], s["value"]) for s in series] == [(1, False, 1.0), (2, False, 2.0),
                                                                      (2, True, 9.0)]
    assert (compared["scorers"]["v"]["value"], compared["scorers"]["v"]["final"]) == (9.0, True)

    out = tmp_path / "x.jsonl"
    run_agtrace(["export", run_id, "--metrics", "-o", str(out)], root, check=True)
    exported = [json.loads(line) for line in (tmp_path / "x.scores.jsonl").read_text().splitlines()]
    assert [(r["scored_part"], r["final"], r["value"]) for r in exported] == [(2, True, 9.0), (1, False, 1.0),
                                                                                (2, False, 2.0)]
    with Store(root) as again:
        (row,) = index_runs(again, IndexQuery()).rows  # what `agtrace view` lists
        assert row["score"] == 9.0
        points = report_data(again, run_id)[0]["scores"]
        assert sorted((p[0], p[7], p[2]) for p in points) == [(1, False, 1.0), (2, False, 2.0), (2, True, 9.0)]


def test_a_final_tree_that_is_the_last_parts_records_one_score(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 2])
    root = store.root
    store.close()
    for parts in ("last", "all"):
        run_agtrace(["rescore", run_id, *SCORE, "--parts", parts], root, check=True)
    rows = agtrace_json(root, "scores", run_id)
    assert [(r["scored_part"], r["final"], r["value"]) for r in rows] == [(2, False, 2.0), (1, False, 1.0)]
    (compared,) = agtrace_json(root, "compare", run_id)
    assert compared["score"] == 2.0


def test_a_final_tree_scored_as_its_part_before_reads_as_final(store, tmp_path):
    """A store whose `rescore --parts last` (before ``final``) recorded the final tree as part 2:
    the score reads as the final tree's (its tree is not part 2's), in `scores`, `compare` and
    the index, also after the catalog is rebuilt, and the next `--parts last` skips it."""
    run_id = make_run(store, tmp_path / "w", [1, 2], after=9)
    ((part, tree, final),) = select_parts(store, run_id, "last")
    assert (part, final) == (2, True)
    digest = scorer_digest(CMD, LocalSandbox(), VALUE)
    with store.open_writer(run_id, stream="scores") as writer:
        writer.append(Scored(scorer="v", scorer_digest=digest, tree_id=tree, scored_part=2, value=9.0), part=2)
    rows = score_rows(store, run_id)
    assert [(r["scored_part"], r["final"], r["value"]) for r in rows] == [(2, True, 9.0)]
    report = rescore(store, [run_id], name="v", cmd=CMD, sandbox=LocalSandbox(), parts="last", result=VALUE)
    assert (report.ran, report.reused, report.skipped) == (0, 0, 1)
    report = rescore(store, [run_id], name="v", cmd=CMD, sandbox=LocalSandbox(), parts="all", result=VALUE)
    assert (report.ran, report.reused, report.skipped) == (2, 0, 0)  # part 2's own tree was never scored
    rows = score_rows(store, run_id)
    assert [(r["scored_part"], r["final"], r["value"]) for r in rows] == [(2, True, 9.0), (1, False, 1.0),
                                                                        (2, False, 2.0)]
    assert latest_score(rows) == 9.0
    root = store.root
    store.close()
    run_agtrace(["reindex"], root, check=True)
    table = run_agtrace(["scores", run_id], root, check=True).stdout.decode().splitlines()
    assert [line.split()[1] for line in table[1:]] == ["1", "2", "final"]
    (compared,) = agtrace_json(root, "compare", run_id)
    assert (compared["score"], compared["scorers"]["v"]["final"]) == (9.0, True)


def test_log_follow_kind_scored_prints_the_scores_a_running_rescore_writes(store, tmp_path):
    """`log --follow --kind scored` printed nothing (the scores stream was not followed). It now
    prints a run's scores after its events and follows them while a rescore writes them, and
    stops once that rescore is done; a run never scored prints nothing and exits 0."""
    import os
    import subprocess
    import sys
    import time

    from agtrace.eventlog.lock import is_locked

    run_id = make_run(store, tmp_path / "w", [1, 2, 3])
    root = store.root
    store.close()
    slow = ["--name", "slow", "--cmd", f"sleep 0.5; {CMD}", "--regex", r"^v=(?P<value>\d+)", "--parts", "all"]
    env = {**os.environ, "AGTRACE_HOME": str(root)}
    rescoring = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "rescore",
                                  run_id, *slow, "--jobs", "1"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
    try:
        lock, deadline = root / "runs" / run_id / "scores.lock", time.monotonic() + 60
        while not is_locked(lock):  # the first score is written: the rescore holds the stream
            assert rescoring.poll() is None and time.monotonic() < deadline, rescoring.stderr.read()
            time.sleep(0.01)
        followed = run_agtrace(["log", run_id, "--follow", "--kind", "scored", "--json"], root, check=True)
        assert rescoring.wait(timeout=60) == 0
    finally:
        if rescoring.poll() is None:
            rescoring.kill()
            rescoring.wait()
        rescoring.stderr.close()
    assert [json.loads(line)["scored_part"] for line in followed.stdout.splitlines()] == [1, 2, 3]
    after = run_agtrace(["log", run_id, "--follow", "--kind", "scored"], root, check=True).stdout.decode()
    assert [line.split()[-2] for line in after.splitlines()] == ["scored_part=1", "scored_part=2", "scored_part=3"]
    with Store(tmp_path / "other") as other:
        fresh = make_run(other, tmp_path / "w2", [3])
    assert run_agtrace(["log", fresh, "--follow", "--kind", "scored"], other.root, check=True).stdout == b""
