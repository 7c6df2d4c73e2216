"""Importer of OpenHands V1 (software-agent-sdk) conversations (``--format openhands-v1``).

Three shapes of the same events (``Event`` subclasses serialized with their ``kind``):

* a **conversation directory**: ``base_state.json`` (model, ``execution_status``, ``stats``)
  beside ``events/event-NNNNN-<id>.json``, one file per event, as ``LocalConversation``
  persists it;
* an **event directory**: the ``events/`` directory alone (no state: no usage, status from the
  events);
* a **trajectory export**: one JSON document ``{conversation_id, events: [...]}``.

Each file (each event file, ``base_state.json``, or the export) is kept verbatim as one
``raw_recorded``. Events are read in index order (the ``NNNNN`` of the file name, or the list
order); the ``parent_id`` tree is not used to drop branches (nothing is lost).

=================================  ================================================================
event (``kind``)                   events
=================================  ================================================================
``SystemPromptEvent``              ``message_added(system)``, no part
``MessageEvent`` (user)            ``turn_started`` + ``message_added(user)``
``MessageEvent`` (agent)           a ``message`` part
``ActionEvent``                    its ``reasoning_content`` as a ``reasoning`` part; then, when
+ ``ObservationEvent``             its observation (``action_id``) arrives, one tool part: the
                                   ``thought`` as ``message_added(assistant)``, ``tool_called``,
                                   ``tool_returned`` (content text, ``exit_code``, ``is_error``)
                                   [+ ``file_changed`` for ``file_editor`` create / str_replace /
                                   insert] [+ ``tests_ran``]; ``finish`` is a ``message`` part
                                   and completes the run; ``think`` is a ``reasoning`` part
``AgentErrorEvent``,               the action's tool part, failed with the error / rejection
``UserRejectObservation``
``ConversationErrorEvent``         ``error_occurred``; the run fails
``ConversationStateUpdateEvent``   ``execution_status`` remembered for the status
``PauseEvent``/``InterruptEvent``  the run is interrupted
condensation, token, hook,         known; kept raw only
security, log, delta, ACP events
=================================  ================================================================

Model calls and usage: each distinct ``llm_response_id`` is one ``model_called``; its tokens
are the ``stats.usage_to_metrics.*.token_usages`` entry with that ``response_id`` (one entry per
response, so nothing is counted twice; litellm semantics: ``prompt_tokens`` includes cache
reads). Entries no event names (condenser calls) are reported outside any part. Status:
``base_state.execution_status`` (``finished`` → completed, ``error``/``stuck`` → failed,
``paused``/``waiting_for_confirmation`` → interrupted), else the events' own evidence, else no
end marker (``crashed`` once stale).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    ErrorOccurred,
    MessageAdded,
    ModelCalled,
    RunStarted,
    TurnEnded,
    TurnStarted,
    Usage,
    UsageReported,
)

from ..adapter import known_types
from ..adapters.base import title_of
from ..usage import token_count
from . import register
from .base import ImportContext, ImportError_
from .transcript import (
    Transcript,
    file_sha256,
    head,
    load_json_document,
    parse_ts,
    source_key,
    text_of,
)

FORMAT = "openhands-v1"
KINDS = frozenset({
    "SystemPromptEvent", "MessageEvent", "ActionEvent", "ObservationEvent", "AgentErrorEvent",
    "UserRejectObservation", "ConversationErrorEvent", "ConversationStateUpdateEvent",
    "PauseEvent", "InterruptEvent", "Condensation", "CondensationRequest",
    "CondensationSummaryEvent", "TokenEvent", "HookExecutionEvent", "SecurityAnalysisEvent",
    "LLMCompletionLogEvent", "StreamingDeltaEvent", "ACPToolCallEvent",
})
KNOWN = {"v1": KINDS, "*": KINDS}
_EVENT_FILE = re.compile(r"^event-(\d+)-.+\.json$")
_STATUS = {"finished": ("completed", ""), "error": ("failed", "execution_status error"),
           "stuck": ("failed", "the agent was stuck (execution_status stuck)"),
           "paused": ("interrupted", "execution_status paused"),
           "waiting_for_confirmation": ("interrupted", "waiting for confirmation")}
_EDITS = {"create": "add", "str_replace": "modify", "insert": "modify", "undo_edit": "modify"}


def _event_files(d: Path) -> list[Path]:
    files = [(int(m.group(1)), p) for p in d.iterdir() if (m := _EVENT_FILE.match(p.name))]
    return [p for _, p in sorted(files)]


def _events_dir(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    if (path / "events").is_dir():
        return path / "events"
    return path if any(_EVENT_FILE.match(p.name) for p in path.iterdir()) else None


def _text(content: Any) -> str:
    """The text of a V1 content list (``[{type: text, text}]``) or string."""
    if isinstance(content, list):
        return "\n".join(str(c.get("text") or "") for c in content
                         if isinstance(c, dict) and c.get("type", "text") == "text")
    return text_of(content)


class OpenHandsV1Importer:
    """``--format openhands-v1``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        events = _events_dir(path)
        if events is not None:
            files = _event_files(events)
            if not files:
                return False
            try:
                first = json.loads(files[0].read_bytes())
            except ValueError:
                return False
            return isinstance(first, dict) and isinstance(first.get("kind"), str) and "id" in first
        text = head(path, 256 * 1024)
        return (text.lstrip().startswith(b"{") and b'"events"' in text
                and re.search(rb'"kind":\s*"(SystemPromptEvent|MessageEvent|ActionEvent)"', text) is not None)

    def read(self, path: Path, ctx: ImportContext) -> None:
        records: list[tuple[str, str, Any]] = []  # (location, verbatim text, parsed or None)
        state: dict[str, Any] = {}
        events_dir = _events_dir(path)
        if events_dir is not None:
            digest = hashlib.sha256()
            base = events_dir.parent / "base_state.json"
            if base.is_file() and events_dir.name == "events":
                text = base.read_text(encoding="utf-8", errors="replace")
                digest.update(text.encode())
                try:
                    state = json.loads(text)
                except ValueError:
                    state = {}
                records.append((f"{events_dir.parent.name}/base_state.json", text, None))
            for f in _event_files(events_dir):
                text = f.read_text(encoding="utf-8", errors="replace")
                digest.update(f.name.encode() + text.encode())
                try:
                    obj: Any = json.loads(text)
                except ValueError as exc:
                    obj = exc
                records.append((f"{events_dir.name}/{f.name}", text, obj))
            if len(records) == (1 if state else 0):
                raise ImportError_(f"{path}: no events/event-*.json files; not an OpenHands V1 conversation")
            key_digest = digest.hexdigest()
            conv_id = str(state.get("id") or (events_dir.parent.name if events_dir.name == "events"
                                                else events_dir.name))
        else:
            doc, text = load_json_document(path, FORMAT)
            if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
                raise ImportError_(f"{path}: not an OpenHands V1 trajectory (expected "
                                   "{conversation_id, events: [...]})")
            records.append((path.name, text, None))
            records += [(f"{path.name}#events[{i}]", "", e) for i, e in enumerate(doc["events"])]
            key_digest = file_sha256(path)
            conv_id = str(doc.get("conversation_id") or doc.get("id") or "")
        parsed = [(loc, obj) for loc, _, obj in records if isinstance(obj, dict)]
        llm = (state.get("agent") or {}).get("llm") if isinstance(state.get("agent"), dict) else {}
        model = str((llm or {}).get("model") or "")
        first_user = next((obj for _, obj in parsed if obj.get("kind") == "MessageEvent"
                           and obj.get("source") == "user"), {})
        prompt = _text((first_user.get("llm_message") or {}).get("content"))
        started_ts = next((ts for _, obj in parsed if (ts := parse_ts(obj.get("timestamp")))), 0)
        workspace = state.get("workspace") if isinstance(state.get("workspace"), dict) else {}
        started = RunStarted(
            agent="openhands", model=model, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            workdir=str(workspace.get("working_dir") or ""), tags={"conversation_id": conv_id},
            config={k: state[k] for k in ("max_iterations", "stuck_detection") if k in state},
            source=f"import:{FORMAT}", source_version="v1")
        sink = ctx.new_run(source_key(FORMAT, key_digest, conv_id), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts)
        _Conversation(t, model, state, workspace).write(records)


