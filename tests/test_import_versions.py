"""The version matrix, offline: what each pinned CLI version really wrote (tests/golden/real/
<cli>@<version>/, captured by ``tests/agents/run_cli.py matrix-golden`` from the real CLIs driven
by the scripted model server) imports with exact tool-call counts, token totals, model, version
and status.

The expected numbers are computed here from the source files' own JSON (never through agtrace's
parsers), and the token totals are also checked against what the scripted server billed.
Sources: tests/golden/SOURCES.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agtrace.capture.importers import IMPORTERS, detect, import_source
from agtrace.eventlog import RawRecorded, RunEnded, RunStarted, ToolCalled, UsageReported

from .conftest import run_agtrace

REAL = Path(__file__).parent / "golden" / "real"
MATRIX = sorted(p for p in REAL.glob("*@*") if p.is_dir())
sys.path.insert(0, str(Path(__file__).parent / "agents"))

import model_server  # noqa: E402


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _session_file(d: Path) -> Path:
    """The CLI's own session file (Claude's project JSONL, Codex's rollout)."""
    files = [p for p in (d / "home").rglob("*.jsonl") if not p.name.startswith("agent-")]
    assert len(files) == 1, files
    return files[0]


# -- counts straight from the source files --------------------------------------------------------
# Each returns (tool calls, model or None, version or None, (input incl. cache, cache read, output)).


def _claude_session(path: Path):
    recs = [r for r in _lines(path) if r.get("type") == "assistant"]
    tools = {b["id"] for r in recs for b in r["message"]["content"] if b.get("type") == "tool_use"}
    usage: dict[str, dict] = {}
    for r in recs:  # one line per content block, each with the message's usage: max per field
        u = usage.setdefault(r["message"]["id"], {})
        for k, v in r["message"]["usage"].items():
            if isinstance(v, int):
                u[k] = max(u.get(k, 0), v)
    inp = sum(u["input_tokens"] + u.get("cache_read_input_tokens", 0)
              + u.get("cache_creation_input_tokens", 0) for u in usage.values())
    read = sum(u.get("cache_read_input_tokens", 0) for u in usage.values())
    out = sum(u["output_tokens"] for u in usage.values())
    return len(tools), recs[0]["message"]["model"], recs[0]["version"], (inp, read, out)


def _claude_stream(path: Path):
    recs = _lines(path)
    init = next(r for r in recs if r["type"] == "system" and r.get("subtype") == "init")
    tools = {b["id"] for r in recs if r["type"] == "assistant" for b in r["message"]["content"]
             if b.get("type") == "tool_use"}
    u = next(r for r in recs if r["type"] == "result")["usage"]
    inp = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    return len(tools), init["model"], init["claude_code_version"], (
        inp, u["cache_read_input_tokens"], u["output_tokens"])


def _codex_rollout(path: Path):
    recs = _lines(path)
    items = [r["payload"] for r in recs if r["type"] == "response_item"]
    tools = [i for i in items if i["type"] in ("function_call", "custom_tool_call", "local_shell_call")]
    model = next(r["payload"]["model"] for r in recs if r["type"] == "turn_context")
    version = next(r["payload"]["cli_version"] for r in recs if r["type"] == "session_meta")
    last = [r["payload"]["info"]["total_token_usage"] for r in recs
            if r["type"] == "event_msg" and r["payload"]["type"] == "token_count"
            and r["payload"].get("info")][-1]
    return len(tools), model, version, (last["input_tokens"], last["cached_input_tokens"],
                                        last["output_tokens"])


def _codex_exec(path: Path):
    recs = _lines(path)
    tools = [r for r in recs if r["type"] == "item.completed"
             and r["item"]["type"] in ("command_execution", "file_change", "mcp_tool_call")]
    u = [r["usage"] for r in recs if r["type"] == "turn.completed"][-1]
    return len(tools), None, None, (u["input_tokens"], u["cached_input_tokens"], u["output_tokens"])


def _opencode_tokens(steps: list[dict]) -> tuple[int, int, int]:
    inp = read = out = 0
    for t in steps:
        c = t["cache"]
        inp += t["input"] + c["read"] + c["write"]
        read += c["read"]
        # older releases count reasoning inside output (then total has no separate reasoning)
        folded = t["total"] == t["input"] + t["output"] + c["read"] + c["write"]
        out += t["output"] + (0 if folded else t.get("reasoning", 0))
    return inp, read, out


