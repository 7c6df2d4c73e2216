"""The steps of an ATIF trajectory, made from a run's records in seq order.

:class:`StepBuilder` is fed records one at a time and returns the steps they complete, so a
trajectory is written while the run is read (see :mod:`agtrace.replay.atif` for the document
and ``docs/export.md`` for the mapping). It reads nothing but blobs (full texts) and the part
metrics and part costs it was given.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    PartMetrics,
    ReasoningAdded,
    Record,
    RunCost,
    RunMetrics,
    RunStarted,
    SnapshotTaken,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnStarted,
    UsageReported,
)


def iso_time(ts_ns: int) -> str:
    """ISO 8601 UTC with microseconds: what Harbor's timestamp validator parses."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def prompt_tokens(m: RunMetrics | PartMetrics) -> int:
    """ATIF's prompt tokens include cached ones: input + cache read + cache write."""
    return m.tokens_input + m.tokens_cache_read + m.tokens_cache_write


def cost_fields(cost: RunCost | None) -> tuple[float | None, dict]:
    """``(cost_usd, extra)`` of a run's or a part's priced cost, the rule of ATIF's
    ``total_cost_usd`` and step ``cost_usd``: the priced sum when every call was priced, else
    None, with ``cost_left_out`` in ``extra`` saying which calls were not (a partial sum never
    passes as the cost); ``extra`` also holds ``cost_prices`` (the table) when a call was priced
    and ``reported_cost_usd`` (the agent's own figure) when it reported one."""
    if cost is None or not cost.calls:
        return None, {}
    extra: dict = {}
    if cost.left_out():
        extra["cost_left_out"] = cost.left_out()
    if cost.cost_usd is not None:
        extra["cost_prices"] = cost.prices
    if cost.reported_cost_usd is not None:
        extra["reported_cost_usd"] = cost.reported_cost_usd
    return (cost.cost_usd if cost.complete else None), extra


def _step_metrics(m: PartMetrics | None, cost: RunCost | None) -> dict | None:
    priced, cost_extra = cost_fields(cost)
    if m is None or not (prompt_tokens(m) or m.tokens_output or priced is not None or cost_extra):
        return None
    out = {"prompt_tokens": prompt_tokens(m), "completion_tokens": m.tokens_output,
           "cached_tokens": m.tokens_cache_read}
    if priced is not None:
        out["cost_usd"] = priced
    extra = {k: v for k, v in (("cache_creation_input_tokens", m.tokens_cache_write),
                               ("reasoning_tokens", m.tokens_reasoning)) if v}
    cost_extra.pop("cost_prices", None)  # the run's final_metrics names the table, once
    extra.update(cost_extra)
    if extra:
        out["extra"] = extra
    return out


_CONTENT = (MessageAdded, ReasoningAdded, ToolCalled, ToolReturned, TestsRan, FileChanged, ErrorOccurred)
"""Event types whose content a step shows (usage, snapshots and the like only annotate)."""


class _Part:
    """What one open part has gathered so far."""

    __slots__ = ("ts", "messages", "roles", "reasoning", "encrypted", "calls", "results", "model",
                 "tests", "files", "errors", "kind", "tree_id")

    def __init__(self, ts: int):
        self.ts = ts
        self.messages: list[str] = []
        self.roles: set[str] = set()
        self.reasoning: list[str] = []
        self.encrypted = False
        self.calls: dict[str, dict] = {}
        self.results: list[dict] = []
        self.model = ""
        self.tests: list[dict] = []
        self.files: list[dict] = []
        self.errors: list[dict] = []
        self.kind = ""
        self.tree_id = ""


