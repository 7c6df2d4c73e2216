"""Runs as OpenTelemetry traces (OTLP) in the GenAI semantic conventions.

A run is one trace: an ``invoke_agent {agent}`` span for the run, a ``chat {model}`` span per
model call and an ``execute_tool {tool}`` span per tool call, both children of the run's span,
with the ``gen_ai.*`` attributes of the conventions and a few ``agtrace.*`` ones. The mapping is
in ``docs/export.md``. :func:`run_spans` builds a run's spans; :func:`export_otlp` writes them
as OTLP JSON lines to a file or sends them to an OTLP/HTTP endpoint (:mod:`.otlp_wire`).

Contracts:

* **Deterministic ids.** The trace id is the run id's 128 bits (a ULID; other ids are hashed);
  a span id is the first 8 bytes of ``sha256("<run id>:<seq>")`` of the event that opens the
  span. Exporting a run again gives the same ids.
* **Times are the events' own** (``ts``, ns); nothing reads a clock.
* **One truth for tokens.** The run span's usage attributes are the run's metrics (the metrics
  projection); each usage delta also goes to exactly one chat span (the model call with its
  request id, else the latest model call before it, else a chat span of its own), so the chat
  spans add up to the run's totals.
* **Priced cost.** ``agtrace.usage.cost_usd`` is the priced cost of the costs projection
  (``agtrace show``'s): the run's on its span, each call's on the chat span its usage goes to,
  given only when every call it sums was priced (else ``agtrace.usage.cost_left_out`` says
  which were not); the agent's own figure is ``agtrace.usage.reported_cost_usd``.
* **Bounded memory.** :func:`iter_spans` gives a tool call's span as soon as it is complete
  (returned, and a later part began) and holds only the spans still open and the chat spans
  (no content, a few hundred bytes each) and the priced cost of each usage event not yet
  read (a few numbers each); they are written or sent in batches of at most
  :data:`BATCH_SPANS` spans, the run's span last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agtrace.eventlog import (
    CorruptLog,
    ErrorOccurred,
    MessageAdded,
    ModelCalled,
    Record,
    RunCost,
    RunEnded,
    RunMetrics,
    RunStarted,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnStarted,
    UsageReported,
    call_costs,
    run_costs,
    run_metrics,
)

BATCH_SPANS = 512
"""Spans per OTLP request (and per line of an OTLP JSON file), as the OTel SDK's batch default."""
MAX_ATTRIBUTE_CHARS = 65_536
"""Tool arguments and results longer than this are cut (``agtrace.tool.result_truncated``)."""

INTERNAL, CLIENT = 1, 3
"""OTLP span kinds."""
ERROR_STATUSES = frozenset({"failed", "timeout", "interrupted", "crashed", "limit"})
"""Run statuses whose ``invoke_agent`` span has status ERROR."""

_PROVIDER_PREFIXES = {"anthropic": "anthropic", "openai": "openai", "azure": "azure.ai.openai",
                      "bedrock": "aws.bedrock", "vertex_ai": "gcp.vertex_ai", "gemini": "gcp.gemini",
                      "google": "gcp.gen_ai", "mistral": "mistral_ai", "deepseek": "deepseek",
                      "groq": "groq", "xai": "x_ai", "cohere": "cohere", "perplexity": "perplexity"}
_MODEL_PROVIDERS = (("claude", "anthropic"), ("gpt", "openai"), ("o1", "openai"), ("o3", "openai"),
                    ("o4", "openai"), ("codex", "openai"), ("chatgpt", "openai"), ("gemini", "gcp.gemini"),
                    ("mistral", "mistral_ai"), ("codestral", "mistral_ai"), ("devstral", "mistral_ai"),
                    ("deepseek", "deepseek"), ("grok", "x_ai"), ("command", "cohere"), ("kimi", "moonshot_ai"))
_AGENT_PROVIDERS = {"claude-code": "anthropic", "codex": "openai", "gemini": "gcp.gemini",
                    "gemini-cli": "gcp.gemini"}
_ULID = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


