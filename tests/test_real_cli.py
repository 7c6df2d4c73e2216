"""End-to-end: real agent CLIs (pinned, from the npm registry) run offline.

Each CLI runs in a private network namespace with only loopback, against the
scripted model server of tests/agents/model_server.py, through a multi-step
session with real tool calls in a temporary git workdir (list, read, write a
test, run it and see it fail, fix, run again, answer).

The tests install the pinned CLIs themselves with ``tests/agents/install.sh`` (into
$AGTRACE_AGENTS_DIR, default /tmp/agtrace-agents; idempotent). Outside CI they skip cleanly
when npm, a CLI or a network namespace (needs root) is missing; under CI (``CI`` set) they fail.

Every test runs for each CLI at every version of the matrix (``tests/agents/versions.txt``: the
newest pinned version and older ones whose formats differ). Three layers:

* ``test_raw_session``: the CLI alone; checks the workdir after every step
  (the server logs the project files it sees at each request), the final
  state, that every scripted tool call shows up in the CLI's own stdout, and
  the token totals the CLI reports.
* ``test_session_files_import``: the session files that very run wrote (Claude's project
  JSONL, Codex's rollout, OpenCode's export and database or storage) and its saved live stream
  import with the tool calls, tokens, model, version and status counted from the files
  themselves; ``agtrace import --from`` on the CLI's home finds them.
* ``test_agtrace_run``: the same session under ``agtrace run``; checks the
  recorded tool calls and that the ``snapshot_taken``/``part_ended`` trees
  match the expected states.  Skipped when ``agtrace run`` is unavailable.

Only the trees of *tool* parts are compared, and the scripted model waits
AGTRACE_TEST_MODEL_DELAY (0.5 s) before each answer: agtrace snapshots when
it reads a part's line, and with an instant model the CLI may already have run
the next tool by then (seen with OpenCode and Codex: the tree after a part
included the following write/patch).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parent / "agents"
sys.path.insert(0, str(AGENTS))

import model_server  # noqa: E402
import run_cli  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.cli]

CLIS = list(model_server.CLIS)
MATRIX = [(c, v) for c in CLIS for v in run_cli.pinned_versions()[c]]
AGTRACE_DELAY_S = float(os.environ.get("AGTRACE_TEST_MODEL_DELAY", "0.5"))


@pytest.fixture(scope="session")
def installed_agents():
    """Install the pinned CLIs (idempotent). Under CI a failed install fails the tests."""
    if shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("npm is missing: CI must run the real agent CLIs")
        return False
    proc = subprocess.run(["bash", str(AGENTS / "install.sh")], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        message = f"tests/agents/install.sh failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return True


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{c}@{v}" for c, v in MATRIX])
def agent(request, installed_agents):
    """``(cli, version)`` of the matrix, installed and runnable here."""
    cli, version = request.param
    ok, why = run_cli.available(cli, version)
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{cli}@{version}: {why}")
        pytest.skip(f"{cli}@{version}: {why}")
    return cli, version


def _h(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest()[:16] for k, v in files.items()}


def _requests(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


def _stdout(out: Path) -> list[dict]:
    recs = []
    for line in (out / "stdout.jsonl").read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            recs.append(json.loads(line))
    return recs


def _tool_calls_in_stdout(cli: str, recs: list[dict]) -> list[str]:
    """Tool names (in our script's naming) the CLI reports as completed, in order."""
    names: list[str] = []
    if cli == "codex":
        for r in recs:
            if r.get("type") != "item.completed":
                continue
            t = r["item"].get("type")
            if t == "command_execution":
                names.append("exec_command")
            elif t == "file_change":
                names.append("apply_patch")
    elif cli == "claude-code":
        for r in recs:
            if r.get("type") == "assistant":
                names += [c["name"] for c in r["message"]["content"] if c.get("type") == "tool_use"]
    elif cli == "opencode":
        for r in recs:
            if r.get("type") == "tool_use" and r["part"]["state"].get("status") == "completed":
                names.append(r["part"]["tool"])
    return names


def _usage_in_stdout(cli: str, recs: list[dict]) -> tuple[int, int, int]:
    """(input incl. cached, cached, output incl. reasoning) as the CLI reports them."""
    if cli == "codex":
        u = next(r["usage"] for r in recs if r.get("type") == "turn.completed")
        return u["input_tokens"], u["cached_input_tokens"], u["output_tokens"]
    if cli == "claude-code":
        u = next(r["usage"] for r in recs if r.get("type") == "result")
        cached = u["cache_read_input_tokens"]
        return u["input_tokens"] + cached, cached, u["output_tokens"]
    from .source_counts import opencode_tokens  # older releases count reasoning in output

    return opencode_tokens([r["part"]["tokens"] for r in recs if r.get("type") == "step_finish"])


@pytest.fixture(scope="module")
def raw_session(agent, tmp_path_factory):
    cli, version = agent
    out = tmp_path_factory.mktemp(f"real-{cli}-{version}")
    res = run_cli.run_session_in_netns(cli, out, timeout=240, version=version)
    return cli, version, out, res


def test_raw_session(raw_session):
    cli, version, out, res = raw_session
    diag = f"\nresult={res}\nstderr tail:\n{(out / 'stderr.txt').read_text()[-2000:]}"
    assert res["returncode"] == 0 and not res["timed_out"], diag
    assert res["script_finished"], diag

    steps = model_server.scripted_session(cli, str(out / "work"), version)
    states = model_server.expected_states(cli, version)

    # final workdir
    assert model_server.project_files(out / "work") == states[-1]

    # state after each step: request k is received after step k-1's tool ran
    main = [r for r in _requests(out) if r.get("kind") == "main"]
    assert [r["step"] for r in main[: len(steps)]] == list(range(len(steps)))
    assert main[0]["workdir_files"] == _h(model_server.INITIAL_FILES)
    for k in range(1, len(steps)):
        assert main[k]["workdir_files"] == _h(states[k - 1]), (k, steps[k - 1].label)

    # every scripted tool call was executed and reported by the CLI
    recs = _stdout(out)
    # (Codex reports every shell tool, exec_command or 0.66's shell_command, as a command)
    want = [{"shell_command": "exec_command"}.get(s.tool.name, s.tool.name) for s in steps if s.tool]
    assert _tool_calls_in_stdout(cli, recs) == want

    # the final answer made it to stdout
    assert model_server.FINAL_ANSWER in (out / "stdout.jsonl").read_text()

    # token totals as the CLI reports them equal the script's
    tot = model_server.expected_usage_totals(cli, version)
    assert _usage_in_stdout(cli, recs) == (tot.input_tokens, tot.cached_tokens,
                                           tot.output_tokens)

    # nothing but the model server was asked for anything (loopback only anyway)
    assert all(r["path"].startswith("/v1/") for r in _requests(out))


# --------------------------------------------------------------------------
# importing what the CLI wrote

_SESSION_FORMAT = {"claude-code": "claude-session", "codex": "codex-rollout"}
_STREAM_FORMAT = {"claude-code": "claude-stream-json", "codex": "codex-exec-json",
                  "opencode": "opencode-run"}
_FROM = {"claude-code": ("claude", "CLAUDE_CONFIG_DIR", ".claude"),
         "codex": ("codex", "CODEX_HOME", ".codex"),
         "opencode": ("opencode", "XDG_DATA_HOME", ".local/share")}


def test_session_files_import(raw_session, tmp_path):
    from agtrace.eventlog import Store

    from .conftest import run_agtrace
    from .source_counts import check_import

    cli, version, out, res = raw_session
    if res["returncode"] != 0:
        pytest.skip("the session itself failed (see test_raw_session)")
    store = Store(tmp_path / "store")
    files = run_cli.session_files(cli, out / "home")
    assert files, f"{cli}@{version} wrote no session file under {out / 'home'}"
    imported = []
    if cli in _SESSION_FORMAT:
        main = [f for f in files if not f.name.startswith("agent-")]
        assert len(main) == 1, files
        imported.append(check_import(store, main[0], _SESSION_FORMAT[cli], cli, version))
    else:
        imported.append(check_import(store, out / "export.json", "opencode-export", cli, version))
    imported.append(check_import(store, out / "stdout.jsonl", _STREAM_FORMAT[cli], cli, version))

    agent, var, sub = _FROM[cli]
    proc = run_agtrace(["import", "--from", agent, "--json"], tmp_path / "home-store",
                       env={var: str(out / "home" / sub)})
    assert proc.returncode == 0, proc.stderr.decode()
    found = json.loads(proc.stdout)
    sources = {Path(r["source"]) for r in found["results"]}
    if cli == "opencode":  # the database or the older JSON storage: one source, every session
        assert sources == {files[0] if files[0].suffix == ".db" else
                           next(p for p in files[0].parents if p.name == "storage")}
    else:
        assert sources == set(files)
    runs = [rid for r in found["results"] for rid in r["runs"]]
    assert len(runs) == len(files if cli != "opencode" else [1])
    with Store(tmp_path / "home-store") as s:
        assert {s.info(r).status for r in runs} == {"completed"}


# --------------------------------------------------------------------------
# under `agtrace run`


def _agtrace() -> str | None:
    exe = shutil.which("agtrace") or str(Path(sys.executable).parent / "agtrace")
    try:
        r = subprocess.run([exe, "run", "--help"], capture_output=True, timeout=60)
    except OSError:
        return None
    return exe if r.returncode == 0 else None


def _run_under_agtrace(cli: str, tmp_path: Path, **session) -> tuple[Path, Path, str, dict]:
    """``agtrace --store S run --agent CLI --workdir W --json -- <cli argv>``, all inside the
    namespace, against a new project: the store, the project, the run id and the JSON summary
    (the last stdout line). ``session`` goes to ``run_session_in_netns`` (delay_s: think time per model
    answer, so agtrace snapshots a part before the CLI runs the next tool)."""
    exe = _agtrace()
    if exe is None:
        pytest.skip("`agtrace run` not available yet")
    store, work = tmp_path / "store", tmp_path / "work"
    model_server.write_project(work)
    wrapper = [exe, "--store", str(store), "run", "--agent", cli, "--workdir", str(work), "--json", "--"]
    res = run_cli.run_session_in_netns(cli, tmp_path, wrapper=wrapper, timeout=240, workdir=work, **session)
    diag = f"\nresult={res}\nstderr tail:\n{(tmp_path / 'stderr.txt').read_text()[-2000:]}"
    assert res["returncode"] == 0 and res["script_finished"], diag
    summary = _last_json((tmp_path / "stdout.jsonl").read_text())
    return store, work, summary.get("run_id") or summary.get("id") or summary["run"], summary


def _tree_files(repo_git: Path, tree: str) -> dict[str, bytes]:
    ls = subprocess.run(["git", f"--git-dir={repo_git}", "ls-tree", "-r", "-z", tree],
                        check=True, capture_output=True).stdout
    files = {}
    for entry in ls.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        _mode, typ, oid = meta.split()
        if typ == b"blob":
            files[path.decode()] = subprocess.run(
                ["git", f"--git-dir={repo_git}", "cat-file", "blob", oid.decode()],
                check=True, capture_output=True).stdout
    return files


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return json.loads(text)  # a pretty-printed object


def test_agtrace_run(agent, tmp_path):
    from agtrace.eventlog import PartEnded, SnapshotTaken, Store, ToolCalled, ToolReturned

    cli, version = agent
    store, work, run_id, summary = _run_under_agtrace(cli, tmp_path, delay_s=AGTRACE_DELAY_S, version=version)
    records = list(Store(store).read(run_id))
    events = [r.event for r in records]

    steps = model_server.scripted_session(cli, str(work), version)
    states = model_server.expected_states(cli, version)
    tool_steps = [(s, st) for s, st in zip(steps, states, strict=True) if s.tool]

    called = [e for e in events if isinstance(e, ToolCalled)]
    returned = {e.call_id: e for e in events if isinstance(e, ToolReturned)}
    assert len(called) == len(tool_steps), [e.tool for e in called]
    for e in called:
        assert e.call_id in returned, e

    repo_git = store / "runs" / run_id / "repo.git"
    # the tree after each tool part is the expected state after that step
    tool_parts = [e for e in events if isinstance(e, PartEnded) and e.call_id]
    assert len(tool_parts) == len(tool_steps)
    for (step, state), part in zip(tool_steps, tool_parts, strict=True):
        assert part.tree_id, part
        assert _tree_files(repo_git, part.tree_id) == state, step.label

    snaps = [e for e in events if isinstance(e, SnapshotTaken)]
    assert snaps, "no snapshot_taken"
    assert _tree_files(repo_git, snaps[-1].tree_id) == states[-1]
    snap_trees = {s.tree_id for s in snaps}
    for part in tool_parts:
        assert part.tree_id in snap_trees
    assert not summary.get("warnings"), summary  # no record of an unknown type in the stream


def test_agtrace_run_freezes_claude_code_at_the_part_ending_line(installed_agents, tmp_path):
    """An edit right after a part's end stays out of that part's tree: a write whose record is
    ~1 MB (the loop takes a while to store it), then an edit of calc.py. The write's part must
    hold big.txt and the old calc.py (the agent is frozen the moment its part-ending line is
    read, not when the loop gets to it).

    The model thinks 0.3 s before each answer (real ones think seconds): with an instant one,
    Claude Code goes on while its megabyte line is still being written to the pipe, and on a
    loaded machine (CI) the edit was seen in the write's tree, a race no freeze at the line's
    arrival can win (README). That arrival freeze itself is checked without timing by
    test_adapters_real's test: every part-ending line of the real streams is recognised.

    Claude Code only: OpenCode writes a line longer than the pipe's buffer asynchronously and
    runs on meanwhile, so no freeze at the line's arrival can hold its part (see the README);
    its part-ending lines are checked by test_adapters_real's test on the real streams."""
    cli = "claude-code"
    from agtrace.eventlog import PartEnded, Store

    ok, why = run_cli.available(cli)
    if not ok:
        pytest.skip(f"{cli}: {why}")
    store, work, run_id, _summary = _run_under_agtrace(cli, tmp_path, delay_s=0.3, script="edit_after_big_write")
    repo_git = store / "runs" / run_id / "repo.git"
    tool_parts = [r.event for r in Store(store).read(run_id)
                  if isinstance(r.event, PartEnded) and r.event.call_id]
    steps = model_server.script_steps("edit_after_big_write", cli, str(work))
    states = model_server.script_states("edit_after_big_write", cli)
    tool_states = [(step.label, state) for step, state in zip(steps, states, strict=True) if step.tool]
    assert [p.title.split(":")[0].lower() for p in tool_parts] == ["read", "write", "edit"], tool_parts
    for part, (label, state) in zip(tool_parts, tool_states, strict=True):
        files = _tree_files(repo_git, part.tree_id)
        assert _h(files) == _h(state), (label, sorted(set(_h(files).items()) ^ set(_h(state).items())))


_ONE_TRUTH = ("model", "model_calls", "usage_reports", "tools", "tokens", "tokens_input",
              "tokens_output", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")


def test_agtrace_run_of_codex_agrees_with_its_rollout_import(agent, tmp_path):
    """A live Codex capture (which follows the rollout the CLI writes under its CODEX_HOME)
    and the import of that rollout show one set of figures: the model, the model calls and
    usage reports, the tool names, the tokens and the cost, by `show --json` and
    `metrics --json`. Before, the capture had model "", one call per turn, tool `shell`,
    no cost, and on 0.66 no reasoning tokens."""
    from .conftest import run_agtrace

    cli, version = agent
    if cli != "codex":
        pytest.skip("the Codex capture only")
    store, _work, live, summary = _run_under_agtrace(cli, tmp_path, delay_s=AGTRACE_DELAY_S, version=version)
    [rollout] = run_cli.session_files(cli, tmp_path / "home")
    proc = run_agtrace(["--store", str(store), "import", "--format", "codex-rollout", str(rollout),
                        "--json"], store)
    assert proc.returncode == 0, proc.stderr.decode()
    [imported] = json.loads(proc.stdout)[0]["runs"]

    def figures(rid: str) -> dict:
        show = json.loads(run_agtrace(["--store", str(store), "show", rid, "--json"], store,
                                      check=True).stdout)
        metrics = json.loads(run_agtrace(["--store", str(store), "metrics", rid, "--json"], store,
                                         check=True).stdout)
        got = {k: metrics[k] for k in _ONE_TRUTH if k in metrics}
        return {**got, "model": show["model"], "cost": show["cost"]["cost_usd"],
                "tools": {t: v["calls"] for t, v in metrics["tools"].items()}}

    assert figures(live) == figures(imported)
    assert figures(live)["model"] and figures(live)["cost"] is not None
    # the run's own --json summary says the same (it said model "")
    assert (summary["model"], summary["tokens"]) == (figures(live)["model"], figures(live)["tokens"])
    assert "shell" not in figures(live)["tools"]
