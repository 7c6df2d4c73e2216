"""Drive the pinned tools of ``tools.txt`` offline to record the trajectories they save.

Each tool runs once, in the tiny calc project of ``model_server.py`` (a temp git repo), against
the scripted model server on 127.0.0.1, inside a network namespace with only loopback (as
``run_cli.py`` does for the agent CLIs). What the tool saved (a ``.traj.json``, an OpenHands
conversation directory, Aider's chat history, a Gemini CLI session) is copied to the output
directory and listed in ``result.json``.

    python tests/agents/tool_sessions.py session --tool mini-swe-agent --out /tmp/x
    python tests/agents/tool_sessions.py golden --tool aider   # refresh tests/golden/import/tools

The tools live outside the repository (``install_tools.sh``, ``$AGTRACE_TOOLS_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model_server  # noqa: E402
from model_server import Step, ToolCall  # noqa: E402
from run_cli import base_env, netns_ok, netns_prefix  # noqa: E402

TOOLS_DIR = Path(os.environ.get("AGTRACE_TOOLS_DIR", "/tmp/agtrace-tools"))
TOOLS = ("mini-swe-agent", "mini-swe-agent-1", "aider", "openhands", "gemini-cli", "gemini-cli-0.30")
# tools whose requests offer no tools: every request takes the next scripted step
TEXT_TOOLS = ("mini-swe-agent-1", "aider")
MODEL = "scripted-model"
GEMINI_MODEL = "gemini-2.5-flash"
GOLDEN_DIR = HERE.parent / "golden" / "import" / "tools"
TASK = model_server.TASK_PROMPT
TEST_CMD = model_server.TEST_CMD
TEST_FILE = model_server.TEST_CALC_PY.decode()


def tool_bin(tool: str, exe: str) -> Path:
    if tool.startswith("gemini-cli"):
        return TOOLS_DIR / tool / "node_modules" / ".bin" / exe
    return TOOLS_DIR / tool / "bin" / exe


def available(tool: str) -> tuple[bool, str]:
    """(ok, reason): is the pinned tool installed and can it be sandboxed?"""
    exe = {"mini-swe-agent": "mini", "mini-swe-agent-1": "mini", "aider": "aider",
           "openhands": "python", "harbor": "python", "gemini-cli": "gemini",
           "gemini-cli-0.30": "gemini"}[tool]
    if not tool_bin(tool, exe).exists():
        return False, f"{tool_bin(tool, exe)} missing (run tests/agents/install_tools.sh {tool})"
    if not netns_ok():
        return False, "cannot create a network namespace with loopback (need root + unshare)"
    return True, ""


def _u(i: int) -> model_server.Usage:
    return model_server._usage(i, reasoning=i % 2 == 0)  # noqa: SLF001 - the same shape of numbers


# -- scripted sessions, in each tool's own dialect ------------------------------------------------


def mini_steps(wd: str) -> list[Step]:
    """Bash-only: list, read, write the test, run (fail), fix, run (pass), submit."""
    cmds = ["ls -la", "cat calc.py", f"cat > test_calc.py <<'EOF'\n{TEST_FILE}EOF", TEST_CMD,
            "sed -i 's/return a - b/return a + b/' calc.py", TEST_CMD,
            "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached"]
    texts = ["Let me look at the project.", "Read calc.py.", "Write a test for add.",
             "Run the tests.", "add subtracts; fix it.", "Run the tests again.",
             "The tests pass; submit."]
    return [Step(usage=_u(i), text=texts[i], tool=ToolCall("bash", {"command": c}), label=f"s{i}")
            for i, c in enumerate(cmds)]


def mini1_steps(wd: str) -> list[Step]:
    """mini-SWE-agent 1.x reads one ``bash`` code block from each plain-text answer."""
    return [Step(usage=s.usage, text=f"THOUGHT: {s.text}\n\n```bash\n{s.tool.arguments['command']}\n```",
                 label=s.label) for s in mini_steps(wd)]


def openhands_steps(wd: str) -> list[Step]:
    """The SDK's terminal and file_editor tools, then ``finish``."""
    calc = os.path.join(wd, "calc.py")
    test = os.path.join(wd, "test_calc.py")
    calls = [
        ToolCall("terminal", {"command": "ls -la", "security_risk": "LOW"}),
        ToolCall("file_editor", {"command": "view", "path": calc, "security_risk": "LOW"}),
        ToolCall("file_editor", {"command": "create", "path": test, "file_text": TEST_FILE,
                                 "security_risk": "LOW"}),
        ToolCall("terminal", {"command": TEST_CMD, "security_risk": "LOW"}),
        ToolCall("file_editor", {"command": "str_replace", "path": calc,
                                 "old_str": "return a - b", "new_str": "return a + b",
                                 "security_risk": "LOW"}),
        ToolCall("terminal", {"command": TEST_CMD, "security_risk": "LOW"}),
        ToolCall("finish", {"message": model_server.FINAL_ANSWER}),
    ]
    return [Step(usage=_u(i), reasoning="Think first." if i % 2 == 0 else None, tool=c,
                 label=f"s{i}") for i, c in enumerate(calls)]


