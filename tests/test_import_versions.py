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
from agtrace.eventlog import Store

from .conftest import run_agtrace
from .source_counts import COUNTERS, check_import
from .source_counts import lines as _lines

REAL = Path(__file__).parent / "golden" / "real"
MATRIX = sorted(p for p in REAL.glob("*@*") if p.is_dir())
sys.path.insert(0, str(Path(__file__).parent / "agents"))

import model_server  # noqa: E402


def _session_file(d: Path) -> Path:
    """The CLI's own session file (Claude's project JSONL, Codex's rollout)."""
    files = [p for p in (d / "home").rglob("*.jsonl") if not p.name.startswith("agent-")]
    assert len(files) == 1, files
    return files[0]


SOURCES = {  # cli -> (source in the golden dir, its format)
    "claude-code": [("session", "claude-session"), ("stdout.jsonl", "claude-stream-json")],
    "codex": [("session", "codex-rollout"), ("stdout.jsonl", "codex-exec-json")],
    "opencode": [("export.json", "opencode-export"), ("stdout.jsonl", "opencode-run")],
}
CASES = [(d, src, fmt, COUNTERS[fmt]) for d in MATRIX for src, fmt in SOURCES[d.name.split("@")[0]]]


def _path(d: Path, source: str) -> Path:
    return _session_file(d) if source == "session" else d / source


def test_every_pinned_version_has_its_golden_and_older_goldens_stay():
    """Each version of the matrix (tests/agents/versions.txt) has what it wrote here, and each
    CLI has at least two formats. A pin replaced by a newer one of the same format leaves the
    matrix (CI runs it no more) but its golden stays: these tests and test_adapters_real still
    read what it wrote."""
    import run_cli

    have = {d.name for d in MATRIX}
    pinned = run_cli.pinned_versions()
    assert {f"{c}@{v}" for c, vs in pinned.items() for v in vs} <= have
    assert all(len(vs) >= 2 for vs in pinned.values()), pinned
    assert {d.split("@")[0] for d in have} == set(pinned)


@pytest.mark.parametrize("d,source,fmt,count", CASES, ids=[f"{c[0].name}:{c[2]}" for c in CASES])
def test_each_version_imports_exactly(store, d, source, fmt, count):
    cli, version = d.name.split("@")
    check_import(store, _path(d, source), fmt, cli, version)


@pytest.mark.parametrize("d", [d for d in MATRIX if d.name.startswith("claude-code@")],
                         ids=lambda d: d.name)
def test_print_mode_sessions_begin_with_queue_operations_and_are_recognised(d):
    path = _session_file(d)
    first = json.loads(path.read_text().splitlines()[0])
    # what made detection by "first 3 lines" fail; 2.1.337 writes an api-request-route first
    assert first["type"] in ("queue-operation", "api-request-route")
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


@pytest.mark.parametrize("source,fmt", [("session", "claude-session"),
                                        ("stdout.jsonl", "claude-stream-json")])
def test_a_newer_content_block_type_in_a_real_claude_file_is_reported_not_dropped(
        store, tmp_path, source, fmt):
    """The real 2.1.332 session and stream with one content block of a type no Claude Code wrote
    yet in its first assistant message: the block is not one of ours (text, thinking, tool_use),
    so it is reported as ``assistant/<type>`` (its line kept raw), and nothing else changes. It
    was silently skipped: the import said nothing while a block of the answer was missing."""
    d = REAL / "claude-code@2.1.332"
    src = _path(d, source)
    lines = src.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if json.loads(x).get("type") == "assistant")
    rec = json.loads(lines[at])
    rec["message"]["content"].append({"type": "brand_new_block", "data": "a newer Claude"})
    path = tmp_path / src.name
    path.write_text("\n".join([*lines[:at], json.dumps(rec), *lines[at + 1:]]) + "\n")
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == []
    assert result.unknown == {"assistant/brand_new_block": 1}
    assert result.unknown_at == {"assistant/brand_new_block": f"{path.name}:{at + 1}"}
    assert "assistant/brand_new_block ×1" in result.warning()
    check = import_source(Store(tmp_path / "plain"), src, IMPORTERS[fmt])
    kinds = [[r.kind for r in s.read(res.runs[0])] for s, res in ((store, result),
                                                                  (Store(tmp_path / "plain"), check))]
    assert kinds[0] == kinds[1]  # the same parts, calls, usage and end; only the warning differs


