"""Importer of Codex rollout files (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``).

One file = one session = one run. Every line is ``{timestamp, type, payload}``; what becomes what:

=====================================  ==========================================================
line                                   events
=====================================  ==========================================================
``session_meta``                       ``run_started``: ``agent_version`` = ``source_version`` =
                                       ``cli_version``,
                                       ``workdir`` = ``cwd``, ``repo``/``base_commit`` from
                                       ``git{repository_url, commit_hash}``, branch, originator,
                                       source, provider and fork parent in ``config``/``tags``
``turn_context``                       the model in force (``run_started.model`` = the first)
``event_msg/task_started``             ``turn_started`` (prompt = the turn's user message)
``response_item/message`` user         ``message_added(user)``, no part; the prompt of the turn.
                                       Context the CLI injects as user messages
                                       (``<environment_context>``, ``<user_instructions>``,
                                       AGENTS.md) is ``message_added(system)``, not a prompt
``response_item/message`` developer    ``message_added(system)``, no part
``response_item/message`` assistant    ``message_added(assistant)`` + ``part_ended(message)``
``response_item/reasoning``            ``reasoning_added`` (summary text; ``encrypted`` when only
                                       ``encrypted_content``) + ``part_ended(reasoning)``
``function_call`` (+ its ``_output``)  one tool part, held until the output with the same
``local_shell_call``                   ``call_id`` (``exec_command``/``shell``: ``command``, exit
                                       code parsed from the output) [+ ``tests_ran``]
``custom_tool_call`` apply_patch       one ``patch`` part: ``file_changed(origin=agent)`` for each
(+ ``custom_tool_call_output``)        ``*** Add/Update/Delete File:`` of the patch input
``web_search_call``                    one tool part
``event_msg/token_count``              ``model_called(ok)`` + ``usage_reported`` delta of
                                       ``info.total_token_usage`` (cumulative; consecutive
                                       duplicate snapshots dropped, see ``CumulativeCounter``),
                                       on the last part completed since the previous report
``token_usage_record`` (0.169)         when the file has them, they replace ``token_count``:
                                       one per model response, ``model_called(ok,
                                       request_id=response_id)`` + ``usage_reported`` of its
                                       ``usage`` (per response, not cumulative)
``compacted`` / ``compaction`` item    ``message_added(system)`` marking the compaction
``event_msg/task_complete``            ``turn_ended(completed)``
``event_msg/turn_aborted``             ``turn_ended(interrupted)``
``event_msg/error``                    ``error_occurred``
=====================================  ==========================================================

``event_msg`` copies of items (``agent_message``, ``agent_reasoning``, ``user_message``,
0.169's ``item_completed``), ``world_state`` and ``thread_settings_applied`` are kept raw only:
the ``response_item`` is the record of the item.

Record types are ``<type>`` for a line, ``response_item/<payload type>`` and
``event_msg/<payload type>`` for those two (:data:`KNOWN`, per Codex version); a line of another
type is kept raw and counted as unknown (a newer Codex wrote it), never a bad record; so is a
counter of a usage object that ``usage_from_openai`` does not read (``usage.<name>``).

Status: the session ended ``completed`` when its last turn completed, ``interrupted`` when it
was aborted; a turn with no end (the process died) ends the run ``crashed`` once the file is
stale. Rollouts of Codex versions without ``task_started``/``task_complete`` (0.66): a real
user message starts a turn, and the turn (and the run) is ``completed`` when its last item is
an assistant message with no tool call left open; otherwise ``crashed`` once stale.
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
    UsageReported,
)

from ..adapter import known_types
from ..adapters.base import paths_from_patch, title_of
from ..usage import OPENAI_COUNTERS, CumulativeCounter, unknown_counters, usage_from_openai
from . import register
from .base import ImportContext, sniff_json_lines
from .transcript import (
    Transcript,
    file_sha256,
    json_lines,
    parse_ts,
    require_records,
    source_key,
)

FORMAT = "codex-rollout"
_BASE = frozenset({
    "session_meta", "response_item", "event_msg", "turn_context", "compacted", "world_state",
    *(f"response_item/{t}" for t in (
        "message", "reasoning", "function_call", "function_call_output", "custom_tool_call",
        "custom_tool_call_output", "local_shell_call", "web_search_call", "compaction",
        "compaction_summary", "ghost_snapshot", "image_generation_call")),
    *(f"event_msg/{t}" for t in (
        "task_started", "task_complete", "turn_aborted", "token_count", "user_message",
        "agent_message", "agent_reasoning", "agent_reasoning_raw_content", "error",
        "stream_error", "thread_rolled_back", "context_compacted", "patch_apply_end",
        "exec_command_end", "mcp_tool_call_end", "web_search_end", "turn_diff",
        "entered_review_mode", "exited_review_mode")),
})
KNOWN = {
    "*": _BASE,
    "0.169": _BASE | {"token_usage_record", "event_msg/item_completed",
                      "event_msg/thread_settings_applied"},
}
_TYPED = ("response_item", "event_msg")  # line types whose payload type is part of the record type
_LINE_TYPES = frozenset(t.split("/")[0] for known in KNOWN.values() for t in known)
"""The line types of every known record type: their payload must be an object."""
_CONTEXT = ("<environment_context>", "<user_instructions>", "# AGENTS.md instructions",
            "<permissions instructions>", "<collaboration_mode>")
_EXIT = re.compile(r"(?:Process exited with code|Exit code:?)\s*(-?\d+)")


def record_type(rec: dict[str, Any]) -> str | None:
    """The record type of a rollout line (see the module docstring); None when malformed: no
    type, or a line type this importer reads whose payload is not an object. A line of an
    unknown type is its type whatever its payload (a newer Codex may write a string, a list
    or nothing there): it is counted as unknown, never a bad record."""
    kind, payload = rec.get("type"), rec.get("payload")
    if not isinstance(kind, str):
        return None
    if not isinstance(payload, dict):
        return None if kind in _LINE_TYPES else kind
    if kind in _TYPED and isinstance(payload.get("type"), str):
        return f"{kind}/{payload['type']}"
    return kind


def is_context(text: str) -> bool:
    """A user-role message the CLI injected (environment, instructions), not the user's."""
    return text.lstrip().startswith(_CONTEXT)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _command(name: str, args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    cmd = args.get("cmd") if name == "exec_command" else args.get("command")
    if isinstance(cmd, list):
        return " ".join(str(c) for c in cmd)
    return cmd if isinstance(cmd, str) else ""


def _output(raw: Any) -> tuple[str, int | None]:
    """``(output text, exit code)`` of a ``*_call_output.output`` in any of its shapes."""
    if isinstance(raw, dict):  # {content, success}
        text = str(raw.get("content") or "")
        return text, None if raw.get("success") is None else (0 if raw["success"] else 1)
    text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "output" in doc:  # older shell: {output, metadata{exit_code}}
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        code = meta.get("exit_code")
        return str(doc.get("output") or ""), code if isinstance(code, int) else None
    found = _EXIT.search(text)
    return text, int(found.group(1)) if found else None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(c.get("text") or "") for c in content or []
                     if isinstance(c, dict) and c.get("type") in ("input_text", "output_text",
                                                                  "text"))


