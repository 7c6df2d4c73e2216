"""`verify --secrets`: secrets a store already holds, found with today's rules (never printed).

A run keeps what the redaction and credential rules of its day, and the secrets of its
environment, let through: a key that was not in the environment when the run was captured is in
its events, outputs and files. These tests make such runs with the real Recorder (the key absent
from the environment at capture, or credential files kept by a policy that allows them), then run
the real CLI with the key in the environment.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap

import pytest

from agtrace.capture import Recorder, SnapshotPolicy
from agtrace.eventlog import Store

from .conftest import run_agtrace

KEY = "Zq8vN3xPq7RtY2mK9sLw4HbVf6JdCeUa1XoGi5Hy"  # no known shape: only the environment names it
GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def _without_key(monkeypatch) -> None:
    for name in [n for n in os.environ if n.endswith(("_KEY", "_TOKEN", "_SECRET"))]:
        monkeypatch.delenv(name, raising=False)


def _leaky_run(store: Store, work) -> str:
    """A run recorded where ``KEY`` was not in the environment: a command, a big output (a blob)
    with the key's base64 wrapped at 20 columns, and a file holding the key."""
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "README.md").write_text("a project\n")
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(KEY.encode()).decode(), 20))
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60) as rec:
        call = rec.tool_call("shell", command=f"./deploy.sh {KEY}")
        rec.tool_result(call, output="ok\n", exit_code=0)
        call = rec.tool_call("shell", command="cat big.log")
        (work / "notes.txt").write_text(f"the service key: {KEY}\n")
        rec.tool_result(call, output="x" * 70_000 + "\n" + wrapped + "\n", exit_code=0)
        return rec.run_id


def test_verify_secrets_finds_a_key_stored_where_it_was_not_in_the_environment(tmp_path, monkeypatch):
    _without_key(monkeypatch)
    store = Store(tmp_path / "store")
    run_id = _leaky_run(store, tmp_path / "work")
    store.close()
    clean = run_agtrace(["verify", "--secrets"], tmp_path / "store")
    assert clean.returncode == 0 and b"no stored secret found" in clean.stdout, clean.stderr.decode()

    env = {"SERVICE_API_KEY": KEY}
    proc = run_agtrace(["verify", run_id, "--secrets"], tmp_path / "store", env=env)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in out
    assert KEY not in out and base64.b64encode(KEY.encode()).decode()[:12] not in out  # never printed
    assert f"agtrace rm {run_id}" in out and "import its source again" in out
    report = json.loads(run_agtrace(["verify", run_id, "--secrets", "--json"], tmp_path / "store", env=env).stdout)
    places = {(s["where"], s["kind"], s["path"]) for s in report["secrets"]}
    assert ("event", "tool_called", "") in places  # the command
    assert ("blob", "tool_returned", "") in places  # the big output, base64 wrapped over lines
    assert ("file", "", "notes.txt") in places
    assert all(s["found"] for s in report["secrets"]) and KEY not in json.dumps(report)
    assert {tuple(s["found"]) for s in report["secrets"] if s["where"] != "file"} == {("env:SERVICE_API_KEY",)}
    notes = next(s for s in report["secrets"] if s["path"] == "notes.txt")
    assert notes["part"] == 2 and notes["found"] == ["a secret of this environment (in some form)"]
    # the check only reads: nothing changed, and the key is still there to be found
    again = run_agtrace(["verify", "--secrets", "--json"], tmp_path / "store", env=env)
    assert again.returncode == 1 and json.loads(again.stdout)["secrets"] == report["secrets"]