def test_the_live_claude_adapter_reports_a_newer_content_block_for_the_end_of_run_warning():
    from agtrace.capture.adapters import make_adapter

    adapter = make_adapter("claude-code")
    lines = (REAL / "claude-code@2.1.332" / "stdout.jsonl").read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if json.loads(x).get("type") == "assistant")
    rec = json.loads(lines[at])
    rec["message"]["content"].append({"type": "brand_new_block"})
    for line in [*lines[:at], json.dumps(rec), *lines[at + 1:]]:
        adapter.feed(line, "stdout")
    adapter.finish()
    assert adapter.state.unknown == {"assistant/brand_new_block": 1}


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


@pytest.mark.parametrize("d,source,fmt,count", CASES, ids=[f"{c[0].name}:{c[2]}" for c in CASES])
def test_edits_of_each_version_are_file_changes(store, d, source, fmt, count):
    """The session wrote test_calc.py, then fixed calc.py (the scripted server's plan); every
    source records both edits as agent file changes, workdir-relative where it names the
    workdir (the Codex exec stream does not: its paths stay as Codex printed them)."""
    result = import_source(store, _path(d, source), IMPORTERS[fmt])
    changes = [(r.event.path, r.event.origin) for r in store.read(result.runs[0])
               if r.kind == "file_changed"]
    assert [(Path(p).name, o) for p, o in changes] == [("test_calc.py", "agent"), ("calc.py", "agent")]
    if fmt not in ("codex-exec-json", "opencode-run"):
        assert [p for p, _ in changes] == ["test_calc.py", "calc.py"]


@pytest.mark.parametrize("d,source,fmt", [(d, s, f) for d, s, f, _ in CASES],
                         ids=[f"{c[0].name}:{c[2]}" for c in CASES])
def test_imported_edits_count_in_the_metrics(tmp_path, d, source, fmt):
    """files_changed of an imported run (no snapshots) counts its agent file changes."""
    root = tmp_path / "store"
    with Store(root) as store:
        (run_id,) = import_source(store, _path(d, source), IMPORTERS[fmt]).runs
    proc = run_agtrace(["metrics", run_id, "--json"], root)
    assert proc.returncode == 0, proc.stderr.decode()
    metrics = json.loads(proc.stdout)
    metrics = metrics[0] if isinstance(metrics, list) else metrics
    assert metrics["files_changed"] == 2 and metrics["tool_calls"] == 6


@pytest.mark.parametrize("version", ["0.171.0", "0.66.0"])
def test_a_newer_usage_counter_in_real_codex_files_is_reported_not_dropped(store, tmp_path, version):
    """The real rollout and ``exec --json`` stream of Codex ``version`` with a counter no Codex
    wrote yet (``future_tokens``) in every usage object: it is reported as unknown
    ``usage.future_tokens`` (the lines kept raw), never an error, and the tokens are unchanged.
    It was silently ignored, while unknown record types were reported."""
    from agtrace.capture.adapters import make_adapter
    from agtrace.eventlog import UsageReported

    def mutate(line: str) -> str:
        rec = json.loads(line)
        for holder in (rec, rec.get("payload") or {}, (rec.get("payload") or {}).get("info") or {}):
            for key in ("usage", "total_token_usage"):
                if isinstance(holder.get(key), dict):
                    holder[key]["future_tokens"] = 5
        return json.dumps(rec)

    golden = REAL / f"codex@{version}"
    src = _session_file(golden)
    path = tmp_path / src.name
    path.write_text("".join(mutate(x) + "\n" for x in src.read_text().splitlines()))
    plain = import_source(Store(tmp_path / "plain"), src, IMPORTERS["codex-rollout"])
    result = import_source(store, path, IMPORTERS["codex-rollout"])
    assert plain.unknown == {} and result.bad_records == []
    assert set(result.unknown) == {"usage.future_tokens"} and result.unknown["usage.future_tokens"] >= 7
    assert "usage.future_tokens" in result.warning()
    tokens = [sum(r.event.usage.input + r.event.usage.output + r.event.usage.cache_read for r in s.read(run)
                  if isinstance(r.event, UsageReported)) for s, run in ((store, result.runs[0]),
                                                                        (Store(tmp_path / "plain"), plain.runs[0]))]
    assert tokens[0] == tokens[1] > 0

    adapter = make_adapter("codex")
    for line in (golden / "stdout.jsonl").read_text().splitlines():
        adapter.feed(mutate(line), "stdout")
    adapter.finish()
    assert adapter.state.unknown == {"usage.future_tokens": 1}