class StepBuilder:
    """Turns a run's records, in seq order, into ATIF step dicts (without ``step_id``).

    A prompt (``run_started``/``turn_started``) is held until the next user message replaces it
    or the next agent step needs it before it, so a prompt that the agent's transcript repeats as
    a user message becomes one step, not two.
    """

    def __init__(self, store: Store, parts: dict[int, PartMetrics], run_model: str,
                 costs: dict[int, RunCost] | None = None):
        self.store = store
        self.parts = parts
        self.costs = costs or {}
        self.run_model = run_model
        self.open: dict[int, _Part] = {}
        self.ended: list[int] = []
        self.emitted: set[int] = set()
        self.prompt: tuple[int, str] | None = None
        self.count = 0
        self.step_prompt_tokens = 0
        self.step_completion_tokens = 0

    def feed(self, rec: Record) -> list[dict]:
        """The steps completed by ``rec``. A part's step is made when the next part or step
        begins (events of a part may follow its ``part_ended``, its usage typically does)."""
        ev = rec.event
        n = rec.part
        if n is not None:
            if n in self.emitted:
                return self._late(n, rec) if isinstance(ev, _CONTENT) else []
            out = self._close_ended(keep=n)
            part = self.open.get(n)
            if part is None:
                part = self.open[n] = _Part(rec.ts)
            self._gather(part, ev)
            if isinstance(ev, PartEnded) and n not in self.ended:
                self.ended.append(n)
            return out
        if isinstance(ev, (RunStarted, TurnStarted)) and ev.prompt:
            out = self._close_ended()  # before the new prompt, which they must not flush
            self.prompt = (rec.ts, ev.prompt)
            return out
        if isinstance(ev, MessageAdded):
            out = self._close_ended()
            text = self.store.text(ev.text, ev.text_blob)
            if ev.role in ("user", "system"):
                self.prompt = None
                return [*out, {"timestamp": iso_time(rec.ts), "source": ev.role, "message": text}]
            if ev.role == "tool":
                return [*out, *self._flush_prompt(), {"timestamp": iso_time(rec.ts), "source": "agent", "message": "",
                                                      "observation": {"results": [{"content": text}]}}]
            return [*out, *self._flush_prompt(), {"timestamp": iso_time(rec.ts), "source": "agent", "message": text,
                                                  "model_name": self._model(ev.model)}]
        if isinstance(ev, ErrorOccurred):
            return [*self._close_ended(), {"timestamp": iso_time(rec.ts), "source": "system",
                                           "message": f"error ({ev.origin}{', fatal' if ev.fatal else ''}): {ev.message}"}]
        return []

    def finish(self) -> list[dict]:
        """Steps of the parts still held (ended or, in a crashed run, never ended), in part
        order, then a prompt nothing answered."""
        out = []
        for n in sorted(self.open):
            out.extend(self._agent_step(n, self.open[n]))
            self.emitted.add(n)
        self.open, self.ended = {}, []
        return out + self._flush_prompt()

    def _close_ended(self, keep: int | None = None) -> list[dict]:
        """Steps of the ended parts other than ``keep``, in the order they ended."""
        out = []
        for n in self.ended:
            if n != keep:
                out.extend(self._agent_step(n, self.open.pop(n)))
                self.emitted.add(n)
        self.ended = [n for n in self.ended if n == keep]
        return out

    def _late(self, n: int, rec: Record) -> list[dict]:
        """Content recorded for a part whose step was already written: a step of its own."""
        part = _Part(rec.ts)
        self._gather(part, rec.event)
        steps = self._agent_step(n, part)
        for step in steps:
            step["metrics"] = None  # the part's metrics are on its first step
            step.setdefault("extra", {})["late"] = True
        return steps

    def _flush_prompt(self) -> list[dict]:
        if self.prompt is None:
            return []
        ts, text = self.prompt
        self.prompt = None
        return [{"timestamp": iso_time(ts), "source": "user", "message": text}]

    def _model(self, model: str) -> str | None:
        return model if model and model != self.run_model else None

    def _gather(self, part: _Part, ev) -> None:
        store = self.store
        if isinstance(ev, MessageAdded):
            part.messages.append(store.text(ev.text, ev.text_blob))
            part.roles.add(ev.role)
            part.model = part.model or ev.model
        elif isinstance(ev, ReasoningAdded):
            if ev.text:
                part.reasoning.append(ev.text)
            part.encrypted = part.encrypted or ev.encrypted
        elif isinstance(ev, ToolCalled):
            args = ev.arguments
            if args is None:
                args = {"command": ev.command} if ev.command else {}
            elif not isinstance(args, dict):
                args = {"value": args}
            part.calls[ev.call_id] = {"tool_call_id": ev.call_id, "function_name": ev.tool, "arguments": args}
        elif isinstance(ev, ToolReturned):
            part.results.append(self._result(part, ev))
        elif isinstance(ev, (UsageReported, ModelCalled)):
            part.model = part.model or ev.model
        elif isinstance(ev, TestsRan):
            part.tests.append({k: getattr(ev, k) for k in ("suite", "passed", "failed", "errors", "skipped", "total")})
        elif isinstance(ev, FileChanged):
            part.files.append({"path": ev.path, "change": ev.change})
        elif isinstance(ev, ErrorOccurred):
            part.errors.append({"origin": ev.origin, "message": ev.message})
        elif isinstance(ev, SnapshotTaken):
            part.tree_id = ev.tree_id
        elif isinstance(ev, PartEnded):
            part.kind = ev.part_kind
            part.tree_id = ev.tree_id or part.tree_id

    def _result(self, part: _Part, ev: ToolReturned) -> dict:
        output = self.store.text(ev.output, ev.output_blob)
        result: dict = {"content": output or ev.error}
        extra = {k: v for k, v in (("status", ev.status), ("exit_code", ev.exit_code),
                                   ("duration_ms", ev.duration_ms), ("error", ev.error)) if v not in (None, "")}
        if ev.call_id in part.calls:
            result = {"source_call_id": ev.call_id, **result}
        elif ev.call_id:
            # ATIF requires a result's source_call_id to name a call of the same step
            extra["call_id"] = ev.call_id
        if ev.tool:
            extra["tool"] = ev.tool
        result["extra"] = extra
        return result

    def _agent_step(self, n: int, part: _Part) -> list[dict]:
        agentless = part.roles and part.roles <= {"user", "system"} and not (
            part.calls or part.results or part.reasoning)
        extra: dict = {"part": n}
        for key, value in (("part_kind", part.kind), ("tree_id", part.tree_id), ("tests", part.tests),
                           ("file_changes", part.files), ("errors", part.errors)):
            if value:
                extra[key] = value
        if part.encrypted:
            extra["reasoning_encrypted"] = True
        if agentless:
            source = "system" if part.roles == {"system"} else "user"
            return [{"timestamp": iso_time(part.ts), "source": source, "message": "\n\n".join(part.messages),
                     "extra": extra}]
        step = {"timestamp": iso_time(part.ts), "source": "agent", "model_name": self._model(part.model),
                "message": "\n\n".join(part.messages),
                "reasoning_content": "\n\n".join(part.reasoning) if part.reasoning else None,
                "tool_calls": list(part.calls.values()) or None,
                "observation": {"results": part.results} if part.results else None,
                "metrics": _step_metrics(self.parts.get(n), self.costs.get(n)), "extra": extra}
        return [*self._flush_prompt(), step]