def test_verify_secrets_names_credential_files_a_policy_kept(tmp_path, monkeypatch):
    """A capture that allowed credential files (`SnapshotPolicy(credentials=False)`) recorded
    them; the sweep names them by kind: by name, by a token's shape."""
    _without_key(monkeypatch)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".env").write_text("DEBUG=1\n")
    (work / "src").mkdir()
    (work / "src" / "client.py").write_text(f"TOKEN = '{GH_TOKEN}'\n")
    (work / "src" / "ok.py").write_text("print('fine')\n")
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60, policy=SnapshotPolicy(credentials=False)) as rec:
        call = rec.tool_call("shell", command="true")
        (work / "src" / "ok.py").write_text("print('still fine')\n")
        rec.tool_result(call, output="", exit_code=0)
        run_id = rec.run_id
    store.close()
    proc = run_agtrace(["verify", "--secrets", "--json"], tmp_path / "store")
    assert proc.returncode == 1, proc.stderr.decode()
    found = {s["path"]: (s["found"], s["part"]) for s in json.loads(proc.stdout)["secrets"]}
    assert found == {".env": (["a credential file by name"], 0), "src/client.py": (["a token or key by its shape"], 0)}
    said = run_agtrace(["verify", run_id, "--secrets"], tmp_path / "store").stderr.decode()
    assert "file src/client.py, first in the tree of part 0: a token or key by its shape" in said
    assert GH_TOKEN not in said


def test_verify_secrets_of_a_damaged_run_reports_the_damage_and_what_it_could_read(tmp_path, monkeypatch):
    _without_key(monkeypatch)
    store = Store(tmp_path / "store")
    run_id = _leaky_run(store, tmp_path / "work")
    segment = next((store.run_dir(run_id) / "events").glob("*.seg"))
    store.close()
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    env = {"SERVICE_API_KEY": KEY}
    proc = run_agtrace(["verify", "--secrets", "--json"], tmp_path / "store", env=env)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["problems"] and "secrets" in report and KEY not in proc.stdout.decode()
    said = run_agtrace(["verify", "--secrets"], tmp_path / "store", env=env)
    assert said.returncode == 1 and b"checksum mismatch" in said.stderr
    assert b"in what could be read" in said.stdout or b"stored secret(s)" in said.stderr


@pytest.mark.parametrize("args", [["--secrets"], ["--secrets", "--json"]])
def test_verify_secrets_of_an_empty_store_finds_nothing(tmp_path, args):
    Store(tmp_path / "store").close()
    proc = run_agtrace(["verify", *args], tmp_path / "store")
    assert proc.returncode == 0, proc.stderr.decode()


def test_verify_secrets_quotes_a_hostile_file_name(tmp_path, monkeypatch):
    """A recorded file's name is the agent's: one with a terminal escape and a line break is
    printed quoted, as every command prints names, never raw."""
    _without_key(monkeypatch)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    hostile = "evil\x1b[2J\nname.txt"
    (work / hostile).write_text(f"{GH_TOKEN}\n")
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60, policy=SnapshotPolicy(credentials=False)) as rec:
        call = rec.tool_call("shell", command="true")
        rec.tool_result(call, output="", exit_code=0)
    store.close()
    proc = run_agtrace(["verify", "--secrets"], tmp_path / "store")
    said = proc.stderr.decode()
    assert proc.returncode == 1 and "\x1b" not in said and "evil\n" not in said, said
    assert json.loads(run_agtrace(["verify", "--secrets", "--json"], tmp_path / "store").stdout)["secrets"][0]["path"] == hostile


def test_the_sweep_finds_the_same_places_whatever_the_batch_of_events(tmp_path, monkeypatch):
    """Events are screened in blocks (`_BATCH`); a secret in any block, first or last line of
    one, is found the same."""
    from agtrace.replay import find_stored_secrets, stored_secrets

    _without_key(monkeypatch)
    store = Store(tmp_path / "store")
    run_id = _leaky_run(store, tmp_path / "work")
    env = {"SERVICE_API_KEY": KEY}
    whole = find_stored_secrets(store, [run_id], env)
    for size in (1, 2, 3, 5):
        monkeypatch.setattr(stored_secrets, "_BATCH", size)
        assert find_stored_secrets(store, [run_id], env) == whole, size
    assert {s.where for s in whole} == {"event", "blob", "file"}
    store.close()
