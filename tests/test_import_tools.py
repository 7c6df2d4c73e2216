"""Importers of trajectories saved by other tools: mini-SWE-agent, OpenHands V1, Gemini CLI,
Aider, ATIF (Harbor) and TRAE's Rust port.

The samples in ``tests/golden/import/tools/`` were saved by the real tools, driven offline by
``tests/agents/tool_sessions.py`` against the scripted model server; the ATIF sample was
converted by Harbor's own converter; the Rust-port sample comes from bytedance/trae-agent (see
``tests/golden/SOURCES.md``). Each golden ``<name>.expected.jsonl`` is the ``summary`` of
``test_import_native`` beside its sample. The counting tests read tool calls, tokens, model and
status from the source JSON itself (``*_counts`` below), never through agtrace's parse. The slow
tests run the pinned tools again and check a fresh trajectory the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agtrace.capture.importers import IMPORTERS, detect, import_source
from agtrace.eventlog import (
    FileChanged,
    ModelCalled,
    PartEnded,
    RawRecorded,
    RunEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    UsageReported,
)

from .conftest import run_agtrace
from .test_import_native import events, summary, tokens

GOLDEN = Path(__file__).parent / "golden" / "import"
TOOLS = GOLDEN / "tools"
AGENTS = Path(__file__).parent / "agents"
MINI = TOOLS / "mini-swe-agent" / "calc.traj.json"
MINI_1 = TOOLS / "mini-swe-agent-1" / "calc.traj.json"
OH = TOOLS / "openhands" / "conversations"
GEMINI = TOOLS / "gemini-cli"
GEMINI_OLD = TOOLS / "gemini-cli-0.30"
AIDER = TOOLS / "aider" / "aider.chat.history.md"
ATIF = GOLDEN / "atif" / "harbor-0.26.0_mini-swe-agent_calc.trajectory.json"
TRAE_RS = GOLDEN / "trae-rs" / "demo_trajectory.json"


def oh_conversation() -> Path:
    return next(p for p in sorted(OH.iterdir()) if p.is_dir())


def gemini_session(d: Path = GEMINI) -> Path:
    return next(p for p in sorted(d.iterdir()) if p.name.startswith("session-"))


SAMPLES = {  # name: (format, path)
    "mini-swe-agent": ("mini-swe-agent", lambda: MINI),
    "mini-swe-agent-1": ("mini-swe-agent", lambda: MINI_1),
    "openhands-v1-conversation": ("openhands-v1", oh_conversation),
    "openhands-v1-events": ("openhands-v1", lambda: oh_conversation() / "events"),
    "openhands-v1-export": ("openhands-v1", lambda: OH / "trajectory.json"),
    "gemini-cli": ("gemini-cli", gemini_session),
    "gemini-cli-0.30": ("gemini-cli", lambda: gemini_session(GEMINI_OLD)),
    "aider": ("aider", lambda: AIDER),
    "atif": ("atif", lambda: ATIF),
    "trae-rs": ("trae-rs", lambda: TRAE_RS),
}
PRESENT = {k: v for k, v in SAMPLES.items() if k not in ("mini-swe-agent-1", "gemini-cli-0.30")
           or (MINI_1 if k == "mini-swe-agent-1" else GEMINI_OLD).exists()}


def only_run(store, path: Path, fmt: str):
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "", result.error
    assert len(result.runs) == 1, result.runs
    return result, list(store.read(result.runs[0]))


# -- counts read from the sources themselves -----------------------------------------------------


def mini_counts(path: Path) -> dict:
    doc = json.loads(path.read_text())
    calls, used, model = 0, {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0}, ""
    for m in doc["messages"]:
        extra = m.get("extra") or {}
        if m["role"] == "assistant":
            calls += len(extra.get("actions") or re.findall(r"```(?:bash|mswea_bash_command)\s*\n", m["content"] or ""))
            u = (extra.get("response") or {}).get("usage")
            if u:
                cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
                used["input"] += u["prompt_tokens"] - cached
                used["cache_read"] += cached
                used["output"] += u["completion_tokens"]
                used["reasoning"] += (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
                model = model or extra["response"]["model"]
    status = {"Submitted": "completed"}.get(doc["info"]["exit_status"], "failed")
    return {"tool_calls": calls, "tokens": {k: v for k, v in used.items() if v}, "model": model, "status": status}


def openhands_counts(path: Path) -> dict:
    events_dir = path / "events" if (path / "events").is_dir() else path
    evs = [json.loads(p.read_text()) for p in sorted(events_dir.glob("event-*.json"))]
    if path.is_file():
        evs = json.loads(path.read_text())["events"]
    calls = sum(1 for e in evs if e["kind"] == "ActionEvent" and e["tool_name"] not in ("finish", "think"))
    state_file = events_dir.parent / "base_state.json"
    used: dict[str, int] = {}
    model, status = "", "completed" if any(e.get("tool_name") == "finish" for e in evs) else None
    if path.is_dir() and state_file.exists():
        state = json.loads(state_file.read_text())
        model = state["agent"]["llm"]["model"]
        status = {"finished": "completed"}.get(state["execution_status"], "failed")
        for m in state["stats"]["usage_to_metrics"].values():
            for u in m["token_usages"]:
                for k, v in (("input", u["prompt_tokens"] - u["cache_read_tokens"] - u["cache_write_tokens"]),
                             ("output", u["completion_tokens"]), ("cache_read", u["cache_read_tokens"]),
                             ("cache_write", u["cache_write_tokens"]), ("reasoning", u["reasoning_tokens"])):
                    used[k] = used.get(k, 0) + v
    return {"tool_calls": calls, "tokens": {k: v for k, v in used.items() if v}, "model": model, "status": status}


def gemini_counts(path: Path) -> dict:
    final: dict[str, dict] = {}
    if path.suffix == ".jsonl":
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            for m in rec.get("$set", {}).get("messages", []) + ([rec] if "id" in rec else []):
                final[m["id"]] = m
    else:
        final = {m["id"]: m for m in json.loads(path.read_text())["messages"]}
    replies = [m for m in final.values() if m["type"] == "gemini"]
    used = {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0}
    for m in replies:
        t = m.get("tokens") or {}
        used["input"] += t.get("input", 0) - t.get("cached", 0)
        used["cache_read"] += t.get("cached", 0)
        used["output"] += t.get("output", 0) + t.get("thoughts", 0)
        used["reasoning"] += t.get("thoughts", 0)
    last = list(final.values())[-1]
    return {"tool_calls": sum(len(m.get("toolCalls") or []) for m in replies),
            "tokens": {k: v for k, v in used.items() if v}, "model": replies[0]["model"],
            "status": "completed" if last["type"] == "gemini" and not last.get("toolCalls") else None}


def aider_counts(path: Path) -> dict:
    text = path.read_text()

    def n(s: str) -> int:
        return round(float(s[:-1]) * 1000) if s.endswith("k") else int(s)

    reports = re.findall(r"^> Tokens: (\S+) sent, (\S+) received\.", text, re.M)
    return {"tool_calls": len(re.findall(r"^> Running ", text, re.M)),
            "tokens": {"input": sum(n(s) for s, _ in reports), "output": sum(n(r) for _, r in reports)},
            "model": re.search(r"^> Model: (\S+)", text, re.M).group(1), "status": "completed"}


def atif_counts(path: Path) -> dict:
    doc = json.loads(path.read_text())
    agent = [s for s in doc["steps"] if s["source"] == "agent"]
    prompt = sum(s["metrics"]["prompt_tokens"] for s in agent)
    cached = sum(s["metrics"].get("cached_tokens") or 0 for s in agent)
    completion = sum(s["metrics"]["completion_tokens"] for s in agent)
    final = doc["final_metrics"]
    assert (prompt, cached, completion) == (final["total_prompt_tokens"], final["total_cached_tokens"],
                                            final["total_completion_tokens"])
    reasoning = sum(s["metrics"]["extra"]["completion_tokens_details"]["reasoning_tokens"] for s in agent)
    return {"tool_calls": sum(len(s.get("tool_calls") or []) for s in agent),
            "tokens": {"input": prompt - cached, "cache_read": cached, "output": completion, "reasoning": reasoning},
            "model": doc["agent"]["model_name"], "status": "completed"}


def trae_rs_counts(path: Path) -> dict:
    doc = json.loads(path.read_text())
    steps = [r["steps"] for r in doc["llm_interaction"]]
    failed = sum(1 for s in steps if s["llm_response"]["finish_reason"] == "Error")
    return {"tool_calls": sum(len(s.get("tool_calls") or []) for s in steps), "tokens": {},
            "model": doc["model"], "status": "failed" if failed == len(steps) else None}


COUNTS = {"mini-swe-agent": mini_counts, "openhands-v1": openhands_counts, "gemini-cli": gemini_counts,
          "aider": aider_counts, "atif": atif_counts, "trae-rs": trae_rs_counts}


def check_counts(store, fmt: str, path: Path) -> list:
    expected = COUNTS[fmt](path)
    _, records = only_run(store, path, fmt)
    assert len(events(records, ToolCalled)) == expected["tool_calls"]
    assert tokens(events(records, UsageReported)) == expected["tokens"]
    assert records[0].event.model == expected["model"]
    if expected["status"] is not None:
        assert records[-1].event.status == expected["status"]
    return records


# -- goldens and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESENT))
def test_golden(store, name):
    fmt, path = PRESENT[name]
    _, records = only_run(store, path(), fmt)
    expected = [json.loads(line) for line in (GOLDEN / f"{name}.expected.jsonl").read_text().splitlines()]
    assert summary(records) == expected


@pytest.mark.parametrize("name", sorted(PRESENT))
def test_counts_match_the_source(store, name):
    fmt, path = PRESENT[name]
    records = check_counts(store, fmt, path())
    start = records[0].event
    assert isinstance(start, RunStarted) and start.source == f"import:{fmt}"
    assert isinstance(records[-1].event, RunEnded)


@pytest.mark.parametrize("name", sorted(PRESENT))
def test_detected_lossless_and_idempotent(store, name):
    fmt, path = PRESENT[name]
    assert detect(path(), IMPORTERS).name == fmt
    first, records = only_run(store, path(), fmt)
    raws = events(records, RawRecorded)
    assert raws and all(r.source == f"import:{fmt}" for r in raws)
    assert {r.part for r in records if r.part is not None} == set(range(1, max(
        (r.part for r in records if r.part is not None), default=0) + 1))
    second = import_source(store, path(), IMPORTERS[fmt])
    assert second.runs == [] and second.existing == first.runs


def test_openhands_v1_shapes_agree(store):
    conv = only_run(store, oh_conversation(), "openhands-v1")[1]
    export = only_run(store, OH / "trajectory.json", "openhands-v1")[1]
    kinds = [(e.part_kind, e.tool, e.call_id) for e in events(conv, PartEnded)]
    assert kinds == [(e.part_kind, e.tool, e.call_id) for e in events(export, PartEnded)]
    assert len(events(conv, RawRecorded)) == 1 + len(list((oh_conversation() / "events").glob("event-*.json")))


def test_openhands_v1_exit_codes_and_edits(store):
    _, records = only_run(store, oh_conversation(), "openhands-v1")
    codes = [e.exit_code for e in events(records, ToolReturned) if e.tool == "terminal"]
    assert codes == [0, 1, 0]
    assert [(c.path, c.change) for c in events(records, FileChanged)] == [("test_calc.py", "add"), ("calc.py", "modify")]


def test_gemini_exit_codes_edits_and_usage_once_per_message(store):
    path = gemini_session()
    _, records = only_run(store, path, "gemini-cli")
    assert [e.exit_code for e in events(records, ToolReturned) if e.tool == "run_shell_command"] == [1, 0]
    assert [(c.path, c.change) for c in events(records, FileChanged)] == [("test_calc.py", "add"), ("calc.py", "modify")]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    writes = [rec["id"] for rec in lines if rec.get("type") == "gemini"]
    assert len(writes) > len(set(writes))  # replies are re-written as they grow ...
    assert len(events(records, UsageReported)) == len(events(records, ModelCalled)) == len(set(writes))


def test_aider_edits_and_rounding_as_printed(store):
    _, records = only_run(store, AIDER, "aider")
    assert [(c.path, c.change) for c in events(records, FileChanged)] == [("test_calc.py", "add"), ("calc.py", "modify")]
    assert records[0].event.agent_version == "0.86.2"


def test_trae_rs_epoch_strings_and_failed_calls(store):
    _, records = only_run(store, TRAE_RS, "trae-rs")
    calls = events(records, ModelCalled)
    assert len(calls) == 5 and not any(c.ok for c in calls)
    assert records[0].ts == 1758699175 * 10**9 and records[-1].ts == 1758699190 * 10**9
    assert "no model call succeeded" in records[-1].event.reason


# -- tolerance: unknown record types, bad records --------------------------------------------------


def _with_unknown(name: str, tmp: Path) -> tuple[Path, str]:
    """A copy of the real sample plus one record of a type no version of the importer knows."""
    fmt, path = SAMPLES[name]
    src = path()
    if name == "openhands-v1-conversation":
        dest = tmp / src.name
        shutil.copytree(src, dest)
        (dest / "events" / "event-00099-future.json").write_text(json.dumps(
            {"kind": "PlanReviewEvent", "id": "future", "timestamp": "2026-12-01T22:30:00", "source": "agent"}))
        return dest, "PlanReviewEvent"
    dest = tmp / src.name
    text = src.read_text()
    if name == "mini-swe-agent":
        doc = json.loads(text)
        doc["messages"].insert(3, {"role": "critic", "content": "looks fine"})
        dest.write_text(json.dumps(doc, indent=2))
        return dest, "message:critic"
    if name == "openhands-v1-export":
        doc = json.loads(text)
        doc["events"].append({"kind": "PlanReviewEvent", "id": "future", "source": "agent"})
        dest.write_text(json.dumps(doc))
        return dest, "PlanReviewEvent"
    if name == "gemini-cli":
        dest.write_text(text + json.dumps({"id": "future", "type": "plan", "content": "a plan"}) + "\n")
        return dest, "message:plan"
    if name == "aider":
        dest.write_text(text + "\n## Session summary\n")
        return dest, "heading:##"
    if name == "atif":
        doc = json.loads(text)
        doc["steps"].insert(2, {"step_id": 99, "source": "environment", "message": "tick"})
        dest.write_text(json.dumps(doc))
        return dest, "step:environment"
    if name == "trae-rs":
        doc = json.loads(text)
        doc["llm_interaction"][0]["steps"]["state"] = "PLANNING"
        dest.write_text(json.dumps(doc))
        return dest, "state:PLANNING"
    raise ValueError(name)


UNKNOWN = ["mini-swe-agent", "openhands-v1-conversation", "openhands-v1-export", "gemini-cli", "aider",
           "atif", "trae-rs"]


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_record_type_is_kept_counted_and_not_an_error(store, tmp_path, name):
    fmt = SAMPLES[name][0]
    path, kind = _with_unknown(name, tmp_path)
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == []
    assert result.unknown == {kind: 1}
    records = list(store.read(result.runs[0]))
    assert isinstance(records[-1].event, RunEnded)
    raws = [store.text(r.text, r.blob) for r in events(records, RawRecorded)]
    assert any(kind.split(":")[-1] in raw for raw in raws)  # the record itself is kept verbatim
    with Store(tmp_path / "clean") as clean:
        assert records[-1].event == only_run(clean, SAMPLES[name][1](), fmt)[1][-1].event


def test_cli_warns_about_unknown_types_and_exits_0(tmp_path):
    path, kind = _with_unknown("gemini-cli", tmp_path)
    proc = run_agtrace(["import", str(path)], tmp_path / "store")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "warning" in proc.stderr.decode() and kind in proc.stderr.decode()
    proc = run_agtrace(["import", "--json", str(path)], tmp_path / "store2")
    assert json.loads(proc.stdout)[0]["unknown"] == {kind: 1}


def test_malformed_records_are_bad_with_their_location_and_the_rest_imports(store, tmp_path):
    src = gemini_session()
    lines = src.read_text().splitlines()
    path = tmp_path / src.name
    path.write_text("\n".join(lines[:5] + ["{torn"] + lines[5:]) + "\n")
    result = import_source(store, path, IMPORTERS["gemini-cli"])
    assert result.error == "" and [b.location for b in result.bad_records] == [f"{src.name}:6"]
    conv = tmp_path / "conv"
    shutil.copytree(oh_conversation(), conv)
    victim = sorted((conv / "events").glob("event-*.json"))[3]
    victim.write_text(victim.read_text()[:40])
    result = import_source(store, conv, IMPORTERS["openhands-v1"])
    assert result.error == "" and [b.location for b in result.bad_records] == [f"events/{victim.name}"]
    assert len(list(store.read(result.runs[0]))) > 20


@pytest.mark.parametrize("fmt", ["mini-swe-agent", "openhands-v1", "gemini-cli", "aider", "atif", "trae-rs"])
def test_garbage_gives_a_clear_error_naming_the_file(store, tmp_path, fmt):
    path = tmp_path / ("garbage.jsonl" if fmt == "gemini-cli" else "garbage.json")
    path.write_bytes(b"\x00\x01 not a trajectory \xff\n{\n")
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.runs == [] and str(path) in result.error
    assert store.run_ids() == []


def test_detection_reads_past_the_first_lines(tmp_path):
    """A Gemini session whose metadata line comes after blank lines and torn ones."""
    src = gemini_session()
    path = tmp_path / src.name
    path.write_text("\n\n{torn\n\n" + src.read_text())
    assert detect(path, IMPORTERS).name == "gemini-cli"
    big = tmp_path / "calc.traj.json"  # mini_version pushed past 64 KiB by a long template
    doc = json.loads(MINI.read_text())
    doc["info"] = {"config": {"agent": {"system_template": "x" * 100_000}}, **doc["info"]}
    big.write_text(json.dumps(doc, indent=2))
    assert detect(big, IMPORTERS).name == "mini-swe-agent"


# -- the real tools ------------------------------------------------------------------------------


def _tool_sessions():
    sys.path.insert(0, str(AGENTS))
    import tool_sessions

    return tool_sessions


@pytest.fixture(scope="session")
def installed_tools():
    """Install the pinned tools (idempotent, cached outside the repository). Under CI a failed
    install fails the tests; elsewhere it skips them."""
    if shutil.which("npm") is None and not os.environ.get("CI"):
        pytest.skip("npm is missing")
    proc = subprocess.run(["bash", str(AGENTS / "install_tools.sh")], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        message = f"tests/agents/install_tools.sh failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return _tool_sessions()


def _need(ts, tool: str) -> None:
    ok, why = ts.available(tool)
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{tool}: {why}")
        pytest.skip(f"{tool}: {why}")


@pytest.mark.slow
def test_atif_sample_validates_with_harbor_models(installed_tools):
    harbor = installed_tools.TOOLS_DIR / "harbor" / "bin" / "python"
    if not harbor.exists():
        _need(installed_tools, "harbor")
    code = ("import json,sys; from harbor.models.trajectories import Trajectory; "
            "t=Trajectory.model_validate(json.load(open(sys.argv[1]))); print(len(t.steps))")
    out = subprocess.run([str(harbor), "-c", code, str(ATIF)], capture_output=True, text=True, timeout=120,
                         env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == len(json.loads(ATIF.read_text())["steps"])


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["mini-swe-agent", "mini-swe-agent-1", "openhands", "gemini-cli",
                                  "gemini-cli-0.30", "aider"])
def test_real_tool_trajectory_imports_with_the_source_counts(tmp_path, installed_tools, tool):
    ts = installed_tools
    _need(ts, tool)
    res = ts.run_in_netns(tool, tmp_path / "run", timeout=300)
    assert res["returncode"] == 0 and res["script_finished"], res
    out = tmp_path / "run"
    if tool.startswith("mini-swe-agent"):
        fmt, path = "mini-swe-agent", out / "calc.traj.json"
    elif tool == "openhands":
        fmt, path = "openhands-v1", next(p for p in (out / "conversations").iterdir() if p.is_dir())
    elif tool.startswith("gemini-cli"):
        fmt, path = "gemini-cli", next(out.glob("session-*"))
    else:
        fmt, path = "aider", out / "aider.chat.history.md"
    with Store(tmp_path / "store") as store:
        assert detect(path, IMPORTERS).name == fmt
        records = check_counts(store, fmt, path)
        # the scripted tool steps (OpenHands' finish and the final answers call no tool)
        scripted = {"mini-swe-agent": 7, "mini-swe-agent-1": 7, "openhands": 6, "gemini-cli": 6,
                    "gemini-cli-0.30": 6, "aider": 0}[tool]
        assert len(events(records, ToolCalled)) == scripted
        if tool == "openhands":
            check_counts(store, fmt, out / "conversations" / "trajectory.json")
        if tool == "mini-swe-agent":  # Harbor's own converter makes ATIF of the fresh trajectory
            harbor = ts.TOOLS_DIR / "harbor" / "bin" / "python"
            _need(ts, "harbor")
            atif = tmp_path / "trajectory.json"
            code = ("import sys; from pathlib import Path; from harbor.agents.installed.mini_swe_agent "
                    "import convert_and_save_trajectory as c; c(Path(sys.argv[1]), Path(sys.argv[2]), 's')")
            proc = subprocess.run([str(harbor), "-c", code, str(path), str(atif)], capture_output=True,
                                  text=True, timeout=300, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                                               "PATH": "/usr/bin:/bin"})
            assert proc.returncode == 0, proc.stderr
            assert detect(atif, IMPORTERS).name == "atif"
            check_counts(store, "atif", atif)


def test_atif_edit_tool_calls_are_file_changes(store, tmp_path):
    """The real sample with its sed step turned into an editor call (as other agents' ATIF has)."""
    doc = json.loads(ATIF.read_text())
    step = next(s for s in doc["steps"] if "sed -i" in json.dumps(s.get("tool_calls")))
    step["tool_calls"][0].update(function_name="str_replace_based_edit_tool", arguments={
        "command": "str_replace", "path": "calc.py", "old_str": "return a - b", "new_str": "return a + b"})
    path = tmp_path / "edit.trajectory.json"
    path.write_text(json.dumps(doc))
    _, records = only_run(store, path, "atif")
    assert [(c.path, c.change) for c in events(records, FileChanged)] == [("calc.py", "modify")]
