"""envoi-trace, ISO-Bench and TRAE importers, and `agtrace import`.

Golden files (``tests/golden/import/*.json``) were written by reading the sources (the fixtures'
JSON, diffs and the envoi builder's steps), not from importer output.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.capture.importers import IMPORTERS, import_source
from agtrace.capture.importers.batch import import_paths
from agtrace.capture.importers.isobench import unmangle_repo
from agtrace.eventlog import (
    FileChanged,
    MessageAdded,
    PartEnded,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    Store,
    TestsRan,
    ToolCalled,
    UsageReported,
    status_of,
)
from agtrace.replay.workspace import materialize

sys.path.insert(0, str(Path(__file__).parent))
from envoi_build import ENV, build_run, git, sample_steps  # noqa: E402

FIXTURES = Path("/work/shared/fixtures")
GOLDEN = Path(__file__).parent / "golden" / "import"
AGTRACE = [sys.executable, "-m", "agtrace.cli.main"]
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not mounted")


def _cli(store: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from agtrace.cli.main import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, "--store", str(store), *args], capture_output=True,
                          text=True, check=False)


def _summary(store: Store, run_id: str) -> dict:
    """The run as golden files describe it."""
    recs = list(store.read(run_id))
    started = recs[0].event
    assert isinstance(started, RunStarted)
    end = next((r.event for r in recs if isinstance(r.event, RunEnded)), None)
    parts = [[r.event.part_kind, r.event.tool] for r in recs if isinstance(r.event, PartEnded)]
    tokens: dict[str, list[int]] = {}
    reasoning: dict[str, int] = {}
    cost = None
    for r in recs:
        if isinstance(r.event, UsageReported):
            u = r.event.usage
            key = str(r.part)
            old = tokens.get(key, [0, 0, 0, 0])
            tokens[key] = [old[0] + u.input, old[1] + u.output, old[2] + u.cache_read, old[3] + u.cache_write]
            if u.reasoning:
                reasoning[key] = reasoning.get(key, 0) + u.reasoning
            if r.event.cost_usd is not None:
                cost = (cost or 0) + r.event.cost_usd
    files = [[r.event.path, r.event.change] for r in recs if isinstance(r.event, FileChanged)]
    return {
        "agent": started.agent, "model": started.model, "repo": started.repo, "base_commit": started.base_commit,
        "status": end.status if end else None, "reason": end.reason if end else "",
        "exit_code": end.exit_code if end else None, "parts": parts,
        "tool_calls": sum(isinstance(r.event, ToolCalled) for r in recs), "tokens_by_part": tokens,
        "reasoning_by_part": reasoning, "cost_usd": cost, "files": files,
        "patch_lines": [sum(r.event.lines_added or 0 for r in recs if isinstance(r.event, FileChanged)),
                        sum(r.event.lines_removed or 0 for r in recs if isinstance(r.event, FileChanged))],
    }


def _check_golden(store: Store, run_id: str, name: str, skip: tuple[str, ...] = ()) -> None:
    golden = json.loads((GOLDEN / f"{name}.json").read_text())
    got = _summary(store, run_id)
    for key, want in golden.items():
        if key == "source" or key in skip:
            continue
        if key == "parts":  # golden names the tool only for tool parts
            assert [[k, t if k == "tool" else ""] for k, t in got["parts"]] == want, key
        else:
            assert got[key] == want, f"{name}: {key}"


def _one_run(store: Store, path: Path, fmt: str | None = None, repo: Path | None = None) -> str:
    importer = IMPORTERS[fmt] if fmt else next(i for i in IMPORTERS.values() if i.detect(path))
    result = import_source(store, path, importer, repo=repo)
    assert not result.error, result.error
    assert len(result.runs) == 1, result
    return result.runs[0]


def _listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


# -- ISO-Bench and TRAE fixtures --------------------------------------------------------------

ISO_ITEMS = sorted(p.name for p in (FIXTURES / "isobench").iterdir() if p.is_dir() and p.name not in ("config", "eval"))


@pytest.mark.parametrize("item", ISO_ITEMS)
def test_isobench_item_matches_golden(tmp_path, item):
    store = Store(tmp_path / "store")
    run_id = _one_run(store, FIXTURES / "isobench" / item, "isobench")
    _check_golden(store, run_id, f"isobench_{item}")
    raws = [r.event.location for r in store.read(run_id) if r.kind == "raw_recorded"]
    assert sorted(raws) == sorted(p.name for p in (FIXTURES / "isobench" / item).iterdir())


def test_trae_trajectory_matches_golden(tmp_path):
    store = Store(tmp_path / "store")
    run_id = _one_run(store, FIXTURES / "trae" / "trajectory_20260118_211615.json")
    _check_golden(store, run_id, "trae_trajectory_20260118_211615")
    assert store.info(run_id).status == "completed"


def test_metadata_comes_from_the_source_not_from_unrelated_config(tmp_path):
    store = Store(tmp_path / "store")
    models = {}
    for item in ISO_ITEMS:
        run_id = _one_run(store, FIXTURES / "isobench" / item, "isobench")
        started = next(store.read(run_id, 1, 1)).event
        models[item] = started.model
        assert "gpt-5" not in started.model  # prediction/run_summary say gpt-5 for every agent
        assert started.repo != "sglan" and "sglan/" not in started.repo
    assert models["claude_code_sonnet_sglang_core-0000"] == "claude-sonnet-4-6"
    assert unmangle_repo("sglan", "sglang_core", "sgl-project__sglan-777688b") == "sgl-project/sglang"
    assert unmangle_repo("vllm", "vllm_core", "/home/x/vllm__repo-d263bd9") == "vllm"


def test_trae_every_call_failed_is_failed_despite_exit_0(tmp_path):
    store = Store(tmp_path / "store")
    run_id = _one_run(store, FIXTURES / "isobench" / "trae_sonnet45_sglang_sso_expired", "isobench")
    info = store.info(run_id)
    assert info.status == "failed" and info.exit_code == 0
    assert info.reason.startswith("no model call succeeded")
    calls = [r.event for r in store.read(run_id) if r.kind == "model_called"]
    assert [c.ok for c in calls] == [False] and "Token has expired" in calls[0].error


def _isobench_item_from_history(tmp_path: Path, repo: Path, base: str, head: str) -> Path:
    """An ISO-Bench item whose patch is the real diff between two commits of ``repo``."""
    item = tmp_path / "runs" / "vllm_core-0001"
    item.mkdir(parents=True)
    patch = subprocess.run(["git", "-C", str(repo), "diff", "--binary", base, head], env=ENV, check=True,
                           capture_output=True).stdout
    (item / "model_patch.diff").write_bytes(patch)
    journal = {"task_id": "agtrace_core", "commits": {"pre": base, "human": head}, "status": "success",
               "run_metadata": {"repo": "agtrace", "agent": "claude_code", "model": "sonnet",
                                "run_path": "agtrace/claude_code/sonnet/2026-01-01_00-00-00"},
               "claude_code": {"cli": "claude", "returncode": 0, "duration_s": 12.5},
               "timestamps": {"written": 1767225600.0}}
    (item / "journal.json").write_text(json.dumps(journal))
    return item


def test_isobench_repo_rebuilds_the_final_tree_from_base_and_patch(tmp_path):
    """Uses a real history (this project's own git log when available)."""
    repo = Path("/work/main")
    revs = subprocess.run(["git", "-C", str(repo), "rev-list", "--max-count=3", "HEAD"], env=ENV,
                          capture_output=True, text=True, check=False).stdout.split()
    if len(revs) < 3:
        pytest.skip("needs a git history of at least three commits")
    base, head = revs[2], revs[0]
    item = _isobench_item_from_history(tmp_path, repo, base, head)
    store = Store(tmp_path / "store")
    run_id = _one_run(store, item, "isobench", repo=repo)
    snaps = [r.event for r in store.read(run_id) if isinstance(r.event, SnapshotTaken)]
    # this project's tests hold token-shaped strings: those files are left out as a capture would
    for snap, commit in ((snaps[0], base), (snaps[-1], head)):
        left = {e.path for e in snap.excluded}
        assert {e.reason for e in snap.excluded} <= {"credential", "credential_content"}
        assert snap.tree_id == _tree_without(repo, commit, left, tmp_path)
    assert snaps[-1].final
    out = tmp_path / "out"
    view = materialize(store, run_id, 1, out)
    assert view.tree_id == snaps[-1].tree_id
    _assert_same_tree(out, repo, head, tmp_path, without={e.path for e in snaps[-1].excluded})
    assert (store.run_dir(run_id) / "bundles").is_dir()


def _tree_without(repo: Path, commit: str, paths: set[str], tmp: Path) -> str:
    """The tree id of ``commit`` of ``repo`` less ``paths``, as git writes it."""
    index = tmp / f"index-{commit[:12]}"
    env = {**ENV, "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "-C", str(repo), "read-tree", commit], env=env, check=True)
    if paths:
        subprocess.run(["git", "-C", str(repo), "update-index", "--force-remove", "--", *sorted(paths)], env=env,
                       check=True)
    return subprocess.run(["git", "-C", str(repo), "write-tree"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


# -- envoi-trace ------------------------------------------------------------------------------


def _assert_same_tree(out: Path, ws: Path, commit: str, tmp: Path, without: set[str] = frozenset()) -> None:
    """``out`` holds exactly the files of ``commit`` (less ``without``): bytes, exec bits,
    symlink targets."""
    ref = tmp / f"ref-{commit[:12]}-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ws), str(ref)], env=ENV, check=True)
    git(ref, "checkout", "-q", commit)
    shutil.rmtree(ref / ".git")
    for path in without:
        (ref / path).unlink()

    def walk(root: Path) -> dict[str, tuple]:
        entries = {}
        for p in sorted(root.rglob("*")):
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = ("file", p.read_bytes(), bool(st.st_mode & 0o100))
        return entries

    assert walk(out) == walk(ref)


@pytest.mark.parametrize("era", ["A", "B", "C"])
def test_envoi_every_part_replays_to_its_commit(tmp_path, era):
    src = tmp_path / "trajectories" / "t1"
    commits = build_run(src, sample_steps(), session_end={"reason": "solved"}, era=era)
    ws = src.with_name(src.name + ".workspace")
    store = Store(tmp_path / "store")
    run_id = _one_run(store, src, "envoi-trace")
    # the Parquet eras dropped every TurnRecord field, the turns' token usage with them
    _check_golden(store, run_id, "envoi_sample", skip=() if era == "A" else ("tokens_by_part", "reasoning_by_part"))
    for part, commit in commits.items():
        out = tmp_path / f"out-{part}"
        view = materialize(store, run_id, part, out)
        assert view.tree_id == git(ws, "rev-parse", f"{commit}^{{tree}}")
        _assert_same_tree(out, ws, commit, tmp_path)
    # from the sealed bundle alone (a pulled run has no shadow repository)
    shutil.rmtree(store.run_dir(run_id) / "repo.git")
    out = tmp_path / "from-bundle"
    materialize(store, run_id, 6, out)
    _assert_same_tree(out, ws, commits[6], tmp_path)
    assert (out / "cc").stat().st_mode & 0o100 and os.readlink(out / "bin" / "cc") == "../cc"


def test_envoi_turn_copies_are_not_duplicated_and_tests_name_their_tree(tmp_path):
    src = tmp_path / "t"
    commits = build_run(src, sample_steps(), session_end={"reason": "solved"})
    trace = json.loads((src / "agent_trace.json").read_text())
    assert sum(len(t["parts"]) for t in trace["turns"]) == len(trace["parts"])  # every part is there twice
    store = Store(tmp_path / "store")
    run_id = _one_run(store, src)
    recs = list(store.read(run_id))
    assert [r.part for r in recs if isinstance(r.event, PartEnded)] == list(range(1, 10))
    assert sum(isinstance(r.event, MessageAdded) for r in recs) == 2
    tests = [r for r in recs if isinstance(r.event, TestsRan)]
    evals = [t for t in tests if t.event.suite == "envoi-eval"]
    assert len(evals) == len(set(commits.values())) - 1  # every commit but the empty initial one
    ws = src.with_name(src.name + ".workspace")
    for t in evals:
        assert t.event.tree_id == git(ws, "rev-parse", f"{t.event.environment['commit']}^{{tree}}")
    agent_test = next(t for t in tests if t.event.suite == "basics/smoke")
    assert agent_test.part == 7 and agent_test.event.tree_id == git(ws, "rev-parse", f"{commits[7]}^{{tree}}")
    assert [c.outcome for c in agent_test.event.tests] == ["passed", "passed", "failed"]


def test_envoi_cumulative_codex_usage_sums_to_the_last_total(tmp_path):
    src = tmp_path / "t"
    build_run(src, sample_steps(), session_end={"reason": "solved"})
    store = Store(tmp_path / "store")
    run_id = _one_run(store, src)
    usage = [r.event for r in store.read(run_id) if isinstance(r.event, UsageReported)]
    assert sum(u.usage.input + u.usage.cache_read for u in usage) == 3000  # the final total, not 1200 + 3000
    assert sum(u.usage.output for u in usage) == 700
    assert usage[-1].cumulative is not None and usage[-1].cumulative.cache_read == 1200


def test_envoi_without_session_end_is_crashed_when_stale(tmp_path):
    store = Store(tmp_path / "store")
    stale = tmp_path / "stale"
    build_run(stale, sample_steps()[:3], session_end=None, trajectory_id="stale-1")
    run_id = _one_run(store, stale)
    end = [r.event for r in store.read(run_id) if isinstance(r.event, RunEnded)]
    assert [e.status for e in end] == ["crashed"] and "no session_end" in end[0].reason
    fresh = tmp_path / "fresh"
    build_run(fresh, sample_steps()[:3], session_end=None, trajectory_id="fresh-1",
              t0_ms=int(time.time() * 1000) - 10_000)
    run_id = _one_run(store, fresh)
    assert not any(isinstance(r.event, RunEnded) for r in store.read(run_id))
    assert store.info(run_id).status == "running"  # still being written, as far as anyone can tell


def test_envoi_session_end_reasons_map_to_statuses(tmp_path):
    store = Store(tmp_path / "store")
    for reason, status in [("part_limit", "limit"), ("timeout", "timeout"), ("agent_error", "failed")]:
        src = tmp_path / reason
        build_run(src, sample_steps()[:2], session_end={"reason": reason}, trajectory_id=reason)
        run_id = _one_run(store, src)
        assert store.info(run_id).status == status


def test_envoi_commit_missing_from_bundle_is_a_bad_record(tmp_path):
    src = tmp_path / "t"
    build_run(src, sample_steps(), session_end={"reason": "solved"})
    trace = json.loads((src / "agent_trace.json").read_text())
    trace["parts"][4]["git_commit"] = "0" * 40  # an amended-away commit
    (src / "agent_trace.json").write_text(json.dumps(trace))
    store = Store(tmp_path / "store")
    result = import_source(store, src, IMPORTERS["envoi-trace"])
    assert not result.error and len(result.bad_records) == 1
    assert "part=5" in result.bad_records[0].location and "not in repo.bundle" in result.bad_records[0].message
    rows = {r["part"]: r["tree_id"] for r in store.catalog.part_rows(result.runs[0])}
    assert not rows[5] and rows[4] and rows[6]


def test_import_twice_is_idempotent(tmp_path):
    src = tmp_path / "t"
    build_run(src, sample_steps(), session_end={"reason": "solved"})
    store = Store(tmp_path / "store")
    first = import_source(store, src, IMPORTERS["envoi-trace"])
    again = import_source(store, src, IMPORTERS["envoi-trace"])
    assert again.runs == [] and again.existing == first.runs
    assert store.run_ids() == first.runs


# -- failures leave the store as it was -------------------------------------------------------


def _failure_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = tmp_path / "good"
    build_run(good, sample_steps(), session_end={"reason": "solved"})
    cases = {}
    trunc = tmp_path / "trunc"
    shutil.copytree(good, trunc)
    data = (good / "agent_trace.json").read_bytes()
    (trunc / "agent_trace.json").write_bytes(data[: len(data) // 2])
    cases["truncated"] = ([str(trunc)], "truncated")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    bundle = (good / "repo.bundle").read_bytes()
    (corrupt / "repo.bundle").write_bytes(bundle[: len(bundle) // 2])
    cases["corrupt bundle"] = ([str(corrupt)], "corrupt or incomplete git bundle")
    unknown = tmp_path / "notes.txt"
    unknown.write_text("just some notes\n")
    cases["unknown"] = ([str(unknown)], "format not recognised")
    iso = str(FIXTURES / "isobench" / "claude_code_sonnet_sglang_core-0000")
    cases["wrong format"] = (["--format", "envoi-trace", iso], "not a envoi-trace source (it looks like isobench)")
    traj = tmp_path / "trajectory.json"
    raw = (FIXTURES / "trae" / "trajectory_20260118_211615.json").read_bytes()
    traj.write_bytes(raw[:100_000])
    cases["truncated trajectory"] = ([str(traj)], "truncated")
    return cases


def test_failures_are_reported_and_leave_the_store_as_it_was(tmp_path):
    store = tmp_path / "store"
    proc = _cli(store, "import", str(FIXTURES / "trae"))  # a store with one run in it
    assert proc.returncode == 0, proc.stderr
    for name, (args, message) in _failure_cases(tmp_path).items():
        before = _listing(store)
        proc = _cli(store, "import", *args)
        assert proc.returncode == 1, name
        assert message in proc.stderr, (name, proc.stderr)
        assert "1 of 1 source failed" in proc.stderr and proc.stderr.rstrip().endswith("nothing was imported"), name
        assert _listing(store) == before, name


def test_cli_imports_a_directory_of_runs_in_parallel(tmp_path):
    runs = tmp_path / "trajectories"
    for i in range(3):
        build_run(runs / f"t{i}", sample_steps()[: 3 + i], session_end={"reason": "solved"}, trajectory_id=f"t{i}")
    for ws in runs.glob("*.workspace"):
        shutil.move(str(ws), tmp_path / ws.name)
    store = tmp_path / "store"
    proc = _cli(store, "import", str(runs), str(FIXTURES / "isobench"), "--jobs", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    results = [r for r in json.loads(proc.stdout) if r["outcome"] != "skipped"]  # README, configs, results
    assert len(results) == 3 + len(ISO_ITEMS) and all(r["runs"] and not r["error"] for r in results)
    with Store(store) as s:
        assert len(s.run_ids()) == 3 + len(ISO_ITEMS)
        assert {s.info(r["runs"][0]).parts for r in results if r["format"] == "envoi-trace"} == {3, 4, 5}
    again = json.loads(_cli(store, "import", str(runs), "--jobs", "2", "--json").stdout)
    assert all(r["existing"] and not r["runs"] for r in again)


def test_cli_reports_bad_records_and_exits_nonzero(tmp_path):
    src = tmp_path / "t"
    build_run(src, sample_steps(), session_end={"reason": "solved"})
    trace = json.loads((src / "agent_trace.json").read_text())
    trace["parts"][2]["git_commit"] = "f" * 40
    (src / "agent_trace.json").write_text(json.dumps(trace))
    proc = _cli(tmp_path / "store", "import", str(src))
    assert proc.returncode == 1
    assert "skipped agent_trace.json#part=3" in proc.stderr and "1 bad record in 1 source was skipped" in proc.stderr and "--kind error_occurred" in proc.stderr
    assert "imported" in proc.stdout
    # with --json the records are in the JSON, and the closing error says so (not "listed above")
    proc = _cli(tmp_path / "store2", "import", str(src), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["bad_records"]
    assert "listed in the JSON printed" in proc.stderr and "listed above" not in proc.stderr, proc.stderr


def test_import_paths_api(tmp_path):
    with Store(tmp_path / "store") as store:
        results = import_paths(store, [FIXTURES / "trae", tmp_path / "missing"])
    assert [r.outcome for r in results] == ["imported", "skipped", "failed"]  # trae/SOURCES.md is no source
    results = [r for r in results if not r.skipped]
    assert "no such file" in results[1].error


@pytest.mark.parametrize("literal", ["Infinity", "NaN", "1e400", '"three"'])
def test_envoi_test_counts_that_are_no_number_count_0_with_a_warning(tmp_path, literal):
    """An envoi trace built by ``envoi_build`` (the field lists of
    /work/shared/formats/envoi-trace.md; envoi has no verbatim fixture in /work/shared/fixtures)
    whose first evaluation says ``passed`` and ``total`` as ``literal``, and whose agent test
    call says ``total`` so: the source imports, the counts are 0, the import warns."""
    src = tmp_path / "t"
    build_run(src, sample_steps(), session_end={"reason": "solved"})
    trace = json.loads((src / "agent_trace.json").read_text())
    first = next(iter(trace["evaluations"].values()))
    first["passed"] = first["total"] = "@@n@@"
    call = next(c for p in trace["parts"] for c in p["envoi_calls"])
    call["result"]["total"] = "@@n@@"
    (src / "agent_trace.json").write_text(json.dumps(trace).replace('"@@n@@"', literal))
    store = Store(tmp_path / "store")
    result = import_source(store, src, IMPORTERS["envoi-trace"])
    assert result.error == "" and result.bad_records == [], result.error or result.bad_records
    assert result.ignored_counts == 3, result.warning()
    assert result.ignored_count_at.startswith("agent_trace.json#"), result.ignored_count_at
    ran = [r.event for r in store.read(result.runs[0]) if isinstance(r.event, TestsRan)]
    assert any(e.suite == "envoi-eval" and e.passed == 0 and e.total == 0 for e in ran)
    assert any(e.suite == "basics/smoke" and e.total == 0 and e.passed == 2 for e in ran)


def test_an_isobench_item_without_a_journal_is_unknown_not_crashed(tmp_path):
    """The real item without `journal.json` says nothing of how its run ended: the importer writes
    no `run_ended`, and once silent the run is `unknown` (it was `crashed`: a crash nothing showed);
    `ls --status unknown` selects it; `close` records how it ended. A captured run that stopped
    without an end is still `crashed`."""
    item = tmp_path / "trae_sonnet45_vllm_bedrock_sonnet45-0008"
    shutil.copytree(FIXTURES / "isobench" / item.name, item)
    old = time.time() - 86_400  # the item's times come from its files: a day old
    for path in item.rglob("*"):
        os.utime(path, (old, old))
    store = tmp_path / "store"
    assert _cli(store, "import", str(item)).returncode == 0
    rows = json.loads(_cli(store, "ls", "--status", "unknown", "--json").stdout)
    assert [r["status"] for r in rows] == ["unknown"] and "no end record" in rows[0]["reason"]
    run_id = rows[0]["id"]
    assert f"agtrace close {run_id} --status" in rows[0]["reason"]
    assert json.loads(_cli(store, "ls", "--status", "crashed", "--json").stdout) == []
    shown = json.loads(_cli(store, "metrics", run_id, "--json").stdout)  # the patch's counts, as its part says
    assert (shown["files_changed"], shown["churn_lines_added"], shown["churn_lines_removed"]) == (1, 10, 2)
    assert "+10 -2" in _cli(store, "show", run_id).stdout
    row = {"id": run_id, "source": "import:isobench", "last_ts": time.time_ns()}
    assert status_of(row, False)[0] == "running"  # a source written just now may still grow
    assert status_of({**row, "heartbeat_s": 5.0}, False)[0] == "crashed"  # a capture that stopped
    assert _cli(store, "close", run_id, "--status", "completed").returncode == 0
    assert json.loads(_cli(store, "show", run_id, "--json").stdout)["status"] == "completed"
