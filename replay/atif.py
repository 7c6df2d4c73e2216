"""Runs as ATIF trajectories: the Agent Trajectory Interchange Format of Harbor / Terminal-Bench.

:func:`export_atif` writes one trajectory per run, ``out/<run id>.json``, which Harbor's own
models (``harbor.models.trajectories.Trajectory``) load and validate. The mapping is in
``docs/export.md``; in short: a user (or system) step per prompt and per user message outside a
part, one step per part (its assistant messages, reasoning, tool calls, and their results as the
step's observation), a system step per error outside a part. Per-step metrics are the part's
metrics and final metrics the run's, both read from the metrics projection: this module never
adds up tokens itself.

Contracts:

* **All or nothing.** ``out`` must not exist. The trajectories are written (each fsynced) into a
  temporary sibling directory that is renamed to ``out`` once every run is written; a failed or
  interrupted export leaves nothing under ``out``.
* **Streaming.** A trajectory is written step by step while the run is read: what is held at
  once is the events of the parts still open and the run's part-metrics rows, never the run.
* **Deterministic.** The same events give the same bytes (no clock, no random ids).
* **Complete texts.** Texts too large to inline are read from the blob store; a missing blob
  fails the export (``CorruptBlob``) instead of writing a truncated trajectory.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    ReasoningAdded,
    Record,
    RunEnded,
    RunNotFound,
    RunStarted,
    SnapshotTaken,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnStarted,
    UsageReported,
)

from .errors import ExportError, OutputNotEmpty
from .export import ExportReport
from .metrics import PartMetrics, RunMetrics
from .projections import part_metrics, update_metrics

SCHEMA_VERSION = "ATIF-v1.7"
"""The ATIF version written: the oldest one with every field this module uses (the ``extra``
of tool calls and observation results came in v1.7)."""

_encode = msgspec.json.Encoder().encode


def trajectory(store: Store, run_id: str) -> dict:
    """The ATIF trajectory of a run as a dict (what :func:`write_trajectory` writes)."""
    buf = io.BytesIO()
    write_trajectory(store, run_id, buf)
    return json.loads(buf.getvalue())


def write_trajectory(store: Store, run_id: str, fh: BinaryIO) -> int:
    """Write the ATIF trajectory of a run to ``fh`` as JSON; return the number of steps."""
    return _write(store, run_id, fh)[0]


def export_atif(
    store: Store,
    run_ids: Iterable[str],
    *,
    out: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write ``out/<run id>.json``, one ATIF trajectory per run; see the module docstring.

    ``progress(done, total)`` is called after each run with the runs written so far.

    Raises:
        ExportError: ``out`` is a URL (write locally, then copy).
        OutputNotEmpty: ``out`` already exists.
        RunNotFound: a run id is not in the store.
    """
    started = time.perf_counter()
    out_str = os.fspath(out)
    if "://" in out_str:
        raise ExportError(f"ATIF export writes a local directory, not {out_str}; "
                          "export to a path and copy it (agtrace push ships runs themselves)")
    run_ids = list(run_ids)
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise RunNotFound(f"no run {missing[0]} in {store.root}; `agtrace ls` lists the runs")
    dest = Path(out_str).expanduser()
    if dest.exists():
        raise OutputNotEmpty(f"{dest} already exists; an export never overwrites: remove it or pick another -o")
    dest.parent.mkdir(parents=True, exist_ok=True)
    report = ExportReport(format="atif", out=str(dest), runs=len(run_ids))
    building = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        target = building / "atif"
        target.mkdir()
        for i, run_id in enumerate(run_ids):
            path = target / f"{run_id}.json"
            with open(path, "wb") as fh:
                steps, events = _write(store, run_id, fh)
                fh.flush()
                os.fsync(fh.fileno())
            report.steps += steps
            report.events += events
            report.files += 1
            report.bytes += path.stat().st_size
            if progress:
                progress(i + 1, len(run_ids))
        os.rename(target, dest)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    report.duration_s = time.perf_counter() - started
    return report


# -- writing ---------------------------------------------------------------------------------


def _write(store: Store, run_id: str, fh: BinaryIO) -> tuple[int, int]:
    """Write one trajectory; return (steps, events read)."""
    run = update_metrics(store, run_id)
    parts = {p.part: p for p in part_metrics(store, run_id)}
    records = store.read(run_id)
    first = next(records, None)
    start = first.event if first is not None and isinstance(first.event, RunStarted) else RunStarted()
    steps = _Steps(store, parts, start.model)
    fh.write(b'{"schema_version":"%s","session_id":%s,"trajectory_id":%s,"agent":%s,"steps":['
             % (SCHEMA_VERSION.encode(), _encode(run_id), _encode(run_id), _encode(_agent(start))))
    ended: RunEnded | None = None
    events = 0
    for rec in _chain(first, records):
        events += 1
        if isinstance(rec.event, RunEnded):
            ended = rec.event
        for step in steps.feed(rec):
            _put(fh, steps, step)
    for step in steps.finish():
        _put(fh, steps, step)
    if steps.count == 0:
        status = run.status or (ended.status if ended else "")
        _put(fh, steps, {"timestamp": _iso(first.ts) if first else None, "source": "system",
                         "message": f"no message, prompt or part was recorded (run {status or 'empty'})"})
    tail = {"final_metrics": _final_metrics(run, steps.count)}
    notes = _notes(run, steps)
    if notes:
        tail["notes"] = notes
    tail["extra"] = _run_extra(start, ended, run)
    fh.write(b"\n]," + _encode(tail)[1:] + b"\n")
    return steps.count, events


