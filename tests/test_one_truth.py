"""One truth: every figure that two commands print under the same name is the same number.

A store holds the demo run (a real capture of the scripted agent), real Claude Code output (a
session file imported, and `claude -p` stream-json captured through `agtrace run`), an Inspect
log and an OpenCode run. For each run the figures of ``ls --json``, ``show --json``, ``metrics
--json`` (and ``--per-part``), ``compare --json``, the report's embedded data and ``export
--format jsonl --metrics`` are compared key by key, all through the real CLI in subprocesses;
the capture summaries (the live line's final figures) must agree too. The Claude totals are
also counted straight from the source files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import FIXTURES, REPO, run_agtrace

CLAUDE_SESSION = FIXTURES / "claude-code" / "daaain_representative_messages.jsonl"
CLAUDE_STREAM = REPO / "tests" / "golden" / "real" / "claude-code.jsonl"
INSPECT_LOG = FIXTURES / "inspect" / "demo_mockllm_local_sandbox.eval"
OPENCODE_RUN = FIXTURES / "opencode" / "noldor_run-format-json_opencode-1.17.20.ndjson"
OPENCODE_STREAM = REPO / "tests" / "golden" / "real" / "opencode.jsonl"

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not mounted")


def _json(proc) -> object:
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The store, the run ids by label, and what each capture printed as its summary."""
    root = tmp_path_factory.mktemp("one-truth")
    store = root / "store"
    runs: dict[str, str] = {}
    summaries: dict[str, dict] = {}
    demo = _json(run_agtrace(["demo", "--fast", "--json", "--workdir", str(root / "demo")], store, check=True))
    runs["demo"], summaries["demo"] = demo["run_id"], demo
    for label, source in (("claude-stream", CLAUDE_STREAM), ("opencode-stream", OPENCODE_STREAM)):
        work = root / label
        work.mkdir()
        agent = {"claude-stream": "claude-code", "opencode-stream": "opencode"}[label]
        out = _json(run_agtrace(["run", "--agent", agent, "--workdir", str(work), "--json", "--",
                                 "cat", str(source)], store, check=True))
        runs[label], summaries[label] = out["run_id"], out
    for label, source, fmt in (("claude-session", CLAUDE_SESSION, "claude-session"),
                               ("inspect", INSPECT_LOG, "inspect"), ("opencode-run", OPENCODE_RUN, "opencode-run")):
        copy = root / "sources" / source.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(source, copy)
        results = _json(run_agtrace(["import", str(copy), "--format", fmt, "--json"], store, check=True))
        ids = [r for res in results for r in res["runs"]]
        runs[label] = ids[0]  # an Inspect log of two samples is two runs; the first is enough
    return store, root, runs, summaries


@pytest.fixture(scope="module")
def views(world):
    """Every command's view of every run, as ``{label: {source: dict}}`` and per-part lists."""
    store, root, runs, _ = world
    ids = list(runs.values())
    listed = {r["id"]: r for r in _json(run_agtrace(["ls", "--json"], store, check=True))}
    compared = {r["id"]: r for r in _json(run_agtrace(["compare", *ids, "--json"], store, check=True))}
    export = root / "export.jsonl"
    run_agtrace(["export", *ids, "--format", "jsonl", "--metrics", "-o", str(export)], store, check=True)
    exported = {r["run_id"]: _unflat(r) for r in _lines(root / "export.run_metrics.jsonl")}
    exported_parts: dict[str, list] = {}
    for r in _lines(root / "export.part_metrics.jsonl"):
        exported_parts.setdefault(r.pop("run_id"), []).append(r)
    out: dict[str, dict] = {}
    parts: dict[str, dict] = {}
    for label, run_id in runs.items():
        page = root / f"{label}.html"
        run_agtrace(["report", run_id, "-o", str(page)], store, check=True)
        data = _blocks(page.read_text())["agtrace-data"]
        out[label] = {
            "ls": listed[run_id],
            "show": _json(run_agtrace(["show", run_id, "--json"], store, check=True)),
            "metrics": _json(run_agtrace(["metrics", run_id, "--json"], store, check=True)),
            "compare": compared[run_id],
            "report": data["run"],
            "export": exported[run_id],
        }
        parts[label] = {
            "metrics": _json(run_agtrace(["metrics", run_id, "--per-part", "--json"], store, check=True)),
            "export": exported_parts.get(run_id, []),
            "report": data,
        }
    return out, parts


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _unflat(row: dict) -> dict:
    """Export writes nested values as JSON text (one scalar type per column); read them back."""
    return {k: json.loads(v) if k in ("tools", "tags", "cost") and isinstance(v, str) else v for k, v in row.items()}


