"""Interchange out: ATIF trajectories checked by Harbor's own models, OTLP traces decoded by
opentelemetry-proto and received by a real Arize Phoenix server, both against the runs' events.

The runs are real: the demo agent captured by ``agtrace demo``; the recorded output of the real
Claude Code, Codex and OpenCode CLIs (tests/golden/real) captured by ``agtrace run``; an Inspect
log, a Codex rollout and a Claude Code session imported from the shared fixtures, and an ATIF
trajectory written by Harbor itself, imported and exported again. Harbor (which
needs Python >= 3.12) and Phoenix are pinned tools of tests/agents/tools.txt, installed in their
own environments by tests/agents/install_tools.sh and run as subprocesses; Phoenix runs in a
network namespace of its own with only loopback, and the commands that talk to it join that
namespace.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agtrace.eventlog import (
    MessageAdded,
    ModelCalled,
    PartEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
    part_metrics,
    run_costs,
    run_metrics,
)
from agtrace.replay import ExportError, OutputNotEmpty, export_atif, export_otlp, trajectory
from agtrace.replay.otlp import resource_attributes, run_spans, span_id_of, trace_id_of
from agtrace.replay.otlp_wire import encode_json, encode_protobuf

from .conftest import FIXTURES, REPO, run_agtrace

REAL = REPO / "tests" / "golden" / "real"
RECEIVERS = REPO / "tests" / "receivers"
AGENTS = REPO / "tests" / "agents"
ATIF_SAMPLE = REPO / "tests" / "golden" / "import" / "atif" / "harbor-0.26.0_mini-swe-agent_calc.trajectory.json"
"""Written by Harbor 0.26.0 from a recorded mini-SWE-agent run (tests/golden/SOURCES.md)."""
TOOLS_DIR = Path(os.environ.get("AGTRACE_TOOLS_DIR", "/tmp/agtrace-tools"))
TOOL_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"}
"""Harbor imports litellm, which would fetch its model price map from the network otherwise."""
IMPORTS = {
    "inspect": FIXTURES / "inspect" / "demo_mockllm_local_sandbox.eval",
    "codex-rollout": FIXTURES / "codex-rollout"
    / "localpush_rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl",
    "claude-session": FIXTURES / "claude-code" / "daaain_representative_messages.jsonl",
    "atif": ATIF_SAMPLE,
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A store with the sample runs: ``(store path, {name: run id})``."""
    root = tmp_path_factory.mktemp("interchange")
    store_dir = root / "store"
    runs = {}
    proc = run_agtrace(["demo", "--fast", "--workdir", str(root / "demo"), "--json"], store_dir, check=True)
    runs["demo"] = json.loads(proc.stdout.decode().splitlines()[-1])["run_id"]
    for cli in ("claude-code", "codex", "opencode"):
        work = root / f"work-{cli}"
        work.mkdir()
        proc = run_agtrace(["run", "--agent", cli, "--workdir", str(work), "--json", "--",
                            "cat", str(REAL / f"{cli}.jsonl")], store_dir, check=True)
        runs[cli] = json.loads(proc.stdout.decode().splitlines()[-1])["run_id"]
    for name, path in IMPORTS.items():
        proc = run_agtrace(["import", "--json", str(path)], store_dir, check=True)
        runs[name] = json.loads(proc.stdout)[0]["runs"][0]
    return store_dir, runs


@pytest.fixture
def store(sample):
    s = Store(sample[0])
    yield s
    s.close()


def _facts(store: Store, run_id: str) -> dict:
    """What the run's events say, counted here straight from the events."""
    recs = list(store.read(run_id))
    usage = [r.event.usage for r in recs if isinstance(r.event, UsageReported)]
    return {
        "start": recs[0].event,
        "model": store.info(run_id).model,
        "records": recs,
        "parts": sorted({r.part for r in recs if r.part is not None}),
        "calls": [r for r in recs if isinstance(r.event, ToolCalled)],
        "returns": [r for r in recs if isinstance(r.event, ToolReturned)],
        "model_calls": [r for r in recs if isinstance(r.event, ModelCalled)],
        "user_messages": [r.event.text for r in recs if isinstance(r.event, MessageAdded)
                          and r.event.role == "user" and r.part is None],
        "input": sum(u.input + u.cache_read + u.cache_write for u in usage),
        "output": sum(u.output for u in usage),
        "cache_read": sum(u.cache_read for u in usage),
    }