AIDER_TEST = ("I will add tests for calc.py first.\n\ntest_calc.py\n```python\n<<<<<<< SEARCH\n=======\n"
              + TEST_FILE + ">>>>>>> REPLACE\n```\n")
AIDER_FIX = ("`add` subtracts; make it add.\n\ncalc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n"
             "=======\n    return a + b\n>>>>>>> REPLACE\n```\n")


def aider_steps(wd: str) -> list[Step]:
    """The edit, its commit message, the fix after the failing auto-test, its commit message."""
    texts = [AIDER_TEST, "test: add unit tests for calc", AIDER_FIX, "fix: add returns a + b"]
    return [Step(usage=_u(i), text=text, label=f"a{i}") for i, text in enumerate(texts)]


def gemini_steps(wd: str) -> list[Step]:
    calc = os.path.join(wd, "calc.py")
    test = os.path.join(wd, "test_calc.py")
    calls = [
        ToolCall("list_directory", {"dir_path": wd}),
        ToolCall("read_file", {"file_path": calc}),
        ToolCall("write_file", {"file_path": test, "content": TEST_FILE}),
        ToolCall("run_shell_command", {"command": TEST_CMD, "description": "Run the tests"}),
        ToolCall("replace", {"file_path": calc, "old_string": "return a - b",
                             "new_string": "return a + b", "instruction": "fix add"}),
        ToolCall("run_shell_command", {"command": TEST_CMD, "description": "Run the tests"}),
    ]
    steps = [Step(usage=_u(i), reasoning="Think first." if i % 2 == 0 else None, tool=c,
                  label=f"s{i}") for i, c in enumerate(calls)]
    steps.append(Step(usage=_u(len(calls), ), reasoning="Both pass.", text=model_server.FINAL_ANSWER,
                      label="answer"))
    return steps


STEPS = {"mini-swe-agent": mini_steps, "mini-swe-agent-1": mini1_steps, "openhands": openhands_steps,
         "aider": aider_steps, "gemini-cli": gemini_steps, "gemini-cli-0.30": gemini_steps}


# -- running one tool (inside the namespace) ----------------------------------------------------


def _command(tool: str, wd: Path, out: Path, home: Path, url: str) -> tuple[list[str], dict[str, str]]:
    env = base_env(home)
    env["PATH"] = os.pathsep.join([str(tool_bin(tool, "x").parent), env["PATH"]])
    env.update({"OPENAI_API_KEY": "sk-scripted-dummy", "OPENAI_API_BASE": f"{url}/v1",
                "OPENAI_BASE_URL": f"{url}/v1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY": "False", "HF_HUB_OFFLINE": "1"})
    if tool.startswith("mini-swe-agent"):
        env.update({"MSWEA_COST_TRACKING": "ignore_errors", "MSWEA_CONFIGURED": "true",
                    "MSWEA_SILENT_STARTUP": "1"})
        return [str(tool_bin(tool, "mini")), "-m", f"openai/{MODEL}", "-t", TASK, "--yolo",
                "--exit-immediately", "-o", str(out / "calc.traj.json"), "-l", "0"], env
    if tool == "aider":
        return [str(tool_bin(tool, "aider")), "--model", f"openai/{MODEL}", "--yes-always",
                "--no-check-update", "--no-show-model-warnings", "--no-analytics",
                "--no-auto-lint", "--no-pretty", "--no-stream", "--no-gitignore",
                "--edit-format", "diff", "--map-tokens", "0",
                "--llm-history-file", str(wd / ".aider.llm.history"),
                "--test-cmd", TEST_CMD, "--auto-test",
                "--message", TASK, "calc.py"], env
    if tool == "openhands":
        env["AGTRACE_OH_URL"] = f"{url}/v1"
        return [str(tool_bin(tool, "python")), str(HERE / "openhands_session.py"), str(wd),
                str(out / "conversations"), MODEL, TASK], env
    if tool.startswith("gemini-cli"):
        env.update({"GEMINI_API_KEY": "scripted-dummy", "GOOGLE_GEMINI_BASE_URL": url,
                    "GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_SANDBOX": "false"})
        gh = home / ".gemini"
        gh.mkdir(parents=True, exist_ok=True)
        (gh / "settings.json").write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True,
                        "checkpointing": {"enabled": False}},
            "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
            "model": {"name": GEMINI_MODEL}, "ide": {"enabled": False},
        }, indent=2))
        return [str(tool_bin(tool, "gemini")), "--model", GEMINI_MODEL, "--approval-mode", "yolo",
                "--output-format", "stream-json", "-p", TASK], env
    raise ValueError(tool)