def _blocks(page: str) -> dict:
    return {m.group(1): json.loads(m.group(2))
            for m in re.finditer(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S)}


LABELS = ("demo", "claude-stream", "opencode-stream", "claude-session", "inspect", "opencode-run")


@pytest.mark.parametrize("label", LABELS)
def test_every_shared_name_has_one_value(views, label):
    by_source = views[0][label]
    shared = 0
    names = sorted(by_source)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for key in sorted(set(by_source[a]) & set(by_source[b])):
                assert by_source[a][key] == by_source[b][key], f"{label}: {key} is {by_source[a][key]!r} in {a} " \
                                                              f"but {by_source[b][key]!r} in {b}"
                shared += 1
    assert shared > 100  # the views really overlap: tokens, parts, tests, tools, times, status…
    m = by_source["metrics"]
    for source in ("ls", "compare", "report", "export"):
        assert by_source[source]["tokens"] == m["tokens"], source
    for source in ("ls", "show", "compare", "report", "export"):
        assert by_source[source]["parts"] == m["parts"], source


@pytest.mark.parametrize("label", LABELS)
def test_per_part_rows_agree_and_sum_to_the_run(views, label):
    run = views[0][label]["metrics"]
    per_part = views[1][label]
    rows = per_part["metrics"]
    assert per_part["export"] == rows
    data = per_part["report"]
    assert data["parts"]["n"] == [r["part"] for r in rows]
    assert data["parts"]["ch"] == [r["files_changed"] for r in rows]
    assert data["parts"]["add"] == [r["churn_lines_added"] for r in rows]
    assert [k for k in data["parts"]["kind"] if k != "unfinished"] == [r["kind"] for r in rows if r["kind"]]
    assert sum(u[2] for u in data["usage"]) == run["tokens"]
    assert sum(r["tokens"] for r in rows) <= run["tokens"]
    assert sum(r["churn_lines_added"] for r in rows) == run["churn_lines_added"]
    assert sum(r["tool_calls"] for r in rows) <= run["tool_calls"]
    assert run["parts"] == max((r["part"] for r in rows if r["kind"]), default=0)


@pytest.mark.parametrize("label", ["demo", "claude-stream", "opencode-stream"])
def test_the_capture_summary_reports_the_same_figures(world, views, label):
    _, _, _, summaries = world
    m = views[0][label]["metrics"]
    summary = summaries[label]
    # the duration too (B6: it was a monotonic clock of the capture loop, 0.342 s against 0.408 s)
    assert (summary["tokens"], summary["parts"], summary["status"], summary["duration_s"]) == (
        m["tokens"], m["parts"], m["status"], m["duration_s"])


def test_the_demo_names_net_and_churn_apart(views):
    """Net is the final tree against the base (fixed); churn sums the parts' diffs, so its exact
    value depends on which edits each snapshot caught (``demo --fast`` races its capture on a
    loaded machine: 34/4 when every edit lands in its own part). Churn is never below net."""
    row = views[0]["demo"]["compare"]
    assert (row["net_files_changed"], row["net_lines_added"], row["net_lines_removed"]) == (3, 31, 1)
    assert row["churn_lines_added"] >= row["net_lines_added"]
    assert row["churn_lines_removed"] >= row["net_lines_removed"]
    assert "lines_added" not in row and "lines_added" not in views[0]["demo"]["metrics"]


def _anthropic_total(usage: dict) -> int:
    return sum(usage.get(k) or 0 for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                           "cache_creation_input_tokens"))