# -- ATIF ------------------------------------------------------------------------------------


def test_atif_steps_are_the_runs_prompts_parts_and_metrics(sample, store):
    for name, run_id in sample[1].items():
        t, f = trajectory(store, run_id), _facts(store, run_id)
        steps = t["steps"]
        start: RunStarted = f["start"]
        assert t["session_id"] == run_id
        assert t["agent"]["name"] == start.agent and t["agent"]["version"] == (start.agent_version or "unknown")
        assert t["agent"].get("model_name", "") == (store.info(run_id).model or start.model), name
        assert [s["step_id"] for s in steps] == list(range(1, len(steps) + 1))
        part_steps = [s for s in steps if "part" in s.get("extra", {})]
        assert [s["extra"]["part"] for s in part_steps] == f["parts"], name
        calls = [c for s in steps for c in s.get("tool_calls", [])]
        assert Counter(c["tool_call_id"] for c in calls) == Counter(r.event.call_id for r in f["calls"]), name
        results = [r for s in steps for r in s.get("observation", {}).get("results", [])]
        assert sorted(r.get("source_call_id") or r["extra"]["call_id"] for r in results) == sorted(
            r.event.call_id for r in f["returns"]), name
        users = [s["message"] for s in steps if s["source"] == "user"]
        assert users == (f["user_messages"] or ([start.prompt] if start.prompt else [])), name
        # metrics: the projection's, which equal the usage events' own sums
        parts = {p.part: p for p in part_metrics(store, run_id)}
        for s in part_steps:
            p = parts[s["extra"]["part"]]
            want = p.tokens_input + p.tokens_cache_read + p.tokens_cache_write
            assert s.get("metrics", {}).get("prompt_tokens", 0) == want
            assert s.get("metrics", {}).get("completion_tokens", 0) == p.tokens_output
        final = t["final_metrics"]
        assert final["total_prompt_tokens"] == f["input"] and final["total_completion_tokens"] == f["output"], name
        assert final["total_cached_tokens"] == f["cache_read"] and final["total_steps"] == len(steps)
        assert final["extra"]["agtrace_metrics"]["tokens"] == run_metrics(store, run_id).tokens
        stepped = sum(s.get("metrics", {}).get("prompt_tokens", 0) for s in steps)
        assert (stepped == f["input"]) == ("notes" not in t), name


def test_atif_from_harbor_comes_back_with_its_calls_results_and_totals(sample, store):
    """ATIF in (Harbor's own file), ATIF out: the same tool calls with the same arguments and
    results, the same token totals. Steps differ in number only: a Harbor step holding a message
    and a tool call is two agtrace parts, so two steps."""
    source = json.loads(ATIF_SAMPLE.read_text())
    out = trajectory(store, sample[1]["atif"])

    def calls(t):
        return [(c["tool_call_id"], c["function_name"], c["arguments"]) for s in t["steps"] for c in s.get("tool_calls") or []]

    def results(t):
        return [r for s in t["steps"] for r in (s.get("observation") or {}).get("results", [])]

    def output(content: str) -> str:  # mini-SWE-agent's results are {"returncode", "output"} JSON
        try:
            return json.loads(content)["output"]
        except (ValueError, TypeError, KeyError):
            return content

    assert calls(out) == calls(source) and calls(source)
    got, want = results(out), [output(r["content"]) for r in results(source)]
    assert len(got) == len(want)
    for r, text in zip(got, want, strict=True):  # an empty output of a failed call shows its error
        assert r["content"] == (text or r["extra"].get("error", "")), r
    assert [r["source_call_id"] for r in results(out)] == [c[0] for c in calls(out)]  # linked now
    messages = [s["message"] for s in source["steps"] if s["message"]]
    assert [s["message"] for s in out["steps"] if s["message"]] == messages
    for key in ("total_prompt_tokens", "total_completion_tokens", "total_cached_tokens"):
        assert out["final_metrics"][key] == source["final_metrics"][key], key
    assert out["agent"]["name"] == source["agent"]["name"]


