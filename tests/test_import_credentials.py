"""Trees that importers bring keep credential files out as a captured snapshot does: an envoi-trace
``repo.bundle`` and an ISO-Bench base commit with its patch give, for the same files, the tree id
and the ``excluded`` list that `Snapshotter` records, and no object of the run's shadow repository
or bundles (nor anything left in staging) holds a token, a key or a secret of the environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.capture import SnapshotPolicy, Snapshotter
from agtrace.capture.importers import IMPORTERS, import_source
from agtrace.eventlog import GitStore, SnapshotTaken, Store, credential_rules
from agtrace.eventlog.credential import credential_content, credential_name
from agtrace.replay.workspace import materialize

sys.path.insert(0, str(Path(__file__).parent))
from envoi_build import ENV, build_run, git  # noqa: E402
from test_credentials import (  # noqa: E402
    EXPECTED,
    FILES,
    GH_TOKEN,
    HF_TOKEN,
    KEY_HEADER,
    OPENAI_KEY,
    SLACK_TOKEN,
)

DEPLOY = "dpl-" + "Vq7Rk2Lm9Xz4Wt6Yb1Nc"  # a secret of the importing process's environment, of no known shape
SECRETS = (GH_TOKEN, OPENAI_KEY, HF_TOKEN, SLACK_TOKEN, KEY_HEADER, DEPLOY, "_authToken", "dXNlcjpwYXNz")


def _objects(git_dir: Path) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"],
                          capture_output=True, check=True).stdout


def _stored_bytes(store: Store, run_id: str, tmp: Path) -> bytes:
    """Every object of the run's shadow repository and of each of its bundles, unpacked."""
    out = [_objects(store.run_dir(run_id) / "repo.git")]
    for bundle in sorted((store.run_dir(run_id) / "bundles").glob("*.bundle")):
        unpacked = tmp / f"unbundled-{bundle.stem}"
        subprocess.run(["git", "init", "-q", "--bare", str(unpacked)], env=ENV, check=True)
        subprocess.run(["git", "--git-dir", str(unpacked), "fetch", "-q", str(bundle), "refs/*:refs/*"], env=ENV,
                       check=True)
        out.append(_objects(unpacked))
    return b"".join(out)


def _captured(tmp: Path, files: dict[str, str]):
    """The snapshot `agtrace run` would take of a workdir holding ``files``."""
    work = tmp / "captured-work"
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    policy = SnapshotPolicy().with_env_secrets({"AGT_DEPLOY_TOKEN": DEPLOY})
    return Snapshotter(tmp / "captured-run", work, policy=policy).take("base")


def _only_run(store: Store, source: Path, fmt: str, repo: Path | None = None) -> str:
    result = import_source(store, source, IMPORTERS[fmt], repo=repo)
    assert not result.error and not result.bad_records, result
    assert len(result.runs) == 1, result
    return result.runs[0]