def test_claude_session_tokens_are_those_of_its_distinct_messages(views):
    by_id: dict[str, dict] = {}
    for line in CLAUDE_SESSION.read_text().splitlines():
        rec = json.loads(line) if line.strip() else {}
        msg = rec.get("message")
        if rec.get("type") == "assistant" and isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
            by_id[msg["id"]] = msg["usage"]  # a message's lines repeat its usage: count it once
    assert by_id
    m = views[0]["claude-session"]["metrics"]
    assert m["tokens"] == sum(_anthropic_total(u) for u in by_id.values())
    assert m["tokens_output"] == sum(u.get("output_tokens", 0) for u in by_id.values())


def test_claude_stream_tokens_are_the_sessions_own_total(views):
    records = [json.loads(line) for line in CLAUDE_STREAM.read_text().splitlines()]
    by_id = {r["message"]["id"]: r["message"]["usage"] for r in records if r.get("type") == "assistant"}
    assert len(by_id) < sum(1 for r in records if r.get("type") == "assistant")  # ids repeat
    result = next(r for r in records if r.get("type") == "result")
    m = views[0]["claude-stream"]["metrics"]
    # the messages' usage, each message once, plus what the final result adds (its total)
    assert sum(_anthropic_total(u) for u in by_id.values()) < m["tokens"] == _anthropic_total(result["usage"])
    assert m["cost_usd"] == pytest.approx(result["total_cost_usd"])


def _new_run(store, *args: str) -> str:
    return run_agtrace(["new", "--agent", "hand", *args], store, check=True).stdout.decode().strip()


def _append(store, run_id: str, *events: dict) -> None:
    run_agtrace(["append", run_id], store, input="".join(json.dumps(e) + "\n" for e in events).encode(), check=True)


def _two_parts(model: str) -> list[dict]:
    """Two parts of one call each to ``model``: 1,000 + 50 tokens (the agent reporting $0.01),
    then 500 + 20 (nothing reported)."""
    return [{"part": 1, "kind": "usage_reported", "usage": {"input": 1000, "output": 50}, "model": model,
             "cost_usd": 0.01},
            {"part": 1, "kind": "part_ended", "part_kind": "message", "title": "x"},
            {"part": 2, "kind": "usage_reported", "usage": {"input": 500, "output": 20}, "model": model},
            {"part": 2, "kind": "part_ended", "part_kind": "message", "title": "y"}]


def _times(store, run_id: str) -> dict:
    figures = {}
    for name, args in (("metrics", ["metrics", run_id, "--json"]), ("show", ["show", run_id, "--json"])):
        d = _json(run_agtrace(args, store, check=True))
        figures[name] = (d["last_ts"], d["duration_s"])
    row = next(r for r in _json(run_agtrace(["ls", "--json"], store, check=True)) if r["id"] == run_id)
    figures["ls"] = (row["last_ts"], row["duration_s"])
    return figures


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_a_runs_times_do_not_depend_on_how_its_events_were_batched(tmp_path):
    """B1: ``last_ts`` was the ts of the last event of each written batch (max over batches), so
    a run without ``run_ended`` lasted 1m41s live and 10s after ``reindex`` or in a ``cp``."""
    store = tmp_path / "store"
    run = _new_run(store, "--task-id", "b1")
    started = _json(run_agtrace(["show", run, "--json"], store, check=True))["started_at"]
    late, later, early = started + 100 * 10**9, started + 101 * 10**9, started + 10 * 10**9
    _append(store, run, {"ts": late, "part": 1, "kind": "message_added", "role": "assistant", "text": "a"},
            {"ts": later, "part": 1, "kind": "part_ended", "part_kind": "message", "title": "a"})
    _append(store, run, {"ts": early, "part": 2, "kind": "message_added", "role": "assistant", "text": "b"})
    copy = run_agtrace(["cp", run], store, check=True).stdout.decode().strip()
    live = _times(store, run)
    assert live == {k: (later, pytest.approx(101.0)) for k in live}  # the largest ts of any event
    assert _times(store, copy) == live
    run_agtrace(["reindex"], store, check=True)
    assert _times(store, run) == live and _times(store, copy) == live

    before = _new_run(store, "--task-id", "b1-before-start")  # events dated before the run started
    _append(store, before, {"ts": started - 10**9, "part": 1, "kind": "message_added", "role": "user", "text": "x"})
    live = _times(store, before)
    assert [d for _, d in live.values()] == [0.0] * 3  # the run's own start is its largest ts
    run_agtrace(["reindex"], store, check=True)
    assert _times(store, before) == live


