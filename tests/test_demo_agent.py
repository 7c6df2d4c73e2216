"""The scripted demo agent, run as a real subprocess in a real git repository."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.capture.demo_agent import (
    AGENT_AUTHOR,
    CORE_PY,
    NEW_TESTS_PY,
    README_SECTION,
    demo_project_files,
    setup_demo_repo,
)

USAGE_KEYS = {"input_tokens", "cached_input_tokens", "output_tokens"}


def run_agent(workdir: Path, *args: str, env: dict | None = None, timeout: float = 120):
    cmd = [sys.executable, "-m", "agtrace.capture.demo_agent", *args]
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc, events


def git(workdir: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=workdir, capture_output=True, text=True, check=True)
    return out.stdout


def check_shape(event: dict) -> None:
    """Assert ``event`` has one of the documented ``codex exec --json`` shapes."""
    kind = event["type"]
    if kind == "thread.started":
        assert isinstance(event["thread_id"], str) and event["thread_id"]
    elif kind == "turn.started":
        assert set(event) == {"type"}
    elif kind == "turn.completed":
        assert set(event["usage"]) == USAGE_KEYS
        assert all(isinstance(v, int) and v >= 0 for v in event["usage"].values())
    elif kind == "turn.failed":
        assert isinstance(event["error"]["message"], str)
    elif kind == "error":
        assert isinstance(event["message"], str)
    elif kind in ("item.started", "item.completed"):
        item = event["item"]
        assert item["id"].startswith("item_")
        if item["type"] in ("reasoning", "agent_message"):
            assert kind == "item.completed" and isinstance(item["text"], str) and item["text"]
        elif item["type"] == "command_execution":
            assert item["command"].startswith("bash -c ")
            assert isinstance(item["aggregated_output"], str)
            if kind == "item.started":
                assert item["status"] == "in_progress" and "exit_code" not in item
            else:
                assert isinstance(item["exit_code"], int)
                assert item["status"] == ("completed" if item["exit_code"] == 0 else "failed")
        elif item["type"] == "file_change":
            assert item["status"] == "completed"
            for change in item["changes"]:
                assert change["kind"] in ("add", "update", "delete")
                assert Path(change["path"]).is_absolute()
        else:
            raise AssertionError(f"unexpected item type {item['type']!r}")
    else:
        raise AssertionError(f"unexpected event type {kind!r}")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    setup_demo_repo(workdir)
    proc, events = run_agent(workdir, "--fast")
    return workdir, proc, events


def completed_items(events: list[dict], item_type: str) -> list[dict]:
    return [
        e["item"]
        for e in events
        if e["type"] == "item.completed" and e["item"]["type"] == item_type
    ]


def test_setup_makes_one_commit_with_the_project_files(tmp_path):
    setup_demo_repo(tmp_path)
    assert git(tmp_path, "log", "--format=%an|%s").splitlines() == [
        "agtrace demo|Initial textstats package"
    ]
    for rel, text in demo_project_files().items():
        assert (tmp_path / rel).read_text() == text
    assert git(tmp_path, "status", "--porcelain") == ""


def test_stream_is_codex_jsonl_of_documented_shapes(demo_run):
    _, proc, events = demo_run
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n")
    for event in events:
        check_shape(event)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "thread.started"
    assert kinds.count("turn.started") == kinds.count("turn.completed") == 3
    assert kinds[-1] == "turn.completed"
    assert 25 <= kinds.count("item.completed") <= 35


def test_item_ids_are_unique_and_started_items_complete(demo_run):
    _, _, events = demo_run
    completed = [e["item"]["id"] for e in events if e["type"] == "item.completed"]
    started = [e["item"]["id"] for e in events if e["type"] == "item.started"]
    assert len(completed) == len(set(completed))
    assert set(started) <= set(completed)
    for item_id in started:
        i = next(i for i, e in enumerate(events) if e.get("item", {}).get("id") == item_id)
        assert events[i + 1]["type"] == "item.completed"
        assert events[i + 1]["item"]["id"] == item_id


def test_usage_is_cumulative_like_codex(demo_run):
    _, _, events = demo_run
    usages = [e["usage"] for e in events if e["type"] == "turn.completed"]
    for before, after in zip(usages, usages[1:], strict=False):
        assert all(after[k] > before[k] for k in USAGE_KEYS)
    assert all(u["cached_input_tokens"] <= u["input_tokens"] for u in usages)


def test_unittest_runs_fail_fail_pass_with_real_output(demo_run):
    _, _, events = demo_run
    runs = [i for i in completed_items(events, "command_execution") if "unittest" in i["command"]]
    assert [r["exit_code"] for r in runs] == [1, 1, 0]
    assert "ImportError" in runs[0]["aggregated_output"]
    assert "FAILED (failures=1)" in runs[1]["aggregated_output"]
    assert runs[2]["aggregated_output"].rstrip().endswith("OK")
    assert "Ran 5 tests" in runs[2]["aggregated_output"]


def test_commands_include_shell_edit_commit_and_revert(demo_run):
    _, _, events = demo_run
    commands = [i["command"] for i in completed_items(events, "command_execution")]
    assert any("printf" in c and ">> textstats/core.py" in c for c in commands)
    assert sum("git commit" in c for c in commands) == 2
    assert any("git checkout -- textstats/core.py" in c for c in commands)
    changes = [c for i in completed_items(events, "file_change") for c in i["changes"]]
    assert [(Path(c["path"]).name, c["kind"]) for c in changes] == [
        ("test_top_words.py", "add"),
        ("core.py", "update"),
        ("README.md", "update"),
    ]


def test_agent_commits_and_final_files(demo_run):
    workdir, _, events = demo_run
    log = git(workdir, "log", "--format=%an <%ae>|%s").splitlines()
    agent = f"{AGENT_AUTHOR[0]} <{AGENT_AUTHOR[1]}>"
    assert log == [
        f"{agent}|Document average_word_length",
        f"{agent}|Add average_word_length; case-insensitive top_words",
        "agtrace demo <demo@agtrace.invalid>|Initial textstats package",
    ]
    assert git(workdir, "status", "--porcelain") == ""
    assert (workdir / "tests/test_top_words.py").read_text() == NEW_TESTS_PY
    core = (workdir / "textstats/core.py").read_text()
    assert core.startswith(CORE_PY.replace("findall(text)", "findall(text.lower())"))
    assert core.endswith("return sum(map(len, ws)) / len(ws) if ws else 0.0\n")
    assert "lru_cache" not in core
    readme = (workdir / "README.md").read_text()
    assert readme == demo_project_files()["README.md"] + README_SECTION
    assert not list(workdir.rglob("__pycache__"))
    final = completed_items(events, "agent_message")[-1]["text"]
    assert "average_word_length" in final


def test_stream_is_deterministic(demo_run, tmp_path):
    _, _, first = demo_run
    setup_demo_repo(tmp_path)
    proc, second = run_agent(tmp_path, "--fast")
    assert proc.returncode == 0

    def normalize(events, root):
        text = json.dumps(events).replace(str(root), "ROOT")
        return [line for line in text.split("\\n") if "Ran " not in line]

    assert normalize(first, demo_run[0]) == normalize(second, tmp_path)


def test_fail_model_reports_401_and_does_no_work(tmp_path):
    setup_demo_repo(tmp_path)
    proc, events = run_agent(tmp_path, "--fast", "--fail-model")
    assert proc.returncode == 1
    for event in events:
        check_shape(event)
    assert [e["type"] for e in events] == ["thread.started", "turn.started", "error", "turn.failed"]
    assert events[-1]["error"]["message"] == "401 Unauthorized: invalid API key"
    assert len(git(tmp_path, "log", "--oneline").splitlines()) == 1
    assert git(tmp_path, "status", "--porcelain") == ""


def test_secret_option_prints_the_key_in_a_command_output(tmp_path):
    setup_demo_repo(tmp_path)
    env = {**os.environ, "DEMO_API_KEY": "sk-demo-0123456789abcdef"}
    proc, events = run_agent(tmp_path, "--fast", "--secret", env=env)
    assert proc.returncode == 0
    outputs = [i["aggregated_output"] for i in completed_items(events, "command_execution")]
    assert "DEMO_API_KEY=sk-demo-0123456789abcdef\n" in outputs


def test_hang_keeps_running_until_interrupted(tmp_path):
    setup_demo_repo(tmp_path)
    cmd = [sys.executable, "-m", "agtrace.capture.demo_agent", "--fast", "--hang"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        assert json.loads(lines[-1])["type"] == "item.completed"
        time.sleep(0.3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_refuses_to_run_outside_a_demo_project(tmp_path):
    proc, events = run_agent(tmp_path, "--fast")
    assert proc.returncode == 2 and events == []
    assert "--setup" in proc.stderr


def test_setup_option_and_parts_delay(tmp_path):
    proc, events = run_agent(tmp_path, "--setup", "--parts-delay", "0.001")
    assert proc.returncode == 0, proc.stderr
    assert len(git(tmp_path, "log", "--oneline").splitlines()) == 3