class CodexRolloutImporter:
    """``--format codex-rollout``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        def decide(rec: dict[str, Any]) -> bool | None:
            return "payload" in rec and record_type(rec) in _BASE or None

        return sniff_json_lines(path, decide, max_records=20)

    def read(self, path: Path, ctx: ImportContext) -> None:
        meta: dict[str, Any] = {}
        model, prompt, first_ts, records, bad = "", "", None, 0, 0
        markers = usage_records = False
        for _, _, rec, err in json_lines(path):
            kind = None if err else record_type(rec)
            if kind is None:
                bad += 1
                continue
            records += 1
            first_ts = first_ts or parse_ts(rec.get("timestamp"))
            payload = rec.get("payload")
            if kind == "session_meta" and not meta:
                meta = payload
            elif kind == "turn_context" and not model:
                model = str(payload.get("model") or "")
            elif kind == "response_item/message" and payload.get("role") == "user" and not prompt:
                text = _message_text(payload.get("content"))
                prompt = "" if is_context(text) else text
            markers = markers or kind == "event_msg/task_started"
            usage_records = usage_records or kind == "token_usage_record"
        require_records(path, FORMAT, records, bad)
        version = str(meta.get("cli_version") or "")
        types = known_types(KNOWN, version)
        started_ts = parse_ts(meta.get("timestamp")) or first_ts or 0
        git = meta.get("git") if isinstance(meta.get("git"), dict) else {}
        tags = {k: str(v) for k, v in (("session_id", meta.get("id")),
                                       ("forked_from", meta.get("forked_from_id")),
                                       ("branch", git.get("branch"))) if v}
        config = {k: meta[k] for k in ("originator", "source", "model_provider", "agent_role",
                                       "agent_nickname") if meta.get(k)}
        started = RunStarted(
            agent="codex", agent_version=version, model=model,
            prompt=prompt, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            repo=str(git.get("repository_url") or ""), base_commit=str(git.get("commit_hash") or ""),
            workdir=str(meta.get("cwd") or ""), config=config, tags=tags, source=f"import:{FORMAT}",
            source_version=version)
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), str(meta.get("id") or "")),
                           started, started_ts)
        if sink is not None:
            t = Transcript(sink, FORMAT, started_ts, types=types)
            _Rollout(t, model, markers, usage_records and "token_usage_record" in types).write(path)


class _Rollout:
    def __init__(self, t: Transcript, model: str, markers: bool, usage_records: bool):
        self.t = t
        self.model = model
        self.markers = markers  # the file has task_started/task_complete (not 0.66)
        self.usage_records = usage_records  # usage from token_usage_record, not token_count
        self.last_item = ""  # kind of the last response item, for rollouts without markers
        self.usage = CumulativeCounter()
        self.pending: dict[str, tuple[str, Any, int, dict]] = {}  # call_id -> name, args, ts, item
        self.turn = 0
        self.turn_open = False
        self.turn_status = ""
        self.pending_turn: int | None = None  # turn_started waiting for its user_message
        self.reported_part = 0

    def write(self, path: Path) -> None:
        t = self.t
        for n, text, rec, err in json_lines(path):
            t.raw(text, f"{path.name}:{n}", err)
            if err:
                continue
            kind = record_type(rec)
            if kind is None:
                t.bad(f"not a rollout line (type {rec.get('type')!r}, payload "
                      f"{type(rec.get('payload')).__name__})")
                continue
            if not t.knows(kind):
                continue
            t.at_time(rec.get("timestamp"))
            try:
                self.line(rec["type"], rec["payload"])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"{kind}: {type(exc).__name__}: {exc}")
        self.finish()

    # -- lines

    def line(self, kind: str, p: dict[str, Any]) -> None:
        t = self.t
        if kind == "turn_context":
            self.model = str(p.get("model") or self.model)
        elif kind == "compacted":
            t.emit(MessageAdded(role="system", text=f"[context compacted] {p.get('message') or ''}".strip(),
                                message_id="compacted"))
        elif kind == "event_msg":
            self.event_msg(str(p.get("type")), p)
        elif kind == "response_item":
            self.item(str(p.get("type")), p)
        elif kind == "token_usage_record" and self.usage_records:
            self.usage_record(p)

    def event_msg(self, kind: str, p: dict[str, Any]) -> None:
        t = self.t
        if kind == "task_started":
            self.close_turn("interrupted", "a new turn started before this one completed")
            self.turn += 1
            self.turn_open = True
            self.pending_turn = self.turn
        elif kind == "task_complete":
            self.flush_turn("")
            self.close_turn("completed")
        elif kind == "turn_aborted":
            self.flush_turn("")
            self.close_turn("interrupted", f"turn aborted: {p.get('reason') or 'by the user'}")
        elif kind == "token_count" and not self.usage_records:
            self.token_count(p.get("info"))
        elif kind in ("error", "stream_error"):
            message = str(p.get("message") or kind)
            t.emit(ModelCalled(model=self.model, ok=False, error=message))
            t.emit(ErrorOccurred(message=message, origin="model", error_type=kind))
        elif kind == "thread_rolled_back":
            t.emit(MessageAdded(role="system", text=f"[thread rolled back] {json.dumps(p)}",
                                message_id="rolled_back"))

    def flush_turn(self, prompt: str) -> None:
        if self.pending_turn is not None:
            self.t.emit(TurnStarted(turn=self.pending_turn, prompt=prompt))
            self.pending_turn = None

    def close_turn(self, status: str, error: str = "") -> None:
        if self.turn_open:
            self.flush_turn("")
            self.t.emit(TurnEnded(turn=self.turn, status=status, error=error))
            self.turn_open = False
            self.turn_status = status

    def user_message(self, text: str, message_id: str) -> None:
        """A real user message: the prompt of the pending turn, or (without turn markers) the
        start of a new turn."""
        if not self.markers:
            self.close_turn("completed" if self.last_item == "answer" else "interrupted",
                             "" if self.last_item == "answer" else "a new prompt came before "
                             "the turn's answer")
            self.turn += 1
            self.turn_open = True
            self.pending_turn = self.turn
            self.last_item = ""
        self.flush_turn(text)
        self.t.emit(MessageAdded(role="user", text=text, message_id=message_id))

    def item(self, kind: str, p: dict[str, Any]) -> None:
        t = self.t
        if kind == "message":
            role = str(p.get("role") or "")
            text = _message_text(p.get("content"))
            mid = str(p.get("id") or "")
            if role == "user" and not is_context(text):
                self.user_message(text, mid)
                return
            if role != "assistant":  # developer instructions, injected context
                t.emit(MessageAdded(role="system", text=text, message_id=mid))
                return
            self.flush_turn("")
            t.message_part("assistant", text, model=self.model, message_id=mid)
            self.last_item = "answer" if not self.pending else "assistant"
            return
        if kind == "ghost_snapshot":
            return  # Codex's own undo commit in the user's repository; kept raw only
        self.flush_turn("")
        if kind != "compaction" and kind != "compaction_summary":
            self.last_item = kind
        if kind == "reasoning":
            summary = "\n".join(str(s.get("text") or "") for s in p.get("summary") or []
                                if isinstance(s, dict))
            content = _message_text(p.get("content")) if p.get("content") else ""
            text = summary or content
            t.reasoning_part(text, encrypted=not text and bool(p.get("encrypted_content")))
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            call_id = str(p.get("call_id") or p.get("id") or "")
            if kind == "function_call":
                name, args = str(p.get("name") or "tool"), _arguments(p.get("arguments"))
            elif kind == "custom_tool_call":
                name, args = str(p.get("name") or "tool"), p.get("input")
            else:
                name, args = "local_shell", p.get("action")
            self.pending[call_id] = (name, args, t.ts, p)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = str(p.get("call_id") or "")
            if call_id not in self.pending:
                t.bad(f"{kind} for unknown call_id {call_id!r}")
                return
            self.tool(call_id, *_output(p.get("output")))
        elif kind == "web_search_call":
            action = p.get("action") if isinstance(p.get("action"), dict) else {}
            ok = p.get("status") in (None, "completed")
            query = str(action.get("query") or "")
            t.tool_part(call_id=str(p.get("id") or ""), tool="web_search", arguments=action or None,
                        status="ok" if ok else "error", error="" if ok else str(p.get("status")),
                        title=title_of(f"web_search: {query}" if query else "web_search"))
        elif kind in ("compaction", "compaction_summary"):
            t.emit(MessageAdded(role="system", text="[context compacted]", message_id="compacted"))

    def tool(self, call_id: str, output: str, exit_code: int | None, *, error: str = "") -> None:
        name, args, called_ts, item = self.pending.pop(call_id)
        command = _command(name, args)
        if name == "local_shell" and isinstance(args, dict):
            command = " ".join(map(str, args.get("command") or []))
        failed = bool(error) or (exit_code not in (None, 0)) or item.get("status") in ("failed", "incomplete")
        changes = paths_from_patch(args) if name == "apply_patch" and isinstance(args, str) else []
        why = error or (f"exit code {exit_code}" if exit_code not in (None, 0) else str(item.get("status") or ""))
        detail = command or (", ".join(p.rsplit("/", 1)[-1] for p, _ in changes) if changes else "")
        self.t.tool_part(call_id=call_id, tool=name, arguments=args, command=command,
                         status="error" if failed else "ok", output=output, exit_code=exit_code,
                         error=why if failed else "", changes=changes, called_ns=called_ts,
                         title=title_of(f"{name}: {detail}" if detail else name))

    def token_count(self, info: Any) -> None:
        if not isinstance(info, dict) or not isinstance(info.get("total_token_usage"), dict):
            return  # rate-limit only snapshots carry no usage
        self.unknown_counters(info["total_token_usage"])
        total = usage_from_openai(info["total_token_usage"])
        delta = self.usage.feed(total)
        if delta is None:
            return  # a repeated snapshot: nothing new was spent
        parts = self.t.parts.parts
        part = parts if parts > self.reported_part else None
        self.reported_part = parts
        self.t.emit(ModelCalled(model=self.model, ok=True), part)
        self.t.emit(UsageReported(usage=delta, model=self.model, cumulative=total), part)

    def usage_record(self, p: dict[str, Any]) -> None:
        """One model response's usage (0.169 ``token_usage_record``), not cumulative."""
        if not isinstance(p.get("usage"), dict):
            return
        self.unknown_counters(p["usage"])
        parts = self.t.parts.parts
        part = parts if parts > self.reported_part else None
        self.reported_part = parts
        rid = str(p.get("response_id") or "")
        self.t.emit(ModelCalled(model=self.model, ok=True, request_id=rid), part)
        self.t.emit(UsageReported(usage=usage_from_openai(p["usage"]), model=self.model,
                                  request_id=rid), part)

    def unknown_counters(self, usage: dict[str, Any]) -> None:
        """Count the usage counters no ``Usage`` field holds as unknown ``usage.<name>``."""
        for name in unknown_counters(usage, OPENAI_COUNTERS):
            self.t.sink.unknown(self.t.location, f"usage.{name}")

    def finish(self) -> None:
        open_calls = bool(self.pending)
        for call_id in list(self.pending):
            self.tool(call_id, "", None, error="the transcript ends before the tool returned")
        t = self.t
        if not self.markers and self.turn_open and self.last_item == "answer" and not open_calls:
            self.close_turn("completed")  # no task_complete in this version: the answer ends it
        if self.turn_open:
            self.flush_turn("")
            t.emit(TurnEnded(turn=self.turn, status="interrupted",
                             error="the transcript ends inside the turn"))
            t.end_without_marker(f"turn {self.turn} has no task_complete or turn_aborted" if
                                 self.markers else f"turn {self.turn} ends without an answer")
        elif self.turn_status == "completed":
            t.end("completed")
        elif self.turn_status == "interrupted":
            t.end("interrupted", f"turn {self.turn} was aborted")
        else:
            t.end_without_marker("no turn was started")


register(CodexRolloutImporter())