def _page_data(store, args: list[str], out: Path) -> dict:
    run_agtrace([*args, "-o", str(out)], store, check=True)
    return _blocks(out.read_text())["agtrace-data"]


def test_the_report_and_compare_page_show_the_priced_cost_of_show(tmp_path):
    """B2: the report's header and cost curve, and compare's cost curve, showed the agent-reported
    cost ($0.0100, "unknown" for a codex rollout) where show/metrics/ls say $0.0055 priced."""
    store = tmp_path / "store"
    model = "claude-sonnet-4-20250514"
    run = _new_run(store, "--model", model, "--task-id", "b2")
    _append(store, run,
            *_two_parts(model))
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    shown = _json(run_agtrace(["show", run, "--json"], store, check=True))["cost"]
    line = next(x for x in run_agtrace(["show", run], store, check=True).stdout.decode().splitlines()
                if x.startswith("cost:"))[len("cost:"):].strip()
    assert shown["cost_usd"] is not None and shown["cost_usd"] != pytest.approx(0.01)
    assert "the agent reported $0.0100" in line
    page = tmp_path / "r.html"
    data = _page_data(store, ["report", run], page)
    assert data["run"]["cost"] == shown
    assert f"<dt>cost</dt><dd>{line}</dd>" in page.read_text()
    assert sum(u[3] for u in data["usage"]) == pytest.approx(shown["cost_usd"])
    assert all(u[3] > 0 for u in data["usage"])  # part 2 is priced though the agent reported nothing
    curve = _page_data(store, ["compare", run], tmp_path / "c.html")["runs"][0]["cost"]
    assert curve[-1][2] == pytest.approx(shown["cost_usd"])


def test_compare_draws_the_pass_rate_of_the_counting_rule(tmp_path):
    """B3: the pass-rate curve was passed / total (skipped counted): 2/4 where rescore says 2/3."""
    store = tmp_path / "store"
    run = _new_run(store, "--task-id", "b3")
    _append(store, run, {"part": 1, "kind": "tests_ran", "suite": "pytest", "passed": 2, "failed": 1, "skipped": 1},
            {"part": 2, "kind": "tests_ran", "suite": "pytest", "skipped": 3},
            {"part": 2, "kind": "part_ended", "part_kind": "test", "title": "t"})
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    rate = _page_data(store, ["compare", run], tmp_path / "c.html")["runs"][0]["rate"]
    assert [(p, v) for p, _, v in rate] == [(1, pytest.approx(2 / 3)), (2, 0.0)]  # all skipped: 0.0, not 1.0


def test_the_reports_test_points_carry_the_metrics_total(tmp_path):
    """B4: a result without ``total`` was drawn "2 passed, 1 failed, 0 errors of 0" (the event's
    raw field) while metrics counts 4 (passed + failed + errors + skipped)."""
    store = tmp_path / "store"
    run = _new_run(store, "--task-id", "b4")
    _append(store, run, {"part": 1, "kind": "tests_ran", "suite": "pytest", "passed": 2, "failed": 1, "skipped": 1},
            {"part": 1, "kind": "part_ended", "part_kind": "test", "title": "t"})
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    row = _json(run_agtrace(["metrics", run, "--per-part", "--json"], store, check=True))[0]
    data = _page_data(store, ["report", run], tmp_path / "r.html")
    assert [(p[0], p[2], p[3] + p[4], p[5]) for p in data["tests"]] == [
        (1, row["tests_passed"], row["tests_failed"], row["tests_total"])] == [(1, 2, 1, 4)]
    assert data["run"]["tests_final_total"] == 4
    rows = [e[4] for page in (json.loads(m) for m in re.findall(
        r'id="agtrace-page-\d+">(.*?)</script>', (tmp_path / "r.html").read_text(), re.S)) for e in page]
    assert [r["total"] for r in rows if "failing" in r] == [4]  # the transcript's row too


