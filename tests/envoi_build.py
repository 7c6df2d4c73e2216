"""Build envoi-trace runs the way envoi-trace writes them (``runner.py`` at 70f37f9 and
``utils/trace_parquet.py``; field lists in ``/work/shared/formats/envoi-trace.md``), from a real
git workspace: ``git init`` + an empty initial commit, ``git add -A && git commit`` only for parts
that left the tree dirty, then ``git bundle create repo.bundle --all``.

Used by the importer tests and ``bench/bench_import.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
       "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
       "GIT_AUTHOR_NAME": "Agent", "GIT_AUTHOR_EMAIL": "agent@example.com",
       "GIT_COMMITTER_NAME": "Agent", "GIT_COMMITTER_EMAIL": "agent@example.com"}


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(ws), *args], env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def _edit(ws: Path, step: dict) -> None:
    for path, content in step.get("write", {}).items():
        f = ws / path
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.is_symlink():
            f.unlink()
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
    for path in step.get("chmod_x", []):
        os.chmod(ws / path, 0o755)
    for path, target in step.get("symlink", {}).items():
        f = ws / path
        if f.exists() or f.is_symlink():
            f.unlink()
        f.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, f)
    for path in step.get("delete", []):
        (ws / path).unlink()


def build_run(out: Path, steps: list[dict], *, agent: str = "codex", model: str = "gpt-5.1-codex",
              trajectory_id: str = "7d0f3c1e-5a8e-4c35-9a33-0a6f3e5b1d21", session_end: dict | None = None,
              era: str = "A", evaluate_every_commit: bool = True, bundle: bool = True,
              t0_ms: int = 1_771_000_000_000) -> dict:
    """Write ``out/agent_trace.json`` (era A) or ``out/trace.parquet`` (B/C) and ``out/repo.bundle``.

    ``steps``: one dict per part: ``type`` (reasoning/text/tool/patch), ``content``, ``tool``,
    ``command``, ``output``, ``exit_code``, ``turn`` (1-based), ``usage`` (the provider's
    token_usage dict as envoi stored it), ``test`` (an EnvoiCall result), and file edits
    (``write``/``chmod_x``/``symlink``/``delete``). Returns ``{part: commit}``, the commit each
    part's ``git_commit`` names (carried forward over parts that made no commit). The
    workspace (a real git repository) is left beside ``out`` as ``<out>.workspace``.
    """
    ws = out.with_name(out.name + ".workspace")
    ws.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    git(ws, "init", "-q")
    git(ws, "commit", "-q", "--allow-empty", "-m", "Initial empty commit")
    head = git(ws, "rev-parse", "HEAD")
    parts, turns, evaluations, commits = [], {}, {}, {}
    t0 = t0_ms
    for n, step in enumerate(steps, 1):
        _edit(ws, step)
        before = head
        dirty = bool(git(ws, "status", "--porcelain"))
        checkpoint = None
        if dirty:
            git(ws, "add", "-A")
            git(ws, "commit", "-q", "-m", f"part {n} checkpoint")
            head = git(ws, "rev-parse", "HEAD")
            files = git(ws, "show", "--format=", "--name-only", head).splitlines()
            checkpoint = {"commit_before": before, "commit_after": head, "committed": True,
                          "changed_files": files, "patch": git(ws, "show", "--format=", "--patch", head),
                          "stats": "", "numstat": []}
            if evaluate_every_commit:
                evaluations[head] = {"commit": head, "part": n, "status": "completed",
                                     "queued_at": _iso(t0 + n * 1000 + 10), "started_at": _iso(t0 + n * 1000 + 20),
                                     "completed_at": _iso(t0 + n * 1000 + 900), "duration_ms": 880,
                                     "passed": n, "failed": 1, "total": n + 1,
                                     "suite_results": {"basics": {"passed": n, "failed": 1, "total": n + 1}},
                                     "error": None, "command": "cd /workspace && ./run_tests.sh", "exit_code": 1,
                                     "stdout": f"{n} passed, 1 failed\n", "stderr": ""}
        commits[n] = head
        ptype = step.get("type", "tool")
        rec = {"trajectory_id": trajectory_id, "session_id": "sess-1", "agent": agent, "part": n,
               "timestamp": _iso(t0 + n * 1000), "duration_ms": None if n == 1 else 1000, "role": "assistant",
               "part_type": ptype, "item_type": {"tool": "command_execution", "text": "agent_message",
                                                 "reasoning": "reasoning", "patch": "file_change"}[ptype],
               "summary": step.get("command") or step.get("content", "")[:240], "agent_model": model,
               "content": step.get("content") if ptype in ("text", "reasoning") else None,
               "tool_name": step.get("tool", "bash") if ptype == "tool" else None,
               "tool_status": "completed" if ptype == "tool" else None,
               "tool_input": {"command": step.get("command", "")} if ptype == "tool" else None,
               "tool_output": step.get("output") if ptype == "tool" else None,
               "tool_error": None, "tool_exit_code": step.get("exit_code") if ptype == "tool" else None,
               "token_usage": step.get("usage"), "provider_part": None,
               "provider_item": {"id": f"item_{n}", "type": "command_execution"} if ptype == "tool" else None,
               "provider_event": None, "git_commit": head, "files": checkpoint["changed_files"] if checkpoint else [],
               "patch": checkpoint["patch"] if checkpoint else None, "repo_checkpoint": checkpoint,
               "envoi_calls": [], "testing_state": None}
        if step.get("test"):
            rec["envoi_calls"] = [{"path": "basics/smoke", "timestamp": _iso(t0 + n * 1000 - 300),
                                   "duration_ms": 250, "status_code": 200, "error": None, "result": step["test"]}]
        parts.append(rec)
        turn = step.get("turn", 1)
        tr = turns.setdefault(turn, {"trajectory_id": trajectory_id, "session_id": "sess-1", "agent": agent,
                                     "turn": turn, "part_start": n, "part_end": n, "timestamp": _iso(t0 + n * 1000 - 500),
                                     "agent_model": model, "prompt": f"Turn {turn}: build a C compiler",
                                     "git_commit": head, "repo_checkpoint": None, "session_ids": ["sess-1"],
                                     "session_objects": [], "new_messages": [], "token_usage": None, "parts": [],
                                     "session_end": None})
        tr["part_end"], tr["git_commit"] = n, head
        tr["parts"].append(rec)  # envoi keeps a copy of every part in its turn
        if step.get("turn_usage") is not None:
            tr["token_usage"] = step["turn_usage"]
    if session_end is not None:
        session_end = {"total_parts": len(parts), "total_turns": len(turns), "final_git_commit": head, **session_end}
    trace = {"trajectory_id": trajectory_id, "session_id": "sess-1", "agent": agent, "agent_model": model,
             "started_at": _iso(t0), "parts": parts, "turns": [turns[t] for t in sorted(turns)],
             "evaluations": evaluations, "artifacts": {"agent_trace": f"s3://envoi-trace-data/trajectories/"
                                                                     f"{trajectory_id}/agent_trace.json"},
             "session_end": session_end}
    if bundle:
        git(ws, "bundle", "create", "-q", str(out / "repo.bundle"), "--all")
    if era == "A":
        (out / "agent_trace.json").write_text(json.dumps(trace, separators=(",", ":")))
    else:
        _write_parquet(out, trace, era)
    return commits


def _write_parquet(out: Path, trace: dict, era: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    turn_of = {p["part"]: t["turn"] for t in trace["turns"] for p in t["parts"]}
    prompt_of = {t["part_start"]: t["prompt"] for t in trace["turns"]}
    se = trace["session_end"] or {}
    rows = []
    for p in trace["parts"]:
        row = {k: p.get(k) for k in ("trajectory_id", "session_id", "agent", "agent_model", "part", "timestamp",
                                     "role", "part_type", "item_type", "summary", "duration_ms", "git_commit",
                                     "content", "tool_name", "tool_status", "tool_exit_code", "patch")}
        for k in ("files", "tool_input", "tool_output", "tool_error", "token_usage", "envoi_calls", "testing_state",
                  "repo_checkpoint"):
            row[k] = None if p.get(k) is None else json.dumps(p[k])
        row.update(started_at=trace["started_at"], environment="c_compiler", task_params=json.dumps({}),
                   turn=turn_of[p["part"]], session_end_reason=se.get("reason"),
                   session_end_total_parts=se.get("total_parts"), session_end_total_turns=se.get("total_turns"),
                   session_end_final_commit=se.get("final_git_commit"), artifacts=json.dumps(trace["artifacts"]),
                   bundle_uri=None)
        if era == "B":
            row["evaluations"] = json.dumps(trace["evaluations"])
        else:
            row["trace_schema_version"] = "envoi.trace.v2"
            row["turn_user_message"] = prompt_of.get(p["part"])
            ev = trace["evaluations"].get(p["git_commit"])
            row["eval_events_delta"] = json.dumps([
                {"eval_id": f"ev-{p['part']}", "kind": "commit_async", "trigger_part": p["part"],
                 "target_commit": ev["commit"], "status": "completed", "passed": ev["passed"], "failed": ev["failed"],
                 "total": ev["total"], "finished_at": ev["completed_at"],
                 "tests": [{"suite": "basics", "test_id": "smoke/add", "status": "passed", "duration_ms": 12.0}]}
            ]) if ev and ev["part"] == p["part"] else None
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), out / "trace.parquet")
    if era == "C":
        logs = [{"trajectory_id": trace["trajectory_id"], "seq": i, "ts": p["timestamp"], "component": "orchestrator",
                 "event": "part.completed", "level": "info", "message": f"part {p['part']} done",
                 "turn": turn_of[p["part"]], "part": p["part"], "git_commit": p["git_commit"], "session_id": "sess-1",
                 "source": "runner", "fields": json.dumps({})} for i, p in enumerate(trace["parts"], 1)]
        pq.write_table(pa.Table.from_pylist(logs), out / "logs.parquet")


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def sample_steps() -> list[dict]:
    """Nine parts: text, reasoning, edits (executable, symlink, binary), parts without changes,
    a deletion, cumulative Codex usage on two turns, and one agent test call."""
    return [
        {"type": "text", "content": "I'll start by writing a lexer.", "turn": 1},
        {"type": "tool", "command": "cat > lexer.c", "output": "", "exit_code": 0, "turn": 1,
         "write": {"src/lexer.c": "int lex(void) { return 0; }\n", "README.md": "# cc\n"}},
        {"type": "reasoning", "content": "Next the driver script, executable.", "turn": 1},
        {"type": "tool", "command": "chmod +x cc", "output": "", "exit_code": 0, "turn": 1,
         "write": {"cc": "#!/bin/sh\necho cc\n"}, "chmod_x": ["cc"], "symlink": {"bin/cc": "../cc"},
         "turn_usage": {"input_tokens": 1200, "cached_input_tokens": 200, "output_tokens": 300,
                        "reasoning_output_tokens": 100}},
        {"type": "tool", "command": "ls -la", "output": "cc\nsrc\n", "exit_code": 0, "turn": 2},
        {"type": "tool", "command": "cp logo.png", "output": "", "exit_code": 0, "turn": 2,
         "write": {"assets/logo.png": bytes(range(256)) * 4 + b"\x00\xff\x00"}},
        {"type": "tool", "tool": "run_tests", "command": "run_tests basics/smoke", "output": "2/3 passed",
         "exit_code": 0, "turn": 2, "test": {"passed": 2, "failed": 1, "total": 3,
                                             "tests": [{"name": "smoke/add", "passed": True},
                                                       {"name": "smoke/sub", "passed": True},
                                                       {"name": "smoke/mul", "passed": False, "stderr": "got 5"}]}},
        {"type": "tool", "command": "rm README.md && edit lexer", "output": "", "exit_code": 0, "turn": 2,
         "delete": ["README.md"], "write": {"src/lexer.c": "int lex(void) { return 1; }\n"},
         "symlink": {"bin/cc": "../src/lexer.c"}},
        {"type": "text", "content": "Done for now.", "turn": 2,
         "turn_usage": {"input_tokens": 3000, "cached_input_tokens": 1200, "output_tokens": 700,
                        "reasoning_output_tokens": 250}},
    ]
