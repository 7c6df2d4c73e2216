"""Secrets never stored: a corpus of planted secrets goes in through every door, none comes out.

The corpus (``tests/secret_corpus.py``) plants secrets in an agent's output (stdout, stderr,
files printed with ``cat``, part titles), its environment, its argv, the ``--task``, credential
files of the workdir, imported Claude and Codex sessions (real samples with secrets added to
their texts), and ``agtrace new``/``append``/``close``. They are captured (locally, from a saved
Codex stream, and in the in-memory sandbox), imported, appended, then pushed to a ``file://``
remote and to S3 (a moto server on 127.0.0.1). Every byte of the store and of both remotes is
then scanned: segment frames decompressed, blobs, ``catalog.db`` and its WAL, the shadow
repositories' objects and packs (through git), bundles (unbundled), manifests.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import string
import tempfile
import uuid
from pathlib import Path

import pytest

from agtrace.capture import InMemorySandboxAPI, run_agent_in_sandbox, upload_tree
from agtrace.eventlog import (
    LineLogged,
    MessageAdded,
    PartEnded,
    RawRecorded,
    Record,
    RunEnded,
    SnapshotTaken,
    Store,
    ToolReturned,
    base64_chunks,
    base64_forms,
    record_to_json,
)

from .conftest import FIXTURES, run_agtrace
from .secret_corpus import ALNUM, Corpus, leaks, tree_views
from .test_remote import REGION, moto_server  # noqa: F401 - the session's S3 server

UPPER = string.ascii_uppercase + string.digits


def _workdir(c: Corpus, work: Path, keys: Path) -> None:
    """Credential files (left out by name or by content) beside ordinary ones."""
    files = {
        "README.md": "# service\n", "src/app.py": "import os\nDB = os.environ['DATABASE_URL']\n",
        "id_rsa": c.ssh_key("id_rsa (by name)", "file", keys),
        "keys/backup.txt": c.rsa_key("PEM in backup.txt (by content)", "file"),
        "notes/old_key.txt": c.ssh_key("key never printed (by content)", "file", keys),
        "credentials.json": json.dumps({"installed": {"client_id": "123.apps.example", "client_secret":
                                        c.token("credentials.json client_secret", "file", "GOCSPX-", 28)}}),
        ".aws/credentials": "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n".format(
            c.plant("AWS key id", "file", "AKIA" + c.word(16, UPPER)),
            c.token("AWS secret key", "file", "", 40, ALNUM + "/+")),
        ".netrc": f"machine api.example.com\n  login bob\n  password {c.password('.netrc password', 'file')}\n",
        ".npmrc": f"//registry.example/:_authToken={c.token('.npmrc token', 'file', 'npm_', 36)}\n",
        "deploy/settings.ini": "[prod]\nregion = eu\naws_secret_access_key = {}\n".format(
            c.token("aws secret in settings.ini (by content)", "file", "", 40, ALNUM + "/+")),
        "gcp.json": json.dumps({"type": "service_account", "client_email": "svc@project.example",
                                "private_key": c.rsa_key("GCP service account key (by content)", "file")}),
        ".env": f"DB_PASSWORD={c.password('.env value', 'file')}\n",
        ".git-credentials": f"https://bob:{c.password('.git-credentials password', 'file')}@git.example.com\n",
        "secrets.json": json.dumps({"api_key": c.password("secrets.json api_key", "file")}),
        # provider tokens in files of no credential name, never printed (by content, rules v3)
        "notes/token.txt": c.token("GitHub token in token.txt (by content)", "file", "ghp_", 36) + "\n",
        "config/llm.toml": '[openai]\napi_key = "{}"\n'.format(
            c.token("OpenAI key in llm.toml (by content)", "file", "sk-proj-", 40)),
        "src/hub.py": "HF_TOKEN = '{}'\n".format(c.token("Hugging Face token in hub.py (by content)", "file", "hf_", 34)),
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)


AGENT = r"""
echo "args: $*"
echo "connecting to postgres://app:{pg_out}@db.internal:5432/prod"
echo "retrying with postgres://svc:{pg_err}@db:5432/x" >&2
echo "token is $AGT_API_TOKEN; session $SESSION_JWT; db at $DATABASE_URL; key $OPENAI_API_KEY"
echo "deploy with $AGT_API_TOKEN" > notes/deploy.txt
printf 'kind: Secret\ndata:\n  value: %s\n' "$(printf '%s' "$AGT_API_TOKEN" | base64 -w0)" > notes/secret.yaml
printf '%s' "$AGT_API_TOKEN" | base64 -w0; echo
echo "export OPENAI_API_KEY=$OPENAI_API_KEY" | base64
echo "key: $OPENAI_API_KEY" | base64 > notes/key.b64
echo "PART environment"
cat id_rsa
cat keys/backup.txt
echo "PART keys"
cat credentials.json; echo; cat .aws/credentials; cat .netrc; cat .npmrc; cat deploy/settings.ini
cat gcp.json; echo; cat .env; cat .git-credentials; cat secrets.json; echo
echo "PART files"
echo "pushing with {gh} and Authorization: Bearer {bearer}"
echo "slack {slack} hf {hf} stripe {stripe}"
echo "config: password={labelled}"
printf 'bytes \377\376 then {gh_bytes}\377 (not UTF-8)\n'
printf '\377 password={pw_bytes}\n' >&2
echo "an edit" >> README.md
echo "PART done client_secret={title}"
echo "PART with a long title that goes on and on and on and on and on and on {gh_cut}"
"""


def _agent(c: Corpus, path: Path) -> None:
    path.write_text(AGENT.format(
        pg_out=c.password("URL password in stdout", "output"),
        pg_err=c.password("URL password in stderr", "output"),
        gh=c.token("GitHub token in output", "output", "ghp_", 36),
        bearer=c.token("bearer token in output", "output", "", 32),
        slack=c.token("Slack token", "output", "xoxb-", 30),
        hf=c.token("Hugging Face token", "output", "hf_", 34),
        stripe=c.token("Stripe key", "output", "sk_live_", 24),
        labelled=c.password("password= in output", "output"),
        gh_bytes=c.token("GitHub token beside bytes that are not UTF-8", "output", "ghp_", 36),
        pw_bytes=c.password("password= on stderr beside a byte that is not UTF-8", "output"),
        title=c.password("client_secret in a part title", "output"),
        gh_cut=c.token("GitHub token cut in a title", "output", "ghp_", 36),
    ))


def _codex_stream(c: Corpus, path: Path) -> None:
    """A saved `codex exec --json` stream (real sample) with secrets in its command output and message."""
    lines = (FIXTURES / "codex-exec-json" / "agentcmd_stream-output-2.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        rec = json.loads(line)
        item = rec.get("item", {})
        if item.get("type") == "command_execution" and item.get("aggregated_output"):
            pw = c.password("URL password in a live Codex stream", "output")
            item["aggregated_output"] += f"DATABASE_URL=postgres://u:{pw}@h/db\n"
        if item.get("type") == "agent_message":
            item["text"] += " key: " + c.token("Anthropic key in a live Codex stream", "output", "sk-ant-api03-", 40)
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")


def _claude_session(c: Corpus, path: Path, keys: Path) -> None:
    lines = (FIXTURES / "claude-code" / "daaain_representative_messages.jsonl").read_text().splitlines()
    gh = c.token("GitHub token in a Claude session", "import", "gho_", 36)
    pw = c.password("password= in a Claude session", "import")
    pem = c.ssh_key("private key in a Claude tool result", "import", keys)
    out = []
    for line in lines:
        rec = json.loads(line)
        content = rec.get("message", {}).get("content")
        if rec["type"] == "user" and isinstance(content, list):
            for block in content:
                if block.get("type") == "text":
                    block["text"] += f" my token is {gh} and password={pw}"
                if block.get("type") == "tool_result" and rec.get("toolUseResult"):
                    block["content"] = f"$ cat ~/.ssh/id_ed25519\n{pem}"
                    rec["toolUseResult"] = block["content"]
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")


def _codex_rollout(c: Corpus, path: Path) -> None:
    name = "localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
    text = (FIXTURES / "codex-rollout" / name).read_text()
    sk = c.token("OpenAI key in a Codex rollout", "import", "sk-", 48)
    jwt = c.jwt("JWT in a Codex rollout", "import")
    pw = c.password("URL password in a Codex rollout", "import")
    text = text.replace("[REDACTED_MESSAGE len=86 sha=2239bcba]", f"export OPENAI_API_KEY={sk}")
    text = text.replace("[REDACTED_TEXT len=86 sha=2239bcba]", f"export OPENAI_API_KEY={sk}")
    args = json.dumps({"cmd": f"curl -H 'Authorization: Bearer {jwt}' https://u:{pw}@api.example.com"})
    text = text.replace('"[REDACTED_ARGUMENTS len=456 sha=df6be51a]"', json.dumps(args))
    assert sk in text and jwt in text
    path.write_text(text)


def _appended(c: Corpus) -> bytes:
    bearer = c.token("bearer in an appended message", "append", "", 30)
    jwt = c.jwt("JWT in an appended message", "append")
    raw = c.password("secret in appended raw bytes", "append")
    line = c.password("secret in an appended line's bytes", "append")
    url = c.password("URL password in appended tool output", "append")
    title = c.password("api_key in an appended part title", "append")
    events = [
        (MessageAdded(role="user", text=f"Authorization: Bearer {bearer} then {jwt}"), 1),
        (RawRecorded(source="x", data=b"\xff\xfe password=" + raw.encode() + b"\n"), 1),
        (LineLogged(stream="stdout", text="\ufffd", data=b"\xff password=" + line.encode()), 1),
        (ToolReturned(call_id="c1", tool="shell", output=f"psql postgres://u:{url}@h/db"), 1),
        (PartEnded(part_kind="tool", title=f"psql api_key={title}"), 1),
    ]
    return b"".join(record_to_json(Record(seq=0, ts=i + 1, part=p, event=e)) + b"\n"
                    for i, (e, p) in enumerate(events))


def _s3(server: dict) -> tuple[str, dict, callable]:
    bucket = f"secrets-{uuid.uuid4().hex[:10]}"
    server["client"].create_bucket(Bucket=bucket)
    key, secret = server["admin"]
    env = {"AGTRACE_S3_ENDPOINT": server["endpoint"], "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}

    def download(dest: Path) -> Path:
        for page in server["client"].get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", ()):
                target = dest / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(server["client"].get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        return dest

    return f"s3://{bucket}/agtrace", env, download


@pytest.mark.slow
def test_no_planted_secret_reaches_any_byte_of_the_store_or_a_remote(tmp_path, moto_server):  # noqa: F811
    c = Corpus(random.Random(12))
    work, keys, store_path = tmp_path / "work", tmp_path / "keys", tmp_path / "store"
    work.mkdir()
    keys.mkdir()
    _workdir(c, work, keys)
    agent = tmp_path / "agent.sh"
    _agent(c, agent)
    env = {
        "AGT_API_TOKEN": c.password("env AGT_API_TOKEN", "env"),
        "SESSION_JWT": c.jwt("env SESSION_JWT (not a secret name)", "env"),
        "DATABASE_URL": f"postgres://app:{c.password('env DATABASE_URL password', 'env')}@db.internal/prod",
        "OPENAI_API_KEY": c.token("env OPENAI_API_KEY", "env", "sk-proj-", 48),
    }
    # the agent also writes and prints it base64-encoded: no stored byte may hold that either
    next(p for p in c.planted if p.name == "env AGT_API_TOKEN").needles.append(
        base64.b64encode(env["AGT_API_TOKEN"].encode()).decode()[:16])
    # and prints and writes the OpenAI key base64-encoded, wrapped at 76 columns: no piece of 8
    # characters of it may be stored
    next(p for p in c.planted if p.name == "env OPENAI_API_KEY").needles.extend(
        chunk for form in base64_forms(env["OPENAI_API_KEY"]) for chunk, _ in base64_chunks(form))
    argv = ["--password=" + c.password("--password=VALUE", "argv"), "--api-key", c.password("--api-key VALUE", "argv"),
            "--token", c.token("GitHub token in argv", "argv", "ghp_", 36)]
    task = "Migrate postgres://admin:{}@prod-db/main, push with {}, api token {}".format(
        c.password("URL password in --task", "task"), c.token("GitHub PAT in --task", "task", "github_pat_", 60),
        env["AGT_API_TOKEN"])

    # capture: locally, a saved Codex stream, in the sandbox
    run = run_agtrace(["run", "--workdir", str(work), "--task", task, "--marker", "^PART", "--json", "-q", "--",
                       "bash", str(agent), *argv], store_path, env=env)
    assert run.returncode == 0, run.stderr.decode()
    captured = json.loads(run.stdout)
    # what the snapshots left out is named, never shown
    shown = run_agtrace(["replay", captured["run_id"], "--part", "last", "--json", "--out", str(tmp_path / "replayed")],
                        store_path, check=True)
    assert {".env", "notes/token.txt", "notes/deploy.txt"} <= {e["path"] for e in json.loads(shown.stdout)["left_out"]}
    cat = run_agtrace(["cat", captured["run_id"], ".env", "--part", "last"], store_path)
    assert cat.returncode == 1 and not cat.stdout and b"'.env' was left out when part" in cat.stderr
    stream = tmp_path / "codex.jsonl"
    _codex_stream(c, stream)
    live = run_agtrace(["run", "--agent", "codex", "--workdir", str(work), "--json", "-q", "--", "cat", str(stream)],
                       store_path, env=env)
    assert json.loads(live.stdout)["parts"] >= 2, live.stderr.decode()
    api = InMemorySandboxAPI()
    try:
        upload_tree(api, work, api.workdir)
        with Store(store_path) as store:
            sandboxed = run_agent_in_sandbox(store, api, ["bash", "-c", agent.read_text(), "agent", *argv],
                                             adapter_options={"marker": "^PART"}, task=task, env=env)
        assert sandboxed.status == "completed", sandboxed.reason
    finally:
        api.terminate()

    # import: a Claude session and a Codex rollout
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    _claude_session(c, sessions / "claude.jsonl", keys)
    _codex_rollout(c, sessions / "rollout.jsonl")
    for source in sorted(sessions.iterdir()):
        imported = run_agtrace(["import", "--json", str(source)], store_path)
        assert imported.returncode == 0, imported.stdout.decode() + imported.stderr.decode()

    # new, append, close
    new = run_agtrace(["new", "--json", "--task", "deploy with " + c.token("token in new --task", "append", "ghp_", 36)],
                      store_path, check=True)
    run_id = json.loads(new.stdout)["id"]
    run_agtrace(["append", run_id], store_path, input=_appended(c), check=True)
    reason = f"db postgres://x:{c.password('URL password in close --reason', 'append')}@h refused"
    run_agtrace(["close", run_id, "--status", "failed", "--reason", reason], store_path, check=True)

    # push to file:// and to S3
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    run_agtrace(["push", "--all", "--remote", f"file://{remote_dir}"], store_path, check=True)
    s3_url, s3_env, download = _s3(moto_server)
    run_agtrace(["push", "--all", "--remote", s3_url], store_path, env=s3_env, check=True)

    with Store(store_path) as store:
        runs = store.run_ids()
        records = [r for rid in runs for r in store.read(rid)]
    ended = [r.event for r in records if isinstance(r.event, RunEnded)]
    snapshots = [r.event for r in records if isinstance(r.event, SnapshotTaken)]
    excluded = {e.path: e.reason for s in snapshots for e in s.excluded}
    assert len(runs) == 6 and sum(e.redactions for e in ended) >= len(c.planted)
    assert {"id_rsa", "keys/backup.txt", "notes/old_key.txt", "credentials.json", ".aws/credentials", ".netrc",
            ".npmrc", "deploy/settings.ini", "gcp.json", ".env", ".git-credentials", "secrets.json"} <= set(excluded)
    assert excluded["keys/backup.txt"] == "credential_content" and excluded["id_rsa"] == "credential"
    assert {excluded[p] for p in ("notes/token.txt", "config/llm.toml", "src/hub.py")} == {"credential_content"}
    assert excluded["notes/deploy.txt"] == "credential_content"  # holds the value of $AGT_API_TOKEN
    assert excluded["notes/secret.yaml"] == "credential_content"  # holds it base64-encoded
    assert excluded.get("notes/key.b64") == "credential_content"  # the OpenAI key in base64 over two lines
    assert any(isinstance(r.event, RawRecorded) and r.event.redactions for r in records)

    with tempfile.TemporaryDirectory(prefix="secrets-s3-") as s3_copy:
        sources = {"store": store_path, "file remote": remote_dir, "s3 remote": download(Path(s3_copy))}
        found, views, nbytes = {}, 0, 0
        for name, root in sources.items():
            hits, n, size = leaks(c, tree_views(root))
            views, nbytes = views + n, nbytes + size
            for secret, where in hits.items():
                found.setdefault(secret, []).extend(f"{name}: {w}" for w in where)
        control, _, _ = leaks(c, tree_views(work))  # the scanner does find what is there
    print(f"\nsecrets corpus: {len(c.planted)} planted ({c.report()}); {views} files and decodings "
          f"({nbytes:,} bytes) scanned in the store and 2 remotes; {len(found)} reached them")
    assert len(c.planted) >= 30
    assert len(control) >= 12
    assert not found, json.dumps(found, indent=1)[:4000]
    assert captured["redactions"] > 0
    shutil.rmtree(remote_dir)


def _escaped(secret: str) -> str:
    """``secret`` as a JSON string may write it: its first character as a ``\\u`` escape."""
    return f"\\u{ord(secret[0]):04x}{secret[1:]}"


def test_secrets_written_with_json_escapes_never_reach_an_imported_raw_record(tmp_path):
    """A Claude session and a Codex rollout (real samples) whose lines write secrets with a
    ``\\u`` escape (``\\u0073k-ant-api03-…``): no stored byte, decoded raw record or export holds
    them, and the raw records count them."""
    c = Corpus(random.Random(34))
    ant = c.token("escaped Anthropic key in a Claude session", "import", "sk-ant-api03-", 93)
    gh = c.token("escaped GitHub token in a Claude session", "import", "ghp_", 36)
    aws = c.token("escaped AWS key id in a big Claude line (a blob)", "import", "AKIA", 16, UPPER)
    sk = c.token("escaped Anthropic key in a Codex rollout", "import", "sk-ant-api03-", 60)
    gh2 = c.token("escaped GitHub token in a Codex rollout", "import", "ghp_", 40)
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    lines = (FIXTURES / "claude-code" / "daaain_representative_messages.jsonl").read_text().splitlines()
    small, big = json.loads(lines[1]), json.loads(lines[1])
    small["message"]["content"][0]["text"] = "my key is @@ANT@@ and my token @@GH@@ ok"
    big["uuid"], big["message"]["id"] = "u-big", "m-big"
    big["message"]["content"][0]["text"] = "x" * 100_000 + " aws @@AWS@@ end"  # stored as a blob
    escaped = [json.dumps(o).replace("@@ANT@@", _escaped(ant)).replace("@@GH@@", _escaped(gh))
               .replace("@@AWS@@", _escaped(aws)) for o in (small, big)]
    (sessions / "claude.jsonl").write_text("\n".join([lines[0], *escaped, *lines[2:]]) + "\n")
    name = "localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
    text = (FIXTURES / "codex-rollout" / name).read_text()
    assert "[REDACTED_MESSAGE len=86 sha=2239bcba]" in text
    text = text.replace("[REDACTED_MESSAGE len=86 sha=2239bcba]",
                        f"export ANTHROPIC_API_KEY={_escaped(sk)} GH={_escaped(gh2)}")
    (sessions / "rollout.jsonl").write_text(text)
    assert all(p.value not in (sessions / f).read_text() for p in c.planted for f in ("claude.jsonl", "rollout.jsonl"))

    store_path = tmp_path / "store"
    for source in sorted(sessions.iterdir()):
        imported = run_agtrace(["import", "--json", str(source)], store_path)
        assert imported.returncode == 0, imported.stdout.decode() + imported.stderr.decode()
    export = tmp_path / "export.jsonl"
    run_agtrace(["export", "--all", "-o", str(export)], store_path, check=True)

    with Store(store_path) as store:
        raws = [r.event for rid in store.run_ids() for r in store.read(rid) if isinstance(r.event, RawRecorded)]
        decoded = []  # each raw record as a reader of the source format sees it
        for raw in raws:
            full = store.blobs.get(raw.blob).decode() if raw.blob else raw.text
            decoded.append(json.dumps(json.loads(full), ensure_ascii=False))
        assert any(raw.blob for raw in raws)
    hits, _, _ = leaks(c, [*tree_views(store_path), ("export", export.read_bytes()),
                           *((f"raw record {i}", d.encode()) for i, d in enumerate(decoded))])
    assert not hits, hits
    assert sum(raw.redactions for raw in raws) >= len(c.planted)
    control, _, _ = leaks(c, [("source", (sessions / "claude.jsonl").read_bytes() + text.encode())])
    assert len(control) == len(c.planted)  # the scanner finds them where they are