def _collect(tool: str, wd: Path, out: Path, home: Path) -> list[str]:
    """Copy what the tool saved into ``out``; returns the saved paths, relative to ``out``."""
    saved: list[str] = []
    if tool.startswith("mini-swe-agent"):
        saved = ["calc.traj.json"]
    elif tool == "aider":
        for name in (".aider.chat.history.md", ".aider.llm.history", ".aider.input.history"):
            if (wd / name).exists():
                shutil.copyfile(wd / name, out / name.lstrip("."))
                saved.append(name.lstrip("."))
    elif tool == "openhands":
        saved = [str(p.relative_to(out)) for p in sorted((out / "conversations").iterdir())]
    elif tool.startswith("gemini-cli"):
        for p in sorted((home / ".gemini" / "tmp").rglob("session-*.json*")):
            shutil.copyfile(p, out / p.name)
            saved.append(p.name)
    return saved


class OrderedModel(model_server.ScriptedModel):
    """For tools that offer the model no tools: every request takes the next step."""

    def next_step(self, main: bool) -> tuple[int | None, Step]:
        return super().next_step(True)


def run_inner(tool: str, out: Path, timeout: float) -> dict[str, Any]:
    wd = out / "work"
    home = out / "home"
    if not wd.exists():
        model_server.write_project(wd)
    steps = STEPS[tool](str(wd))
    if tool in TEXT_TOOLS:
        srv = model_server.ScriptedServer(OrderedModel(steps, str(out / "requests.jsonl"), str(wd)))
        import threading
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    else:
        srv = model_server.start_server(steps, str(out / "requests.jsonl"), str(wd))
    try:
        argv, env = _command(tool, wd, out, home, srv.url)
        t0 = time.monotonic()
        with open(out / "stdout.txt", "wb") as so, open(out / "stderr.txt", "wb") as se:
            try:
                rc: int | None = subprocess.run(argv, cwd=wd, env=env, stdout=so, stderr=se,
                                                stdin=subprocess.DEVNULL, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = None
        m = srv.model
        res = {"tool": tool, "argv": argv, "returncode": rc, "seconds": round(time.monotonic() - t0, 1),
               "steps": len(steps), "steps_served": m.index, "main_calls": m.main_calls,
               "side_calls": m.side_calls, "script_finished": m.finished,
               "saved": _collect(tool, wd, out, home)}
    finally:
        srv.shutdown()
        srv.server_close()
    (out / "result.json").write_text(json.dumps(res, indent=2))
    return res


def run_in_netns(tool: str, out: str | os.PathLike[str], timeout: float = 300.0) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [*netns_prefix(), sys.executable, str(Path(__file__).resolve()), "inner", "--tool", tool,
           "--out", str(out), "--timeout", str(timeout)]
    subprocess.run(cmd, check=True, timeout=timeout + 60)
    return json.loads((out / "result.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("inner", "session", "golden"):
        sp = sub.add_parser(name)
        sp.add_argument("--tool", choices=TOOLS, required=True)
        sp.add_argument("--out", default="")
        sp.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args(argv)
    if args.cmd == "inner":
        run_inner(args.tool, Path(args.out), args.timeout)
        return 0
    if args.cmd == "golden":  # a fixed path, so paths inside the samples are stable
        out = Path("/tmp/agtrace-golden-tools") / args.tool
        shutil.rmtree(out, ignore_errors=True)
        res = run_in_netns(args.tool, out, args.timeout)
        dest = GOLDEN_DIR / args.tool
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for rel in res["saved"]:
            src = out / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel)
            else:
                shutil.copyfile(src, dest / rel)
        print(json.dumps({k: v for k, v in res.items() if k != "argv"}, indent=2))
        return 0 if res["returncode"] == 0 else 1
    res = run_in_netns(args.tool, args.out, args.timeout)
    print(json.dumps({k: v for k, v in res.items() if k != "argv"}, indent=2))
    return 0 if res["returncode"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