class _Conversation:
    def __init__(self, t: Transcript, model: str, state: dict[str, Any], workspace: dict[str, Any]):
        self.t = t
        self.model = model
        self.state = state
        self.t.parts.workdir = str(workspace.get("working_dir") or "")
        self.pending: dict[str, dict[str, Any]] = {}
        self.responses: set[str] = set()
        self.usages = _token_usages(state)
        self.types = known_types(KNOWN, "v1")
        self.turn = 0
        self.turn_open = False
        self.outcome: tuple[str, str] | None = None
        self.execution_status = ""

    def write(self, records: list[tuple[str, str, Any]]) -> None:
        t = self.t
        for location, text, obj in records:
            if text:
                t.raw(text, location, parse_error=f"invalid JSON: {obj}" if isinstance(obj, ValueError) else "")
            t.location = location
            if obj is None or isinstance(obj, ValueError):
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
                t.bad("an event must be a JSON object with a kind")
                continue
            if obj["kind"] not in self.types:
                t.sink.unknown(location, str(obj["kind"]))
                continue
            t.at_time(obj.get("timestamp"))
            try:
                self.event(obj)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"{obj['kind']} {obj.get('id')}: {type(exc).__name__}: {exc}")
        for action in list(self.pending.values()):
            self.tool(action, {}, error="the conversation ends before the action's observation")
        self.loose_usage()
        self.finish()

    def event(self, e: dict[str, Any]) -> None:
        t = self.t
        kind = e["kind"]
        before = t.parts.parts
        if kind == "SystemPromptEvent":
            t.emit(MessageAdded(role="system", text=_text(e.get("system_prompt")),
                                message_id=str(e.get("id") or "")))
        elif kind == "MessageEvent":
            msg = e.get("llm_message") if isinstance(e.get("llm_message"), dict) else {}
            text = _text(msg.get("content"))
            if e.get("source") == "user":
                self.end_turn("completed")
                self.turn += 1
                self.turn_open = True
                t.emit(TurnStarted(turn=self.turn, prompt=text))
                t.emit(MessageAdded(role="user", text=text, message_id=str(e.get("id") or "")))
                self.outcome = None
            else:
                if msg.get("reasoning_content"):
                    t.reasoning_part(str(msg["reasoning_content"]))
                t.message_part("assistant", text, model=self.model, message_id=str(e.get("id") or ""))
        elif kind == "ActionEvent":
            if e.get("reasoning_content"):
                t.reasoning_part(str(e["reasoning_content"]))
            action = e.get("action") if isinstance(e.get("action"), dict) else {}
            if e.get("tool_name") == "think" or action.get("kind") == "ThinkAction":
                t.reasoning_part(str(action.get("thought") or _text(e.get("thought"))))
            else:
                self.pending[str(e.get("id"))] = e
        elif kind in ("ObservationEvent", "AgentErrorEvent", "UserRejectObservation"):
            action = self.pending.pop(str(e.get("action_id")), None)
            if action is None:
                if kind == "AgentErrorEvent":
                    t.emit(ErrorOccurred(message=str(e.get("error") or "agent error"), origin="agent"))
            elif kind == "ObservationEvent":
                self.tool(action, e)
            else:
                why = str(e.get("error") or f"rejected: {e.get('rejection_reason') or ''}")
                self.tool(action, e, error=why)
        elif kind == "ConversationErrorEvent":
            message = f"{e.get('code') or 'error'}: {e.get('detail') or ''}".strip()
            t.emit(ErrorOccurred(message=message, origin="agent", error_type=str(e.get("code") or ""),
                                 fatal=True))
            self.outcome = ("failed", message)
        elif kind == "ConversationStateUpdateEvent" and e.get("key") == "execution_status":
            self.execution_status = str(e.get("value") or "")
        elif kind in ("PauseEvent", "InterruptEvent"):
            self.outcome = ("interrupted", kind)
        self.model_call(e, t.parts.parts if t.parts.parts > before else None)

    def tool(self, action: dict[str, Any], obs: dict[str, Any], error: str = "") -> None:
        t = self.t
        act = action.get("action") if isinstance(action.get("action"), dict) else {}
        tool = str(action.get("tool_name") or act.get("kind") or "tool")
        call_id = str(action.get("tool_call_id") or action.get("id") or "")
        o = obs.get("observation") if isinstance(obs.get("observation"), dict) else {}
        n = t.parts.parts + 1
        thought = _text(action.get("thought"))
        if tool == "finish" or act.get("kind") == "FinishAction":
            t.message_part("assistant", str(act.get("message") or thought), model=self.model,
                           message_id=str(action.get("id") or ""))
            self.outcome = ("completed", "")
            self.model_call(action, n)
            return
        if thought:
            t.emit(MessageAdded(role="assistant", text=thought, model=self.model,
                                message_id=str(action.get("id") or "")), n)
        output = _text(o.get("content")) if o else str(obs.get("error") or obs.get("rejection_reason") or "")
        code = o.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) and code >= 0 else None
        failed = bool(error) or o.get("is_error") is True or exit_code not in (None, 0)
        command = str(act.get("command") or "") if tool == "terminal" else ""
        path = str(act.get("path") or "")
        changes = []
        if tool == "file_editor" and path and act.get("command") in _EDITS:
            change = _EDITS[str(act["command"])]
            if o.get("prev_exist") is True and change == "add":
                change = "modify"
            changes = [(path, change)]
        detail = command or (f"{act.get('command')} {path}".strip() if path else "")
        t.tool_part(call_id=call_id, tool=tool, arguments={k: v for k, v in act.items() if k != "kind"},
                    command=command, status="error" if failed else "ok", output=output,
                    exit_code=exit_code, changes=changes,
                    error=(error or title_of(output) or f"exit code {exit_code}") if failed else "",
                    title=title_of(f"{tool}: {detail}" if detail else tool))
        self.model_call(action, t.parts.parts)

    def model_call(self, e: dict[str, Any], part: int | None) -> None:
        rid = str(e.get("llm_response_id") or "")
        if not rid or rid in self.responses or part is None:
            return
        self.responses.add(rid)
        self.t.emit(ModelCalled(model=self.model, ok=True, request_id=rid), part)
        found = self.usages.pop(rid, None)
        if found is not None:
            usage, model, cost = found
            self.t.emit(UsageReported(usage=usage, model=model or self.model, request_id=rid,
                                      cost_usd=cost), part)

    def loose_usage(self) -> None:
        for rid, (usage, model, cost) in list(self.usages.items()):
            self.t.emit(UsageReported(usage=usage, model=model or self.model, request_id=rid, cost_usd=cost))
        self.usages.clear()

    def end_turn(self, status: str) -> None:
        if self.turn_open:
            self.t.emit(TurnEnded(turn=self.turn, status=status))
            self.turn_open = False

    def finish(self) -> None:
        status_name = str(self.state.get("execution_status") or self.execution_status or "")
        outcome = _STATUS.get(status_name)
        if outcome is not None and outcome[0] != "completed" and self.outcome is not None:
            outcome = self.outcome if self.outcome[0] != "completed" else outcome
        outcome = outcome or self.outcome
        if outcome is None:
            self.end_turn("interrupted")
            self.t.end_without_marker(f"execution_status {status_name or 'unknown'} and no finish action")
            return
        self.end_turn("completed" if outcome[0] == "completed" else outcome[0])
        self.t.end(*outcome)