def test_a_call_id_returned_or_called_twice_is_one_call(tmp_path):
    """B5: a second ``tool_returned`` of one call id counted as a new call (2 calls, 1 error) and a
    repeated ``tool_called`` twice, while the report drew one lane with the last outcome."""
    store = tmp_path / "store"
    run = _new_run(store, "--task-id", "b5")
    call = {"kind": "tool_called", "tool": "edit"}
    back = {"kind": "tool_returned", "tool": "edit"}
    _append(store, run, {"part": 1, **call, "call_id": "c1"},
            {"part": 1, **back, "call_id": "c1", "status": "error", "output": "boom"},
            {"part": 1, **back, "call_id": "c1", "output": "ok"},  # retried under the same id: ok at last
            {"part": 1, "kind": "part_ended", "part_kind": "tool", "title": "edit", "tool": "edit"})
    _append(store, run, {"part": 2, **call, "call_id": "c2"}, {"part": 2, **call, "call_id": "c2"},
            {"part": 2, **back, "call_id": "c2", "output": "ok"},
            {"part": 2, **back, "call_id": "c2", "status": "error", "output": "late failure"},
            {"part": 2, "kind": "part_ended", "part_kind": "tool", "title": "edit", "tool": "edit"})
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    want = {"tool_calls": 2, "tool_errors": 1, "tools": {"edit": {"calls": 2, "errors": 1, "error_rate": 0.5}}}
    m = _json(run_agtrace(["metrics", run, "--json"], store, check=True))
    assert {k: m[k] for k in want} == want
    rows = _json(run_agtrace(["metrics", run, "--per-part", "--json"], store, check=True))
    assert [(r["part"], r["tool_calls"], r["tool_errors"]) for r in rows] == [(1, 1, 0), (2, 1, 1)]
    data = _page_data(store, ["report", run], tmp_path / "r.html")
    assert [(c[0], c[4], c[5]) for c in data["calls"]] == [(1, "ok", "c1"), (2, "error", "c2")]
    assert (data["run"]["tool_calls"], data["run"]["tool_errors"]) == (2, 1)
    run_agtrace(["reindex"], store, check=True)
    assert {k: _json(run_agtrace(["metrics", run, "--json"], store, check=True))[k] for k in want} == want


def test_the_fast_demos_part_trees_hold_only_their_own_edits(world, views):
    """B7: ``demo --fast`` ran ahead of its snapshots, so part 5's tree held part 8's apply_patch
    (per-part files at 5, 11, 12, … where the file changes are at 8, 14, 24). The agent now
    waits for each part's freeze and thaw, and Codex lines that may end a part freeze it at once."""
    store, _, runs, _ = world
    rows = views[1]["demo"]["metrics"]
    assert [(r["part"], r["files_changed"]) for r in rows if r["files_changed"]] == [
        (8, 1), (11, 1), (14, 1), (20, 1), (22, 1), (24, 1)]
    log = run_agtrace(["log", runs["demo"], "--kind", "file_changed", "--json"], store, check=True)
    changed = {json.loads(line)["part"] for line in log.stdout.decode().splitlines()}
    assert changed == {8, 14, 24} and changed <= {r["part"] for r in rows if r["files_changed"]}
    by_part = {r["part"]: r for r in rows}
    assert (by_part[12]["tests_passed"], by_part[12]["tests_total"]) == (4, 5)  # before part 14's fix
    row = views[0]["demo"]["compare"]
    assert (row["churn_lines_added"], row["churn_lines_removed"]) == (34, 4)  # every edit in its own part


