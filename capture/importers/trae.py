"""Importer of TRAE agent trajectories (``trajectory.json``, trae_agent ``trajectory_recorder``).

Field by field:

* top level: ``task`` → run prompt; ``model`` and ``provider`` → the model (the first response's
  ``model`` wins: the model as called); ``max_steps`` → config; ``start_time``/``end_time``
  (local time without zone, read as UTC) → run start and end.
* ``agent_steps[k]`` → parts, in order: the response text (``llm_response.content``) is a
  ``message`` part; each tool call (``tool_calls``, else the response's, e.g. ``task_done``
  which TRAE does not execute) is a ``tool`` part with its ``tool_results`` entry matched by
  ``call_id``; ``reflection`` is a ``reasoning`` part; ``error`` is an ``error_occurred``.
* model calls: each step with a response is one successful call; its usage is taken once, from
  the matching ``llm_interactions`` entry (which carries the cache fields) — the step's copy of
  the same usage is not counted again. A step with an ``error`` and no response is a failed call.
* status from evidence: every call failed → ``failed`` "no model call succeeded"; ``success``
  → ``completed``; "exceeded maximum steps" → ``limit``; otherwise ``failed`` with the last
  error (TRAE exits 0 in all of these cases, so its exit code says nothing).

The file is kept verbatim as one ``raw_recorded`` event. Record types are
``agent_step/<state>`` (:data:`KNOWN`, TRAE's ``AgentStepState``); a step in another state is
counted as unknown (a newer TRAE) and still read, since a step's fields do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    ErrorOccurred,
    Event,
    MessageAdded,
    ModelCalled,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    RunEnded,
    RunStarted,
    ToolCalled,
    ToolReturned,
    UsageReported,
)

from ..usage import usage_from_anthropic, usage_from_openai
from . import register
from .base import ImportContext, ImportError_, RunSink, stat_key
from .transcript import parse_ts

Emit = Callable[..., None]
KNOWN = {"*": frozenset(f"agent_step/{s}" for s in
                        ("thinking", "calling_tool", "reflecting", "completed", "error"))}


def count_unknown(traj: dict, sink: RunSink, where: str) -> None:
    """Count the steps whose state TRAE's schema does not list (see the module docstring)."""
    for i, step in enumerate(traj.get("agent_steps") or []):
        state = step.get("state") if isinstance(step, dict) else None
        if isinstance(state, str) and f"agent_step/{state}" not in KNOWN["*"]:
            sink.unknown(f"{where}#agent_steps[{i}]", f"agent_step/{state}")


