"""Scripted model server for driving real agent CLIs offline.

A small threaded HTTP server bound to 127.0.0.1 that answers, with streaming
(SSE), the three wire protocols the agent CLIs speak:

* OpenAI Responses API   ``POST /v1/responses``         (Codex)
* Anthropic Messages API ``POST /v1/messages``          (Claude Code)
* OpenAI chat completions ``POST /v1/chat/completions`` (OpenCode)
* Gemini ``POST /v1beta/models/<model>:generateContent`` and ``:streamGenerateContent``
  (Gemini CLI; ``:countTokens`` is answered too)

plus ``GET /v1/models`` and harmless answers to side requests
(``/v1/messages/count_tokens``, title generation, ...).

The server is driven by a *script*: a list of :class:`Step`, each being what
the model answers at its next "agent" call (reasoning, text and/or one tool
call).  Every main-loop request (one that offers tools) takes the next step;
the request content is ignored.  Requests that offer no tools (title
generation, quota probes, ...) are answered with a fixed short text and do not
consume a step.  Once the script is exhausted the server answers with a final
text so a CLI never hangs.  Every request is appended to a JSONL log.

Token usage per response is deterministic and given by the step
(:class:`Usage`, OpenAI semantics: ``input_tokens`` *includes* the cached
tokens, ``output_tokens`` *includes* the reasoning tokens).  On the Anthropic
wire ``input_tokens`` is sent as ``input - cached`` and the cached part as
``cache_read_input_tokens`` (that is how Anthropic reports them).

``scripted_session(cli)`` gives the scripted multi-step session for each CLI
(list files, read a file, write a test, run the tests and see them fail, fix
the code, run the tests again and see them pass, answer) using the CLI's own
tool names and argument shapes; ``expected_states(cli)`` gives the expected
project files after each step.

Run standalone::

    python tests/agents/model_server.py --cli codex --log /tmp/req.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLIS = ("codex", "claude-code", "opencode")


# --------------------------------------------------------------------------
# script


@dataclasses.dataclass(frozen=True)
class Usage:
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclasses.dataclass(frozen=True)
class ToolCall:
    name: str
    # JSON arguments (dict) for function tools; a raw string for Codex
    # "custom" (freeform) tools such as apply_patch.
    arguments: dict[str, Any] | str
    custom: bool = False


@dataclasses.dataclass(frozen=True)
class Step:
    """What the model answers at one call."""

    usage: Usage
    text: str | None = None
    reasoning: str | None = None
    tool: ToolCall | None = None
    label: str = ""


# Answer to requests that do not consume a step (no tools offered).
SIDE_TEXT = "Scripted session"
SIDE_USAGE = Usage(input_tokens=50, cached_tokens=0, output_tokens=3)
# Answer once the script is exhausted.
DONE_TEXT = "Done."
DONE_USAGE = Usage(input_tokens=10, cached_tokens=0, output_tokens=2)


# --------------------------------------------------------------------------
# the tiny project and the scripted session

CALC_PY = b'''"""Tiny calculator."""


def add(a, b):
    return a - b


def mul(a, b):
    return a * b
'''

CALC_FIXED_PY = CALC_PY.replace(b"return a - b", b"return a + b")

README_MD = b"# calc\n\nA tiny calculator.\n"

GITIGNORE = b"__pycache__/\n*.pyc\n"

TEST_CALC_PY = b'''import unittest

from calc import add, mul


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(mul(2, 3), 6)


if __name__ == "__main__":
    unittest.main()
'''

INITIAL_FILES: dict[str, bytes] = {
    ".gitignore": GITIGNORE,
    "README.md": README_MD,
    "calc.py": CALC_PY,
}

# -B: no __pycache__ in the workdir, so snapshots only hold project files.
TEST_CMD = "python3 -B -m unittest -v"

FINAL_ANSWER = "Fixed `add` in calc.py (it subtracted); the new tests in test_calc.py pass."


def write_project(workdir: str | os.PathLike[str], *, git: bool = True) -> None:
    """Create the tiny project (and a git repo with one commit) in workdir."""
    import subprocess

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    for rel, data in INITIAL_FILES.items():
        (wd / rel).write_bytes(data)
    if git:
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["commit", "-q", "-m", "initial"]):
            subprocess.run(["git", *args], cwd=wd, env=env, check=True)


def project_files(workdir: str | os.PathLike[str]) -> dict[str, bytes]:
    """Current project files (everything but .git and __pycache__)."""
    wd = Path(workdir)
    out: dict[str, bytes] = {}
    for p in sorted(wd.rglob("*")):
        rel = p.relative_to(wd).as_posix()
        parts = rel.split("/")
        if parts[0] == ".git" or "__pycache__" in parts or not p.is_file():
            continue
        out[rel] = p.read_bytes()
    return out


def _usage(i: int, *, reasoning: bool = False) -> Usage:
    # deterministic and distinct per step: input grows, part of it cached
    inp = 1000 + 100 * i
    cached = 0 if i == 0 else 800 + 100 * (i - 1)
    rt = 7 + i if reasoning else 0
    return Usage(input_tokens=inp, cached_tokens=cached, output_tokens=20 + 5 * i + rt,
                 reasoning_tokens=rt)


def _codex_patch_add(path: str, data: bytes) -> str:
    lines = data.decode().splitlines()
    return "*** Begin Patch\n*** Add File: " + path + "\n" + "".join(
        "+" + ln + "\n" for ln in lines) + "*** End Patch\n"


CODEX_FIX_PATCH = (
    "*** Begin Patch\n"
    "*** Update File: calc.py\n"
    "@@\n"
    " def add(a, b):\n"
    "-    return a - b\n"
    "+    return a + b\n"
    "*** End Patch\n"
)


# Codex versions whose shell tool is `shell_command` {command: str, workdir} (0.66 with a
# gpt-5-codex model) instead of the unified `exec_command` {cmd, workdir, yield_time_ms}
CODEX_SHELL_COMMAND = {"0.66.0"}


def _tool_plan(cli: str, workdir: str | None, version: str = "") -> list[tuple[str, ToolCall]]:
    """(label, tool call) for the six tool steps, in each CLI's own dialect (``version`` of
    the CLI, when its tools differ between versions)."""
    wd = workdir or "."

    def p(rel: str) -> str:  # absolute paths for tools that want them
        return os.path.join(wd, rel)

    if cli == "codex" and version in CODEX_SHELL_COMMAND:
        return [
            ("list", ToolCall("shell_command", {"command": "ls -la", "workdir": wd})),
            ("read", ToolCall("shell_command", {"command": "cat calc.py", "workdir": wd})),
            ("write_test", ToolCall("apply_patch", _codex_patch_add("test_calc.py", TEST_CALC_PY),
                                    custom=True)),
            ("run_fail", ToolCall("shell_command", {"command": TEST_CMD, "workdir": wd})),
            ("fix", ToolCall("apply_patch", CODEX_FIX_PATCH, custom=True)),
            ("run_pass", ToolCall("shell_command", {"command": TEST_CMD, "workdir": wd})),
        ]
    if cli == "codex":
        # Codex (gpt-5* catalog models) offers `exec_command` (unified exec)
        # and `apply_patch` as a freeform custom tool.
        return [
            ("list", ToolCall("exec_command", {"cmd": "ls -la", "workdir": wd,
                                               "yield_time_ms": 10000})),
            ("read", ToolCall("exec_command", {"cmd": "cat calc.py", "workdir": wd,
                                               "yield_time_ms": 10000})),
            ("write_test", ToolCall("apply_patch", _codex_patch_add("test_calc.py", TEST_CALC_PY),
                                    custom=True)),
            ("run_fail", ToolCall("exec_command", {"cmd": TEST_CMD, "workdir": wd,
                                                   "yield_time_ms": 30000})),
            ("fix", ToolCall("apply_patch", CODEX_FIX_PATCH, custom=True)),
            ("run_pass", ToolCall("exec_command", {"cmd": TEST_CMD, "workdir": wd,
                                                   "yield_time_ms": 30000})),
        ]
    if cli == "claude-code":
        return [
            ("list", ToolCall("Bash", {"command": "ls -la", "description": "List files"})),
            ("read", ToolCall("Read", {"file_path": p("calc.py")})),
            ("write_test", ToolCall("Write", {"file_path": p("test_calc.py"),
                                              "content": TEST_CALC_PY.decode()})),
            ("run_fail", ToolCall("Bash", {"command": TEST_CMD, "description": "Run the tests"})),
            ("fix", ToolCall("Edit", {"file_path": p("calc.py"), "old_string": "return a - b",
                                      "new_string": "return a + b"})),
            ("run_pass", ToolCall("Bash", {"command": TEST_CMD, "description": "Run the tests"})),
        ]
    if cli == "opencode":
        return [
            ("list", ToolCall("bash", {"command": "ls -la", "description": "List files"})),
            ("read", ToolCall("read", {"filePath": p("calc.py")})),
            ("write_test", ToolCall("write", {"filePath": p("test_calc.py"),
                                              "content": TEST_CALC_PY.decode()})),
            ("run_fail", ToolCall("bash", {"command": TEST_CMD, "description": "Run the tests"})),
            ("fix", ToolCall("edit", {"filePath": p("calc.py"), "oldString": "return a - b",
                                      "newString": "return a + b"})),
            ("run_pass", ToolCall("bash", {"command": TEST_CMD, "description": "Run the tests"})),
        ]
    raise ValueError(f"unknown cli {cli!r}")


TASK_PROMPT = ("The add function in calc.py looks wrong. Write unit tests for calc.py in "
               "test_calc.py, run them, fix the bug and run the tests again.")

_REASONING = {
    "list": "Let me look at the project first.",
    "read": "calc.py holds the functions; read it.",
    "write_test": "add subtracts. Write a test that shows it.",
    "run_fail": "Run the new tests.",
    "fix": "test_add fails as expected; fix add.",
    "run_pass": "Run the tests again.",
}


def scripted_session(cli: str, workdir: str | None = None, version: str = "") -> list[Step]:
    """The scripted session for ``cli`` (at ``version``, default the newest pinned): six tool
    steps and a final answer.

    Tools that need absolute paths get them from ``workdir``.
    """
    steps: list[Step] = []
    for i, (label, call) in enumerate(_tool_plan(cli, workdir, version)):
        # reasoning on every other step so both shapes are covered
        reasoning = _REASONING[label] if i % 2 == 0 else None
        steps.append(Step(usage=_usage(i, reasoning=reasoning is not None), reasoning=reasoning,
                          text=None, tool=call, label=label))
    n = len(steps)
    steps.append(Step(usage=_usage(n, reasoning=True), reasoning="Both tests pass now.",
                      text=FINAL_ANSWER, label="answer"))
    return steps


def expected_states(cli: str, version: str = "") -> list[dict[str, bytes]]:
    """Project files expected after each step of ``scripted_session(cli, version=version)``."""
    s0 = dict(INITIAL_FILES)
    s_test = dict(s0, **{"test_calc.py": TEST_CALC_PY})
    s_fixed = dict(s_test, **{"calc.py": CALC_FIXED_PY})
    by_label = {"list": s0, "read": s0, "write_test": s_test, "run_fail": s_test,
                "fix": s_fixed, "run_pass": s_fixed, "answer": s_fixed}
    return [dict(by_label[step.label]) for step in scripted_session(cli, version=version)]


# The "edit_after_big_write" script: a write whose record is megabytes long (the loop takes a
# while to store it), then at once an edit of another file. A capture that froze the agent only
# when its loop got to the write's part-ending line let the edit into the write's tree.
BIG_TXT = b"".join(b"line %06d of a large generated file\n" % i for i in range(25_000))


def _big_write_plan(cli: str, workdir: str | None) -> list[tuple[str, ToolCall]]:
    wd = workdir or "."
    if cli == "claude-code":  # (both CLIs edit only a file that was read)
        return [
            ("read", ToolCall("Read", {"file_path": os.path.join(wd, "calc.py")})),
            ("big_write", ToolCall("Write", {"file_path": os.path.join(wd, "big.txt"),
                                             "content": BIG_TXT.decode()})),
            ("fix", ToolCall("Edit", {"file_path": os.path.join(wd, "calc.py"),
                                      "old_string": "return a - b", "new_string": "return a + b"})),
        ]
    if cli == "opencode":
        return [
            ("read", ToolCall("read", {"filePath": os.path.join(wd, "calc.py")})),
            ("big_write", ToolCall("write", {"filePath": os.path.join(wd, "big.txt"),
                                             "content": BIG_TXT.decode()})),
            ("fix", ToolCall("edit", {"filePath": os.path.join(wd, "calc.py"),
                                      "oldString": "return a - b", "newString": "return a + b"})),
        ]
    raise ValueError(f"no edit_after_big_write script for {cli!r}")


SCRIPTS = ("session", "edit_after_big_write")
"""The scripts :func:`script_steps` knows (``run_cli.py --script``)."""


def script_steps(script: str, cli: str, workdir: str | None = None,
                 version: str = "") -> list[Step]:
    """The steps of ``script``: ``session`` (:func:`scripted_session`) or
    ``edit_after_big_write`` (read calc.py, a ~2 MB write of big.txt, at once the fix of
    calc.py, an answer; each tool step reasoned)."""
    if script == "session":
        return scripted_session(cli, workdir, version)
    plan = _big_write_plan(cli, workdir)
    steps = [Step(usage=_usage(i), reasoning=f"Step {label}.", tool=call, label=label)
             for i, (label, call) in enumerate(plan)]
    return [*steps, Step(usage=_usage(len(plan)), text=FINAL_ANSWER, label="answer")]


def script_states(script: str, cli: str, version: str = "") -> list[dict[str, bytes]]:
    """Project files expected after each step of :func:`script_steps`."""
    if script == "session":
        return expected_states(cli, version)
    big = dict(INITIAL_FILES, **{"big.txt": BIG_TXT})
    fixed = dict(big, **{"calc.py": CALC_FIXED_PY})
    return [dict(INITIAL_FILES), big, fixed, fixed]


def expected_usage_totals(cli: str, version: str = "") -> Usage:
    steps = scripted_session(cli, version=version)
    return Usage(sum(s.usage.input_tokens for s in steps), sum(s.usage.cached_tokens for s in steps),
                 sum(s.usage.output_tokens for s in steps),
                 sum(s.usage.reasoning_tokens for s in steps))


# --------------------------------------------------------------------------
# server


def _sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _chunks(text: str, n: int = 3) -> list[str]:
    """Split text into n roughly equal pieces (to exercise delta handling)."""
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


class ScriptedModel:
    """Hands out steps in order; thread-safe; logs requests."""

    def __init__(self, steps: list[Step], log_path: str | None = None,
                 workdir: str | None = None, delay_s: float = 0.0) -> None:
        # delay_s: think time before answering a main request (a real model is
        # never instant; a recorder snapshotting after each part needs the gap)
        self.delay_s = delay_s
        self.steps = list(steps)
        self.index = 0
        self.lock = threading.Lock()
        self.log_path = log_path
        self.workdir = workdir
        self.seq = itertools.count()
        self.main_calls = 0
        self.side_calls = 0

    def next_step(self, main: bool) -> tuple[int | None, Step]:
        with self.lock:
            if not main:
                self.side_calls += 1
                return None, Step(usage=SIDE_USAGE, text=SIDE_TEXT, label="side")
            self.main_calls += 1
            if self.index < len(self.steps):
                i = self.index
                self.index += 1
                return i, self.steps[i]
            return None, Step(usage=DONE_USAGE, text=DONE_TEXT, label="exhausted")

    def log(self, rec: dict[str, Any]) -> None:
        rec = {"seq": next(self.seq), "time": time.time(), **rec}
        if self.workdir:
            try:
                rec["workdir_files"] = {k: hashlib.sha256(v).hexdigest()[:16]
                                        for k, v in project_files(self.workdir).items()}
            except OSError:
                pass
        if self.log_path:
            with self.lock, open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    @property
    def finished(self) -> bool:
        return self.index >= len(self.steps)


_ID_COUNTER = itertools.count(1)


def _ids(prefix: str, n: int | None) -> str:
    return f"{prefix}_{'s' if n is None else n}_{next(_ID_COUNTER):04d}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedServer  # type: ignore[assignment]

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        if os.environ.get("MODEL_SERVER_VERBOSE"):
            sys.stderr.write("model_server: " + fmt % args + "\n")

    # ---- plumbing
    def _read_body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding") in ("gzip",):
            import gzip
            raw = gzip.decompress(raw)
        elif self.headers.get("Content-Encoding") == "zstd":
            try:
                import zstandard
                raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            except Exception:  # noqa: BLE001
                pass
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def _json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send(self, chunk: bytes) -> None:
        self.wfile.write(chunk)
        self.wfile.flush()

    # ---- routes
    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        model = self.server.model
        model.log({"method": "GET", "path": self.path})
        path = self.path.split("?")[0]
        if path.endswith("/models"):
            # OpenAI list shape plus Codex's {"models": []} (empty: use bundled catalog)
            self._json(200, {"object": "list", "models": [], "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "scripted",
                 "type": "model", "display_name": m}
                for m in ("gpt-5.1-codex", "claude-sonnet-4-5", "scripted-model")]})
            return
        self._json(404, {"error": {"message": f"not found: {path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        path = self.path.split("?")[0]
        model = self.server.model
        if path.endswith(":countTokens"):
            model.log({"method": "POST", "path": self.path, "kind": "count_tokens", "body": body})
            self._json(200, {"totalTokens": 100})
            return
        if path.endswith("/messages/count_tokens"):
            model.log({"method": "POST", "path": self.path, "kind": "count_tokens", "body": body})
            self._json(200, {"input_tokens": 100})
            return
        tools = (body or {}).get("tools") if isinstance(body, dict) else None
        main = bool(tools)
        idx, step = model.next_step(main)
        model.log({"method": "POST", "path": self.path, "kind": "main" if main else "side",
                   "step": idx, "label": step.label,
                   "headers": {k.lower(): v for k, v in self.headers.items()
                               if k.lower() in ("user-agent", "x-app", "anthropic-beta",
                                                "openai-beta", "session_id")},
                   "body": body})
        if main and model.delay_s:
            time.sleep(model.delay_s)
        stream = bool((body or {}).get("stream")) if isinstance(body, dict) else False
        req_model = (body or {}).get("model", "scripted-model") if isinstance(body, dict) else ""
        if path.endswith("/responses"):
            self._responses(step, idx, req_model)
        elif path.endswith("/messages"):
            self._anthropic(step, idx, req_model, stream)
        elif path.endswith("/chat/completions"):
            self._chat(step, idx, req_model, stream)
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            gemini_model = path.rsplit("/", 1)[-1].split(":", 1)[0]
            self._gemini(step, idx, gemini_model, ":streamGenerateContent" in path)
        else:
            self._json(404, {"error": {"message": f"not found: {path}"}})

    # ---- OpenAI Responses API (Codex)
    def _responses(self, step: Step, idx: int | None, model_name: str) -> None:
        rid = _ids("resp", idx)
        u = step.usage
        usage = {"input_tokens": u.input_tokens,
                 "input_tokens_details": {"cached_tokens": u.cached_tokens},
                 "output_tokens": u.output_tokens,
                 "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                 "total_tokens": u.total_tokens}
        self._start_sse()
        seq = itertools.count()

        def ev(typ: str, **kw: Any) -> None:
            self._send(_sse(typ, {"type": typ, "sequence_number": next(seq), **kw}))

        base = {"id": rid, "object": "response", "created_at": int(time.time()),
                "model": model_name, "status": "in_progress", "output": []}
        ev("response.created", response=base)
        ev("response.in_progress", response=base)
        out_items: list[dict[str, Any]] = []
        oi = 0
        if step.reasoning:
            item = {"type": "reasoning", "id": f"rs_{rid}", "summary": []}
            ev("response.output_item.added", output_index=oi, item=item)
            ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=oi,
               summary_index=0, part={"type": "summary_text", "text": ""})
            for d in _chunks(step.reasoning):
                ev("response.reasoning_summary_text.delta", item_id=item["id"], output_index=oi,
                   summary_index=0, delta=d)
            ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=oi,
               summary_index=0, text=step.reasoning)
            ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=oi,
               summary_index=0, part={"type": "summary_text", "text": step.reasoning})
            done = dict(item, summary=[{"type": "summary_text", "text": step.reasoning}],
                        encrypted_content=None)
            ev("response.output_item.done", output_index=oi, item=done)
            out_items.append(done)
            oi += 1
        if step.text:
            mid = f"msg_{rid}"
            item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress",
                    "content": []}
            ev("response.output_item.added", output_index=oi, item=item)
            ev("response.content_part.added", item_id=mid, output_index=oi, content_index=0,
               part={"type": "output_text", "text": "", "annotations": []})
            for d in _chunks(step.text):
                ev("response.output_text.delta", item_id=mid, output_index=oi, content_index=0,
                   delta=d)
            ev("response.output_text.done", item_id=mid, output_index=oi, content_index=0,
               text=step.text)
            part = {"type": "output_text", "text": step.text, "annotations": []}
            ev("response.content_part.done", item_id=mid, output_index=oi, content_index=0,
               part=part)
            done = dict(item, status="completed", content=[part])
            ev("response.output_item.done", output_index=oi, item=done)
            out_items.append(done)
            oi += 1
        if step.tool:
            t = step.tool
            cid = f"call_{rid}"
            if t.custom:
                item = {"type": "custom_tool_call", "id": f"ctc_{rid}", "call_id": cid,
                        "name": t.name, "input": "", "status": "in_progress"}
                ev("response.output_item.added", output_index=oi, item=item)
                inp = t.arguments if isinstance(t.arguments, str) else json.dumps(t.arguments)
                for d in _chunks(inp):
                    ev("response.custom_tool_call_input.delta", item_id=item["id"],
                       output_index=oi, delta=d)
                ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=oi,
                   input=inp)
                done = dict(item, input=inp, status="completed")
            else:
                args = t.arguments if isinstance(t.arguments, str) else json.dumps(t.arguments)
                item = {"type": "function_call", "id": f"fc_{rid}", "call_id": cid,
                        "name": t.name, "arguments": "", "status": "in_progress"}
                ev("response.output_item.added", output_index=oi, item=item)
                for d in _chunks(args):
                    ev("response.function_call_arguments.delta", item_id=item["id"],
                       output_index=oi, delta=d)
                ev("response.function_call_arguments.done", item_id=item["id"], output_index=oi,
                   arguments=args)
                done = dict(item, arguments=args, status="completed")
            ev("response.output_item.done", output_index=oi, item=done)
            out_items.append(done)
        ev("response.completed", response=dict(base, status="completed", output=out_items,
                                               usage=usage))

    # ---- Anthropic Messages API (Claude Code)
    def _anthropic(self, step: Step, idx: int | None, model_name: str, stream: bool) -> None:
        mid = _ids("msg", idx)
        u = step.usage
        content: list[dict[str, Any]] = []
        if step.reasoning:
            content.append({"type": "thinking", "thinking": step.reasoning,
                            "signature": "c2NyaXB0ZWQ="})
        if step.text:
            content.append({"type": "text", "text": step.text})
        if step.tool:
            args = step.tool.arguments
            if isinstance(args, str):
                args = json.loads(args)
            content.append({"type": "tool_use", "id": f"toolu_{mid}", "name": step.tool.name,
                            "input": args})
        stop = "tool_use" if step.tool else "end_turn"
        usage_start = {"input_tokens": u.input_tokens - u.cached_tokens,
                       "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": u.cached_tokens, "output_tokens": 1}
        usage_end = dict(usage_start, output_tokens=u.output_tokens)
        if not stream:
            self._json(200, {"id": mid, "type": "message", "role": "assistant",
                             "model": model_name, "content": content, "stop_reason": stop,
                             "stop_sequence": None, "usage": usage_end})
            return
        self._start_sse()

        def ev(typ: str, **kw: Any) -> None:
            self._send(_sse(typ, {"type": typ, **kw}))

        ev("message_start", message={"id": mid, "type": "message", "role": "assistant",
                                     "model": model_name, "content": [], "stop_reason": None,
                                     "stop_sequence": None, "usage": usage_start})
        for i, block in enumerate(content):
            if block["type"] == "thinking":
                ev("content_block_start", index=i,
                   content_block={"type": "thinking", "thinking": "", "signature": ""})
                for d in _chunks(block["thinking"]):
                    ev("content_block_delta", index=i, delta={"type": "thinking_delta",
                                                              "thinking": d})
                ev("content_block_delta", index=i, delta={"type": "signature_delta",
                                                          "signature": block["signature"]})
            elif block["type"] == "text":
                ev("content_block_start", index=i, content_block={"type": "text", "text": ""})
                for d in _chunks(block["text"]):
                    ev("content_block_delta", index=i, delta={"type": "text_delta", "text": d})
            else:
                ev("content_block_start", index=i,
                   content_block={"type": "tool_use", "id": block["id"], "name": block["name"],
                                  "input": {}})
                for d in _chunks(json.dumps(block["input"])):
                    ev("content_block_delta", index=i, delta={"type": "input_json_delta",
                                                              "partial_json": d})
            ev("content_block_stop", index=i)
        ev("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage=usage_end)
        ev("message_stop")

    # ---- OpenAI chat completions (OpenCode)
    def _chat(self, step: Step, idx: int | None, model_name: str, stream: bool) -> None:
        cid = _ids("chatcmpl", idx)
        u = step.usage
        usage = {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                 "total_tokens": u.total_tokens,
                 "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
                 "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}
        tool_calls = []
        if step.tool:
            args = step.tool.arguments
            tool_calls.append({"index": 0, "id": f"call_{cid}", "type": "function",
                               "function": {"name": step.tool.name,
                                            "arguments": args if isinstance(args, str)
                                            else json.dumps(args)}})
        finish = "tool_calls" if tool_calls else "stop"
        created = int(time.time())
        if not stream:
            msg: dict[str, Any] = {"role": "assistant", "content": step.text}
            if step.reasoning:
                msg["reasoning_content"] = step.reasoning
            if tool_calls:
                msg["tool_calls"] = [{k: v for k, v in tc.items() if k != "index"}
                                     for tc in tool_calls]
            self._json(200, {"id": cid, "object": "chat.completion", "created": created,
                             "model": model_name, "choices": [{"index": 0, "message": msg,
                                                               "finish_reason": finish}],
                             "usage": usage})
            return
        self._start_sse()

        def chunk(delta: dict[str, Any], finish_reason: str | None = None,
                  **extra: Any) -> None:
            self._send(_sse(None, {"id": cid, "object": "chat.completion.chunk",
                                   "created": created, "model": model_name,
                                   "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish_reason}], **extra}))

        chunk({"role": "assistant", "content": ""})
        if step.reasoning:
            for d in _chunks(step.reasoning):
                chunk({"reasoning_content": d})
        if step.text:
            for d in _chunks(step.text):
                chunk({"content": d})
        for tc in tool_calls:
            args = tc["function"]["arguments"]
            pieces = _chunks(args) or [""]
            chunk({"tool_calls": [{"index": tc["index"], "id": tc["id"], "type": "function",
                                   "function": {"name": tc["function"]["name"],
                                                "arguments": pieces[0]}}]})
            for d in pieces[1:]:
                chunk({"tool_calls": [{"index": tc["index"], "function": {"arguments": d}}]})
        chunk({}, finish)
        self._send(_sse(None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                               "model": model_name, "choices": [], "usage": usage}))
        self._send(b"data: [DONE]\n\n")


    # ---- Gemini generateContent (Gemini CLI)
    def _gemini(self, step: Step, idx: int | None, model_name: str, stream: bool) -> None:
        """Gemini's wire: ``promptTokenCount`` includes the cached part (as OpenAI's input),
        ``candidatesTokenCount`` excludes the thoughts, which come as ``thoughtsTokenCount``."""
        rid = _ids("gemini", idx)
        u = step.usage
        usage = {"promptTokenCount": u.input_tokens, "cachedContentTokenCount": u.cached_tokens,
                 "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
                 "thoughtsTokenCount": u.reasoning_tokens, "totalTokenCount": u.total_tokens}
        parts: list[dict[str, Any]] = []
        if step.reasoning:
            parts.append({"text": step.reasoning, "thought": True})
        if step.text:
            parts.append({"text": step.text})
        if step.tool:
            args = step.tool.arguments
            parts.append({"functionCall": {"id": f"call_{rid}", "name": step.tool.name,
                                           "args": json.loads(args) if isinstance(args, str) else args}})
        if not parts:
            parts.append({"text": ""})

        def response(ps: list[dict[str, Any]], last: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"role": "model", "parts": ps}, "index": 0}
            if last:
                cand["finishReason"] = "STOP"
            out = {"candidates": [cand], "modelVersion": model_name, "responseId": rid}
            if last:
                out["usageMetadata"] = usage
            return out

        if not stream:
            self._json(200, response(parts, True))
            return
        self._start_sse()
        for i, part in enumerate(parts):
            self._send(_sse(None, response([part], i == len(parts) - 1)))


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, model: ScriptedModel, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_server(steps: list[Step], log_path: str | None = None,
                 workdir: str | None = None, delay_s: float = 0.0) -> ScriptedServer:
    """Start a server in a daemon thread; ``.url`` is the base URL, ``.shutdown()`` stops it."""
    srv = ScriptedServer(ScriptedModel(steps, log_path, workdir, delay_s))
    threading.Thread(target=srv.serve_forever, name="model-server", daemon=True).start()
    return srv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", choices=CLIS, required=True)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = ap.parse_args(argv)
    srv = ScriptedServer(ScriptedModel(scripted_session(args.cli, args.workdir), args.log,
                                       args.workdir, args.delay), port=args.port)
    print(srv.url, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
