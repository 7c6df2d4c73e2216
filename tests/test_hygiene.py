"""Safety and hygiene through the CLI, as a user types it (issue 13, item 4): read-only commands
refuse a missing store, plumbing runs left open show as crashed, a bad workdir or command creates
no run, `replay --force` replaces only what a replay wrote."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_agtrace


def _json(proc):
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


@pytest.mark.parametrize("args", [["ls"], ["verify"], ["show", "01M8"], ["log", "01M8"], ["metrics", "01M8"],
                                  ["scores", "01M8"], ["reindex"], ["append", "01M8"],
                                  # every other command that reads or changes existing runs
                                  ["report", "01M8"], ["diff", "01M8", "1", "2"], ["replay", "01M8", "--part", "1"],
                                  ["cat", "01M8", "x"], ["compare", "01M8"], ["search", "x"], ["gc", "--dry-run"],
                                  ["rm", "01M8", "--yes"], ["tag", "01M8", "a=b"], ["note", "01M8", "hi"],
                                  ["cp", "01M8"], ["close", "01M8", "--status", "completed"], ["view", "--port", "0"],
                                  ["rescore", "--all", "--name", "n", "--cmd", "true"]])
def test_commands_that_need_a_store_refuse_a_missing_one_and_create_nothing(tmp_path, args):
    typo = tmp_path / "typo"
    proc = run_agtrace(args, typo, input=b"")
    assert proc.returncode == 2
    assert f"no store at {typo}" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert not typo.exists()


def test_a_directory_that_is_not_a_store_is_refused(tmp_path):
    somewhere = tmp_path / "home"
    somewhere.mkdir()
    (somewhere / "notes.txt").write_text("mine\n")
    proc = run_agtrace(["ls"], somewhere)
    assert proc.returncode == 2 and "is not an agtrace store" in proc.stderr.decode()
    assert sorted(p.name for p in somewhere.iterdir()) == ["notes.txt"]


def test_commands_that_make_runs_still_create_the_store(tmp_path):
    store = tmp_path / "new-store"
    run_id = _json(run_agtrace(["new", "--agent", "mine", "--json"], store))["id"]
    assert (store / "runs" / run_id).is_dir()
    assert [r["id"] for r in _json(run_agtrace(["ls", "--json"], store))] == [run_id]


def test_a_new_run_never_closed_is_open_not_running_nor_crashed_and_close_ends_it(tmp_path):
    """A run made by `agtrace new` showed `crashed` until it was closed, though nothing had
    crashed: it is fed by `agtrace append`, whose writer is gone between two appends. It is
    `open`, with the commands that go on in its reason; a captured run that stops is still
    `crashed` (tests/test_capture.py)."""
    store = tmp_path / "store"
    run_id = _json(run_agtrace(["new", "--agent", "mine", "--json"], store))["id"]
    assert _json(run_agtrace(["show", run_id, "--json"], store))["status"] == "open"  # before any append
    line = b'{"kind":"message_added","role":"assistant","text":"hi","part":1}\n'
    run_agtrace(["append", run_id], store, input=line, check=True)
    [row] = _json(run_agtrace(["ls", "--json"], store))
    assert row["status"] == "open"
    assert f"`agtrace append {run_id}` adds events" in row["reason"]
    assert f"`agtrace close {run_id} --status" in row["reason"]
    assert [r["id"] for r in _json(run_agtrace(["ls", "--status", "open", "--json"], store))] == [run_id]
    assert _json(run_agtrace(["ls", "--status", "running", "--json"], store)) == []
    assert _json(run_agtrace(["ls", "--status", "crashed", "--json"], store)) == []
    shown = run_agtrace(["show", run_id], store, check=True).stdout.decode()
    assert "status:        open" in shown
    run_agtrace(["close", run_id, "--status", "completed"], store, check=True)
    assert _json(run_agtrace(["show", run_id, "--json"], store))["status"] == "completed"


def test_a_run_being_appended_to_is_running(tmp_path):
    store = tmp_path / "store"
    run_id = _json(run_agtrace(["new", "--json"], store))["id"]
    import os
    import sys

    env = {**os.environ, "AGTRACE_HOME": str(store)}
    appender = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "append", run_id],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        appender.stdin.write(b'{"kind":"message_added","role":"user","text":"go"}\n')
        appender.stdin.flush()
        for _ in range(200):  # until the appender holds the lock (it takes it before reading stdin)
            row = _json(run_agtrace(["show", run_id, "--json"], store))
            if row["status"] == "running":
                break
        assert row["status"] == "running"
    finally:
        appender.stdin.close()
        appender.wait(30)
    assert _json(run_agtrace(["show", run_id, "--json"], store))["status"] == "open"


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A store holding one run captured through the CLI (the scripted demo agent)."""
    root = tmp_path_factory.mktemp("demo")
    store = root / "store"
    summary = _json(run_agtrace(["demo", "--fast", "--json", "--workdir", str(root / "work")], store))
    return {"path": store, "id": summary["run_id"], "parts": summary["parts"]}


