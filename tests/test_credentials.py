"""Snapshot policy for credential files: left out by name and by content, listed, never hashed,
and the same files left out (the same tree ids) by the local and the sandbox snapshotter."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agtrace.capture import InMemorySandboxAPI, RemoteSnapshotter, SnapshotPolicy, Snapshotter
from agtrace.eventlog import credential_reason, credential_rules

KEY_HEADER = "-----BEGIN OPENSSH " + "PRIVATE KEY-----"
AWS_LINE = "aws_secret_access_key = " + "Ab3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY+/aB3dE5f"

FILES = {
    "README.md": "# project\n",
    "src/app.py": "import boto3\nboto3.client('s3', aws_secret_access_key=os.environ['K'])\n",
    "id_ed25519": "key\n",
    "id_ed25519.pub": "ssh-ed25519 AAAA public\n",
    "certs/server.pem": "cert\n",
    ".aws/credentials": "[default]\n",
    ".env.local": "X=1\n",
    "deploy/secrets.env": "DB_PASSWORD=hunter2hunter2\n",  # a dotenv file by another name (rules v2)
    "deploy/envs.py": "ENV = 'x'\n",
    "backup/notes.txt": f"old key:\n{KEY_HEADER}\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    "deploy/prod.ini": f"[prod]\n{AWS_LINE}\n",
    ".npmrc": "//registry.example/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789\n",
    "web/.npmrc": "save-exact=true\n",
    ".docker/config.json": json.dumps({"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}}),
    "data/blob.bin": "\x00\x01" + KEY_HEADER + "\x00",
}
EXPECTED = {
    "id_ed25519": "credential", "certs/server.pem": "credential", ".aws/credentials": "credential",
    ".env.local": "credential", "deploy/secrets.env": "credential", "backup/notes.txt": "credential_content", "deploy/prod.ini": "credential_content",
    ".npmrc": "credential_content", ".docker/config.json": "credential_content", "data/blob.bin": "credential_content",
}


def _write(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _objects(git_dir) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"],
                          capture_output=True, check=True).stdout


def test_credential_files_are_left_out_listed_and_never_hashed(tmp_path):
    work = tmp_path / "work"
    _write(work, FILES)
    snap = Snapshotter(tmp_path / "run", work)
    event = snap.take("base")
    assert {e.path: e.reason for e in event.excluded} == EXPECTED
    assert set(event.added) == set(FILES) - set(EXPECTED)
    assert event.policy["credentials"] == credential_rules()["version"]
    objects = _objects(tmp_path / "run" / "repo.git")
    assert KEY_HEADER.encode() not in objects and b"_authToken" not in objects and b"dXNlcjpwYXNz" not in objects
    # a recorded file that later holds a key leaves the snapshot; a listed one that loses it comes back
    (work / "README.md").write_text(f"oops\n{KEY_HEADER}\n")
    (work / "backup/notes.txt").write_text("nothing secret now\n")
    later = snap.take("part 1")
    assert "README.md" in later.deleted and "backup/notes.txt" in later.added
    assert {e.path: e.reason for e in later.excluded}["README.md"] == "credential_content"
    assert KEY_HEADER.encode() not in _objects(tmp_path / "run" / "repo.git")


def test_a_policy_without_credentials_records_them(tmp_path):
    work = tmp_path / "work"
    _write(work, FILES)
    event = Snapshotter(tmp_path / "run", work, SnapshotPolicy(credentials=False)).take("base")
    assert not event.excluded and set(event.added) == set(FILES)
    assert "credentials" not in event.policy


@pytest.mark.parametrize(("path", "text", "reason"), [
    ("id_rsa", "x", "credential"), ("a/b/credentials.json", "{}", "credential"),
    ("home/.aws/credentials", "", "credential"), ("x/.netrc", "", "credential"),
    ("client_secret_123.apps.json", "{}", "credential"), ("notes.md", KEY_HEADER, "credential_content"),
    ("notes.md", "a private key is a secret", ""), (".pypirc", "[pypi]\npassword = x\n", "credential_content"),
    (".pypirc", "[distutils]\nindex-servers = pypi\n", ""), ("id_rsa.pub", "ssh-rsa AAAA", ""),
])
def test_credential_reason(tmp_path, path, text, reason):
    full = tmp_path / "f"
    full.write_text(text)
    assert credential_reason(path, full) == reason


def test_the_sandbox_leaves_out_the_same_files_with_the_same_tree(tmp_path):
    api = InMemorySandboxAPI()
    try:
        _write(Path(api.workdir), FILES)
        remote = RemoteSnapshotter(api, tmp_path / "remote").take("base")
        local = Snapshotter(tmp_path / "local", api.workdir).take("base")
        assert remote.tree_id == local.tree_id
        assert {e.path: (e.reason, e.size) for e in remote.excluded} == {
            e.path: (e.reason, e.size) for e in local.excluded}
        assert KEY_HEADER.encode() not in _objects(tmp_path / "remote" / "repo.git")
    finally:
        api.terminate()