def test_the_transcripts_usage_rows_show_the_priced_cost_and_label_the_reported_one(tmp_path):
    """Issue: `replay --transcript` and the report's transcript printed the agent-reported
    `cost_usd` of each usage event as its cost (`$0.0100`), where show/metrics/ls say the priced
    cost (docs/metrics.md: "Every cost shown is this one"). Now each row shows the priced cost
    of its call (the `usage_costs` row), and what the agent reported only labelled as such."""
    store = tmp_path / "store"
    model = "claude-sonnet-4-20250514"
    run = _new_run(store, "--model", model, "--task-id", "b5")
    _append(store, run,
            {"part": 1, "kind": "usage_reported", "usage": {"input": 1000, "output": 50}, "model": model,
             "cost_usd": 0.01},
            {"part": 1, "kind": "part_ended", "part_kind": "message", "title": "x"},
            {"part": 2, "kind": "usage_reported", "usage": {"input": 500, "output": 20}, "model": "no-such-model",
             "cost_usd": 0.02},
            {"part": 2, "kind": "part_ended", "part_kind": "message", "title": "y"})
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    priced = _json(run_agtrace(["show", run, "--json"], store, check=True))["cost"]["cost_usd"]
    assert priced != pytest.approx(0.01)
    text = run_agtrace(["replay", run, "--transcript"], store, check=True).stdout.decode()
    rows = [x.strip() for x in text.splitlines() if "tokens:" in x]
    assert rows == [f"[1] tokens: 1,000 in, 50 out, ${priced:.4f}; the agent reported $0.0100",
                    "[2] tokens: 500 in, 20 out, unpriced (no-such-model); the agent reported $0.0200"], rows
    run_agtrace(["report", run, "-o", str(tmp_path / "r.html")], store, check=True)
    blocks = _blocks((tmp_path / "r.html").read_text())
    bodies = [e[4] for name, page in sorted(blocks.items()) if name.startswith("agtrace-page-")
              for e in page if e[3] == "usage_reported"]
    assert [(b["cost"], b["reported_cost"]) for b in bodies] == [(pytest.approx(priced), 0.01), (None, 0.02)]


def _span_attrs(path: Path) -> list[dict]:
    """Every span of an OTLP JSON lines file, as ``{"name", **attributes}`` (values unwrapped)."""
    out = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    out.append({"name": span["name"], **attrs})
    return out


def test_atif_and_otlp_carry_the_priced_cost_and_the_reported_one_apart(tmp_path):
    """B5: ATIF's ``total_cost_usd``/step ``cost_usd`` and OTLP's ``agtrace.usage.cost_usd`` were
    the agent-reported cost (absent for a codex rollout the report prices at $2.3332). Now the
    priced cost of ``show``; a run or part with an unpriced call leaves the figure out and says
    why; what the agent reported is ``reported_cost_usd``."""
    store = tmp_path / "store"
    model = "claude-sonnet-4-20250514"
    whole = _new_run(store, "--model", model, "--task-id", "b5")
    _append(store, whole,
            *_two_parts(model))
    partial = _new_run(store, "--model", model, "--task-id", "b5-partial")
    _append(store, partial,
            {"part": 1, "kind": "usage_reported", "usage": {"input": 1000, "output": 50}, "model": model},
            {"part": 1, "kind": "part_ended", "part_kind": "message", "title": "x"},
            {"part": 2, "kind": "usage_reported", "usage": {"input": 500, "output": 20}, "model": "no-such-model",
             "cost_usd": 0.002},
            {"part": 2, "kind": "part_ended", "part_kind": "message", "title": "y"})
    for run in (whole, partial):
        run_agtrace(["close", run, "--status", "completed"], store, check=True)
    cost = {r: _json(run_agtrace(["show", r, "--json"], store, check=True))["cost"] for r in (whole, partial)}
    per_part = {r: [m["cost_usd"] for m in _json(run_agtrace(["metrics", r, "--per-part", "--json"], store,
                                                             check=True))] for r in (whole, partial)}
    assert cost[whole]["complete"] and not cost[partial]["complete"]
    run_agtrace(["export", whole, partial, "--format", "atif", "-o", str(tmp_path / "atif")], store, check=True)
    t = json.loads((tmp_path / "atif" / f"{whole}.json").read_text())
    final = t["final_metrics"]
    assert final["total_cost_usd"] == pytest.approx(cost[whole]["cost_usd"]) != pytest.approx(0.01)
    assert final["extra"]["reported_cost_usd"] == pytest.approx(0.01)
    assert final["extra"]["cost_prices"] == cost[whole]["prices"]
    steps = [s for s in t["steps"] if s.get("metrics")]
    assert sum(s["metrics"]["cost_usd"] for s in steps) == pytest.approx(cost[whole]["cost_usd"])
    assert all(s["metrics"]["cost_usd"] > 0 for s in steps)  # part 2: priced, though nothing was reported
    assert steps[0]["metrics"]["extra"]["reported_cost_usd"] == per_part[whole][0] == pytest.approx(0.01)
    assert "reported_cost_usd" not in steps[1]["metrics"].get("extra", {})

    t = json.loads((tmp_path / "atif" / f"{partial}.json").read_text())
    final = t["final_metrics"]
    assert "total_cost_usd" not in final  # a partial sum never passes as the run's cost
    assert "no-such-model" in final["extra"]["cost_left_out"]
    assert final["extra"]["reported_cost_usd"] == pytest.approx(0.002)
    first, second = (s["metrics"] for s in t["steps"] if s.get("metrics"))
    assert first["cost_usd"] == pytest.approx(cost[partial]["cost_usd"])  # part 1 is wholly priced
    assert "cost_usd" not in second and "no-such-model" in second["extra"]["cost_left_out"]
    assert second["extra"]["reported_cost_usd"] == pytest.approx(0.002)

    run_agtrace(["export", whole, partial, "--format", "otlp", "-o", str(tmp_path / "t.jsonl")], store, check=True)
    spans = _span_attrs(tmp_path / "t.jsonl")
    roots = {s["agtrace.run.id"]: s for s in spans if s["gen_ai.operation.name"] == "invoke_agent"}
    assert roots[whole]["agtrace.usage.cost_usd"] == pytest.approx(cost[whole]["cost_usd"])
    assert roots[whole]["agtrace.usage.reported_cost_usd"] == pytest.approx(0.01)
    assert "agtrace.usage.cost_usd" not in roots[partial]
    assert "no-such-model" in roots[partial]["agtrace.usage.cost_left_out"]
    chats = [s for s in spans if s["gen_ai.operation.name"] == "chat"]
    assert [(s.get("agtrace.usage.cost_usd") is not None, s.get("agtrace.usage.reported_cost_usd"))
            for s in chats] == [(True, 0.01), (True, None), (True, None), (False, 0.002)]
    assert sum(s.get("agtrace.usage.cost_usd", 0) for s in chats[:2]) == pytest.approx(cost[whole]["cost_usd"])


