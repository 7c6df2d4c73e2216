"""What a remote holds and how a store is kept small, through the CLI: push/pull counts that
say what happened, `ls --remote`, `pull PREFIX`, `rm`, `gc`, retention (issue 13, items 4, 8)."""

from __future__ import annotations

import json

import pytest

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import RunStarted, Store
from tests.conftest import run_agtrace
from tests.test_remote import FileBackend, S3Backend, moto_server  # noqa: F401 - the fixture

BIG = "same output, long enough to be a blob " * 5000


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path):
    if request.param == "file":
        return FileBackend(tmp_path / "remote")
    import uuid

    return S3Backend(request.getfixturevalue("moto_server"), f"agtrace-{uuid.uuid4().hex[:12]}")


def _json(proc):
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def _recorded(store: Store, work, n: int) -> list[str]:
    """``n`` captured runs whose tool outputs are the same blob."""
    ids = []
    for i in range(n):
        (work / "a.txt").write_text(f"{i}\n")
        with Recorder(store, workdir=work, agent="t", model="m", task=f"task {i}") as rec:
            call = rec.tool_call("shell", {"cmd": "cat big"}, command="cat big")
            (work / "a.txt").write_text(f"{i} edited\n")
            rec.tool_result(call, output=BIG, exit_code=0)
            ids.append(rec.run_id)
    return ids


@pytest.fixture
def home(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "home"
    store = Store(path)
    ids = _recorded(store, work, 3)
    store.close()
    return {"path": path, "ids": ids, "work": work}


def test_push_to_an_empty_remote_reports_nothing_as_already_there(backend, home):
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    store = Store(home["path"])
    live = store.create_run(RunStarted(agent="live"))  # its open segment is not pushed
    try:
        proc = run_agtrace(["push", "--all"], home["path"], env=env)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, err
        assert "0 already there" in out and "2 blob(s) another run of this push had already sent" in out
        assert f"skipped 1 open segment(s) (runs {live.run_id}" in err
        report = _json(run_agtrace(["push", "--all", "--json"], home["path"], env=env))
    finally:
        store.close_writer(live)
        store.close()
    assert report["uploaded"] == 0 and report["existed"] > 0 and report["shared"] == 2
    assert report["skipped"] == 1 and report["skipped_runs"] == [live.run_id]
    first_objects = len(backend.objects())
    assert first_objects == report["existed"]  # every object counted once
