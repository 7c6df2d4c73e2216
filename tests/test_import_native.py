"""Importers of agent-native transcripts: Codex rollout and exec JSON, Claude Code sessions,
OpenCode run/export JSON, SWE-agent trajectories, OpenHands trajectories, Inspect logs.

Golden files (``tests/golden/import/<format>_<fixture>.expected.jsonl``) were written by reading
the source files, not by pasting importer output: one line per part (kind, tool, call id,
title, files changed, tests ``[passed, failed, total]``, the tokens reported on it, the Claude
branch of its message), a ``part: null`` line for tokens reported outside any part, and the
run's end status. The inputs are the shared fixtures (``/work/shared/fixtures``), except
``opencode-export_handwritten.input.json``: no real ``opencode export`` was available, so it
was written by hand from the documented shape (``cli/cmd/export.ts``, ``session/message-v2.ts``).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from agtrace.capture.importers import IMPORTERS, detect, import_source
from agtrace.capture.usage import FIELDS, usage_from_openai
from agtrace.eventlog import (
    FileChanged,
    MessageAdded,
    PartEnded,
    RawRecorded,
    RunEnded,
    RunStarted,
    Scored,
    TestsRan,
    UsageReported,
)

from .conftest import FIXTURES

GOLDEN = Path(__file__).parent / "golden" / "import"
HANDWRITTEN_EXPORT = GOLDEN / "opencode-export_handwritten.input.json"

# fixture directory -> the format every file in it is detected as
DIRS = {
    "codex-rollout": "codex-rollout",
    "codex-exec-json": "codex-exec-json",
    "claude-code": "claude-session",
    "opencode": "opencode-run",
    "swe-agent": "swe-agent",
    "openhands": "openhands",
    "inspect": "inspect",
}

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not mounted")


def fixture_files() -> list[tuple[str, Path]]:
    if not FIXTURES.is_dir():
        return []
    return [(fmt, p) for d, fmt in DIRS.items() for p in sorted((FIXTURES / d).iterdir())
            if p.is_file() and not p.name.endswith(".md")]


def imported(store, path: Path, fmt: str):
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "", result.error
    return result, {rid: list(store.read(rid)) for rid in result.runs}


def only_run(store, path: Path, fmt: str):
    result, runs = imported(store, path, fmt)
    assert len(runs) == 1
    return result, next(iter(runs.values()))


def events(records, cls):
    return [r.event for r in records if isinstance(r.event, cls)]


def tokens(usages) -> dict[str, int]:
    total = {f: sum(getattr(u.usage, f) for u in usages) for f in FIELDS}
    return {f: v for f, v in total.items() if v}


def summary(records) -> list[dict]:
    """The golden projection of a run (see the module docstring)."""
    out = []
    for r in records:
        ev = r.event
        if not isinstance(ev, PartEnded):
            continue
        in_part = [x.event for x in records if x.part == r.part]
        row = {"part": r.part, "part_kind": ev.part_kind}
        if ev.tool:
            row["tool"], row["call_id"] = ev.tool, ev.call_id
        row["title"] = ev.title
        files = [e.path for e in in_part if isinstance(e, FileChanged)]
        if files:
            row["files"] = files
        tests = [e for e in in_part if isinstance(e, TestsRan)]
        if tests:
            row["tests"] = [sum(t.passed for t in tests), sum(t.failed for t in tests),
                            sum(t.total for t in tests)]
        used = tokens([e for e in in_part if isinstance(e, UsageReported)])
        if used:
            row["tokens"] = used
        branches = {e.branch for e in in_part if isinstance(e, MessageAdded) and e.branch}
        if branches:
            row["branch"] = branches.pop()
        out.append(row)
    loose = tokens([r.event for r in records if r.part is None and isinstance(r.event, UsageReported)])
    if loose:
        out.append({"part": None, "tokens": loose})
    end = events(records, RunEnded)
    out.append({"status": end[-1].status, "reason": end[-1].reason} if end else {"status": None})
    return out


GOLDENS = [  # format, source, sample (task/sample id) or None, expected file
    ("codex-exec-json", "codex-exec-json/agentcmd_stream-output-2.jsonl", None,
     "codex-exec-json_agentcmd_stream-output-2"),
    ("claude-session", "claude-code/daaain_dag_compact_after_rewind.jsonl", None,
     "claude-session_daaain_dag_compact_after_rewind"),
    ("opencode-run", "opencode/noldor_run-format-json_opencode-1.17.20.ndjson", None,
     "opencode-run_noldor_run-format-json_opencode-1.17.20"),
    ("opencode-export", HANDWRITTEN_EXPORT, None, "opencode-export_handwritten"),
    ("swe-agent", "swe-agent/swe-agent__test-repo-i1.traj", None, "swe-agent_swe-agent__test-repo-i1"),
    ("openhands", "openhands/trajs_basic.json", None, "openhands_trajs_basic"),
    ("inspect", "inspect/demo_mockllm_local_sandbox.eval", "demo/s1",
     "inspect_demo_mockllm_local_sandbox.eval.s1"),
]


@needs_fixtures
@pytest.mark.parametrize("fmt,src,sample,name", GOLDENS, ids=[g[0] for g in GOLDENS])
def test_golden(store, fmt, src, sample, name):
    path = src if isinstance(src, Path) else FIXTURES / src
    _, runs = imported(store, path, fmt)
    if sample:
        runs = {k: v for k, v in runs.items() if v[0].event.task_id == sample}
    (records,) = runs.values()
    expected = [json.loads(line) for line in (GOLDEN / f"{name}.expected.jsonl").read_text().splitlines()]
    assert summary(records) == expected


# -- every fixture: detected, imported, lossless, well formed ------------------------------------


@needs_fixtures
@pytest.mark.parametrize("fmt,path", fixture_files(), ids=lambda v: getattr(v, "name", v))
def test_every_fixture_is_detected_and_imports(store, fmt, path):
    assert detect(path, IMPORTERS).name == fmt
    result, runs = imported(store, path, fmt)
    assert runs
    for records in runs.values():
        assert isinstance(records[0].event, RunStarted)
        assert records[0].event.source == f"import:{fmt}"
        assert isinstance(records[-1].event, RunEnded)  # every fixture is older than the stale bound
        raws = events(records, RawRecorded)
        assert raws and all(r.source == f"import:{fmt}" and r.location.startswith(path.name) for r in raws)
        ended = [r.part for r in records if isinstance(r.event, PartEnded)]
        assert ended == list(range(1, len(ended) + 1))
        assert {r.part for r in records if r.part is not None} <= set(ended)


def test_handwritten_export_is_detected(store):
    assert detect(HANDWRITTEN_EXPORT, IMPORTERS).name == "opencode-export"


@needs_fixtures
@pytest.mark.parametrize("fmt,rel", [
    ("codex-rollout", "codex-rollout/localpush_rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl"),
    ("claude-session", "claude-code/daaain_dag_compact_after_rewind.jsonl"),
    ("inspect", "inspect/upstream_log_streaming.eval"),
    ("openhands", "openhands/example_model_output.json"),
])
def test_import_is_idempotent(store, fmt, rel):
    first = import_source(store, FIXTURES / rel, IMPORTERS[fmt])
    second = import_source(store, FIXTURES / rel, IMPORTERS[fmt])
    assert first.runs and second.runs == []
    assert sorted(second.existing) == sorted(first.runs)
    assert sorted(store.run_ids()) == sorted(first.runs)


@needs_fixtures
def test_each_jsonl_line_is_kept_verbatim(store):
    path = FIXTURES / "codex-rollout" / "localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
    _, records = only_run(store, path, "codex-rollout")
    raws = events(records, RawRecorded)
    lines = path.read_text().splitlines()
    assert [r.location for r in raws] == [f"{path.name}:{n}" for n in range(1, len(lines) + 1)]
    assert [store.text(r.text, r.blob) for r in raws] == lines


# -- Codex ----------------------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("path", sorted((FIXTURES / "codex-rollout").glob("*.jsonl")) if FIXTURES.is_dir() else [],
                         ids=lambda p: p.name[18:37])
def test_codex_rollout_deltas_sum_to_the_final_cumulative_total(store, path):
    totals = []
    for line in path.read_text().splitlines():
        p = json.loads(line)["payload"]
        if p.get("type") == "token_count" and p.get("info"):
            totals.append(usage_from_openai(p["info"]["total_token_usage"]))
    distinct = [u for i, u in enumerate(totals) if i == 0 or u != totals[i - 1]]
    _, records = only_run(store, path, "codex-rollout")
    usages = events(records, UsageReported)
    assert len(usages) == len(distinct) <= len(totals)  # consecutive duplicate snapshots dropped
    assert tokens(usages) == {f: v for f in FIELDS if (v := getattr(totals[-1], f))}
    assert usages[-1].cumulative == totals[-1]


@needs_fixtures
def test_codex_rollout_numbers_and_metadata(store):
    path = FIXTURES / "codex-rollout" / "localpush_rollout-2026-02-23T12-40-23-019c8a4c-ed82-79a1-aa28-7738fc5ab61a.jsonl"
    _, records = only_run(store, path, "codex-rollout")
    start = records[0].event
    assert (start.agent, start.agent_version, start.model) == ("codex", "0.104.0-alpha.1", "gpt-5.3-codex")
    assert start.base_commit == "1cdfa7b17410e00cddbb7a4347336af2c6f80ee0"
    assert start.tags["session_id"] == "019c8a4c-ed82-79a1-aa28-7738fc5ab61a"
    kinds = Counter(e.part_kind for e in events(records, PartEnded))
    # 42 assistant messages of 63 messages, 69 reasoning items, 82 function + 22 custom tool
    # calls and 1 web search (counted by reading the file)
    assert kinds["reasoning"] == 69
    assert kinds["tool"] + kinds["patch"] + kinds["test"] == 82 + 22 + 1
    assert len(events(records, UsageReported)) == 81  # 162 token_count lines, half repeats
    assert records[-1].event.status == "completed"


@needs_fixtures
def test_codex_rollout_without_task_complete_is_not_completed(store):
    path = FIXTURES / "codex-rollout" / "localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
    _, records = only_run(store, path, "codex-rollout")
    end = records[-1].event
    assert end.status == "crashed" and "task_complete" in end.reason
    tool = [e for e in events(records, PartEnded) if e.tool == "exec_command"]
    assert len(tool) == 1  # the unanswered call is closed as a failed tool part


@needs_fixtures
def test_codex_exec_json_reuses_the_live_adapter(store):
    _, records = only_run(store, FIXTURES / "codex-exec-json" / "agentcmd_stream-output-multi-1.jsonl",
                          "codex-exec-json")
    assert records[-1].event.status == "crashed"  # thread and turn started, nothing more
    _, records = only_run(store, FIXTURES / "codex-exec-json" / "agentcmd_stream-output-3.jsonl",
                          "codex-exec-json")
    changes = events(records, FileChanged)
    assert [(c.path, c.change, c.origin) for c in changes] == [
        ("/private/tmp/codex-research-test/hello.txt", "add", "agent")]


# -- Claude Code ----------------------------------------------------------------------------------


@needs_fixtures
def test_claude_rewind_keeps_both_branches(store):
    _, records = only_run(store, FIXTURES / "claude-code" / "daaain_dag_compact_after_rewind.jsonl",
                          "claude-session")
    msgs = {m.message_id: m for m in events(records, MessageAdded)}
    assert msgs["b1a"].text == "First answer" and msgs["b1a"].branch == "u1"
    assert msgs["b2a"].text == "Second answer" and msgs["b2a"].branch == "b2u"
    assert msgs["b1u"].parent_id == msgs["b2u"].parent_id == "a1"  # siblings of one fork
    assert msgs["cb"].role == "system" and msgs["cb"].parent_id == "b2a2"  # logicalParentUuid
    assert msgs["cb"].branch == msgs["p1a"].branch == "b2u"
    assert len(events(records, UsageReported)) == 5  # one per message id, both branches


@needs_fixtures
def test_claude_bad_records_are_reported_with_their_line(store):
    result, records = only_run(store, FIXTURES / "claude-code" / "daaain_edge_cases.jsonl", "claude-session")
    lines = sorted(int(b.location.rsplit(":", 1)[1]) for b in result.bad_records)
    assert lines == [10, 11, 13, 14, 15, 16, 18]
    assert records[-1].event.status == "crashed"  # ends with an unanswered TodoWrite call


def test_claude_usage_is_deduped_by_message_id(store, tmp_path):
    base = {"sessionId": "s", "version": "2.0.0", "cwd": "/w", "requestId": "req_1"}
    msg = {"id": "msg_1", "role": "assistant", "model": "claude-x", "stop_reason": None}
    lines = [
        {"type": "user", "uuid": "u", "parentUuid": None, "message": {"role": "user", "content": "go"}, **base},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u", **base,
         "message": {**msg, "content": [{"type": "thinking", "thinking": "hm"}],
                     "usage": {"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 50}}},
        {"type": "assistant", "uuid": "a2", "parentUuid": "a1", **base,
         "message": {**msg, "stop_reason": "end_turn", "content": [{"type": "text", "text": "done"}],
                     "usage": {"input_tokens": 100, "output_tokens": 40, "cache_read_input_tokens": 50}}},
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    _, records = only_run(store, path, "claude-session")
    assert tokens(events(records, UsageReported)) == {"input": 100, "output": 40, "cache_read": 50}
    assert records[-1].event.status == "completed"


# -- OpenCode -------------------------------------------------------------------------------------


def test_opencode_export_error_fails_the_run(store, tmp_path):
    doc = json.loads(HANDWRITTEN_EXPORT.read_text())
    last = doc["messages"][-1]["info"]
    last["error"] = {"name": "ProviderAuthError", "data": {"message": "invalid x-api-key"}}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(doc))
    _, records = only_run(store, path, "opencode-export")
    assert (records[-1].event.status, records[-1].event.reason) == ("failed", "invalid x-api-key")


# -- SWE-agent ------------------------------------------------------------------------------------


@needs_fixtures
def test_swe_agent_model_stats_are_one_run_total(store):
    _, records = only_run(store, FIXTURES / "swe-agent" / "swe-agent__test-repo-i1.traj", "swe-agent")
    (usage,) = events(records, UsageReported)
    assert usage.request_id == "run-total:info.model_stats"
    assert (usage.usage.input, usage.usage.output, usage.cost_usd) == (52861, 326, 0.53839)
    edit, change = events(records, FileChanged)  # the edit step's, then the submission's
    assert (edit.path, edit.origin) == ("tests/missing_colon.py", "agent")
    assert (change.path, change.lines_added, change.lines_removed) == ("tests/missing_colon.py", 1, 1)


@pytest.mark.parametrize("exit_status,status", [
    ("submitted", "completed"), ("submitted (exit_cost)", "limit"), ("exit_context", "limit"),
    ("exit_total_execution_time", "timeout"), ("exit_format", "failed"), ("exit_error", "failed"),
])
def test_swe_agent_exit_status(store, tmp_path, exit_status, status):
    doc = {"trajectory": [{"action": "ls", "observation": "a.py", "thought": "look", "execution_time": 0.1}],
           "history": [], "info": {"exit_status": exit_status}}
    path = tmp_path / "x.traj"
    path.write_text(json.dumps(doc))
    _, records = only_run(store, path, "swe-agent")
    assert records[-1].event.status == status


# -- OpenHands ------------------------------------------------------------------------------------


@needs_fixtures
def test_openhands_predictions_one_run_each(store):
    _, runs = imported(store, FIXTURES / "openhands" / "example_model_output.json", "openhands")
    assert len(runs) == 30
    statuses = Counter(records[-1].event.status for records in runs.values())
    assert statuses == {"completed": 26, "failed": 4}  # four model_patch values are ""


@needs_fixtures
def test_openhands_observation_pairs_with_its_cause(store):
    _, records = only_run(store, FIXTURES / "openhands" / "trajs_basic_gui_mode.json", "openhands")
    tools = [e for e in events(records, PartEnded) if e.tool]
    assert [t.tool for t in tools] == ["execute_bash", "str_replace_editor", "str_replace_editor",
                                       "execute_bash"]
    assert records[-1].event.status == "completed"  # agent message, then awaiting_user_input


# -- Inspect --------------------------------------------------------------------------------------


@needs_fixtures
def test_inspect_eval_zstd_and_deflate_and_attachments(store):
    _, runs = imported(store, FIXTURES / "inspect" / "upstream_2025-02-11T15-17-00-05-00_popularity_dPiJifoWeEQBrfWsAopzWr.eval", "inspect")
    assert len(runs) == 10
    for records in runs.values():
        start = records[0].event
        assert start.prompt and "attachment://" not in start.prompt
        assert all("attachment://" not in m.text for m in events(records, MessageAdded))
    _, runs = imported(store, FIXTURES / "inspect" / "demo_mockllm_local_sandbox.eval", "inspect")
    assert sorted(r[0].event.task_id for r in runs.values()) == ["demo/s1", "demo/s2"]


@needs_fixtures
def test_inspect_message_dedup_via_input_refs(store):
    _, records = only_run(store, FIXTURES / "inspect" / "upstream_log_message_deduplication.eval", "inspect")
    user = [m for m in events(records, MessageAdded) if m.role == "user"]
    assert [m.text for m in user] == ["Guess the number"]  # six model calls, one input message
    assert len([e for e in events(records, PartEnded) if e.tool == "bash"]) == 5
    assert not events(records, TestsRan)  # a score is not a test run


@needs_fixtures
@pytest.mark.parametrize("name", ["demo_mockllm_local_sandbox.json", "demo_mockllm_local_sandbox.eval",
                                  "upstream_log_message_deduplication.eval",
                                  "upstream_log_streaming.eval"])
def test_inspect_scores_are_scored_events_named_by_their_scorer(store, name):
    path = FIXTURES / "inspect" / name
    if path.suffix == ".eval":  # the zip's members (zstd or deflate: stdlib zipfile cannot)
        from agtrace.capture.importers.inspect_log import read_eval_members
        members = read_eval_members(path, lambda n: n.startswith("samples/"))
        samples = [json.loads(v) for _, v in sorted(members.items())]
    else:
        samples = json.loads(path.read_text())["samples"]
    letters = {"C": 1.0, "I": 0.0}
    want = {}
    for s in samples:  # older logs name the scorer in the sample's scores only, in order
        events_ = [e for e in s["events"] if e["event"] == "score"]
        want[str(s["id"])] = [(e.get("scorer") or list(s["scores"])[i],
                               letters.get(e["score"]["value"], e["score"]["value"]))
                              for i, e in enumerate(events_)]
    _, runs = imported(store, path, "inspect")
    got = {}
    for rid, records in runs.items():
        scores = [r.event for r in store.read(rid, stream="scores")]
        got[records[0].event.tags["sample_id"]] = [(e.scorer, e.value) for e in scores]
        assert all(isinstance(e, Scored) and e.scored_part == records[-2].part for e in scores)
    assert got == want and any(want.values())
    from agtrace.replay.rescoring import scores as score_rows
    rid = next(iter(runs))
    assert [r["scorer"] for r in score_rows(store, rid)] == [name for name, _ in got[
        runs[rid][0].event.tags["sample_id"]]]


@needs_fixtures
def test_inspect_sample_error_fails_the_run(store, tmp_path):
    doc = json.loads((FIXTURES / "inspect" / "demo_mockllm_local_sandbox.json").read_text())
    doc["samples"][0]["error"] = {"message": "RuntimeError('sandbox died')", "traceback": "..."}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(doc))
    _, runs = imported(store, path, "inspect")
    ends = {r[0].event.task_id: r[-1].event for r in runs.values()}
    assert (ends["demo/s1"].status, ends["demo/s1"].reason) == ("failed", "RuntimeError('sandbox died')")
    assert ends["demo/s2"].status == "completed"


# -- bad input ------------------------------------------------------------------------------------


@needs_fixtures
def test_malformed_lines_are_reported_and_the_rest_imports(store, tmp_path):
    src = FIXTURES / "codex-rollout" / "localpush_rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl"
    lines = src.read_text().splitlines()
    torn = lines[:3] + ["{not json"] + lines[3:] + [lines[-1][:40]]  # garbage + a torn last line
    path = tmp_path / "rollout.jsonl"
    path.write_text("\n".join(torn))
    result, records = only_run(store, path, "codex-rollout")
    assert [b.location for b in result.bad_records] == ["rollout.jsonl:4", f"rollout.jsonl:{len(torn)}"]
    garbage, cut = (b.message for b in result.bad_records)  # the torn one is named so, the garbage not
    assert "cut off while it was being written" in cut and "Import again once the session is complete" in cut
    assert "cut off" not in garbage
    assert len(events(records, RawRecorded)) == len(torn)
    assert records[-1].event.status == "completed"


@pytest.mark.parametrize("fmt", ["codex-rollout", "codex-exec-json", "claude-session", "opencode-run",
                                 "opencode-export", "swe-agent", "openhands", "inspect"])
def test_garbage_gives_a_clear_error_naming_the_file(store, tmp_path, fmt):
    path = tmp_path / ("garbage.eval" if fmt == "inspect" else "garbage.json")
    path.write_bytes(b"\x00\x01 this is not a transcript \xff\n{\n")
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.runs == [] and str(path) in result.error
    assert store.run_ids() == []


@needs_fixtures
@pytest.mark.parametrize("fmt,rel", [
    ("swe-agent", "swe-agent/swe-agent__test-repo-i1.traj"),
    ("openhands", "openhands/trajs_basic.json"),
    ("inspect", "inspect/demo_mockllm_local_sandbox.json"),
    ("inspect", "inspect/demo_mockllm_local_sandbox.eval"),
])
def test_truncated_document_is_refused(store, tmp_path, fmt, rel):
    data = (FIXTURES / rel).read_bytes()
    path = tmp_path / Path(rel).name
    path.write_bytes(data[: len(data) // 2])
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.runs == [] and str(path) in result.error
    assert "truncated" in result.error or "corrupt" in result.error
    assert store.run_ids() == []


@needs_fixtures
def test_detect_directory_of_fixtures_picks_each_file(tmp_path):
    for fmt, path in fixture_files():
        shutil.copy(path, tmp_path / path.name)
        assert detect(tmp_path / path.name, IMPORTERS).name == fmt


@needs_fixtures
def test_swe_agent_edit_tools_are_file_changes(store):
    """Every edit-tool step of a real trajectory changes the step's file (counted from the
    trajectory: ``create``/``edit``/``insert`` with the state's open file)."""
    path = FIXTURES / "swe-agent" / "marshmallow-code__marshmallow-1867.function_calling_replace.traj"
    steps = json.loads(path.read_text())["trajectory"]
    want = []
    for s in steps:
        word = s["action"].split()[0] if s["action"].strip() else ""
        state = json.loads(s["state"]) if isinstance(s["state"], str) else s["state"]
        if word in ("edit", "insert"):
            want.append(state["open_file"].removeprefix(state["working_dir"] + "/"))
        elif word == "create":
            want.append(s["action"].split()[1])
    _, records = only_run(store, path, "swe-agent")
    changed = [e.path for r in records if isinstance(e := r.event, FileChanged)
               and r.part != records[-2].part]  # the last part is the submission patch
    assert changed == want and len(want) == 4