def test_an_envoi_bundle_keeps_its_credential_files_out_of_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AGT_DEPLOY_TOKEN", DEPLOY)
    files = {**FILES, "notes/deploy.txt": f"token {DEPLOY}\n"}
    src = tmp_path / "trajectories" / "t1"
    steps = [
        {"type": "tool", "command": "setup", "output": "", "exit_code": 0, "turn": 1, "write": files},
        {"type": "tool", "command": "edit", "output": "", "exit_code": 0, "turn": 1,
         "write": {"README.md": "# project, edited\n"}},
        {"type": "tool", "command": "clean up", "output": "", "exit_code": 0, "turn": 1,
         "delete": ["notes/token.txt", ".env.local", "notes/deploy.txt"]},
    ]
    commits = build_run(src, steps, session_end={"reason": "solved"})
    ws = src.with_name(src.name + ".workspace")
    store = Store(tmp_path / "store")
    run_id = _only_run(store, src, "envoi-trace")
    again = import_source(Store(tmp_path / "store-again"), src, IMPORTERS["envoi-trace"])
    assert again.left_out == len(EXPECTED) + 1 and again.left_out_first.endswith(("(credential)", "(credential_content)"))
    assert f"{len(EXPECTED) + 1} credential files were left out of the imported trees" in again.warning()

    snaps = {r.part: r.event for r in store.read(run_id) if isinstance(r.event, SnapshotTaken) and not r.event.final}
    want = _captured(tmp_path, files)
    assert {e.path: e.reason for e in snaps[1].excluded} == {**EXPECTED, "notes/deploy.txt": "credential_content"}
    assert snaps[1].tree_id == want.tree_id  # the tree a capture of the same files records
    assert snaps[1].policy["credentials"] == credential_rules()["version"] and snaps[1].policy["secret_values"] >= 1
    assert snaps[2].modified == ["README.md"] and not snaps[2].added and not snaps[2].deleted
    assert snaps[3].deleted == [] and "notes/token.txt" not in {e.path for e in snaps[3].excluded}
    # every part replays to its commit, less the files left out
    for part, commit in commits.items():
        out = tmp_path / f"out-{part}"
        materialize(store, run_id, part, out)
        kept = {p for p in git(ws, "ls-tree", "-r", "--name-only", commit).splitlines()}
        left = {e.path for e in snaps[part].excluded}
        assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == kept - left
    stored = _stored_bytes(store, run_id, tmp_path)
    assert b"# project, edited" in stored
    for secret in SECRETS:  # not in the parts' trees, nor in the bundle's history
        assert secret.encode() not in stored, secret
    assert not list((store.root / "staging").rglob("*.scratch.git"))
    # replay says which files are not in the tree
    cli = [sys.executable, "-m", "agtrace.cli.main", "--store", str(store.root), "replay", run_id, "--part", "1"]
    shown = subprocess.run([*cli, "--out", str(tmp_path / "cli-1"), "--json"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    left = {e["path"]: e["reason"] for e in json.loads(shown.stdout)["left_out"]}
    assert left == {**EXPECTED, "notes/deploy.txt": "credential_content"}
    said = subprocess.run([*cli, "--out", str(tmp_path / "cli-2")], capture_output=True, text=True)
    assert said.returncode == 0, said.stderr
    line = next(x for x in said.stdout.splitlines() if "not in the tree" in x)
    assert line.startswith("  not in the tree (left out when recorded): .aws/credentials (credential), ")
    assert line.endswith(f" and {len(left) - 5} more (--json lists them)")
    cat = subprocess.run([*cli[:5], "cat", run_id, "notes/token.txt", "--part", "1"], capture_output=True, text=True)
    assert cat.returncode == 1 and not cat.stdout
    assert "'notes/token.txt' was left out when part 1 of run" in cat.stderr and "credential_content" in cat.stderr


def test_an_isobench_patch_that_adds_credential_files_is_recorded_without_them(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "app.py").write_text("print('hi')\n")
    (repo / "deploy").mkdir()
    (repo / "deploy" / "prod.ini").write_text(f"[prod]\n{FILES['deploy/prod.ini']}")  # in the base already
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "config").mkdir()
    (repo / "config" / "llm.toml").write_text(FILES["config/llm.toml"])
    (repo / ".env").write_text("API_KEY=whatever-it-is\n")
    git(repo, "add", "-A")
    patch = subprocess.run(["git", "-C", str(repo), "diff", "--binary", "--cached", "HEAD"], env=ENV, check=True,
                           capture_output=True).stdout
    git(repo, "reset", "-q", "--hard", base)
    item = tmp_path / "runs" / "vllm_core-0001"
    item.mkdir(parents=True)
    (item / "model_patch.diff").write_bytes(patch)
    (item / "journal.json").write_text(json.dumps({
        "task_id": "t", "commits": {"pre": base}, "status": "success",
        "run_metadata": {"repo": "upstream", "agent": "claude_code", "model": "sonnet"},
        "claude_code": {"cli": "claude", "returncode": 0}}))
    store = Store(tmp_path / "store")
    run_id = _only_run(store, item, "isobench", repo=repo)

    base_snap, final = [r.event for r in store.read(run_id) if isinstance(r.event, SnapshotTaken)]
    assert {e.path: e.reason for e in base_snap.excluded} == {"deploy/prod.ini": "credential_content"}
    assert {e.path: e.reason for e in final.excluded} == {
        "deploy/prod.ini": "credential_content", "config/llm.toml": "credential_content", ".env": "credential"}
    assert final.final and final.modified == ["app.py"] and not final.added
    out = tmp_path / "out"
    materialize(store, run_id, 1, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["app.py"]
    assert (out / "app.py").read_text() == "print('hello')\n"
    stored = _stored_bytes(store, run_id, tmp_path)
    for secret in (OPENAI_KEY, "aws_secret_access_key", "whatever-it-is"):
        assert secret.encode() not in stored, secret
    assert b"print('hi')" in stored  # the base's own file


def _commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_a_foreign_tree_is_filtered_at_the_cost_of_its_change(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    files = {f"pkg{i % 10}/mod{i}.py": f"x = {i}\n" for i in range(200)}
    first = _commit(repo, {**files, "pkg3/.env": "A=1\n", "notes/token.txt": GH_TOKEN}, "first")
    second = _commit(repo, {"pkg4/mod4.py": "x = 'changed'\n"}, "second")
    scratch = GitStore.init(tmp_path / "scratch.git")
    for commit in (first, second):
        scratch.fetch_commit(repo, commit)
    reads = []
    blob_data = GitStore._blob_data
    monkeypatch.setattr(GitStore, "_blob_data", lambda self, oid: reads.append(oid) or blob_data(self, oid))
    tree, left = scratch.without_credentials(scratch.tree_of(first))
    assert left == [("notes/token.txt", "credential_content", len(GH_TOKEN)), ("pkg3/.env", "credential", None)]
    assert len(reads) == 201  # every file but the one left out by its name
    reads.clear()
    tree2, left2 = scratch.without_credentials(scratch.tree_of(second))
    assert left2 == left and len(reads) == 1  # the changed file only
    assert [c.path for c in scratch.diff(tree, tree2)] == ["pkg4/mod4.py"]
    plain = _commit(repo, {"notes/token.txt": "no token now\n", "pkg3/.env": None}, "plain")
    assert scratch.fetch_commit(repo, plain) and scratch.without_credentials(scratch.tree_of(plain)) == (
        scratch.tree_of(plain), [])  # nothing to leave out: the tree keeps its id


def test_a_tree_nested_deeper_than_pythons_stack_is_filtered(tmp_path):
    store = GitStore.init(tmp_path / "deep.git")
    oid = store._write_object(b"blob", KEY_HEADER.encode())
    oid = store._write_object(b"tree", b"100644 key.txt\0" + oid)
    depth = sys.getrecursionlimit() + 200
    for _ in range(depth):
        oid = store._write_object(b"tree", b"40000 d\0" + oid)
    kept, left = store.without_credentials(oid.hex())
    assert kept == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # nothing left: the empty tree
    assert [(p.count("/"), p.rsplit("/", 1)[1], why) for p, why, _ in left] == [(depth, "key.txt", "credential_content")]


_NAMES = st.sampled_from(["f", "g.txt", ".env", "id_rsa", "token.txt", "credentials", ".npmrc"])
_DIRS = st.lists(st.sampled_from(["d", "e", ".aws", "src"]), max_size=3)
_CONTENTS = st.sampled_from([b"plain\n", b"", KEY_HEADER.encode() + b"\n", GH_TOKEN.encode(), b"//r/:_authToken=x\n",
                             DEPLOY.encode(), b"\x00\x01binary"])


def _tree_of(store: GitStore, files: dict[str, bytes]) -> str:
    """The tree id git gives ``files`` (path -> bytes), written bottom-up as git writes trees."""
    from agtrace.eventlog.git.treeedit import tree_bytes

    def write(prefix: str) -> bytes:
        entries, subdirs = {}, set()
        for path, data in files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                subdirs.add(rest.split("/", 1)[0])
            else:
                entries[rest.encode()] = (b"100644", store._write_object(b"blob", data))
        for sub in subdirs:
            entries[sub.encode()] = (b"40000", write(f"{prefix}{sub}/"))
        return store._write_object(b"tree", tree_bytes(entries))

    return write("").hex()


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.tuples(_DIRS, _NAMES).map(lambda t: "/".join([*t[0], t[1]])), _CONTENTS, max_size=12))
def test_filtering_a_tree_leaves_out_what_the_rules_say_of_each_file(tmp_path_factory, files):
    """Against a flat reference: each file judged alone by the rules (by name, then by content, a
    secret value included), the rest written as a tree; the same tree id and the same list."""
    store = GitStore.init(tmp_path_factory.mktemp("filter") / "repo.git")
    secrets = (DEPLOY,)
    want_left = sorted(
        (path, "credential" if credential_name(path) else "credential_content", None if credential_name(path) else len(data))
        for path, data in files.items()
        if credential_name(path) or credential_content(path, data, secrets))
    kept = {p: d for p, d in files.items() if p not in {left[0] for left in want_left}}
    tree, left = store.without_credentials(_tree_of(store, files), secrets)
    assert left == want_left
    assert tree == _tree_of(store, kept)


def test_an_isobench_base_is_fetched_without_its_history(tmp_path):
    """``fetch_commit(history=False)``: the base commit and its tree, none of its ancestors (a
    vLLM-sized history would be copied for every item); the default still copies them all."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    old = _commit(repo, {"a.txt": "one\n"}, "one")
    base = _commit(repo, {"a.txt": "two\n", "b.txt": "b\n"}, "two")
    shallow = GitStore.init(tmp_path / "shallow.git")
    assert shallow.fetch_commit(repo, base[:12], history=False) == base
    assert shallow.files(shallow.tree_of(base)).keys() == {"a.txt", "b.txt"}
    assert shallow.resolve(old) is None
    whole = GitStore.init(tmp_path / "whole.git")
    whole.fetch_commit(repo, base)
    assert whole.resolve(old) == old
