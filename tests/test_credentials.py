"""Snapshot policy for credential files: left out by name and by content, listed, never hashed,
and the same files left out (the same tree ids) by the local and the sandbox snapshotter; the
content rules' fast search finds what a plain search of each pattern finds."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.capture import InMemorySandboxAPI, RemoteSnapshotter, SnapshotPolicy, Snapshotter
from agtrace.eventlog import credential_reason, credential_rules
from agtrace.eventlog.credential import CONTENT, credential_content

KEY_HEADER = "-----BEGIN OPENSSH " + "PRIVATE KEY-----"
AWS_LINE = "aws_secret_access_key = " + "Ab3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY+/aB3dE5f"
# provider tokens by their shape (rules v3), written in two pieces so this file is not one
GH_TOKEN = "ghp" + "_Zq8Lm2Vx9Kd4Rt6Wy1Hb3Nc5Pf7Gj0Sa2Ue4Io"
OPENAI_KEY = "sk-" + "proj-Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1J3k5L7z9"
HF_TOKEN = "hf" + "_kR4tY7uI9oP2aS5dF8gH1jK3lZ6xC9vB2nM4q"
SLACK_TOKEN = "xoxb" + "-21098765432-10987654321-Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7"

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
    "notes/token.txt": GH_TOKEN + "\n",
    "config/llm.toml": f'[openai]\napi_key = "{OPENAI_KEY}"\n',
    "src/settings.py": f"import os\nHF_TOKEN = os.environ.get('HF_TOKEN', '{HF_TOKEN}')\n",
    "ops/notify.sh": f"curl -H 'Authorization: Bearer {SLACK_TOKEN}' https://slack.example/api\n",
    "notes/accent.txt": "clé" + "ghs" + "_Mn3Bv5Cx7Zl9Kj1Hg3Fd5Sa7Qw9Er1Ty3Ui5O\n",  # bytes, not characters
    # one file per other shape, so the sandbox's git grep is checked on every pattern
    "shapes/github_pat.txt": "github_pat" + "_11AAAAAAA0bbbbbbbbbbbbbbbbbbbbbb\n",
    "shapes/gitlab.txt": "glpat" + "-Xy1Zw2Vu3Ts4Rq5Po6Nm\n",
    "shapes/anthropic.txt": "sk-" + "ant-api03-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8\n",
    "shapes/openai_legacy.txt": "sk-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn" + "T3BlbkFJ" + "Op7Qr8St9Uv0Wx1Yz2Ab\n",
    "shapes/npm.txt": "npm" + "_Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Y\n",
    "shapes/google.txt": "AIza" + "SyAb1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1\n",
    "shapes/stripe.txt": "rk" + "_live_Ab1Cd2Ef3Gh4Ij5Kl\n",
    "src/hub.py": "from huggingface_hub import hf_hub_download\nimport sklearn  # sk-learn-style names\n",
    "docs/aws.md": "AKIAIOSFODNN7EXAMPLE is the example key id of AWS's docs (an id, not a secret)\n",
    "docs/slack.md": "a bot token looks like xoxb-xxxxxxxxxxxx\n",
    "src/vendored.py": "NOT_A_TOKEN = 'xghp" + "_Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0Kk1Ll2'  # a word character before the shape\n",
}
EXPECTED = {
    "id_ed25519": "credential", "certs/server.pem": "credential", ".aws/credentials": "credential",
    ".env.local": "credential", "deploy/secrets.env": "credential", "backup/notes.txt": "credential_content", "deploy/prod.ini": "credential_content",
    ".npmrc": "credential_content", ".docker/config.json": "credential_content", "data/blob.bin": "credential_content",
    "notes/token.txt": "credential_content", "config/llm.toml": "credential_content",
    "src/settings.py": "credential_content", "ops/notify.sh": "credential_content",
    "notes/accent.txt": "credential_content",
    **{f"shapes/{kind}.txt": "credential_content"
       for kind in ("github_pat", "gitlab", "anthropic", "openai_legacy", "npm", "google", "stripe")},
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
    for token in (GH_TOKEN, OPENAI_KEY, HF_TOKEN, SLACK_TOKEN):
        assert token.encode() not in objects
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
    ("token.txt", GH_TOKEN, "credential_content"), ("a.md", f"use {OPENAI_KEY}.", "credential_content"),
    ("b.json", json.dumps({"k": "github_pat" + "_11ABCDEFG0123456789abcdef"}), "credential_content"),
    ("c.py", "KEY = 'sk-" + "ant-api03-" + "q" * 24 + "'", "credential_content"),
    ("d.cfg", "key=" + "AIza" + "Sy" + "B" * 33, "credential_content"),
    ("e.txt", "hf_hub_download(repo_id)", ""), ("f.txt", "ghp_short", ""), ("g.txt", "glpat-short", ""),
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


_PIECES = ["ghp_", "gho_", "github_pat_", "sk-", "ant-", "proj-", "T3BlbkFJ", "xoxb-", "hf_", "npm_",
           "AIza", "sk_live_", "glpat-", "PRIVATE KEY", "-----BEGIN", "RSA ", "aws_secret_access_key",
           " = ", "=", "'", "\n", "_", "-", "x", "é", "\x00"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text("aZ09", min_size=1, max_size=45)), max_size=40))
def test_the_fast_content_search_finds_what_each_pattern_finds(pieces):
    """The markers-then-window search of credential_content against a plain search of every
    CONTENT pattern over the whole bytes (as MULTILINE, the way git grep reads lines)."""
    data = "".join(pieces).encode()
    plain = any(re.search(pattern, data, re.MULTILINE) for pattern in CONTENT)
    assert credential_content("notes.txt", data) == plain


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text("aZ09", min_size=1, max_size=45)), max_size=30),
       st.lists(st.lists(st.sampled_from(["hf_", "ghp_", "x", "_", "aZ", "09", "-", "T3BlbkFJ"]), min_size=1,
                         max_size=6).map("".join).filter(lambda v: len(v) >= 8), max_size=3))
def test_a_secret_value_is_found_whatever_markers_it_holds(pieces, values):
    """With secret values (which may hold or overlap a marker) the search finds what a plain
    search finds: a value anywhere, or a pattern."""
    data = "".join(pieces).encode()
    secrets = tuple(sorted(set(values)))
    plain = any(v.encode() in data for v in secrets) or any(re.search(p, data, re.MULTILINE) for p in CONTENT)
    assert credential_content("notes.txt", data, secrets) == plain


def _wrapped(encoded: str, width: int) -> str:
    return "".join(encoded[i : i + width] + "\n" for i in range(0, len(encoded), width))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=12, max_size=90),
       st.binary(max_size=7), st.integers(2, 30), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_a_file_holding_a_secret_base64_wrapped_at_any_width_is_a_credential(value, lead, groups, cut, newline):
    """The content rules join a file's lines to look for a value's base64 form (when a piece of
    one is there): found at any width that is a multiple of 4 and after any lead; a file with
    only a piece of the form (cut short) is not one."""
    encoded = base64.b64encode(lead + value.encode() + b"\n").decode()
    if cut:
        encoded = encoded[: 4 * -(-len(lead) // 3) + 8]  # the lead and one chunk of the form
    data = _wrapped(encoded, 4 * groups).replace("\n", newline).encode()
    assert credential_content("notes/value.b64", data, (value,)) is not cut
    assert credential_content("notes/value.b64", data, ("an-unrelated-value-1234",)) is False


SECRET = "s3cr3t-" + "deploy-value-42"
ENVIRON = {"DEPLOY_TOKEN": SECRET, "PATH": "/usr/local/bin:/usr/bin", "SHORT_KEY": "abc", "HOME": "/home/agent"}


def test_a_file_holding_a_secret_of_the_environment_is_left_out_locally_and_in_the_sandbox(tmp_path):
    """Only secret-named variables of 8+ characters count (as for the redactor); only how many
    there were is recorded; the sandbox leaves out the same files, giving the same tree."""
    policy = SnapshotPolicy().with_env_secrets(ENVIRON)
    assert policy.secrets == (SECRET,) and SECRET not in repr(policy)
    files = {"deploy.sh": f"curl -H 'X-Token: {SECRET}' https://deploy.example\n",
             "paths.txt": "/usr/local/bin:/usr/bin /home/agent\n", "short.txt": "abc\n", "README.md": "# x\n",
             # `echo "$DEPLOY_TOKEN" | base64` into a Kubernetes Secret, at each alignment
             **{f"k8s/secret{i}.yaml": "kind: Secret\ndata:\n  token: {}\n".format(
                 base64.b64encode(b"x" * i + SECRET.encode() + b"\n").decode()) for i in range(3)},
             "k8s/url.txt": base64.urlsafe_b64encode(b"?" + SECRET.encode()).decode() + "\n",
             "k8s/other.yaml": "data:\n  token: " + base64.b64encode(b"not the secret at all").decode() + "\n",
             # `base64` wraps its lines (at 76 columns; here 16 and 8): the form once the lines are joined
             **{f"k8s/wrapped{i}.b64": _wrapped(base64.b64encode(b"x" * i + SECRET.encode() + b"\n").decode(), 16)
                for i in range(3)},
             "k8s/wrapped8.b64": _wrapped(base64.b64encode(SECRET.encode()).decode(), 8),
             # only a piece of the form (an output cut short): not the secret
             "k8s/half.b64": base64.b64encode(SECRET.encode()).decode()[:16] + "\n"}
    api = InMemorySandboxAPI()
    try:
        _write(Path(api.workdir), files)
        snapshotter = Snapshotter(tmp_path / "local", api.workdir, policy)
        local = snapshotter.take("base")
        remote = RemoteSnapshotter(api, tmp_path / "remote", policy).take("base")
        assert {e.path: e.reason for e in local.excluded} == {
            p: "credential_content" for p in ("deploy.sh", "k8s/secret0.yaml", "k8s/secret1.yaml", "k8s/secret2.yaml",
                                              "k8s/url.txt", "k8s/wrapped0.b64", "k8s/wrapped1.b64",
                                              "k8s/wrapped2.b64", "k8s/wrapped8.b64")}
        assert remote.tree_id == local.tree_id
        assert [(e.path, e.reason, e.size) for e in remote.excluded] == [(e.path, e.reason, e.size) for e in local.excluded]
        assert local.policy["secret_values"] == 1 and SECRET not in json.dumps(local.policy)
        for git_dir in (tmp_path / "local" / "repo.git", tmp_path / "remote" / "repo.git"):
            assert SECRET.encode() not in _objects(git_dir)
            assert not any(SECRET.encode() in f.read_bytes() for f in git_dir.rglob("*") if f.is_file())
        # a file that comes to hold it later leaves the next snapshot
        (Path(api.workdir) / "README.md").write_text(f"token: {SECRET}\n")
        later = snapshotter.take("part 1")
        assert "README.md" in {e.path for e in later.excluded}
    finally:
        api.terminate()


def test_a_sandbox_snapshot_takes_hundreds_of_long_secret_values(tmp_path):
    """The sandbox's script gets the values, their forms and their base64 chunks as pattern files:
    as environment variables 200 values of 150 characters (235 KB of chunks) made the
    script's exec fail (E2BIG: an environment string is limited to 128 KiB)."""
    secrets = {f"SVC{i}_TOKEN": hashlib.sha512(f"{i}".encode()).hexdigest() + f"-{i:03d}-Zq9xW2vB7nM4kL1p+/"
               for i in range(200)}
    policy = SnapshotPolicy().with_env_secrets(secrets)
    value = secrets["SVC41_TOKEN"]
    files = {"README.md": "# x\n", "deploy.sh": f"TOKEN={value}\n",
             "k8s/key.b64": _wrapped(base64.b64encode(b"key: " + value.encode()).decode(), 76)}
    api = InMemorySandboxAPI()
    try:
        _write(Path(api.workdir), files)
        local = Snapshotter(tmp_path / "local", api.workdir, policy).take("base")
        remote = RemoteSnapshotter(api, tmp_path / "remote", policy).take("base")
        assert {e.path for e in remote.excluded} == {"deploy.sh", "k8s/key.b64"}
        assert remote.tree_id == local.tree_id
    finally:
        api.terminate()
