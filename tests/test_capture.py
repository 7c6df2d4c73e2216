"""Live capture end to end: real subprocesses, real git workdirs, the real CLI."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.capture.demo_agent import setup_demo_repo
from agtrace.capture.recorder import Recorder
from agtrace.eventlog import (
    ErrorOccurred,
    PartEnded,
    RawRecorded,
    RunEnded,
    RunNotFound,
    SnapshotTaken,
    Store,
    TestsRan,
    ToolCalled,
)
from agtrace.replay.workspace import materialize

from .conftest import run_agtrace
from .procs import descendants, end

DEMO = [sys.executable, "-m", "agtrace.capture.demo_agent"]


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git" or "__pycache__" in rel.parts or path.is_dir():
            continue
        out[rel.as_posix()] = path.read_bytes()
    return out


def _summary(proc) -> dict:
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.fixture
def demo_repo(tmp_path) -> Path:
    wd = tmp_path / "work"
    wd.mkdir()
    setup_demo_repo(wd)
    return wd


@pytest.mark.slow
def test_demo_captures_every_part_with_tests_commits_and_final_tree(tmp_path):
    s = tmp_path / "store"
    wd = tmp_path / "demo"
    proc = run_agtrace(["demo", "--workdir", str(wd), "--json"], s, check=True)
    summary = _summary(proc)
    assert summary["status"] == "completed" and summary["parts"] >= 20
    store = Store(s)
    run_id = summary["run_id"]
    records = list(store.read(run_id))
    tests = [r.event for r in records if isinstance(r.event, TestsRan)]
    assert [(t.failed + t.errors > 0) for t in tests] == [True, True, False]
    assert all(t.tree_id for t in tests)
    commands = [r.event.command for r in records if isinstance(r.event, ToolCalled)]
    assert any("git commit" in c for c in commands) and any("printf" in c for c in commands)
    # the final snapshot equals the working tree on disk, byte for byte
    final = [r.event for r in records if isinstance(r.event, SnapshotTaken) and r.event.final][-1]
    out = tmp_path / "final"
    view = materialize(store, run_id, store.info(run_id).parts, out)
    assert view.tree_id == final.tree_id
    assert _files(out) == _files(wd)
    # the agent's own commits live in its .git; the bundle holds every snapshot
    log = subprocess.run(["git", "-C", str(wd), "log", "--oneline"], capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 3
    (bundle,) = (s / "runs" / run_id / "bundles").glob("*.bundle")
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    verify = subprocess.run(["git", "bundle", "verify", str(bundle)], cwd=tmp_path / "empty", capture_output=True)
    assert verify.returncode == 0, verify.stderr
    assert store.verify().ok
    info = store.info(run_id)
    assert (info.agent, info.status) == ("demo", "completed")


@pytest.mark.slow
def test_edits_by_shell_redirection_and_git_checkout_are_attributed_to_their_parts(tmp_path):
    s = tmp_path / "store"
    summary = _summary(run_agtrace(["demo", "--workdir", str(tmp_path / "d"), "--json"], s, check=True))
    store = Store(s)
    run_id = summary["run_id"]
    changed = {}
    titles = {}
    for rec in store.read(run_id):
        if isinstance(rec.event, SnapshotTaken) and rec.part:
            changed[rec.part] = set(rec.event.added) | set(rec.event.modified) | set(rec.event.deleted)
        if isinstance(rec.event, PartEnded):
            titles[rec.part] = rec.event.title
    shell_edit = next(p for p, t in titles.items() if "printf" in t and "average_word_length" in t)
    assert changed[shell_edit] == {"textstats/core.py"}
    revert = next(p for p, t in titles.items() if "git checkout --" in t)
    assert changed[revert] == {"textstats/core.py"}
    patch_parts = [p for p, t in titles.items() if t.startswith("patch")]
    assert patch_parts and all(changed[p] for p in patch_parts)
    reasoning_parts = [p for p, t in titles.items() if t.startswith("**")]
    assert all(not changed[p] for p in reasoning_parts), "a later edit leaked into a reasoning part"


def test_raw_agent_lines_parts_by_marker_and_bad_lines_are_kept(tmp_path, demo_repo):
    s = tmp_path / "store"
    script = "echo STEP one; echo a > a.txt; echo STEP two; echo oops >&2; echo b > b.txt; echo tail"
    proc = run_agtrace(["run", "--workdir", str(demo_repo), "--marker", "^STEP", "--json", "--",
                        "bash", "-c", script], s, check=True)
    run_id = _summary(proc)["run_id"]
    store = Store(s)
    recs = list(store.read(run_id))
    kinds = [r.kind for r in recs]
    assert kinds.count("line_logged") == 4  # STEP one, STEP two, oops (stderr), tail
    assert any(r.kind == "line_logged" and r.event.stream == "stderr" for r in recs)
    assert store.info(run_id).parts >= 2
    codex = run_agtrace(["run", "--agent", "codex", "--workdir", str(demo_repo), "--json", "--", "bash", "-c",
                         'echo "{not json"; echo \'{"type":"thread.started","thread_id":"t"}\'; echo \'{"type":"turn.started"}\'; '
                         'echo \'{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"hi"}}\'; '
                         'echo \'{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":2}}\''],
                        s, check=True)
    recs = list(store.read(_summary(codex)["run_id"]))
    bad = [r.event for r in recs if isinstance(r.event, RawRecorded) and r.event.parse_error]
    assert len(bad) == 1 and bad[0].text == "{not json" and bad[0].location == "stdout:1"
    assert any(r.kind == "message_added" for r in recs)


def test_raw_marker_that_is_no_regex_is_bad_usage(tmp_path, demo_repo):
    """`run --marker '('` was an internal error (exit 1, "This is a bug"); now it is bad usage,
    said like `search --regex` says it, and nothing is created."""
    s = tmp_path / "store"
    proc = run_agtrace(["run", "--agent", "raw", "--workdir", str(demo_repo), "--marker", "(", "--", "true"], s)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("error: --marker '(' is not a valid regular expression: missing ), unterminated"), err
    assert "bug" not in err and "Traceback" not in err and err.count("\n") == 1
    assert not s.exists()  # checked before the store (or a run) is made


def test_failed_model_calls_fail_the_run_even_with_exit_0_semantics(tmp_path, demo_repo):
    proc = run_agtrace(["run", "--agent", "codex", "--workdir", str(demo_repo), "--json", "--", *DEMO, "--fail-model"],
                       tmp_path / "store")
    summary = _summary(proc)
    assert proc.returncode == 1
    assert summary["status"] == "failed" and "no model call succeeded" in summary["reason"]
    assert "401" in summary["reason"]


def test_killed_agent_is_recorded_not_fatal(tmp_path, demo_repo):
    proc = run_agtrace(["run", "--workdir", str(demo_repo), "--json", "--", "bash", "-c",
                        "echo work > w.txt; echo started; kill -9 $$"], tmp_path / "store")
    summary = _summary(proc)
    assert summary["status"] == "failed" and "SIGKILL" in summary["reason"]
    store = Store(tmp_path / "store")
    snaps = [r.event for r in store.read(summary["run_id"]) if isinstance(r.event, SnapshotTaken)]
    assert snaps[-1].final and any("w.txt" in s.added for s in snaps)


@pytest.mark.parametrize(("flags", "status"), [(["--timeout", "2"], "timeout"), (["--max-parts", "2"], "limit")])
def test_timeout_and_part_limit_stop_the_agent(tmp_path, demo_repo, flags, status):
    proc = run_agtrace(["run", "--agent", "codex", "--workdir", str(demo_repo), *flags, "--json", "--", *DEMO, "--hang"],
                       tmp_path / "store")
    summary = _summary(proc)
    assert summary["status"] == status
    ended = list(Store(tmp_path / "store").read(summary["run_id"]))[-1].event
    assert isinstance(ended, RunEnded) and ended.status == status


def _start_capture(tmp_path, demo_repo, *extra):
    env = {**os.environ, "AGTRACE_HOME": str(tmp_path / "store")}
    return subprocess.Popen(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--agent", "codex",
         "--workdir", str(demo_repo), "--json", "--", *DEMO, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def _wait_for_parts(store_path: Path, n: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (store_path / "runs").exists():
            for run in (store_path / "runs").iterdir():
                s = Store(store_path)
                try:
                    if s.info(run.name).parts >= n:
                        return run.name
                except RunNotFound:  # the run directory exists before its first event
                    pass
                finally:
                    s.close()
        time.sleep(0.1)
    raise AssertionError("the capture made no progress")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_the_agent_and_ends_the_run(tmp_path, demo_repo, sig):
    proc = _start_capture(tmp_path, demo_repo, "--hang")
    _wait_for_parts(tmp_path / "store", 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["status"] == "interrupted", err.decode()
    assert proc.returncode == 130  # the README's code for interrupted (it was 1, like a failure)
    recs = list(Store(tmp_path / "store").read(summary["run_id"]))
    assert isinstance(recs[-2].event, SnapshotTaken) and recs[-2].event.final
    assert isinstance(recs[-1].event, RunEnded)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_exits_130(tmp_path, sig):
    """`agtrace demo` interrupted exited 1, like a failed run; the README's code for an
    interrupted command is 130, as `run` exits."""
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "demo",
                             "--workdir", str(tmp_path / "demo"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "AGTRACE_HOME": str(store)})
    _wait_for_parts(store, 1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert json.loads(out.decode().splitlines()[-1])["status"] == "interrupted", err.decode()
    assert proc.returncode == 130, err.decode()


def test_sigkill_of_the_capture_process_shows_crashed_and_keeps_what_was_flushed(tmp_path, demo_repo):
    proc = _start_capture(tmp_path, demo_repo, "--hang")
    run_id = _wait_for_parts(tmp_path / "store", 2)
    started = descendants(proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    end(started)  # the supervisor stops the agent; whatever is left is ended by pid
    store = Store(tmp_path / "store")
    info = store.info(run_id)
    assert info.status == "crashed" and info.parts >= 2
    assert store.verify().ok
    out = tmp_path / "p2"
    view = materialize(store, run_id, 2, out)
    assert view.tree_id and (out / "textstats" / "core.py").exists()
    listing = json.loads(run_agtrace(["ls", "--json"], tmp_path / "store", check=True).stdout)
    assert listing[0]["status"] == "crashed"


def test_secrets_never_reach_the_store(tmp_path, demo_repo):
    secret = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 3
    proc = run_agtrace(["run", "--agent", "codex", "--workdir", str(demo_repo), "--task", f"use {secret}",
                        "--json", "--", *DEMO, "--fast", "--secret"],
                       tmp_path / "store", env={"DEMO_API_KEY": secret})
    summary = _summary(proc)
    assert summary["redactions"] >= 2
    store = Store(tmp_path / "store")
    dumped = b"\n".join(run_agtrace(["log", summary["run_id"], "--json"], tmp_path / "store", check=True).stdout.splitlines())
    assert secret.encode() not in dumped and b"[REDACTED" in dumped
    ended = list(store.read(summary["run_id"]))[-1].event
    assert ended.redactions == summary["redactions"]


def test_recorder_api_snapshots_each_part_like_run(tmp_path, demo_repo):
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=demo_repo, agent="fw", model="m", task="t", heartbeat_s=0.1) as rec:
        rec.reasoning("plan")
        call = rec.tool_call("shell", {"cmd": "touch"}, command="echo x > new.txt")
        (demo_repo / "new.txt").write_text("x\n")
        rec.tool_result(call, output="", exit_code=0)
        rec.test_result(suite="unit", passed=1, failed=1)
        rec.usage(input=100, output=7, cache_read=50)
        time.sleep(0.3)
        rec.message("assistant", "done")
    recs = list(store.read(rec.run_id))
    parts = {r.part: r.event for r in recs if isinstance(r.event, PartEnded)}
    assert sorted(parts) == [1, 2, 3] and parts[2].tool == "shell" and parts[2].tree_id != parts[1].tree_id
    snaps = {r.part: r.event for r in recs if isinstance(r.event, SnapshotTaken) and not r.event.final}
    assert snaps[2].added == ["new.txt"]
    assert any(r.kind == "heartbeat_sent" for r in recs)
    tests = next(r.event for r in recs if isinstance(r.event, TestsRan))
    assert tests.tree_id == parts[2].tree_id and tests.total == 2
    assert store.info(rec.run_id).status == "completed"


def test_recorder_exception_fails_the_run_with_the_reason(tmp_path, demo_repo):
    store = Store(tmp_path / "store")
    with pytest.raises(RuntimeError), Recorder(store, workdir=demo_repo) as rec:
        rec.message("assistant", "about to fail")
        raise RuntimeError("tool exploded")
    info = store.info(rec.run_id)
    assert info.status == "failed" and "tool exploded" in info.reason
    assert not any(isinstance(r.event, ErrorOccurred) for r in store.read(rec.run_id))


def test_model_is_taken_from_the_agent_command_line():
    from agtrace.capture.runner import model_from_argv

    assert model_from_argv(["codex", "exec", "--json", "-m", "gpt-5.5", "task"]) == "gpt-5.5"
    assert model_from_argv(["claude", "-p", "--model=claude-sonnet-4-5"]) == "claude-sonnet-4-5"
    assert model_from_argv(["codex", "exec", "-c", 'model="o3"']) == "o3"
    assert model_from_argv(["./agent.sh", "--json"]) == ""


def test_large_outputs_are_stored_once_in_the_blob_store(tmp_path, demo_repo):
    store = Store(tmp_path / "store")
    big = "".join(f"tests/test_{i}.py::test_case PASSED\n" for i in range(5000))
    with Recorder(store, workdir=demo_repo) as rec:
        for _ in range(3):
            call = rec.tool_call("shell", command="pytest -v")
            rec.tool_result(call, output=big, exit_code=0)
    outs = [r.event for r in store.read(rec.run_id) if r.kind == "tool_returned"]
    assert len({o.output_blob for o in outs}) == 1 and all(len(o.output) < 4096 for o in outs)
    assert store.text(outs[0].output, outs[0].output_blob) == big and outs[0].output_bytes == len(big)
    assert len(list(store.blobs.digests())) == 1


def test_agent_reported_paths_are_stored_relative_to_the_workdir(tmp_path):
    s = tmp_path / "store"
    summary = _summary(run_agtrace(["demo", "--workdir", str(tmp_path / "d"), "--fast", "--json"], s, check=True))
    changed = [r.event for r in Store(s).read(summary["run_id"]) if r.kind == "file_changed"]
    assert changed and all(not os.path.isabs(c.path) for c in changed)
    assert "tests/test_top_words.py" in {c.path for c in changed}


# -- file names that are not plain text ------------------------------------------------------------


def _raw_run(tmp_path, script: str, before: dict[bytes, bytes] | None = None) -> tuple[Path, str, Path]:
    """A real `agtrace run --agent raw --marker` of ``script`` (sh) in a fresh git workdir holding
    base.txt and the files ``before`` (bytes names): ``(store, run id, workdir)``."""
    wd = tmp_path / "work"
    wd.mkdir()
    subprocess.run(["git", "init", "-q", str(wd)], check=True)
    (wd / "base.txt").write_text("base\n")
    for name, data in (before or {}).items():
        with open(os.path.join(os.fsencode(wd), name), "wb") as f:
            f.write(data)
    s = tmp_path / "store"
    proc = run_agtrace(["run", "--agent", "raw", "--workdir", str(wd), "--marker", "^STEP", "--json", "--",
                        "sh", "-c", script], s)
    assert proc.returncode == 0, proc.stderr.decode()
    return s, _summary(proc)["run_id"], wd


@pytest.mark.slow
def test_a_name_that_is_not_utf8_is_captured_and_replayed_byte_exact(tmp_path):
    """Issue: a file named ``bad\\377name`` (not UTF-8) made the snapshot raise UnicodeEncodeError
    (`is_ignored` → pygit2): the run ended failed and later parts had no tree; one present at the
    start lost the part-0 snapshot event while the run said completed; `cat --list --json` and
    `replay --json` ended in an internal error. Now each name is captured and replayed with its
    exact bytes, and shown in its quoted form in events and JSON."""
    script = ("echo STEP one; sleep 0.3; printf z > \"$(printf 'bad\\377name')\"; sleep 0.3; "
              "echo STEP two; sleep 0.3; echo more > more.txt; sleep 0.3")
    s, run_id, _ = _raw_run(tmp_path, script, before={b"pre\xfename": b"p"})
    store = Store(s)
    recs = list(store.read(run_id))
    assert store.info(run_id).status == "completed"
    assert not [r for r in recs if isinstance(r.event, ErrorOccurred)], [r.event for r in recs]
    snaps = [r for r in recs if isinstance(r.event, SnapshotTaken)]
    assert snaps[0].part is None and set(snaps[0].event.added) == {'"pre\\376name"', "base.txt"}  # part 0: kept
    assert '"bad\\377name"' in [p for r in snaps for p in r.event.added]
    for part, names in ((0, {b"pre\xfename", b"base.txt"}),
                        (1, {b"pre\xfename", b"bad\xffname", b"base.txt"}),
                        (2, {b"pre\xfename", b"bad\xffname", b"base.txt", b"more.txt"})):
        out = tmp_path / f"out{part}"
        proc = run_agtrace(["replay", run_id, "--part", str(part), "--out", str(out), "--json"], s)
        assert proc.returncode == 0, proc.stderr.decode()
        assert set(os.listdir(os.fsencode(out))) == names
        listed = run_agtrace(["cat", run_id, "--part", str(part), "--list", "--json"], s)
        assert listed.returncode == 0, listed.stderr.decode()
        quoted = {b"pre\xfename": '"pre\\376name"', b"bad\xffname": '"bad\\377name"'}
        assert {f["path"] for f in json.loads(listed.stdout)["files"]} == {quoted.get(n) or n.decode() for n in names}
    assert Path(os.fsdecode(os.fsencode(tmp_path / "out2") + b"/bad\xffname")).read_bytes() == b"z"
    for given in ('"bad\\377name"', os.fsdecode(b"bad\xffname")):  # the quoted form, or the bytes
        got = run_agtrace(["cat", run_id, "--part", "2", given, "--json"], s)
        assert got.returncode == 0 and json.loads(got.stdout)["text"] == "z", got.stderr.decode()


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_a_name_that_is_not_utf8_shows_in_the_report_and_the_viewer(tmp_path):
    """Issue (found with the one above): `report -o` and the viewer's file list and diff ended in
    an internal error (UnicodeEncodeError) on a run whose tree holds such a name. They show it in
    its quoted form, and the viewer opens the file by it."""
    from urllib.parse import quote

    from .view_server import ViewServer

    script = "echo STEP one; sleep 0.3; printf z > \"$(printf 'bad\\377name')\"; sleep 0.3"
    s, run_id, _ = _raw_run(tmp_path, script)
    page = tmp_path / "report.html"
    got = run_agtrace(["report", run_id, "-o", str(page)], s)
    assert got.returncode == 0, got.stderr.decode()
    assert '\\"bad\\\\377name\\"' in page.read_text()  # the quoted form, inside a JSON string
    with ViewServer(s) as server:
        files = server.json(f"/api/runs/{run_id}/files?part=1")["files"]
        assert '"bad\\377name"' in [f["path"] for f in files]
        shown = server.json(f"/api/runs/{run_id}/file?part=1&path={quote(chr(34) + 'bad' + chr(92) + '377name' + chr(34))}")
        assert shown["text"] == "z" and shown["path"] == '"bad\\377name"'
        diff = server.json(f"/api/diff?a={run_id}&pa=0&b={run_id}&pb=1")
        assert [f["path"] for f in diff["files"]] == ['"bad\\377name"']


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_names_with_control_characters_are_quoted_in_text_output_and_exact_in_json(tmp_path):
    """Issue: a file named ``a<LF>b`` printed as two lines (``a``, ``b``) in `cat --list`,
    `diff --stat` and replay's summary, and an escape sequence in a name reached the terminal.
    Text output now quotes such names as git does (``"a\\nb"``); --json keeps them exact."""
    script = ("echo STEP one; sleep 0.3; printf x > \"$(printf 'a\\nb')\"; "
              "printf y > \"$(printf 'e\\033[31mRED')\"; echo c > plain.txt; sleep 0.3")
    s, run_id, _ = _raw_run(tmp_path, script)
    listed = run_agtrace(["cat", run_id, "--part", "1", "--list"], s, check=True).stdout.decode()
    assert listed.splitlines() == ['"a\\nb"', "base.txt", '"e\\033[31mRED"', "plain.txt"]
    stat = run_agtrace(["diff", run_id, "0", "1", "--stat"], s, check=True).stdout.decode()
    assert ' "a\\nb"' in stat and '"e\\033[31mRED"' in stat and "\x1b" not in stat and len(stat.splitlines()) == 4
    patch = run_agtrace(["diff", run_id, "0", "1"], s, check=True).stdout.decode()
    assert 'diff --git "a/a\\nb" "b/a\\nb"\n' in patch and "\x1b" not in patch
    summary = run_agtrace(["replay", run_id, "--part", "1", "--out", str(tmp_path / "o")], s, check=True)
    assert '  added     "a\\nb"  +1 -0' in summary.stdout.decode().splitlines()
    as_json = json.loads(run_agtrace(["cat", run_id, "--part", "1", "--list", "--json"], s, check=True).stdout)
    assert [f["path"] for f in as_json["files"]] == ["a\nb", "base.txt", "e\x1b[31mRED", "plain.txt"]
    assert run_agtrace(["cat", run_id, "--part", "1", '"a\\nb"'], s, check=True).stdout == b"x\n"


@pytest.mark.parametrize("echo", [False, True])
def test_a_standard_error_whose_reader_went_away_does_not_stop_the_capture(tmp_path, echo):
    """`agtrace run … 2>&1 >/dev/null | head -2`: once head exited, the next live line raised
    BrokenPipeError, which ended the capture, stopped the agent (its last file was never
    written) and failed the run. Now the live output is given up and the run goes on."""
    work = tmp_path / "work"
    work.mkdir()
    script = "for i in $(seq 1 30); do echo S $i; done; sleep 0.5; echo S last; echo done > fin.txt"
    argv = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store", str(tmp_path / "store"),
            "run", "--workdir", str(work), "--marker", "^S", "--json", *(["--echo"] if echo else []),
            "--", "sh", "-c", script]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stderr.readline()  # "capturing run …"
    proc.stderr.close()  # the reader of standard error goes away
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["status"] == "completed" and summary["parts"] == 31, summary
    assert (work / "fin.txt").read_text() == "done\n"


@pytest.mark.parametrize("name", [".agtrace", "runs [1]*"])
def test_a_store_inside_the_workdir_is_left_out_of_its_snapshots(tmp_path, name):
    """`agtrace --store .agtrace run --workdir .`: every snapshot held the store itself (its
    catalog, segments, the shadow repository's objects), each part listed them as changed and
    replay wrote them out. The store is now left out by an anchored exclude pattern, recorded
    in the snapshots' policy (a name with glob characters is matched literally)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("a\n")
    (work / "runs 11").mkdir()  # what `runs [1]*` would match as a glob, not literally
    (work / "runs 11" / "x.txt").write_text("x\n")
    store = work / name
    proc = run_agtrace(["--store", str(store), "run", "--workdir", str(work), "--marker", "^S", "--json", "--",
                        "sh", "-c", "echo S 1; echo b > b.txt; echo S 2; echo c > c.txt"], tmp_path / "unused",
                       check=True)
    run_id = _summary(proc)["run_id"]
    recs = list(Store(store).read(run_id))
    snaps = [r.event for r in recs if isinstance(r.event, SnapshotTaken)]
    changed = [p for s in snaps for p in (*s.added, *s.modified, *s.deleted)]
    assert sorted(set(changed)) == ["a.txt", "b.txt", "c.txt", "runs 11/x.txt"], changed
    pattern = snaps[0].policy["exclude"][-1]
    assert pattern.startswith("/") and pattern.endswith("/") and all(s.policy == snaps[0].policy for s in snaps)
    out = tmp_path / "replayed"
    view = materialize(Store(store), run_id, 2, out)
    assert view.tree_id and sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "c.txt", "runs 11"]


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_diff_and_cat_take_a_name_in_the_quoted_form_they_print(tmp_path):
    """Issue: `diff RUN A B PATH` matched PATH against the raw name only, so a name copied from
    `diff --stat`, `cat --list` or replay's summary in its quoted form (``"bad\\377name"``,
    ``"a\\nb"``, a file in ``"d\\377"/``) gave an empty diff. Now either form selects the file,
    as `cat RUN --part N PATH` already did."""
    script = ("echo STEP one; sleep 0.3; printf z > \"$(printf 'bad\\377name')\"; printf x > \"$(printf 'a\\nb')\"; "
              "mkdir \"$(printf 'd\\377')\"; printf y > \"$(printf 'd\\377/f')\"; echo c > plain.txt; sleep 0.3")
    s, run_id, _ = _raw_run(tmp_path, script)
    stat = run_agtrace(["diff", run_id, "0", "1", "--name-only"], s, check=True).stdout.decode()
    printed = stat.splitlines()
    assert printed == ['"a\\nb"', '"bad\\377name"', '"d\\377/f"', "plain.txt"], printed
    for shown in printed + ['"d\\377"']:  # every name as printed, and a directory in its quoted form
        got = run_agtrace(["diff", run_id, "0", "1", shown, "--name-only"], s, check=True).stdout.decode()
        want = ['"d\\377/f"'] if shown == '"d\\377"' else [shown]
        assert got.splitlines() == want, (shown, got)
    raw = run_agtrace(["diff", run_id, "0", "1", os.fsdecode(b"bad\xffname"), "--json"], s, check=True)
    assert [f["path"] for f in json.loads(raw.stdout)["files"]] == ['"bad\\377name"']  # the bytes still work
    patch = run_agtrace(["diff", run_id, "0", "1", '"a\\nb"'], s, check=True).stdout.decode()
    assert patch.startswith('diff --git "a/a\\nb" "b/a\\nb"\n') and "+x" in patch
    for shown, data in (('"bad\\377name"', b"z"), ('"a\\nb"', b"x"), ('"d\\377/f"', b"y")):
        assert run_agtrace(["cat", run_id, "--part", "1", shown], s, check=True).stdout.rstrip(b"\n") == data
    listed = run_agtrace(["cat", run_id, "--part", "1", "--list", '"d\\377"'], s, check=True).stdout.decode()
    assert listed.splitlines() == ['"d\\377/f"']


