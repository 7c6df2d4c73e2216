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
                                  ["scores", "01M8"], ["reindex"], ["append", "01M8"]])
def test_commands_that_need_a_store_refuse_a_missing_one_and_create_nothing(tmp_path, args):
    typo = tmp_path / "typo"
    proc = run_agtrace(args, typo, input=b"")
    assert proc.returncode != 0
    assert f"no store at {typo}" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert not typo.exists()


def test_a_directory_that_is_not_a_store_is_refused(tmp_path):
    somewhere = tmp_path / "home"
    somewhere.mkdir()
    (somewhere / "notes.txt").write_text("mine\n")
    proc = run_agtrace(["ls"], somewhere)
    assert proc.returncode != 0 and "is not an agtrace store" in proc.stderr.decode()
    assert sorted(p.name for p in somewhere.iterdir()) == ["notes.txt"]


def test_commands_that_make_runs_still_create_the_store(tmp_path):
    store = tmp_path / "new-store"
    run_id = _json(run_agtrace(["new", "--agent", "mine", "--json"], store))["id"]
    assert (store / "runs" / run_id).is_dir()
    assert [r["id"] for r in _json(run_agtrace(["ls", "--json"], store))] == [run_id]


def test_a_new_run_never_closed_is_crashed_not_running_and_close_ends_it(tmp_path):
    store = tmp_path / "store"
    run_id = _json(run_agtrace(["new", "--agent", "mine", "--json"], store))["id"]
    line = b'{"kind":"message_added","role":"assistant","text":"hi","part":1}\n'
    run_agtrace(["append", run_id], store, input=line, check=True)
    [row] = _json(run_agtrace(["ls", "--json"], store))
    assert row["status"] == "crashed"
    assert f"agtrace close {run_id} --status" in row["reason"]
    assert _json(run_agtrace(["ls", "--status", "running", "--json"], store)) == []
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
    assert _json(run_agtrace(["show", run_id, "--json"], store))["status"] == "crashed"