@pytest.mark.parametrize("source,fmt", [("session", "claude-session"),
                                        ("stdout.jsonl", "claude-stream-json")])
def test_a_newer_usage_counter_in_a_real_claude_file_is_reported_not_dropped(store, tmp_path, source, fmt):
    """The real 2.1.332 session and stream with ``future_tokens`` in the first assistant
    message's usage: reported as unknown ``usage.future_tokens``, the events unchanged."""
    src = _path(REAL / "claude-code@2.1.332", source)
    lines = src.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if json.loads(x).get("type") == "assistant")
    rec = json.loads(lines[at])
    rec["message"]["usage"]["future_tokens"] = 5
    path = tmp_path / src.name
    path.write_text("\n".join([*lines[:at], json.dumps(rec), *lines[at + 1:]]) + "\n")
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == []
    assert result.unknown == {"usage.future_tokens": 1}
    assert result.unknown_at == {"usage.future_tokens": f"{path.name}:{at + 1}"}
    check = import_source(Store(tmp_path / "plain"), src, IMPORTERS[fmt])
    assert check.unknown == {}
    kinds = [[r.kind for r in s.read(res.runs[0])] for s, res in ((store, result),
                                                                  (Store(tmp_path / "plain"), check))]
    assert kinds[0] == kinds[1]


@pytest.mark.parametrize("version", ["1.18.33", "1.1.65"])
def test_a_newer_usage_counter_in_real_opencode_output_is_reported_not_dropped(store, tmp_path, version):
    """The real ``opencode run --format json`` stream with ``future_tokens`` in every
    ``step_finish`` part's ``tokens``: the live adapter and the opencode-run import report it as
    unknown ``usage.future_tokens``; the tokens are unchanged."""
    from agtrace.capture.adapters import make_adapter
    from agtrace.eventlog import UsageReported

    lines = (REAL / f"opencode@{version}" / "stdout.jsonl").read_text().splitlines()
    mutated = []
    for line in lines:
        rec = json.loads(line)
        if isinstance((rec.get("part") or {}).get("tokens"), dict):
            rec["part"]["tokens"]["future_tokens"] = 5
        mutated.append(json.dumps(rec))
    steps = sum(1 for x in lines if json.loads(x).get("type") == "step_finish")
    adapter = make_adapter("opencode")
    for line in mutated:
        adapter.feed(line, "stdout")
    adapter.finish()
    assert steps and adapter.state.unknown == {"usage.future_tokens": steps}
    path = tmp_path / "stdout.jsonl"
    path.write_text("\n".join(mutated) + "\n")
    result = import_source(store, path, IMPORTERS["opencode-run"])
    assert result.bad_records == [] and result.unknown == {"usage.future_tokens": steps}
    plain = import_source(Store(tmp_path / "plain"), REAL / f"opencode@{version}" / "stdout.jsonl",
                          IMPORTERS["opencode-run"])
    tokens = [[r.event.usage for r in s.read(res.runs[0]) if isinstance(r.event, UsageReported)]
              for s, res in ((store, result), (Store(tmp_path / "plain"), plain))]
    assert tokens[0] == tokens[1] and tokens[0]