@dataclass
class OtlpSpan:
    """One span, before encoding. ``parent_id`` is empty for the run's span; ``error`` is the
    status message of a span whose status is ERROR (None: status UNSET)."""

    span_id: bytes
    parent_id: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None
    seq: int = 0
    """The seq of the event that opened the span (its id is derived from it)."""


def trace_id_of(run_id: str) -> bytes:
    """The 16-byte trace id of a run: its ULID's bits, or a hash for an id that is no ULID."""
    if len(run_id) == 26 and all(c in _ULID for c in run_id.upper()):
        value = 0
        for c in run_id.upper():
            value = value * 32 + _ULID.index(c)
        if value < 1 << 128 and value:
            return value.to_bytes(16, "big")
    return hashlib.sha256(f"agtrace-trace:{run_id}".encode()).digest()[:16]


def span_id_of(run_id: str, seq: int) -> bytes:
    """The 8-byte id of the span opened by event ``seq`` of a run."""
    return hashlib.sha256(f"{run_id}:{seq}".encode()).digest()[:8]


def provider_of(model: str, agent: str = "") -> str:
    """``gen_ai.provider.name`` as well as a model name (or the agent) tells it; ``unknown``."""
    m = model.lower()
    if "/" in m:
        prefix = m.split("/", 1)[0]
        return _PROVIDER_PREFIXES.get(prefix, prefix)
    for start, provider in _MODEL_PROVIDERS:
        if m.startswith(start):
            return provider
    return _AGENT_PROVIDERS.get(agent, "unknown")


def run_spans(store: Store, run_id: str, *, max_attribute_chars: int = MAX_ATTRIBUTE_CHARS) -> list[OtlpSpan]:
    """The spans of one run, its ``invoke_agent`` span first, then the others as they began."""
    *children, root = iter_spans(store, run_id, max_attribute_chars=max_attribute_chars)
    return [root, *sorted(children, key=lambda span: span.seq)]


def iter_spans(store: Store, run_id: str, *, max_attribute_chars: int = MAX_ATTRIBUTE_CHARS) -> Iterator[OtlpSpan]:
    """The spans of one run as they can be sent: a tool call's span once it returned and a
    later part began (the tests it ran are recorded by then), the rest at the end, the
    ``invoke_agent`` span last. What is held is the spans not yet complete."""
    run = run_metrics(store, run_id)
    damage = store.damage(run_id)  # the metrics stop at the damage: half a trace must not pass as whole
    if damage is not None:
        raise CorruptLog(damage)
    builder = _SpanBuilder(store, run_id, max_attribute_chars)
    builder.call_costs = {c["seq"]: (c["cost_usd"], c["reason"] or f"{c['model'] or '?'} unpriced")
                          for c in call_costs(store, run_id)}
    for rec in store.read(run_id, 1, run.events):  # the events the metrics are of, for a live run too
        builder.feed(rec)
        if builder.done:
            yield from builder.drain()
    yield from builder.finish(run, run_costs(store, [run_id])[run_id])