def _token_usages(state: dict[str, Any]) -> dict[str, tuple[Usage, str, float | None]]:
    """``response_id`` → (usage, model, cost) from ``stats.usage_to_metrics`` of a base state."""
    out: dict[str, tuple[Usage, str, float | None]] = {}
    metrics = ((state.get("stats") or {}).get("usage_to_metrics") or {}) if isinstance(state.get("stats"), dict) else {}
    for m in metrics.values() if isinstance(metrics, dict) else []:
        if not isinstance(m, dict):
            continue
        costs = {str(c.get("response_id")): c.get("cost") for c in m.get("costs") or []
                 if isinstance(c, dict) and c.get("response_id")}
        for n, u in enumerate(m.get("token_usages") or []):
            if not isinstance(u, dict):
                continue
            rid = str(u.get("response_id") or f"{m.get('model_name')}#{n}")
            read, write = token_count(u.get("cache_read_tokens")), token_count(u.get("cache_write_tokens"))
            usage = Usage(input=max(0, token_count(u.get("prompt_tokens")) - read - write),
                          output=token_count(u.get("completion_tokens")), cache_read=read, cache_write=write,
                          reasoning=token_count(u.get("reasoning_tokens")))
            cost = costs.get(rid)
            out[rid] = (usage, str(u.get("model") or m.get("model_name") or ""),
                        float(cost) if isinstance(cost, int | float) and cost else None)
    return out


register(OpenHandsV1Importer())