def test_atif_export_is_one_file_per_run_deterministic_and_all_or_nothing(sample, store, tmp_path):
    ids = list(sample[1].values())
    first = export_atif(store, ids, out=tmp_path / "a")
    again = export_atif(store, ids, out=tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(f"{i}.json" for i in ids) and first.files == len(ids)
    assert first.steps == again.steps > 0 and first.events == sum(store.info(i).events for i in ids)
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    with pytest.raises(OutputNotEmpty):
        export_atif(store, ids, out=tmp_path / "a")

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_atif(store, ids, out=tmp_path / "c", progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    with pytest.raises(ExportError):
        export_atif(store, ids, out="s3://bucket/atif")


def _tool_python(name: str) -> str:
    """The Python of a pinned tool of tests/agents/tools.txt, installed if needed (idempotent).
    Under CI a failed install fails the test; elsewhere it skips it."""
    proc = subprocess.run(["bash", str(AGENTS / "install_tools.sh"), name], capture_output=True, text=True,
                          timeout=1800)
    python = TOOLS_DIR / name / "bin" / "python"
    if proc.returncode != 0 or not python.exists():
        message = f"install_tools.sh {name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(python)


@pytest.fixture(scope="module")
def harbor_python() -> str:
    return _tool_python("harbor")


@pytest.mark.slow
def test_atif_trajectories_load_and_validate_with_harbors_models(sample, store, harbor_python, tmp_path):
    ids = sample[1]
    export_atif(store, ids.values(), out=tmp_path / "atif")
    proc = subprocess.run([harbor_python, str(RECEIVERS / "harbor_validate.py"), str(tmp_path / "atif")],
                          capture_output=True, text=True, timeout=600, env=TOOL_ENV)
    assert proc.returncode == 0, proc.stderr
    read = {t["session_id"]: t for t in json.loads(proc.stdout)["trajectories"]}
    assert sorted(read) == sorted(ids.values())
    for name, run_id in ids.items():
        got, f = read[run_id], _facts(store, run_id)
        assert got["valid"] and not got["errors"], (name, got["errors"])
        assert got["schema_version"] == "ATIF-v1.7"
        assert got["agent"]["name"] == f["start"].agent
        assert got["tool_call_ids"] == [r.event.call_id for r in f["calls"]], name
        assert got["parts"] == f["parts"], name
        parts = {p.part: p for p in part_metrics(store, run_id)}
        assert got["step_prompt_tokens"] == {
            str(n): p.tokens_input + p.tokens_cache_read + p.tokens_cache_write for n, p in parts.items()
            if p.tokens_input or p.tokens_output or p.tokens_cache_read or p.tokens_cache_write
            or p.cost_usd is not None}, name
        assert got["final"]["total_prompt_tokens"] == f["input"], name
        assert got["final"]["total_completion_tokens"] == f["output"], name
        cost = run_costs(store, [run_id])[run_id]  # the priced cost, when whole (docs/export.md)
        assert got["final"].get("total_cost_usd") == (cost.cost_usd if cost.calls and cost.complete else None), name


def test_blobbed_texts_unfinished_parts_and_calls_without_results(tmp_path):
    """A run written through the store API: a 200 kB tool output (kept in the blob store), a
    result whose call was not recorded, usage after a part's end, and no end at all (a crash:
    the last part never ended and its call never returned)."""
    store = Store(tmp_path / "store")
    big = "".join(f"line {i}\n" for i in range(25_000))
    inline, digest, size = store.blobs.inline_or_put(big)
    assert digest, "the output must be large enough for the blob store"
    t0 = 1_800_000_000_000_000_000
    w = store.create_run(RunStarted(agent="probe", model="claude-sonnet-4-5", prompt="go"), ts=t0)
    w.append(ToolCalled(call_id="c1", tool="shell", command="seq 25000"), part=1, ts=t0 + 10)
    w.append(ToolReturned(call_id="c1", tool="shell", output=inline, output_blob=digest, output_bytes=size,
                          exit_code=0), part=1, ts=t0 + 20)
    w.append(PartEnded(part_kind="tool", tool="shell", call_id="c1"), part=1, ts=t0 + 21)
    w.append(UsageReported(usage=Usage(input=100, output=7, cache_read=50)), part=1, ts=t0 + 22)
    w.append(ToolReturned(call_id="orphan", tool="Read", output="x", status="error", error="denied"), part=2,
             ts=t0 + 30)
    w.append(PartEnded(part_kind="tool", tool="Read"), part=2, ts=t0 + 31)
    w.append(ToolCalled(call_id="c3", tool="shell", command="sleep 999"), part=3, ts=t0 + 40)
    w.flush()
    store.close_writer(w)
    run_id = w.run_id

    t = trajectory(store, run_id)
    steps = t["steps"]
    assert [s["source"] for s in steps] == ["user", "agent", "agent", "agent"]
    assert steps[1]["observation"]["results"][0]["content"] == big
    # the priced cost of the call (claude-sonnet-4-5: 100 input at $3/M, 50 cache reads at $0.30/M,
    # 7 output at $15/M), as `show` gives it: ATIF's cost is the priced one
    assert steps[1]["metrics"] == {"prompt_tokens": 150, "completion_tokens": 7, "cached_tokens": 50,
                                   "cost_usd": pytest.approx(0.00042)}
    orphan = steps[2]["observation"]["results"][0]
    assert "source_call_id" not in orphan and orphan["extra"]["call_id"] == "orphan"
    assert orphan["content"] == "x" and orphan["extra"]["status"] == "error"
    assert steps[3]["tool_calls"][0]["tool_call_id"] == "c3" and "observation" not in steps[3]
    assert t["extra"]["status"] == store.info(run_id).status

    spans = {s.attributes.get("gen_ai.tool.call.id", s.name): s for s in run_spans(store, run_id, max_attribute_chars=1000)}
    assert spans["c1"].attributes["gen_ai.tool.call.result"] == big[:1000]
    assert spans["c1"].attributes["agtrace.tool.result_truncated"] is True
    assert (spans["c1"].start_ns, spans["c1"].end_ns) == (t0 + 10, t0 + 20)
    assert spans["orphan"].error == "denied" and spans["orphan"].attributes["error.type"] == "error"
    assert spans["c3"].attributes["agtrace.tool.returned"] is False
    chat = [s for s in spans.values() if s.name.startswith("chat")]
    assert len(chat) == 1 and chat[0].attributes["gen_ai.usage.input_tokens"] == 150
    assert chat[0].attributes["gen_ai.provider.name"] == "anthropic"
    store.close()


# -- OTLP ------------------------------------------------------------------------------------


def _decode_json_lines(path: Path):
    """Each line as opentelemetry-proto's ExportTraceServiceRequest. OTLP JSON writes ids in
    hex where protobuf's JSON mapping expects base64: converted first, as receivers do."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        out.append(json_format.ParseDict(doc, ExportTraceServiceRequest()))
    return out


def _attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which)
    return out


def _check_trace(spans: list[dict], f: dict, run_id: str, unit: int = 1) -> None:
    """``spans``: dicts with name, span_id, parent_id (hex, "" for none), start, end (ns), attrs.
    Times are compared at the precision of ``unit`` ns (a receiver may keep microseconds)."""

    def same(got: int, ns: int) -> bool:
        return abs(got - ns) < unit

    roots = [s for s in spans if not s["parent_id"]]
    assert len(roots) == 1, run_id
    root = roots[0]
    start = f["start"]
    assert root["name"] == (f"invoke_agent {start.agent}" if start.agent else "invoke_agent")
    assert root["span_id"] == span_id_of(run_id, 1).hex()
    assert root["attrs"]["gen_ai.operation.name"] == "invoke_agent"
    assert root["attrs"]["gen_ai.conversation.id"] == run_id
    assert root["attrs"].get("gen_ai.request.model", "") == f["model"], run_id
    assert same(root["start"], f["records"][0].ts)
    children = [s for s in spans if s["parent_id"]]
    assert all(s["parent_id"] == root["span_id"] for s in children)
    assert len({s["span_id"] for s in spans}) == len(spans)
    ops = Counter(s["attrs"]["gen_ai.operation.name"] for s in children)
    call_ids = {r.event.call_id for r in f["calls"]} | {r.event.call_id for r in f["returns"]}
    assert ops["execute_tool"] == len(call_ids), run_id
    if f["model_calls"]:
        assert ops["chat"] == len(f["model_calls"]), run_id
    tools = {s["attrs"]["gen_ai.tool.call.id"]: s for s in children
             if s["attrs"]["gen_ai.operation.name"] == "execute_tool"}
    for r in f["calls"]:
        assert same(tools[r.event.call_id]["start"], r.ts), run_id
        assert tools[r.event.call_id]["attrs"]["gen_ai.tool.name"] == r.event.tool
    called = {r.event.call_id: r.ts for r in f["calls"]}
    for r in f["returns"]:
        assert same(tools[r.event.call_id]["end"], max(r.ts, called.get(r.event.call_id, r.ts))), run_id
    chats = [s for s in children if s["attrs"]["gen_ai.operation.name"] == "chat"]
    assert sum(s["attrs"].get("gen_ai.usage.input_tokens", 0) for s in chats) == f["input"], run_id
    assert sum(s["attrs"].get("gen_ai.usage.output_tokens", 0) for s in chats) == f["output"], run_id
    assert root["attrs"].get("gen_ai.usage.input_tokens", 0) == f["input"]
    assert root["attrs"].get("gen_ai.usage.output_tokens", 0) == f["output"]


def test_otlp_file_decodes_with_opentelemetry_proto_and_matches_the_events(sample, store, tmp_path):
    ids = sample[1]
    report = export_otlp(store, ids.values(), out=tmp_path / "traces.jsonl")
    export_otlp(store, ids.values(), out=tmp_path / "again.jsonl")
    assert (tmp_path / "traces.jsonl").read_bytes() == (tmp_path / "again.jsonl").read_bytes()
    by_trace: dict[str, list[dict]] = {}
    for request in _decode_json_lines(tmp_path / "traces.jsonl"):
        for rs in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                assert ss.scope.name == "agtrace"
                for s in ss.spans:
                    by_trace.setdefault(s.trace_id.hex(), []).append(
                        {"name": s.name, "span_id": s.span_id.hex(), "parent_id": s.parent_span_id.hex(),
                         "start": s.start_time_unix_nano, "end": s.end_time_unix_nano, "attrs": _attrs(s),
                         "service": resource["service.name"], "kind": s.kind, "status": s.status.code})
    assert sorted(by_trace) == sorted(trace_id_of(r).hex() for r in ids.values())
    assert report.spans == sum(len(v) for v in by_trace.values())
    for run_id in ids.values():
        f = _facts(store, run_id)
        spans = by_trace[trace_id_of(run_id).hex()]
        _check_trace(spans, f, run_id)
        assert {s["service"] for s in spans} == {f["start"].agent}
        kinds = {s["attrs"]["gen_ai.operation.name"]: s["kind"] for s in spans}
        assert kinds.get("chat", 3) == 3 and kinds["invoke_agent"] == 1 and kinds.get("execute_tool", 1) == 1
    assert trace_id_of(ids["demo"]).hex().upper().startswith("01")  # a ULID's bits: the run's time first


def test_otlp_protobuf_and_json_encodings_carry_the_same_request(sample, store):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    run_id = sample[1]["claude-code"]
    spans = run_spans(store, run_id)
    res = resource_attributes("claude-code", "", {"openinference.project.name": "p"})
    binary = ExportTraceServiceRequest.FromString(encode_protobuf(trace_id_of(run_id), res, spans))
    doc = json.loads(encode_json(trace_id_of(run_id), res, spans))
    for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    assert json_format.ParseDict(doc, ExportTraceServiceRequest()) == binary
    assert encode_protobuf(trace_id_of(run_id), res, spans) == encode_protobuf(trace_id_of(run_id), res, run_spans(store, run_id))


class _Collector(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, headers, body); records what it received."""

    script: list = []
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers, gzip.decompress(body)))
        status, headers, answer = type(self).script.pop(0) if type(self).script else (200, {}, b"")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.script, _Collector.received = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector
    server.shutdown()
    server.server_close()


