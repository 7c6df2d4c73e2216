"""Importer of OpenHands (V0) trajectories: the JSON array of serialized events written by
``save_trajectory_path`` / the GUI's "download trajectory" (``--format openhands``).

One file = one conversation = one run; the document is kept verbatim as one ``raw_recorded``.
Actions and observations are paired by the observation's ``cause`` (the action's ``id``):

=====================================  ==========================================================
event                                  events
=====================================  ==========================================================
user ``message``                       ``turn_started`` (ends the previous turn) +
                                       ``message_added(user)``
agent ``message``                      ``message_added(assistant)`` + ``part_ended(message)``
agent ``think``                        ``reasoning_added`` + ``part_ended(reasoning)``
agent ``run``/``run_ipython``/         one tool part when its observation arrives: the action's
``read``/``write``/``edit``/           ``thought`` as ``message_added(assistant)``, then
``browse*``/``call_tool_mcp``/…        ``tool_called`` (tool = ``tool_call_metadata.function_name``
+ observation with ``cause``           or the action) + ``tool_returned`` (``content``;
                                       ``extras.metadata.exit_code``; ``error`` observations fail)
                                       [+ ``file_changed`` for ``edit``/``write``, with the line
                                       counts of the edit observation's diff] [+ ``tests_ran``]
agent ``finish``                       ``message_added(assistant)`` part; the run ``completed``
agent ``reject``                       the run ``failed`` with its reason
``agent_state_changed``                ``error`` → failed (``extras.reason``), ``stopped`` →
                                       interrupted, ``finished``/``awaiting_user_input`` after
                                       the agent's last action → completed
``tool_call_metadata.model_response``  ``model_called(ok)`` + ``usage_reported`` once per
                                       response ``id`` (an action and its observation repeat it)
``llm_metrics``                        when present, tokens come from
                                       ``accumulated_token_usage`` and cost from
                                       ``accumulated_cost`` (both running totals → deltas)
=====================================  ==========================================================

Record types are ``action/<action>`` and ``observation/<observation>`` (:data:`KNOWN`, the
V0 schema's lists). An action of another type is kept raw (in the document) and counted as
unknown, not read; an observation of another type is counted too, and still answers its action
(its ``content`` is read the same way for every type).

The OpenHands evaluation example ``example_model_output.json`` (SWE-bench predictions
``[{instance_id, model_patch, model_name_or_path}]``) is read too: one run per prediction, its
patch as a ``patch`` part; non-empty → ``completed``, empty → ``failed`` ("empty model_patch").
Predictions carry no time; those runs start at 0 so their ids stay a function of the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    MessageAdded,
    ModelCalled,
    RunStarted,
    TurnEnded,
    TurnStarted,
    Usage,
    UsageReported,
)

from ..adapter import Emit
from ..adapters.base import title_of
from ..usage import CumulativeCounter, increase, token_count
from . import register
from .base import ImportContext, ImportError_
from .transcript import (
    Transcript,
    diff_files,
    file_sha256,
    head,
    load_json_document,
    parse_ts,
    source_key,
    text_of,
)

FORMAT = "openhands"
_ACTIONS = ("message", "system", "start", "read", "write", "edit", "run", "run_ipython", "browse",
            "browse_interactive", "call_tool_mcp", "delegate", "think", "finish", "reject", "null",
            "pause", "resume", "stop", "change_agent_state", "push", "send_pr", "recall",
            "condensation", "condensation_request", "task_tracking", "loop_recovery")
_OBSERVATIONS = ("read", "write", "edit", "browse", "run", "run_ipython", "chat", "delegate",
                 "message", "error", "success", "null", "think", "agent_state_changed",
                 "user_rejected", "condense", "recall", "mcp", "download", "task_tracking",
                 "loop_detection")
KNOWN = {"*": frozenset((*(f"action/{a}" for a in _ACTIONS),
                         *(f"observation/{o}" for o in _OBSERVATIONS)))}
_NOT_TOOLS = {"message", "system", "finish", "reject", "think", "null", "change_agent_state",
              "recall", "condensation", "condensation_request", "pause", "resume", "stop",
              "start", "loop_recovery"}


def _usage_litellm(u: dict[str, Any]) -> Usage:
    """litellm usage: ``prompt_tokens`` includes cache reads and writes."""
    details = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    out_details = u.get("completion_tokens_details") if isinstance(
        u.get("completion_tokens_details"), dict) else {}
    read = token_count(u.get("cache_read_input_tokens") or details.get("cached_tokens") or u.get("cache_read_tokens"))
    write = token_count(u.get("cache_creation_input_tokens") or u.get("cache_write_tokens"))
    prompt = token_count(u.get("prompt_tokens"))
    return Usage(input=max(0, prompt - read - write), output=token_count(u.get("completion_tokens")),
                 cache_read=read, cache_write=write,
                 reasoning=token_count(out_details.get("reasoning_tokens")))


class OpenHandsImporter:
    """``--format openhands``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        text = head(path).lstrip()
        if not text.startswith(b"["):
            return False
        return (b'"source"' in text and (b'"action"' in text or b'"observation"' in text)) or (
            b'"instance_id"' in text and b'"model_patch"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
            raise ImportError_(f"{path}: not an OpenHands trajectory (expected a JSON array of "
                               "event objects)")
        digest = file_sha256(path)
        if doc and all("model_patch" in e and "instance_id" in e for e in doc):
            for e in doc:
                self._prediction(path, ctx, digest, text, e)
            return
        first_user = next((e for e in doc if e.get("source") == "user" and e.get("action") == "message"), {})
        prompt = str((first_user.get("args") or {}).get("content") or first_user.get("message") or "")
        model = next((str(_response(e).get("model")) for e in doc if _response(e).get("model")), "")
        started_ts = next((ts for e in doc if (ts := parse_ts(e.get("timestamp")))), 0)
        started = RunStarted(agent="openhands", model=model, prompt=prompt,
                             prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
                             source=f"import:{FORMAT}")
        sink = ctx.new_run(source_key(FORMAT, digest, ""), started, started_ts)
        if sink is not None:
            t = Transcript(sink, FORMAT, started_ts, types=KNOWN["*"])
            t.raw(text, path.name)
            _Trajectory(t, model, any(isinstance(e.get("llm_metrics"), dict) for e in doc)).write(doc, path)

    def _prediction(self, path: Path, ctx: ImportContext, digest: str, text: str, e: dict) -> None:
        iid = str(e.get("instance_id") or "")
        started = RunStarted(agent="openhands", task_id=iid,
                             config={"model_name_or_path": e.get("model_name_or_path")},
                             source=f"import:{FORMAT}")
        sink = ctx.new_run(source_key(FORMAT, digest, iid), started, 0)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, 0)
        t.raw(text, path.name)
        patch = str(e.get("model_patch") or "")
        changes = diff_files(patch)
        t.patch_part(changes, f"model_patch: {', '.join(c.path for c in changes)}")
        if changes:
            t.end("completed", f"prediction only (no trajectory): a patch of {len(changes)} files")
        else:
            t.end("failed", "empty model_patch: the agent produced no change")


