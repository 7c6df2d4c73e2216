"""First impressions (issue 13, item 8), through the CLI as a new user meets it: the demo's
transcript, the live token figure, what a captured run records about its agent, the `replay`
console script's help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agtrace.capture import demo_command, model_from_argv, setup_demo_repo

from .conftest import run_agtrace

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "store"
    proc = run_agtrace(["demo", "--fast"], root, check=True)
    return root, proc.stdout.decode(), proc.stderr.decode()


def test_the_demo_transcript_starts_with_the_run_not_a_warning(demo):
    root, out, _ = demo
    run_id = re.search(r"run (\w{26}): completed", out).group(1)
    events = [json.loads(line) for line in run_agtrace(["log", run_id, "--json"], root, check=True).stdout.splitlines()]
    assert events[0]["kind"] == "run_started"
    logged = [e["text"] for e in events if e["kind"] == "line_logged"]
    assert not [t for t in logged if "Warning" in t], logged
    transcript = run_agtrace(["replay", run_id, "--transcript"], root, check=True).stdout.decode()
    assert "RuntimeWarning" not in transcript and "sys.modules" not in transcript
    assert transcript.splitlines()[0].strip().startswith("[-] run started: demo")


def test_the_demo_agent_starts_without_importing_the_package():
    """`python -m agtrace.capture.demo_agent` imports `agtrace.capture` first; once the package
    imports the module (as it once did), Python warns on stderr and the demo recorded that."""
    cmd = demo_command("--help")
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("usage: demo_agent")
    imported = re.findall(r"\|\s+(agtrace\.[\w.]+)", proc.stderr)
    assert imported == [] and "RuntimeWarning" not in proc.stderr, imported


def test_the_last_live_token_figure_is_the_final_one(demo):
    _, out, err = demo
    live = [int(m.replace(",", "")) for m in re.findall(r"tokens: ([\d,]+)$", err, re.M)]
    final = int(re.search(r"completed; \d+ parts, ([\d,]+) tokens", out).group(1).replace(",", ""))
    assert len(live) > 20 and live[-1] == final
    assert live == sorted(live)  # never goes down


def _fake_codex(tmp_path: Path) -> Path:
    """A `codex` that answers `--version` like the real one and otherwise runs the demo agent."""
    exe = tmp_path / "bin" / "codex"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'codex-cli 0.46.0'; exit 0; fi\n"
                   f"exec {sys.executable} -m agtrace.capture.demo_agent --fast\n")
    exe.chmod(0o755)
    return exe


def test_a_captured_run_records_the_cli_version_and_the_model_of_dash_m(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    setup_demo_repo(work)
    codex = _fake_codex(tmp_path)
    root = tmp_path / "store"
    proc = run_agtrace(["run", "-q", "--agent", "codex", "--workdir", str(work), "--json", "--",
                        str(codex), "exec", "--json", "-m", "gpt-5-codex", "fix it"], root, check=True)
    summary = json.loads(proc.stdout)
    assert (summary["agent_version"], summary["model"]) == ("0.46.0", "gpt-5-codex")
    first = json.loads(run_agtrace(["log", summary["run_id"], "--json"], root, check=True).stdout.splitlines()[0])
    assert (first["kind"], first["agent_version"], first["model"]) == ("run_started", "0.46.0", "gpt-5-codex")
    shown = json.loads(run_agtrace(["ls", "--json"], root, check=True).stdout)[0]
    assert (shown["agent_version"], shown["model"]) == ("0.46.0", "gpt-5-codex")


def test_a_raw_command_is_never_asked_for_its_version(tmp_path):
    marker = tmp_path / "asked"
    script = tmp_path / "agent.sh"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && touch {marker}\necho hello\n")
    script.chmod(0o755)
    root = tmp_path / "store"
    proc = run_agtrace(["run", "-q", "--workdir", str(tmp_path), "--json", "--", str(script)], root, check=True)
    assert json.loads(proc.stdout)["agent_version"] == "" and not marker.exists()


@pytest.mark.parametrize(("argv", "model"), [
    (["codex", "exec", "-m", "o3", "fix"], "o3"),
    (["claude", "-p", "--model", "sonnet"], "sonnet"),
    (["opencode", "run", "--model=anthropic/x"], "anthropic/x"),
    (["codex", "exec", "-c", "model=gpt-5"], "gpt-5"),
    (["python3", "-m", "my_agent", "--task", "t"], ""),  # a module, not a model
    (["python", "-u", "-m", "my_agent", "-m", "gpt-5"], "gpt-5"),
    (["python3", "agent.py", "-m", "o4-mini"], "o4-mini"),
])
def test_model_from_argv(argv, model):
    assert model_from_argv(argv) == model


def test_the_replay_script_names_itself_once():
    script = BIN / "replay"
    if not script.exists():
        pytest.skip("the `replay` console script is not installed next to this interpreter")
    out = subprocess.run([str(script), "--help"], capture_output=True, check=True).stdout.decode()
    assert out.startswith("Usage: replay [OPTIONS] RUN")
    err = subprocess.run([str(script), "--no-such"], capture_output=True).stderr.decode()
    assert re.search(r"Try 'replay (--help|-h)'", err) and "replay replay" not in err  # click 8.1.0 says -h


def test_the_replay_script_takes_the_store_option(tmp_path):
    script = BIN / "replay"
    if not script.exists():
        pytest.skip("the `replay` console script is not installed next to this interpreter")
    store = tmp_path / "elsewhere"
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("one\n")
    env = {k: v for k, v in os.environ.items() if k != "AGTRACE_HOME"}
    env["HOME"] = str(tmp_path / "home")
    script_text = "import pathlib; print('STEP one'); pathlib.Path('a.txt').write_text('two\\n')"
    subprocess.run([str(BIN / "agtrace"), "--store", str(store), "run", "--workdir", str(work), "--marker", "^STEP",
                    "--", sys.executable, "-c", script_text], env=env, check=True, capture_output=True)
    run_id = next(p.name for p in (store / "runs").iterdir())
    for args in (["--store", str(store), run_id], [f"--store={store}", run_id], [run_id, "--store", str(store)]):
        out = tmp_path / f"out{len(args)}{args[0][:3]}"
        proc = subprocess.run([str(script), *args, "--part", "1", "--out", str(out)], env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
        assert (out / "a.txt").read_text() == "two\n"
    assert not (tmp_path / "home" / ".agtrace").exists()  # the default store was never made


def test_a_sandboxed_capture_asks_the_cli_in_the_sandbox(tmp_path):
    from agtrace.capture import InMemorySandboxAPI, run_agent_in_sandbox
    from agtrace.capture.sandboxes.api import run_checked
    from agtrace.eventlog import Store

    codex = _fake_codex(tmp_path)
    api = InMemorySandboxAPI()
    try:
        run_checked(api, f"{sys.executable} -c 'from agtrace.capture import setup_demo_repo; setup_demo_repo(\".\")'")
        store = Store(tmp_path / "store")
        summary = run_agent_in_sandbox(store, api, [str(codex), "exec", "--json", "-m", "o3"], agent="codex")
        first = next(iter(store.read(summary.run_id, 1, 1))).event
        assert (summary.status, first.agent_version, first.model) == ("completed", "0.46.0", "o3")
        store.close()
    finally:
        api.terminate()


def test_verify_counts_read_as_words(tmp_path):
    store = tmp_path / "s"
    run = run_agtrace(["new", "--agent", "x"], store, check=True).stdout.decode().split()[-1]
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    out = run_agtrace(["verify"], store, check=True).stdout.decode()
    assert out.startswith("1 run, 2 segments, ") and " 0 blob references, " in out, out  # new, close: 2 segments


def test_verify_counts_the_events_show_counts_and_the_scores_apart(tmp_path):
    """verify said "184 events" of a demo run that `show` and `ls --remote` say has 158: it
    added rescore's 26 results, and counted each of 6 trees once in repo.git and once in the
    bundles ("12 trees")."""
    store = tmp_path / "s"
    made = json.loads(run_agtrace(["demo", "--fast", "--workdir", str(tmp_path / "w"), "--json"], store,
                                  check=True).stdout)
    run = made["run_id"]
    run_agtrace(["rescore", run, "--name", "unit", "--cmd", "python3 -m unittest", "--parts", "all"], store, check=True)
    shown = json.loads(run_agtrace(["show", run, "--json"], store, check=True).stdout)
    scores = json.loads(run_agtrace(["scores", run, "--json"], store, check=True).stdout)
    report = json.loads(run_agtrace(["verify", "--json"], store, check=True).stdout)
    snapshots = run_agtrace(["log", run, "--kind", "snapshot_taken", "--json"], store, check=True).stdout
    trees = {json.loads(line)["tree_id"] for line in snapshots.splitlines()}
    assert (report["events"], report["scores"]) == (shown["events"], len(scores)) and len(scores) == shown["parts"]
    assert (report["trees"], report["tree_checks"]) == (len(trees), 2 * len(trees))  # repo.git and the bundles
    said = run_agtrace(["verify"], store, check=True).stdout.decode()
    assert f" {shown['events']} events, {len(scores)} scores, " in said and f" {len(trees)} trees checked (" in said


def test_demo_refuses_a_workdir_with_files_in_it(tmp_path):
    """`demo --workdir .` in a project of yours wrote the demo's README.md and .gitignore over
    yours and committed everything (`git add -A`); now a directory holding anything is refused
    (exit 2) with nothing written, and a new or empty directory still works."""
    repo = tmp_path / "mine"
    repo.mkdir()
    (repo / "README.md").write_text("my project\n")
    (repo / "notes.txt").write_text("uncommitted\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    store = tmp_path / "store"
    proc = run_agtrace(["demo", "--fast", "--workdir", str(repo)], store)
    assert proc.returncode == 2, proc.stderr.decode()
    assert "is not empty" in proc.stderr.decode() and b"Traceback" not in proc.stderr
    assert (repo / "README.md").read_text() == "my project\n"
    assert sorted(p.name for p in repo.iterdir()) == [".git", "README.md", "notes.txt"]
    assert not store.exists()
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=repo).returncode != 0
    (tmp_path / "afile").write_text("x")
    proc = run_agtrace(["demo", "--fast", "--workdir", str(tmp_path / "afile")], store)
    assert proc.returncode == 2 and "not a directory" in proc.stderr.decode()
    (tmp_path / "empty").mkdir()
    proc = run_agtrace(["demo", "--fast", "--json", "--workdir", str(tmp_path / "empty")], store, check=True)
    assert json.loads(proc.stdout)["status"] == "completed"
    assert (tmp_path / "empty" / "textstats").is_dir()


def test_the_demos_hints_name_the_agtrace_it_ran_by_a_path_that_works_here(tmp_path):
    """Started by a path outside the current directory (`/opt/venv/bin/agtrace demo`), the
    demo's "Try next" lines named it `../../../opt/venv/bin/agtrace`; they name it by its
    absolute path now, and by a relative one only when it lies below the current directory."""
    if not (BIN / "agtrace").exists():
        pytest.skip("no agtrace console script beside this interpreter")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # not on PATH: the hints name the path it was started by
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, expected in ((elsewhere, str(BIN / "agtrace")), (BIN.parent, os.path.join(BIN.name, "agtrace"))):
        env["AGTRACE_HOME"] = str(tmp_path / f"store-{cwd.name}")
        proc = subprocess.run([str(BIN / "agtrace"), "demo", "--fast", "--workdir", str(tmp_path / f"w-{cwd.name}")],
                              cwd=cwd, env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        hints = [line.strip() for line in proc.stdout.decode().split("Try next:")[1].splitlines() if line.strip()]
        assert hints and all(line.startswith(f"{expected} ") for line in hints), hints