def _chain(first: Record | None, rest: Iterable[Record]):
    if first is not None:
        yield first
    yield from rest


def _put(fh: BinaryIO, steps: _Steps, step: dict) -> None:
    steps.count += 1
    step = {"step_id": steps.count, **{k: v for k, v in step.items() if v is not None}}
    if step.get("metrics"):
        steps.step_prompt_tokens += step["metrics"]["prompt_tokens"]
        steps.step_completion_tokens += step["metrics"]["completion_tokens"]
    fh.write((b"\n" if steps.count == 1 else b",\n") + _encode(step))


def _iso(ts_ns: int) -> str:
    """ISO 8601 UTC with microseconds: what Harbor's timestamp validator parses."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def _agent(start: RunStarted) -> dict:
    agent = {"name": start.agent or "unknown", "version": start.agent_version or "unknown"}
    if start.model:
        agent["model_name"] = start.model
    extra = {k: v for k, v in (("command", start.command), ("config", start.config)) if v}
    if extra:
        agent["extra"] = extra
    return agent


def _prompt_tokens(m: RunMetrics | PartMetrics) -> int:
    """ATIF's prompt tokens include cached ones: input + cache read + cache write."""
    return m.tokens_input + m.tokens_cache_read + m.tokens_cache_write


def _step_metrics(m: PartMetrics | None) -> dict | None:
    if m is None or not (_prompt_tokens(m) or m.tokens_output or m.cost_usd is not None):
        return None
    out = {"prompt_tokens": _prompt_tokens(m), "completion_tokens": m.tokens_output,
           "cached_tokens": m.tokens_cache_read}
    if m.cost_usd is not None:
        out["cost_usd"] = m.cost_usd
    extra = {k: v for k, v in (("cache_creation_input_tokens", m.tokens_cache_write),
                               ("reasoning_tokens", m.tokens_reasoning)) if v}
    if extra:
        out["extra"] = extra
    return out


def _final_metrics(run: RunMetrics, steps: int) -> dict:
    out = {"total_prompt_tokens": _prompt_tokens(run), "total_completion_tokens": run.tokens_output,
           "total_cached_tokens": run.tokens_cache_read}
    if run.cost_usd is not None:
        out["total_cost_usd"] = run.cost_usd
    out["total_steps"] = steps
    out["extra"] = {"cache_creation_input_tokens": run.tokens_cache_write,
                    "reasoning_tokens": run.tokens_reasoning, "agtrace_metrics": run.to_dict()}
    return out


def _notes(run: RunMetrics, steps: _Steps) -> str:
    prompt = _prompt_tokens(run) - steps.step_prompt_tokens
    completion = run.tokens_output - steps.step_completion_tokens
    if not (prompt or completion):
        return ""
    return (f"{prompt:,} prompt and {completion:,} completion tokens were reported outside any agent "
            "step (before the first part, or in a user part); final_metrics counts them, no step does. "
            "total_steps is the number of steps; each agent step is one agtrace part.")


def _run_extra(start: RunStarted, ended: RunEnded | None, run: RunMetrics) -> dict:
    items = {"task_id": start.task_id, "repo": start.repo, "base_commit": start.base_commit,
             "prompt_sha256": start.prompt_sha256, "parent_run": start.parent_run, "tags": start.tags,
             "source": start.source, "status": run.status, "reason": run.reason,
             "exit_code": ended.exit_code if ended else None}
    extra = {"agtrace_run_id": run.run_id, **{k: v for k, v in items.items() if v not in ("", None, {})}}
    if start.attempt != 1:
        extra["attempt"] = start.attempt
    return extra


# -- steps -----------------------------------------------------------------------------------


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


class _Steps:
    """Turns a run's records, in seq order, into ATIF step dicts (without ``step_id``).

    A prompt (``run_started``/``turn_started``) is held until the next user message replaces it
    or the next agent step needs it before it, so a prompt that the agent's transcript repeats as
    a user message becomes one step, not two.
    """

    def __init__(self, store: Store, parts: dict[int, PartMetrics], run_model: str):
        self.store = store
        self.parts = parts
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
                return [*out, {"timestamp": _iso(rec.ts), "source": ev.role, "message": text}]
            if ev.role == "tool":
                return [*out, *self._flush_prompt(), {"timestamp": _iso(rec.ts), "source": "agent", "message": "",
                                                      "observation": {"results": [{"content": text}]}}]
            return [*out, *self._flush_prompt(), {"timestamp": _iso(rec.ts), "source": "agent", "message": text,
                                                  "model_name": self._model(ev.model)}]
        if isinstance(ev, ErrorOccurred):
            return [*self._close_ended(), {"timestamp": _iso(rec.ts), "source": "system",
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
        return [{"timestamp": _iso(ts), "source": "user", "message": text}]

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
            return [{"timestamp": _iso(part.ts), "source": source, "message": "\n\n".join(part.messages),
                     "extra": extra}]
        step = {"timestamp": _iso(part.ts), "source": "agent", "model_name": self._model(part.model),
                "message": "\n\n".join(part.messages),
                "reasoning_content": "\n\n".join(part.reasoning) if part.reasoning else None,
                "tool_calls": list(part.calls.values()) or None,
                "observation": {"results": part.results} if part.results else None,
                "metrics": _step_metrics(self.parts.get(n)), "extra": extra}
        return [*self._flush_prompt(), step]


__all__ = ["SCHEMA_VERSION", "export_atif", "trajectory", "write_trajectory"]