def load_trajectory(path: Path) -> tuple[dict, str]:
    """The parsed trajectory and its text; ImportError_ for truncated or foreign JSON."""
    data = path.read_bytes()
    try:
        traj = json.loads(data)
    except UnicodeDecodeError:
        raise ImportError_(f"{path}: not UTF-8 JSON; is it a TRAE trajectory.json?") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(data.rstrip()) - 1 or data.rstrip()[-1:] not in (b"}", b"]"):
            raise ImportError_(f"{path}: truncated: the JSON stops at byte {len(data)} (TRAE rewrites the whole "
                               "file after every step, so a killed run leaves it cut); nothing was imported") from None
        raise ImportError_(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(traj, dict) or "agent_steps" not in traj or "llm_interactions" not in traj:
        raise ImportError_(f"{path}: JSON without agent_steps/llm_interactions; not a TRAE trajectory")
    return traj, data.decode()


def is_trajectory(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".json":
        return False
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    return b'"llm_interactions"' in head or (b'"agent_steps"' in head and b'"max_steps"' in head)


def called_model(traj: dict) -> str:
    """The model as called: the first response's ``model``, else the trajectory's."""
    for it in traj.get("llm_interactions") or []:
        model = ((it or {}).get("response") or {}).get("model")
        if model:
            return model
    return traj.get("model") or ""


def usage_of(usage: dict, provider: str) -> Any:
    """TRAE's ``LLMUsage``: Anthropic/Bedrock ``input_tokens`` exclude the cache, OpenAI-style
    clients put the cached part inside ``input_tokens`` (and report it as cache reads)."""
    if provider in ("anthropic", "bedrock"):
        return usage_from_anthropic(usage)
    u = usage_from_openai({"input_tokens": usage.get("input_tokens"), "output_tokens": usage.get("output_tokens"),
                           "cached_input_tokens": usage.get("cache_read_input_tokens"),
                           "reasoning_output_tokens": usage.get("reasoning_tokens")})
    return u


@dataclass
class Outcome:
    """What a trajectory showed, for the run's status."""

    parts: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    last_error: str = ""
    errors: list[str] = field(default_factory=list)

    def status(self, traj: dict) -> tuple[str, str]:
        if self.calls_failed and not self.calls_ok:
            return "failed", f"no model call succeeded ({self.calls_failed} failed): {self.last_error}"
        if not self.calls_ok and not self.parts:
            return "failed", "no model call was made and no step completed"
        if traj.get("success") is True:
            return "completed", ""
        final = str(traj.get("final_result") or "")
        if "exceeded maximum steps" in final.lower():
            return "limit", final.strip()[:500]
        if self.last_error:
            return "failed", f"the agent stopped on an error: {self.last_error}"
        return "failed", "the agent did not report success (success: false)"


def write_trajectory(traj: dict, emit: Emit, text: Callable[[str], tuple[str, str, int]], first_part: int = 1,
                     source: str = "import:trae") -> Outcome:
    """Append the events of a TRAE trajectory through ``emit(event, part=, ts=)``."""
    out = Outcome()
    provider = traj.get("provider") or ""
    interactions = list(traj.get("llm_interactions") or [])
    part = first_part - 1
    ts = parse_ts(traj.get("start_time")) or 0

    def next_part() -> int:
        nonlocal part
        part += 1
        out.parts += 1
        return part

    for step in traj.get("agent_steps") or []:
        if not isinstance(step, dict):
            continue
        ts = parse_ts(step.get("timestamp")) or ts
        response = step.get("llm_response") if isinstance(step.get("llm_response"), dict) else None
        step_events: list[Event] = []
        if response is not None:
            it = interactions.pop(0) if interactions else {}
            usage = ((it.get("response") or {}).get("usage")) or response.get("usage") or {}
            model = response.get("model") or traj.get("model") or ""
            step_events.append(ModelCalled(model=model, ok=True))
            if usage:
                step_events.append(UsageReported(usage=usage_of(usage, provider), model=model))
            out.calls_ok += 1
        elif step.get("error"):
            step_events.append(ModelCalled(model=traj.get("model") or "", ok=False, error=str(step["error"])))
            out.calls_failed += 1
        pending = step_events  # attached to the step's first part, or to no part
        if response is not None and (response.get("content") or "").strip():
            n = next_part()
            for ev in pending:
                emit(ev, part=n, ts=ts)
            pending = []
            inline, blob, _ = text(response["content"])
            emit(MessageAdded(role="assistant", text=inline, text_blob=blob, model=response.get("model") or ""),
                 part=n, ts=ts)
            emit(PartEnded(part_kind="message", title=" ".join(response["content"].split())[:80]), part=n, ts=ts)
        calls = step.get("tool_calls") or (response or {}).get("tool_calls") or []
        results = {r.get("call_id"): r for r in step.get("tool_results") or [] if isinstance(r, dict)}
        for call in calls:
            if not isinstance(call, dict):
                continue
            n = next_part()
            for ev in pending:
                emit(ev, part=n, ts=ts)
            pending = []
            name, call_id = call.get("name") or "tool", call.get("call_id") or f"step{step.get('step_number')}-{n}"
            args = call.get("arguments")
            command = args.get("command", "") if isinstance(args, dict) and name == "bash" else ""
            emit(ToolCalled(call_id=call_id, tool=name, arguments=args, command=str(command or "")), part=n, ts=ts)
            res = results.get(call.get("call_id"))
            if res is not None:
                inline, blob, nbytes = text(str(res.get("result") or ""))
                ok = res.get("success") is not False and not res.get("error")
                emit(ToolReturned(call_id=call_id, tool=name, status="ok" if ok else "error", output=inline,
                                  output_blob=blob, output_bytes=nbytes, error=str(res.get("error") or "")),
                     part=n, ts=ts)
            emit(PartEnded(part_kind="tool", title=f"{name} {command}".strip()[:80], tool=name, call_id=call_id),
                 part=n, ts=ts)
        if step.get("reflection"):
            n = next_part()
            emit(ReasoningAdded(text=str(step["reflection"])), part=n, ts=ts)
            emit(PartEnded(part_kind="reasoning", title=" ".join(str(step["reflection"]).split())[:80]), part=n, ts=ts)
        for ev in pending:
            emit(ev, part=None, ts=ts)
        if step.get("error"):
            out.last_error = str(step["error"])
            out.errors.append(out.last_error)
            emit(ErrorOccurred(message=out.last_error, origin="agent" if response is not None else "model"),
                 part=part if part >= first_part else None, ts=ts)
    for it in interactions:  # calls no step recorded (should not happen; kept, not dropped)
        resp = (it or {}).get("response") or {}
        emit(ModelCalled(model=resp.get("model") or "", ok=True), part=None, ts=parse_ts(it.get("timestamp")) or ts)
        if resp.get("usage"):
            emit(UsageReported(usage=usage_of(resp["usage"], provider), model=resp.get("model") or ""),
                 part=None, ts=ts)
        out.calls_ok += 1
    return out


class TraeImporter:
    """``--format trae``: a standalone TRAE ``trajectory*.json``."""

    name = "trae"
    known = KNOWN

    def detect(self, path: Path) -> bool:
        return is_trajectory(path)

    def read(self, path: Path, ctx: ImportContext) -> None:
        traj, raw = load_trajectory(path)
        started_ts = parse_ts(traj.get("start_time")) or 0
        task = str(traj.get("task") or "")
        started = RunStarted(
            agent="trae", model=called_model(traj), prompt=task,
            prompt_sha256=hashlib.sha256(task.encode()).hexdigest() if task else "",
            config={k: traj[k] for k in ("provider", "model", "max_steps") if traj.get(k) is not None},
            source="import:trae", tags={"file": path.name},
        )
        sink = ctx.new_run(f"trae:{stat_key(path)}", started, started_ts)
        if sink is None:
            return
        inline, blob, _ = sink.text(raw)
        sink.append(RawRecorded(source="import:trae", text=inline, blob=blob, location=path.name), ts=started_ts)
        count_unknown(traj, sink, path.name)

        def emit(event: Event, part: int | None = None, ts: int | None = None) -> None:
            sink.append(event, part=part, ts=ts if ts is not None else started_ts)

        outcome = write_trajectory(traj, emit, sink.text)
        status, reason = outcome.status(traj)
        end_ts = parse_ts(traj.get("end_time"))
        sink.append(RunEnded(status=status, reason=reason), ts=end_ts or started_ts)


register(TraeImporter())