def test_the_viewers_run_list_shows_the_cost_of_show_and_no_partial_sum_as_whole(tmp_path):
    """Issue: `agtrace view`'s run list showed the sum of a run's priced calls as its cost
    (`$0.0037`) where `show` says `$0.0037 + unpriced (no-such-model)`. Now each index row
    carries show's sum and how many calls it leaves out (`cost_unpriced`), and the list labels
    them as show does."""
    from agtrace.eventlog import IndexQuery, Store, index_runs, run_costs

    store = tmp_path / "store"
    model = "claude-sonnet-4-20250514"
    call = {"part": 1, "kind": "usage_reported", "usage": {"input": 1000, "output": 50}, "model": model}
    unpriced = {**call, "model": "no-such-model", "cost_usd": 0.002}
    runs = {"whole": (call,), "partial": (call, unpriced), "unpriced": (unpriced,), "no usage": ()}
    ids = {}
    for label, events in runs.items():
        ids[label] = _new_run(store, "--model", model)
        _append(store, ids[label], *events, {"part": 1, "kind": "part_ended", "part_kind": "message", "title": "x"})
    s = Store(store)
    try:
        costs = run_costs(s, list(ids.values()))  # what the viewer folds before it lists
        rows = {r["id"]: r for r in index_runs(s, IndexQuery(limit=10)).rows}
    finally:
        s.close()
    for label, run_id in ids.items():
        cost, row = costs[run_id], rows[run_id]
        assert (row["cost_usd"], row["cost_unpriced"]) == (cost.cost_usd, cost.calls - cost.priced_calls), label
    assert rows[ids["partial"]]["cost_unpriced"] == 1 and rows[ids["partial"]]["cost_usd"] > 0
    assert rows[ids["unpriced"]]["cost_usd"] is None and rows[ids["no usage"]]["cost_unpriced"] == 0
    script = (REPO / "replay" / "viewer_script.py").read_text()
    assert 'fmtUsd(r.cost_usd) + " + unpriced"' in script and "td(fmtCost(r)" in script