@pytest.mark.parametrize("as_json", [True, False])
def test_a_failed_run_keeps_its_exit_code_when_stdout_is_gone(tmp_path, as_json):
    """`agtrace run --json -- false | head -0` exited 0: the summary's BrokenPipeError was taken
    for a reader that stopped early, and the run's failure was lost. The run's code wins now."""
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--workdir",
                             str(tmp_path), "-q", *(["--json"] if as_json else []), "--", "false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "AGTRACE_HOME": str(tmp_path / "store")})
    proc.stdout.close()  # the reader is gone before the run ends
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, err
    assert "Traceback" not in err


def test_output_that_is_not_utf8_is_kept_byte_exact_by_log_export_and_append(tmp_path):
    """Issue: `agtrace run -- printf '\\xff\\xfe\\n'` stored the line as U+FFFD U+FFFD (the
    bytes were lost). Now `log --json` and `export` carry the exact bytes (base64 ``data``),
    text output, the transcript and search show the replaced text, and `log --json | append`
    keeps the bytes and redacts a secret that only the base64 holds."""
    s, wd = tmp_path / "s", tmp_path / "w"
    wd.mkdir()
    proc = run_agtrace(["run", "--workdir", str(wd), "--json", "--", "printf", "x\\377\\376 y\\n"], s)
    assert proc.returncode == 0, proc.stderr.decode()
    run_id = _summary(proc)["run_id"]

    def logged(run: str) -> list[dict]:
        out = run_agtrace(["log", run, "--json"], s, check=True).stdout
        return [json.loads(x) for x in out.splitlines() if json.loads(x)["kind"] == "line_logged"]

    (line,) = logged(run_id)
    assert base64.b64decode(line["data"]) == b"x\xff\xfe y" and line["text"] == "x\ufffd\ufffd y"
    assert "x\ufffd\ufffd y" in run_agtrace(["log", run_id], s, check=True).stdout.decode()
    assert "x\ufffd\ufffd y" in run_agtrace(["replay", run_id, "--transcript"], s, check=True).stdout.decode()
    hits = json.loads(run_agtrace(["search", "--regex", "\ufffd y", "--json"], s, check=True).stdout)
    assert [h["run_id"] for h in (hits["hits"] if isinstance(hits, dict) else hits)] == [run_id]
    run_agtrace(["export", run_id, "-o", str(tmp_path / "e.jsonl")], s, check=True)
    exported = [json.loads(x) for x in (tmp_path / "e.jsonl").read_bytes().splitlines()]
    assert [e["data"] for e in exported if e["kind"] == "line_logged"] == [line["data"]]

    copy = run_agtrace(["new", "--agent", "t"], s, check=True).stdout.decode().strip()
    secret = base64.b64encode(b"\xff AKIAIOSFODNN7EXAMPLE").decode()
    appended = json.dumps(line).encode() + b"\n" + json.dumps(
        {"kind": "line_logged", "stream": "stdout", "text": "\ufffd AKIAIOSFODNN7EXAMPLE", "data": secret}).encode()
    run_agtrace(["append", copy], s, input=appended, check=True)
    kept, hidden = logged(copy)
    assert kept["data"] == line["data"]
    assert base64.b64decode(hidden["data"]) == b"\xff [REDACTED:aws_access_key_id]"
    assert hidden["text"] == "\ufffd [REDACTED:aws_access_key_id]" and hidden["redactions"] == 1