def _response(e: dict[str, Any]) -> dict[str, Any]:
    meta = e.get("tool_call_metadata") if isinstance(e.get("tool_call_metadata"), dict) else {}
    resp = meta.get("model_response")
    return resp if isinstance(resp, dict) else {}


class _Trajectory:
    def __init__(self, t: Transcript, model: str, metrics: bool):
        self.t = t
        self.model = model
        self.metrics = metrics  # tokens from llm_metrics (running totals) instead of responses
        self.responses: set[str] = set()
        self.tokens = CumulativeCounter()
        self.cost = 0.0
        self.pending: dict[Any, dict[str, Any]] = {}
        self.turn = 0
        self.turn_open = False
        self.outcome: tuple[str, str] | None = None
        self.agent_active = False  # the agent acted since the last end-like state

    def write(self, doc: list[dict], path: Path) -> None:
        t = self.t
        for i, e in enumerate(doc):
            t.location = f"{path.name}#[{i}]"
            t.at_time(e.get("timestamp"))
            try:
                self.event(e)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"event {e.get('id')}: {type(exc).__name__}: {exc}")
        for action in list(self.pending.values()):
            self.tool(action, {}, error="the trajectory ends before the action's observation")
        self.finish()

    def event(self, e: dict[str, Any]) -> None:
        t = self.t
        source, action, obs = e.get("source"), e.get("action"), e.get("observation")
        if action is None and obs is None:
            t.bad(f"event {e.get('id')} is neither an action nor an observation")
            return
        if action is not None and not t.knows(f"action/{action}"):
            return
        if obs is not None:
            t.knows(f"observation/{obs}")  # counted when unknown; still answers its action
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        before = t.parts.parts
        if action == "message" and source == "user":
            self.end_turn("completed")
            self.turn += 1
            self.turn_open = True
            text = str(args.get("content") or e.get("message") or "")
            t.emit(TurnStarted(turn=self.turn, prompt=text))
            t.emit(MessageAdded(role="user", text=text, message_id=str(e.get("id", ""))))
            self.outcome = None
        elif action == "message" and source == "agent":
            t.message_part("assistant", str(args.get("content") or e.get("message") or ""),
                           model=self.model, message_id=str(e.get("id", "")))
            self.agent_active = True
        elif action == "think":
            t.reasoning_part(str(args.get("thought") or e.get("message") or ""))
        elif action == "finish":
            outputs = args.get("outputs") if isinstance(args.get("outputs"), dict) else {}
            text = str(args.get("final_thought") or outputs.get("content") or "")
            t.message_part("assistant", text or str(e.get("message") or ""), model=self.model,
                           message_id=str(e.get("id", "")))
            self.outcome = ("completed", "")
        elif action == "reject":
            self.outcome = ("failed", f"the agent rejected the task: {args.get('reason') or e.get('message') or ''}")
        elif action is not None and action not in _NOT_TOOLS and source == "agent":
            self.pending[e.get("id")] = e  # its model response is counted on its tool part
            self.agent_active = True
            return
        elif obs is not None:
            self.observation(str(obs), e)
        self.usage(e, t.parts.parts if t.parts.parts > before else None)

    def observation(self, obs: str, e: dict[str, Any]) -> None:
        extras = e.get("extras") if isinstance(e.get("extras"), dict) else {}
        if obs == "agent_state_changed":
            state = str(extras.get("agent_state") or "")
            if state == "error":
                self.outcome = ("failed", str(extras.get("reason") or "the agent stopped with an error"))
            elif state in ("stopped", "paused"):
                self.outcome = ("interrupted", f"agent state {state}")
            elif state in ("finished", "awaiting_user_input") and self.agent_active and self.outcome is None:
                self.outcome = ("completed", "")
            elif state == "rejected":
                self.outcome = ("failed", "the agent rejected the task")
            return
        cause = e.get("cause")
        if cause in self.pending:
            self.tool(self.pending.pop(cause), e)
        elif obs == "error":
            self.t.emit(ErrorOccurred(message=str(e.get("content") or e.get("message") or "error"),
                                      origin="agent"))

    def tool(self, action: dict[str, Any], obs: dict[str, Any], error: str = "") -> None:
        t = self.t
        args = action.get("args") if isinstance(action.get("args"), dict) else {}
        extras = obs.get("extras") if isinstance(obs.get("extras"), dict) else {}
        meta = action.get("tool_call_metadata") if isinstance(action.get("tool_call_metadata"), dict) else {}
        name = str(action.get("action"))
        tool = str(meta.get("function_name") or name)
        command = str(args.get("command") or args.get("code") or "") if name in ("run", "run_ipython") else ""
        md = extras.get("metadata") if isinstance(extras.get("metadata"), dict) else {}
        exit_code = md.get("exit_code") if isinstance(md.get("exit_code"), int) else None
        if exit_code == -1:
            exit_code = None
        output = text_of(obs.get("content"))
        failed = bool(error) or obs.get("observation") == "error" or exit_code not in (None, 0) or (
            obs.get("success") is False)
        why = error or (output and title_of(output)) or f"exit code {exit_code}"
        n = t.parts.parts + 1
        thought = str(args.get("thought") or "")
        if thought:
            t.emit(MessageAdded(role="assistant", text=thought, model=self.model,
                                message_id=str(action.get("id", ""))), n)
        path = str(args.get("path") or extras.get("path") or "")
        changes: list[tuple[str, str]] = []
        counted: FileChanged | None = None
        if name in ("edit", "write") and path and not failed:
            first_hunk = output[output.find("\n@@"):][:12] if output.startswith("---") else ""
            new = first_hunk.startswith("\n@@ -0,0 ") or args.get("command") == "create"
            changes = [(path, "add" if new else "modify")]
            if first_hunk:  # the edit observation is a unified diff: count its lines
                found = diff_files(f"diff --git a{path} b{path}\n" + output)
                counted = found[0] if found else None
        detail = command or path
        items = t.parts.tool_part(
            call_id=str(meta.get("tool_call_id") or action.get("id", "")), tool=tool,
            arguments=args, command=command, status="error" if failed else "ok", output=output,
            exit_code=exit_code, error=why if failed else "", changes=changes,
            title=title_of(f"{tool}: {detail}" if detail else tool))
        if counted is not None:
            items = [Emit(msgspec.structs.replace(i.event, lines_added=counted.lines_added,
                                                  lines_removed=counted.lines_removed), i.part, i.ts)
                     if isinstance(i.event, FileChanged) else i for i in items]
        t.emits(items)
        self.usage(action, t.parts.parts)
        if obs:
            self.usage(obs, t.parts.parts)

    def usage(self, e: dict[str, Any], part: int | None) -> None:
        t = self.t
        resp = _response(e)
        rid = str(resp.get("id") or "")
        if rid and rid not in self.responses:
            self.responses.add(rid)
            t.emit(ModelCalled(model=str(resp.get("model") or self.model), ok=True, request_id=rid), part)
            if not self.metrics and isinstance(resp.get("usage"), dict):
                t.emit(UsageReported(usage=_usage_litellm(resp["usage"]),
                                     model=str(resp.get("model") or self.model), request_id=rid), part)
        metrics = e.get("llm_metrics")
        if not isinstance(metrics, dict):
            return
        acc = metrics.get("accumulated_token_usage")
        cost = metrics.get("accumulated_cost")
        cost_delta = None
        if isinstance(cost, int | float) and cost > self.cost:
            cost_delta, self.cost = float(cost) - self.cost, float(cost)
        delta, total = None, None
        if isinstance(acc, dict):
            total = _usage_litellm(acc)
            delta = self.tokens.feed(total)
        if delta is not None or cost_delta:
            t.emit(UsageReported(usage=delta or increase(Usage(), Usage()), model=self.model,
                                 cost_usd=cost_delta, cumulative=total), part)

    def end_turn(self, status: str) -> None:
        if self.turn_open:
            self.t.emit(TurnEnded(turn=self.turn, status=status))
            self.turn_open = False

    def finish(self) -> None:
        t = self.t
        if self.outcome is None:
            self.end_turn("interrupted")
            t.end_without_marker("no finish action and no final agent state")
            return
        status, reason = self.outcome
        self.end_turn("completed" if status == "completed" else status)
        t.end(status, reason)


register(OpenHandsImporter())