def _opencode_export(path: Path):
    doc = json.loads(path.read_text())
    parts = [p for m in doc["messages"] for p in m["parts"]]
    tools = [p for p in parts if p["type"] == "tool"]
    first = next(m["info"] for m in doc["messages"] if m["info"]["role"] == "assistant")
    steps = [p["tokens"] for p in parts if p["type"] == "step-finish"]
    return (len(tools), f"{first['providerID']}/{first['modelID']}", doc["info"]["version"],
            _opencode_tokens(steps))


def _opencode_run(path: Path):
    recs = _lines(path)
    tools = [r for r in recs if r["type"] == "tool_use"]
    steps = [r["part"]["tokens"] for r in recs if r["type"] == "step_finish"]
    return len(tools), None, None, _opencode_tokens(steps)


CASES = []  # (dir, source, format, counter)
for d in MATRIX:
    cli = d.name.split("@")[0]
    if cli == "claude-code":
        CASES += [(d, "session", "claude-session", _claude_session),
                  (d, "stdout.jsonl", "claude-stream-json", _claude_stream)]
    elif cli == "codex":
        CASES += [(d, "session", "codex-rollout", _codex_rollout),
                  (d, "stdout.jsonl", "codex-exec-json", _codex_exec)]
    else:
        CASES += [(d, "export.json", "opencode-export", _opencode_export),
                  (d, "stdout.jsonl", "opencode-run", _opencode_run)]


def _path(d: Path, source: str) -> Path:
    return _session_file(d) if source == "session" else d / source


def test_the_matrix_has_two_versions_of_each_cli():
    versions: dict[str, set[str]] = {}
    for d in MATRIX:
        cli, version = d.name.split("@")
        versions.setdefault(cli, set()).add(version)
    assert {c: len(v) for c, v in versions.items()} == {"claude-code": 2, "codex": 2, "opencode": 2}


@pytest.mark.parametrize("d,source,fmt,count", CASES, ids=[f"{c[0].name}:{c[2]}" for c in CASES])
def test_each_version_imports_exactly(store, d, source, fmt, count):
    cli, version = d.name.split("@")
    path = _path(d, source)
    assert detect(path, IMPORTERS).name == fmt
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == [] and result.unknown == {}
    (run_id,) = result.runs
    records = list(store.read(run_id))
    events = [r.event for r in records]
    start, end = events[0], events[-1]
    tools, model, src_version, tokens = count(path)

    assert isinstance(start, RunStarted) and start.source == f"import:{fmt}"
    assert len([e for e in events if isinstance(e, ToolCalled)]) == tools == 6
    if model is not None:
        assert start.model == model
    if src_version is not None:
        assert src_version == version and start.source_version == version
    assert isinstance(end, RunEnded) and (end.status, end.reason) == ("completed", "")

    used = [e.usage for e in events if isinstance(e, UsageReported)]
    got = (sum(u.input + u.cache_read + u.cache_write for u in used),
           sum(u.cache_read for u in used), sum(u.output for u in used))
    assert got == tokens
    billed = model_server.expected_usage_totals(cli, version)
    assert got == (billed.input_tokens, billed.cached_tokens, billed.output_tokens)

    raws = [e for e in events if isinstance(e, RawRecorded)]
    assert raws and all(r.source == f"import:{fmt}" for r in raws)


@pytest.mark.parametrize("d", [d for d in MATRIX if d.name.startswith("claude-code@")],
                         ids=lambda d: d.name)
def test_print_mode_sessions_begin_with_queue_operations_and_are_recognised(d):
    path = _session_file(d)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["type"] == "queue-operation"  # what made detection by "first 3 lines" fail
    assert detect(path, IMPORTERS).name == "claude-session"
    assert IMPORTERS["claude-session"].detect(path)


def test_codex_rollout_of_0_66_has_no_task_markers_and_still_has_its_turn(store):
    path = _session_file(REAL / "codex@0.66.0")
    kinds = {(r["type"], r["payload"].get("type")) for r in _lines(path)}
    assert ("event_msg", "task_started") not in kinds and ("event_msg", "task_complete") not in kinds
    result = import_source(store, path, IMPORTERS["codex-rollout"])
    records = list(store.read(result.runs[0]))
    turns = [r.event for r in records if r.kind in ("turn_started", "turn_ended")]
    assert [(type(e).__name__, e.turn) for e in turns] == [("TurnStarted", 1), ("TurnEnded", 1)]
    assert turns[0].prompt == model_server.TASK_PROMPT and turns[1].status == "completed"
    messages = [r.event for r in records if r.kind == "message_added"]
    users = [m.text for m in messages if m.role == "user"]
    assert users == [model_server.TASK_PROMPT]  # <environment_context> is context, not the user
    assert any(m.role == "system" and m.text.startswith("<environment_context>") for m in messages)