def _copy(demo_store, tmp_path):
    import shutil

    dest = tmp_path / "store"
    shutil.copytree(demo_store["path"], dest)
    return dest


def _real_repository(path):
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "tracked.txt").write_text("committed\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"],
                   check=True)
    (path / "untracked.txt").write_text("not committed anywhere\n")
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_replay_force_refuses_a_directory_no_replay_wrote_and_names_what_it_holds(demo_store, tmp_path):
    store = _copy(demo_store, tmp_path)
    repo = tmp_path / "repo"
    before = _real_repository(repo)
    proc = run_agtrace(["replay", demo_store["id"][:10], "--part", "3", "--out", str(repo), "--force"], store)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert f"refusing to replace {repo}" in err and ".git/ (a git repository)" in err and "untracked.txt" in err
    after = {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
    assert after == before


def test_replay_force_replaces_what_an_earlier_replay_wrote_and_nothing_else(demo_store, tmp_path):
    import shutil

    store = _copy(demo_store, tmp_path)
    out = tmp_path / "out"
    run_id = demo_store["id"]
    run_agtrace(["replay", run_id, "--part", "3", "--out", str(out)], store, check=True)
    again = run_agtrace(["replay", run_id, "--part", "5", "--out", str(out)], store)
    assert again.returncode != 0 and "--force" in again.stderr.decode()  # without --force: refused
    (out / "edited-since.txt").write_text("x\n")
    switched = _json(run_agtrace(["replay", run_id, "--part", "5", "--out", str(out), "--force", "--json"], store))
    assert switched["how"] == "switch" and not (out / "edited-since.txt").exists()
    other = _copy(demo_store, tmp_path / "other")  # another store did not write `out`: refused
    refused = run_agtrace(["replay", run_id, "--part", "last", "--out", str(out), "--force"], other)
    assert refused.returncode != 0 and "refusing to replace" in refused.stderr.decode()
    shutil.rmtree(out)  # a new directory at the same path is not the one the replay wrote
    _real_repository(out)
    refused = run_agtrace(["replay", run_id, "--part", "last", "--out", str(out), "--force"], store)
    assert refused.returncode != 0 and ".git/ (a git repository)" in refused.stderr.decode()
    assert (out / "untracked.txt").exists() and (out / ".git").is_dir()


@pytest.mark.parametrize("case", ["missing-workdir", "file-workdir", "unknown-command", "not-executable"])
def test_a_bad_workdir_or_command_creates_no_run(tmp_path, case):
    store = tmp_path / "store"
    run_agtrace(["new", "--json"], store, check=True)  # the store holds one other run
    work = tmp_path / "work"
    work.mkdir()
    (work / "script.sh").write_text("echo hi\n")  # not executable
    (tmp_path / "a-file").write_text("x\n")
    workdir, command = {
        "missing-workdir": (tmp_path / "nope", ["echo", "hi"]),
        "file-workdir": (tmp_path / "a-file", ["echo", "hi"]),
        "unknown-command": (work, ["no-such-agent-xyz", "--go"]),
        "not-executable": (work, ["./script.sh"]),
    }[case]
    proc = run_agtrace(["run", "--workdir", str(workdir), "--", *command], store)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err  # bad usage, as the exit-code table says
    assert "workdir" in err or "cannot run" in err
    if case == "not-executable":  # looked up in the workdir, not where agtrace was started
        assert f"{work / 'script.sh'} is not executable" in err and "relative to the workdir" in err
    assert len(_json(run_agtrace(["ls", "--json"], store))) == 1
    assert len(list((store / "runs").iterdir())) == 1