def resource_attributes(agent: str, version: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """A run's resource: ``service.name``/``service.version`` are the agent's, then ``extra``."""
    attrs = {"service.name": agent or "agtrace"}
    if version:
        attrs["service.version"] = version
    return {**attrs, **(extra or {})}


class _SpanBuilder:
    """Folds a run's records, in seq order, into spans (see the module docstring)."""

    def __init__(self, store: Store, run_id: str, max_chars: int):
        self.store = store
        self.run_id = run_id
        self.max_chars = max_chars
        self.root = OtlpSpan(span_id_of(run_id, 1), b"", "invoke_agent", INTERNAL, 0, 0, seq=1)
        self.chats: list[OtlpSpan] = []
        self.done: list[OtlpSpan] = []
        self.agent = ""
        self.model = ""
        self.calls: dict[str, OtlpSpan] = {}
        self.current_call: OtlpSpan | None = None
        self.tools: dict[str, OtlpSpan] = {}
        self.open_tools: set[str] = set()
        self.returned: list[tuple[int | None, str]] = []
        self.boundary = 0
        self.last_ts = 0
        self.ended_ts: int | None = None
        self.call_costs: dict[int, tuple[float | None, str]] = {}
        """The priced cost of each usage event by seq, and why when it is unpriced."""

    def feed(self, rec: Record) -> None:
        ev, ts = rec.event, rec.ts
        self.last_ts = max(self.last_ts, ts)
        if self.returned and rec.part is not None:
            self._complete(rec.part)
        if isinstance(ev, RunStarted):
            self._started(ev, ts)
        elif isinstance(ev, TurnStarted) or (isinstance(ev, MessageAdded) and ev.role == "user"):
            self.boundary = ts
        elif isinstance(ev, ModelCalled):
            self._model_called(rec, ev)
        elif isinstance(ev, UsageReported):
            self._usage(rec, ev)
        elif isinstance(ev, ToolCalled):
            self._tool_called(rec, ev)
        elif isinstance(ev, ToolReturned):
            self._tool_returned(rec, ev)
        elif isinstance(ev, TestsRan):
            target = self.tools.get(ev.call_id, self.root) if ev.call_id else self.root
            target.events.append(("agtrace.tests_ran", ts, _clean({
                "agtrace.tests.suite": ev.suite, "agtrace.tests.passed": ev.passed,
                "agtrace.tests.failed": ev.failed, "agtrace.tests.errors": ev.errors,
                "agtrace.tests.skipped": ev.skipped, "agtrace.tests.total": ev.total,
                "agtrace.part": rec.part})))
        elif isinstance(ev, ErrorOccurred):
            self.root.events.append(("exception", ts, _clean({
                "exception.type": ev.error_type or ev.origin, "exception.message": ev.message,
                "agtrace.error.origin": ev.origin, "agtrace.error.fatal": ev.fatal or None,
                "agtrace.part": rec.part})))
        elif isinstance(ev, RunEnded):
            self.ended_ts = ts

    def drain(self) -> list[OtlpSpan]:
        """The spans completed since the last drain."""
        done, self.done = self.done, []
        return done

    def _complete(self, part: int) -> None:
        """Tool spans that returned in a part before ``part`` are complete."""
        keep = []
        for returned_in, call_id in self.returned:
            if returned_in is not None and returned_in < part:
                self.done.append(self.tools.pop(call_id))
            else:
                keep.append((returned_in, call_id))
        self.returned = keep

    def finish(self, run: RunMetrics, cost: RunCost) -> list[OtlpSpan]:
        """The spans still held, as they began, then the ``invoke_agent`` span."""
        root = self.root
        root.end_ns = max(root.start_ns, self.ended_ts if self.ended_ts is not None else self.last_ts)
        for call_id in self.open_tools:  # the run ended before these calls returned
            span = self.tools[call_id]
            span.end_ns = max(span.start_ns, root.end_ns)
            span.attributes["agtrace.tool.returned"] = False
        root.attributes.update(_clean({
            **_usage_attributes(run.tokens_input, run.tokens_output, run.tokens_cache_read,
                                run.tokens_cache_write, run.tokens_reasoning),
            "agtrace.usage.cost_usd": cost.cost_usd if cost.calls and cost.complete else None,
            "agtrace.usage.cost_left_out": cost.left_out() if cost.calls else None,
            "agtrace.usage.reported_cost_usd": run.cost_usd, "agtrace.run.status": run.status,
            "agtrace.run.reason": run.reason, "agtrace.run.parts": run.parts,
            "agtrace.run.tool_calls": run.tool_calls, "agtrace.run.tool_errors": run.tool_errors,
            "agtrace.run.model_calls": run.model_calls}))
        if run.status in ERROR_STATUSES:
            root.error = run.reason or f"the run ended {run.status}"
            root.attributes["error.type"] = run.status
        held = sorted([*self.chats, *self.tools.values()], key=lambda span: span.seq)
        return [*self.drain(), *held, root]

    # -- spans -----------------------------------------------------------------------------

    def _started(self, ev: RunStarted, ts: int) -> None:
        # the model as called (the catalog's), when the start did not name it
        self.agent, self.model = ev.agent, self.store.info(self.run_id).model or ev.model
        root = self.root
        root.name = f"invoke_agent {ev.agent}" if ev.agent else "invoke_agent"
        root.start_ns = ts
        root.attributes.update(_clean({
            "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": provider_of(self.model, ev.agent),
            "gen_ai.agent.name": ev.agent, "gen_ai.agent.version": ev.agent_version,
            "gen_ai.conversation.id": self.run_id, "gen_ai.request.model": self.model,
            "agtrace.run.id": self.run_id, "agtrace.task.id": ev.task_id, "agtrace.repo": ev.repo,
            "agtrace.base_commit": ev.base_commit, "agtrace.run.source": ev.source}))
        self.boundary = ts

    def _chat(self, rec: Record, model: str, start: int) -> OtlpSpan:
        model = model or self.model
        span = OtlpSpan(span_id_of(self.run_id, rec.seq), self.root.span_id,
                        f"chat {model}" if model else "chat", CLIENT, min(start, rec.ts), rec.ts, seq=rec.seq)
        span.attributes.update(_clean({
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_of(model, self.agent),
            "gen_ai.request.model": model, "gen_ai.conversation.id": self.run_id,
            "gen_ai.agent.name": self.agent, "agtrace.part": rec.part}))
        self.chats.append(span)
        return span

    def _model_called(self, rec: Record, ev: ModelCalled) -> None:
        start = rec.ts - int(ev.duration_ms * 1e6) if ev.duration_ms is not None else self.boundary
        span = self._chat(rec, ev.model, start)
        if ev.request_id:
            span.attributes["gen_ai.response.id"] = ev.request_id
            self.calls[ev.request_id] = span
        if ev.retry:
            span.attributes["agtrace.model_call.retry"] = ev.retry
        if not ev.ok:
            span.error = ev.error or "the model call failed"
            span.attributes["error.type"] = _error_type(ev.error)
        self.current_call = span
        self.boundary = rec.ts

    def _usage(self, rec: Record, ev: UsageReported) -> None:
        span = self.calls.get(ev.request_id) if ev.request_id else None
        current = self.current_call
        if span is None and current is not None and not (
                ev.request_id and current.attributes.get("gen_ai.response.id")):
            span = current
        if span is None:  # no model call to attach to: the report is a call of its own
            span = self._chat(rec, ev.model, self.boundary)
            if ev.request_id:
                span.attributes["gen_ai.response.id"] = ev.request_id
                self.calls[ev.request_id] = span
        u, a = ev.usage, span.attributes
        for key, value in _usage_attributes(u.input, u.output, u.cache_read, u.cache_write, u.reasoning).items():
            a[key] = a.get(key, 0) + value
        self._cost(a, rec.seq)
        if ev.cost_usd is not None:
            a["agtrace.usage.reported_cost_usd"] = a.get("agtrace.usage.reported_cost_usd", 0.0) + ev.cost_usd
        if ev.model:
            a["gen_ai.response.model"] = ev.model
        span.end_ns = max(span.end_ns, rec.ts)

    def _cost(self, a: dict[str, Any], seq: int) -> None:
        """Add the priced cost of usage event ``seq`` to a chat span's attributes: a span with
        an unpriced call has no cost, but ``agtrace.usage.cost_left_out``."""
        cost, reason = self.call_costs.pop(seq, (None, "not priced"))
        if "agtrace.usage.cost_left_out" in a:
            return
        if cost is None:
            a.pop("agtrace.usage.cost_usd", None)
            a["agtrace.usage.cost_left_out"] = reason
        else:
            a["agtrace.usage.cost_usd"] = a.get("agtrace.usage.cost_usd", 0.0) + cost

    def _tool_span(self, rec: Record, call_id: str, tool: str, start: int) -> OtlpSpan:
        span = OtlpSpan(span_id_of(self.run_id, rec.seq), self.root.span_id,
                        f"execute_tool {tool}" if tool else "execute_tool", INTERNAL, start, start, seq=rec.seq)
        span.attributes.update(_clean({
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool or "unknown",
            "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
            "gen_ai.conversation.id": self.run_id, "gen_ai.agent.name": self.agent, "agtrace.part": rec.part}))
        if call_id in self.tools:  # a repeated call id: the earlier call is complete
            self.done.append(self.tools.pop(call_id))
            self.returned = [(p, c) for p, c in self.returned if c != call_id]
            self.open_tools.discard(call_id)
        self.tools[call_id] = span
        return span

    def _tool_called(self, rec: Record, ev: ToolCalled) -> None:
        span = self._tool_span(rec, ev.call_id, ev.tool, rec.ts)
        args = ev.arguments if ev.arguments is not None else ({"command": ev.command} if ev.command else None)
        if args is not None:
            text = args if isinstance(args, str) else _encode_sorted(args).decode()
            span.attributes["gen_ai.tool.call.arguments"] = text[: self.max_chars]
        if ev.command:
            span.attributes["agtrace.tool.command"] = ev.command[: self.max_chars]
        self.open_tools.add(ev.call_id)

    def _tool_returned(self, rec: Record, ev: ToolReturned) -> None:
        if ev.call_id in self.open_tools:
            self.open_tools.discard(ev.call_id)
            span = self.tools[ev.call_id]
        else:  # a result whose call was not recorded (some imports)
            start = rec.ts - int(ev.duration_ms * 1e6) if ev.duration_ms is not None else rec.ts
            span = self._tool_span(rec, ev.call_id, ev.tool, start)
        span.end_ns = max(span.start_ns, rec.ts)
        output = self.store.text(ev.output, ev.output_blob) or ev.error
        a = span.attributes
        if output:
            a["gen_ai.tool.call.result"] = output[: self.max_chars]
            if len(output) > self.max_chars:
                a["agtrace.tool.result_truncated"] = True
        a.update(_clean({"agtrace.tool.status": ev.status, "agtrace.tool.exit_code": ev.exit_code,
                         "agtrace.tool.duration_ms": ev.duration_ms}))
        if ev.status != "ok" or ev.exit_code not in (None, 0):
            span.error = ev.error or (f"exit code {ev.exit_code}" if ev.status == "ok" else ev.status)
            a["error.type"] = ev.status if ev.status != "ok" else "exit_code"
        self.returned.append((rec.part, ev.call_id))
        self.boundary = rec.ts


def _usage_attributes(input: int, output: int, cache_read: int, cache_write: int, reasoning: int) -> dict:
    """The conventions' usage: input tokens include the cached ones (read and written); the
    cache and reasoning counts are left out when zero."""
    attrs = {"gen_ai.usage.input_tokens": input + cache_read + cache_write, "gen_ai.usage.output_tokens": output}
    for key, value in (("gen_ai.usage.cache_read.input_tokens", cache_read),
                       ("gen_ai.usage.cache_creation.input_tokens", cache_write),
                       ("gen_ai.usage.reasoning.output_tokens", reasoning)):
        if value:
            attrs[key] = value
    return attrs


def _error_type(message: str) -> str:
    """A low-cardinality ``error.type``: the message when it is a code (``429``,
    ``overloaded_error``), a leading HTTP status (``529 Overloaded``), else ``_OTHER``."""
    text = message.strip()
    if text and len(text) <= 40 and all(c.isalnum() or c in "_.-" for c in text):
        return text
    head = text.split(" ", 1)[0]
    return head if len(head) == 3 and head.isdigit() else "_OTHER"


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes without empty values (None, "", empty containers)."""
    return {k: v for k, v in attrs.items() if v is not None and v != "" and v != {} and v != []}


__all__ = ["BATCH_SPANS", "MAX_ATTRIBUTE_CHARS", "OtlpSpan", "iter_spans", "provider_of",
           "resource_attributes", "run_spans", "span_id_of", "trace_id_of"]