def test_codex_0_169_token_usage_record_is_a_known_type_one_model_call_each(store):
    path = _session_file(REAL / "codex@0.169.0")
    responses = [r["payload"]["response_id"] for r in _lines(path) if r["type"] == "token_usage_record"]
    result = import_source(store, path, IMPORTERS["codex-rollout"])
    assert result.unknown == {} and result.bad_records == []
    calls = [r.event for r in store.read(result.runs[0]) if r.kind == "model_called"]
    assert [c.request_id for c in calls] == responses and len(responses) == 7


def test_a_newer_record_type_in_a_real_file_is_a_warning_not_an_error(store, tmp_path):
    """A real 0.169 rollout plus one synthetic record of a type no Codex wrote yet."""
    src = _session_file(REAL / "codex@0.169.0")
    lines = src.read_text().splitlines()
    new = json.dumps({"timestamp": "2026-12-01T22:44:33.000Z", "type": "brand_new_record",
                      "payload": {"what": "a newer Codex"}})
    path = tmp_path / src.name
    path.write_text("\n".join([*lines[:20], new, *lines[20:]]) + "\n")
    proc = run_agtrace(["import", str(path)], tmp_path / "store")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "warning:" in err and "brand_new_record ×1" in err and f"{path.name}:21" in err
    proc = run_agtrace(["import", "--json", str(path)], tmp_path / "store2")
    (res,) = json.loads(proc.stdout)
    assert proc.returncode == 0 and res["unknown"] == {"brand_new_record": 1}
    assert res["bad_records"] == [] and len(res["runs"]) == 1
    proc = run_agtrace(["log", res["runs"][0], "--json", "--kind", "raw_recorded"], tmp_path / "store2")
    raws = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert [r["text"] for r in raws if r["location"] == f"{path.name}:21"] == [new]
    assert len(raws) == len(lines) + 1


def test_a_malformed_record_is_still_an_error_with_its_line(tmp_path):
    src = _session_file(REAL / "claude-code@2.1.329")
    lines = src.read_text().splitlines()
    path = tmp_path / src.name
    path.write_text("\n".join([*lines[:5], '{"type": 42}', "{torn", *lines[5:]]) + "\n")
    proc = run_agtrace(["import", "--json", str(path)], tmp_path / "store")
    (res,) = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert [b["location"] for b in res["bad_records"]] == [f"{path.name}:6", f"{path.name}:7"]
    assert res["runs"] and res["unknown"] == {}


def _local_command_records(last: dict, texts: list[str]) -> list[str]:
    """User records of local commands in the shape Claude Code writes them (the pinned versions
    did not write them when driven in a pty, so these lines are appended to a real session)."""
    out, parent = [], last["uuid"]
    for i, text in enumerate(texts):
        rec = {"parentUuid": parent, "isSidechain": False, "userType": "external",
               "cwd": last["cwd"], "sessionId": last["sessionId"], "version": last["version"],
               "type": "user", "message": {"role": "user", "content": text},
               "uuid": f"local-{i}", "timestamp": last["timestamp"]}
        if text.startswith("<local-command-caveat>"):
            rec["isMeta"] = True
        out.append(json.dumps(rec))
        parent = rec["uuid"]
    return out


EXIT = ["<local-command-caveat>Caveat: The messages below were generated by the user while "
        "running local commands. DO NOT respond to these messages or otherwise consider them in "
        "your response unless the user explicitly asks you to.</local-command-caveat>",
        "<command-name>/exit</command-name>\n            <command-message>exit</command-message>"
        "\n            <command-args></command-args>",
        "<local-command-stdout>See ya!</local-command-stdout>"]


@pytest.mark.parametrize("unanswered,status", [(False, "completed"), (True, "interrupted")])
def test_a_session_ending_with_exit_is_not_crashed(store, tmp_path, unanswered, status):
    src = _session_file(REAL / "claude-code@2.1.329")
    lines = src.read_text().splitlines()
    last = next(json.loads(x) for x in reversed(lines) if json.loads(x).get("uuid"))
    extra = _local_command_records(last, (["one more thing?"] if unanswered else []) + EXIT)
    path = tmp_path / src.name
    path.write_text("\n".join([*lines, *extra]) + "\n")
    result = import_source(store, path, IMPORTERS["claude-session"])
    assert result.bad_records == [] and result.unknown == {}
    records = list(store.read(result.runs[0]))
    end = records[-1].event
    assert end.status == status, end.reason
    turns = [r.event for r in records if r.kind == "turn_started"]
    assert len(turns) == (2 if unanswered else 1)  # the local commands start no turn
