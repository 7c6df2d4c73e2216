"""Counts taken straight from the session files the agent CLIs write (their own JSON, never
agtrace's parsers): tool calls, model, version and token totals, for the import tests of the
version matrix (tests/test_import_versions.py offline, tests/test_real_cli.py live)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agtrace.capture.importers import IMPORTERS, detect, import_source
from agtrace.eventlog import RawRecorded, RunEnded, RunStarted, ToolCalled, UsageReported

sys.path.insert(0, str(Path(__file__).parent / "agents"))

import model_server  # noqa: E402


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


# Each returns (tool calls, model or None, version or None, (input incl. cache, cache read, output)).


def claude_session(path: Path):
    recs = [r for r in lines(path) if r.get("type") == "assistant"]
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


def claude_stream(path: Path):
    recs = lines(path)
    init = next(r for r in recs if r["type"] == "system" and r.get("subtype") == "init")
    tools = {b["id"] for r in recs if r["type"] == "assistant" for b in r["message"]["content"]
             if b.get("type") == "tool_use"}
    u = next(r for r in recs if r["type"] == "result")["usage"]
    inp = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    return len(tools), init["model"], init["claude_code_version"], (
        inp, u["cache_read_input_tokens"], u["output_tokens"])


def codex_rollout(path: Path):
    recs = lines(path)
    items = [r["payload"] for r in recs if r["type"] == "response_item"]
    tools = [i for i in items if i["type"] in ("function_call", "custom_tool_call", "local_shell_call")]
    model = next(r["payload"]["model"] for r in recs if r["type"] == "turn_context")
    version = next(r["payload"]["cli_version"] for r in recs if r["type"] == "session_meta")
    last = [r["payload"]["info"]["total_token_usage"] for r in recs
            if r["type"] == "event_msg" and r["payload"]["type"] == "token_count"
            and r["payload"].get("info")][-1]
    return len(tools), model, version, (last["input_tokens"], last["cached_input_tokens"],
                                        last["output_tokens"])


def codex_exec(path: Path):
    recs = lines(path)
    tools = [r for r in recs if r["type"] == "item.completed"
             and r["item"]["type"] in ("command_execution", "file_change", "mcp_tool_call")]
    u = [r["usage"] for r in recs if r["type"] == "turn.completed"][-1]
    return len(tools), None, None, (u["input_tokens"], u["cached_input_tokens"], u["output_tokens"])


def opencode_tokens(steps: list[dict]) -> tuple[int, int, int]:
    inp = read = out = 0
    for t in steps:
        c = t["cache"]
        inp += t["input"] + c["read"] + c["write"]
        read += c["read"]
        # older releases count reasoning inside output (then total has no separate reasoning)
        folded = t["total"] == t["input"] + t["output"] + c["read"] + c["write"]
        out += t["output"] + (0 if folded else t.get("reasoning", 0))
    return inp, read, out


def opencode_export(path: Path):
    doc = json.loads(path.read_text())
    parts = [p for m in doc["messages"] for p in m["parts"]]
    tools = [p for p in parts if p["type"] == "tool"]
    first = next(m["info"] for m in doc["messages"] if m["info"]["role"] == "assistant")
    steps = [p["tokens"] for p in parts if p["type"] == "step-finish"]
    return (len(tools), f"{first['providerID']}/{first['modelID']}", doc["info"]["version"],
            opencode_tokens(steps))


def opencode_run(path: Path):
    recs = lines(path)
    tools = [r for r in recs if r["type"] == "tool_use"]
    steps = [r["part"]["tokens"] for r in recs if r["type"] == "step_finish"]
    return len(tools), None, None, opencode_tokens(steps)



COUNTERS = {  # format -> counter
    "claude-session": claude_session, "claude-stream-json": claude_stream,
    "codex-rollout": codex_rollout, "codex-exec-json": codex_exec,
    "opencode-export": opencode_export, "opencode-run": opencode_run,
}


def check_import(store, path: Path, fmt: str, cli: str, version: str, tools: int = 6) -> str:
    """Import ``path`` (a session file the CLI ``cli`` at ``version`` wrote) and check it
    against the counts taken from the file itself and against what the scripted model server
    billed; returns the run id."""
    assert detect(path, IMPORTERS).name == fmt
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == [] and result.unknown == {}, result
    (run_id,) = result.runs
    events = [r.event for r in store.read(run_id)]
    start, end = events[0], events[-1]
    calls, model, src_version, tokens = COUNTERS[fmt](path)

    assert isinstance(start, RunStarted) and start.source == f"import:{fmt}"
    assert len([e for e in events if isinstance(e, ToolCalled)]) == calls == tools
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
    return run_id