def test_otlp_endpoint_retries_busy_receivers_and_reports_refusals(sample, store, collector):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    url, handler = collector
    run_id = sample[1]["inspect"]
    handler.script = [(503, {"Retry-After": "0"}, b""), (200, {"Content-Type": "application/json"},
                      b'{"partialSuccess":{"rejectedSpans":"1","errorMessage":"too old"}}')]
    report = export_otlp(store, [run_id], endpoint=url, protocol="protobuf", headers={"authorization": "Bearer t"})
    assert [r[0] for r in handler.received] == ["/v1/traces", "/v1/traces"]
    path, headers, body = handler.received[-1]
    assert headers["Content-Type"] == "application/x-protobuf" and headers["authorization"] == "Bearer t"
    request = ExportTraceServiceRequest.FromString(body)
    assert sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans) == report.spans > 0
    assert report.notes == [f"run {run_id}: the receiver rejected 1 span(s): too old"]
    handler.script = [(401, {}, b"bad token")]
    with pytest.raises(ExportError, match=r"HTTP 401.*bad token.*--header"):
        export_otlp(store, [run_id], endpoint=url + "/custom/path", protocol="json")
    assert handler.received[-1][0] == "/custom/path" and json.loads(handler.received[-1][2])["resourceSpans"]


def test_cli_export_atif_and_otlp(sample, tmp_path):
    store_dir, ids = sample
    run = ids["demo"]
    proc = run_agtrace(["export", run, "--format", "atif", "-o", str(tmp_path / "atif"), "--json"], store_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"] > 0 and (tmp_path / "atif" / f"{run}.json").exists()
    proc = run_agtrace(["export", "--all", "--format", "otlp", "-o", str(tmp_path / "t.jsonl")], store_dir)
    assert proc.returncode == 0 and b"spans from" in proc.stdout, proc.stderr
    for args, message in (
        (["--format", "atif", "--kind", "tool_called", "-o", "x"], b"--kind applies to jsonl and parquet"),
        (["--format", "otlp"], b"-o PATH or --endpoint URL"),
        (["--format", "otlp", "-o", "x", "--endpoint", "http://127.0.0.1:9"], b"not both"),
        (["--format", "jsonl", "--endpoint", "http://127.0.0.1:9", "-o", "x"], b"--format otlp only"),
        (["--format", "otlp", "--endpoint", "ftp://h"], b"is not an http(s) URL"),
        (["--format", "otlp", "--endpoint", "http://127.0.0.1:9", "--header", "novalue"], b"not KEY=VALUE"),
    ):
        proc = run_agtrace(["export", run, *args], store_dir)
        assert proc.returncode == (1 if b"http(s)" in message else 2), (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert b"Traceback" not in proc.stderr


# -- a real receiver: Arize Phoenix ----------------------------------------------------------


NO_PROXY_ENV = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
NO_PROXY_ENV["NO_PROXY"] = NO_PROXY_ENV["no_proxy"] = "127.0.0.1,localhost"
"""The receiver lives on a namespace's loopback: its clients must not be sent to a proxy."""


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    """A Phoenix server in its own loopback-only network namespace; yields ``run(argv)``, which
    runs a command in that namespace, and the server's URL there."""
    sys.path.insert(0, str(REPO / "tests" / "agents"))
    from run_cli import netns_ok, netns_prefix

    if not netns_ok() or not _which("nsenter"):
        pytest.skip("needs root, unshare, ip and nsenter for a loopback-only network namespace")
    python = _tool_python("phoenix")
    work = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(work), "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": "6006",
           "PHOENIX_GRPC_PORT": "4317", "PHOENIX_TELEMETRY_ENABLED": "false",
           "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false"}
    url = "http://127.0.0.1:6006"
    with open(work / "phoenix.log", "wb") as log:
        server = subprocess.Popen([*netns_prefix(), python, "-m", "phoenix.server.main", "serve"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
            return subprocess.run(["nsenter", f"--net=/proc/{server.pid}/ns/net", "--", *argv],
                                  capture_output=True, timeout=timeout, env=NO_PROXY_ENV)

        try:
            # nsenter must not run before the child has entered its new namespace: until then
            # /proc/PID/ns/net is ours, and the wait would poll the host's loopback for 600 s
            own, deadline = os.readlink("/proc/self/ns/net"), time.monotonic() + 120
            while os.readlink(f"/proc/{server.pid}/ns/net") == own and time.monotonic() < deadline:
                assert server.poll() is None, (work / "phoenix.log").read_text()[-3000:]
                time.sleep(0.05)
            ready = run([python, str(RECEIVERS / "phoenix_spans.py"), "wait", url, "600"], timeout=660)
            assert ready.returncode == 0, ready.stderr.decode() + (work / "phoenix.log").read_text()[-3000:]
            yield run, url, python
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)


def _which(name: str) -> bool:
    from shutil import which

    return which(name) is not None


@pytest.mark.slow
def test_phoenix_receives_every_span_with_its_links_and_attributes(sample, store, phoenix):
    run, url, python = phoenix
    store_dir, ids = sample
    chosen = [ids[n] for n in ("claude-code", "demo", "inspect", "codex-rollout")]
    export = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store", str(store_dir),
              "export", *chosen, "--format", "otlp", "--endpoint", url,
              "--resource", "openinference.project.name=agtrace-test", "--json"]
    proc = run(export)
    assert proc.returncode == 0, proc.stderr.decode()
    sent = json.loads(proc.stdout)
    expected = {r: run_spans(store, r) for r in chosen}
    assert sent["spans"] == sum(len(v) for v in expected.values())

    def read() -> dict[str, list[dict]]:
        counts = {trace_id_of(r).hex(): len(expected[r]) for r in chosen}
        proc = run([python, str(RECEIVERS / "phoenix_spans.py"), "spans", url, "agtrace-test",
                    json.dumps(counts), "300"])
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        got = json.loads(proc.stdout)
        return {r: got[trace_id_of(r).hex()] for r in chosen}

    first, received = {}, read()
    for run_id in chosen:
        got = received[run_id]
        assert len(got) == len(expected[run_id]), run_id
        spans = [{"name": s["name"], "span_id": s["context"]["span_id"], "parent_id": s.get("parent_id") or "",
                  "start": _ns(s["start_time"]), "end": _ns(s["end_time"]), "attrs": _flat(s.get("attributes", {})),
                  "status": s["status_code"], "kind": s["span_kind"]} for s in got]
        f = _facts(store, run_id)
        want = {s.span_id.hex(): s for s in expected[run_id]}
        for s in spans:
            w = want[s["span_id"]]
            assert s["name"] == w.name and s["status"] == ("ERROR" if w.error is not None else "UNSET")
            for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.tool.name", "gen_ai.tool.call.id",
                        "gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
                assert s["attrs"].get(key) == w.attributes.get(key), (run_id, s["name"], key)
        _check_trace(spans, f, run_id, unit=1000)  # Phoenix keeps microseconds
        assert Counter(s["kind"] for s in spans)["AGENT"] == 1  # Phoenix reads the conventions too
        first[run_id] = sorted(s["span_id"] for s in spans)
    # a second export sends the same ids: Phoenix still holds one copy of each span
    proc = run(export)
    assert proc.returncode == 0, proc.stderr.decode()
    received = read()
    for run_id in chosen:
        assert sorted(s["context"]["span_id"] for s in received[run_id]) == first[run_id]


def _ns(iso: str) -> int:
    from datetime import datetime

    t = datetime.fromisoformat(iso)
    return (int(t.timestamp()) * 1_000_000 + t.microsecond) * 1000


def _flat(attrs: dict, prefix: str = "") -> dict:
    """Phoenix returns attributes flat or nested by dots; flatten them back."""
    out = {}
    for k, v in attrs.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out
