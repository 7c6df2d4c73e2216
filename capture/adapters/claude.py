"""Adapter for ``claude -p --output-format stream-json --verbose`` (optionally with
``--include-partial-messages``).

Records: ``system`` (``init`` carries ``model``, ``claude_code_version``, ``session_id``,
``tools``), ``assistant``/``user`` wrapping an Anthropic ``message`` (content blocks ``text``,
``thinking``, ``redacted_thinking``, ``tool_use``, ``tool_result``), ``result`` at the end of
each prompt (``subtype``, ``is_error``, ``result``, ``num_turns``, ``usage``, ``total_cost_usd``)
and, with partial messages, ``stream_event`` wrapping the raw Anthropic SSE event.

Mapping (one content block = one part; a ``tool_use`` block is held until its ``tool_result``):

========================================  ====================================================
record                                    events
========================================  ====================================================
``system/init``                           none; ``state`` model, agent_version, session_id
``system/api_retry`` (when present)       ``model_called(failed, retry=attempt)``
first ``assistant``/``user``/stream rec.  ``turn_started`` (prompt from a replayed user text)
``assistant`` text block                  ``message_added(assistant)`` + ``part_ended(message)``
``assistant`` thinking / redacted         ``reasoning_added`` + ``part_ended(reasoning)``
``user`` tool_result for a held tool_use  ``tool_called`` + ``tool_returned`` [+ ``file_changed``
                                          for Edit/MultiEdit/Write/NotebookEdit]
                                          [+ ``tests_ran``] + ``part_ended(tool|patch|test)``
new ``message.id`` (assistant or          ``model_called(ok)``
``stream_event/message_start``)
``message.usage`` / ``message_delta``     ``usage_reported`` of what the report adds for that id
``assistant`` with model ``<synthetic>``  ``model_called(failed)`` + ``error_occurred(model)``
(an "API Error: ..." message)
``result``                                [``usage_reported`` remainder + cost, part None]
                                          [``model_called(failed)`` + ``error_occurred``]
                                          + ``turn_ended``
========================================  ====================================================

Record types (:attr:`ClaudeStreamAdapter.known`) are the records' ``type``, ``system/<subtype>``
for ``system``; a record of another type is counted as unknown (kept raw by the caller).

Usage is never double counted: every report (each per-block ``assistant`` copy, ``message_start``,
``message_delta``) goes through :class:`~agtrace.capture.usage.DedupeById` keyed by the message
id, which keeps the per-field maximum (copies streamed early carry a placeholder
``output_tokens``). The ``result`` record's ``usage`` and ``total_cost_usd`` are session
totals: only the part of them not already reported is emitted, so the run's sum equals Claude
Code's own total. A usage report is attached to the last part its record completed, else part
None. A ``result`` with ``is_error`` counts as a failed model call unless one was already
counted in that turn or its subtype is ``error_max_turns`` (a limit, kept in
``state.extra["limit"]``).
"""

from __future__ import annotations

import re
from typing import Any

from agtrace.eventlog import MessageAdded, PartEnded, ReasoningAdded, Usage, UsageReported

from ..adapter import Emit
from ..usage import (
    ANTHROPIC_COUNTERS,
    ZERO,
    DedupeById,
    increase,
    is_zero,
    unknown_counters,
    usage_from_anthropic,
)
from .base import JsonLineAdapter, record_type_pattern, title_of

KNOWN = {"*": frozenset({
    "assistant", "user", "result", "stream_event", "system/init", "system/api_retry",
    "system/compact_boundary", "system/status", "system/hook_response",
    "system/thinking_tokens"})}
# the assistant content blocks agtrace represents; a block of another type (a newer Claude Code,
# a server tool) is counted as unknown ``assistant/<type>``, its line kept raw: never silently
# skipped (shared with the claude-session importer)
ASSISTANT_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})
_EXIT = re.compile(r"[Ee]xit code:? (\d+)")
_EDIT_TOOLS = {"Edit", "MultiEdit", "NotebookEdit"}
_MAY_END_PART = record_type_pattern("assistant", "user")


def _text_of(content: Any) -> str:
    """The text of a string or of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text") or "") for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    return ""


class ClaudeStreamAdapter(JsonLineAdapter):
    """Parses Claude Code ``stream-json`` stdout."""

    name = "claude.stream_json"
    programs = ("claude",)
    """The CLI this adapter reads, asked for its version (``claude --version``) at capture."""
    known = KNOWN

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.dedupe = DedupeById()
        self.pending: dict[str, tuple[str, Any, int]] = {}
        self.stream_mid = ""
        self.cost_reported = 0.0
        self.turn_failures = 0

    def may_end_part(self, line: str, stream: str = "stdout") -> bool:
        """Whether ``line`` may end a part (a cheap over-estimate: only ``assistant`` records with
        a text or thinking block and ``user`` records with a tool result end parts): the capture
        freezes the agent the moment such a line is read, so the part's snapshot holds the tree
        as of the line, not as of when the loop got to it."""
        return stream == "stdout" and _MAY_END_PART.search(line) is not None

    def handle(self, rec: dict[str, Any]) -> list[Emit]:
        kind = rec.get("type")
        if not isinstance(kind, str):
            raise ValueError("a record without a type")
        rtype = f"system/{rec.get('subtype')}" if kind == "system" else kind
        if not self.knows(rtype):
            return self.unknown(rtype)
        if kind == "system":
            return self.system(rec)
        if kind == "result":
            return self.result(rec)
        out: list[Emit] = []
        if not self.turn_open:
            prompt = _text_of((rec.get("message") or {}).get("content")) if kind == "user" else ""
            self.turn_failures = 0
            out += self.start_turn(prompt)
        if kind == "assistant":
            out += self.assistant(rec.get("message") or {}, rec)
        elif kind == "user":
            out += self.user(rec.get("message") or {})
        else:
            out += self.stream_event(rec.get("event") or {})
        return out

    def close(self) -> list[Emit]:
        out: list[Emit] = []
        for call_id, (tool, args, called) in list(self.pending.items()):
            out += self.tool_part(call_id=call_id, tool=tool, arguments=args,
                                  command=self.command_of(tool, args), status="error",
                                  error="agent exited before the tool returned",
                                  called_ns=called)
        self.pending.clear()
        return out + super().close()

    # -- records --------------------------------------------------------------------------------

    def system(self, rec: dict[str, Any]) -> list[Emit]:
        sub = rec.get("subtype")
        if sub == "init":
            self.state.model = str(rec.get("model") or self.state.model)
            self.state.agent_version = str(rec.get("claude_code_version") or
                                           self.state.agent_version)
            self.state.session_id = str(rec.get("session_id") or self.state.session_id)
            if isinstance(rec.get("tools"), list):
                self.state.extra["tools"] = rec["tools"]
        elif sub == "api_retry":
            err = rec.get("error")
            message = str(err.get("message") if isinstance(err, dict) else err or "api retry")
            self.turn_failures += 1
            attempt = rec.get("attempt")
            return [self.model_called(False, message,
                                      retry=attempt if isinstance(attempt, int) else 0)]
        return []

    def assistant(self, msg: dict[str, Any], rec: dict[str, Any]) -> list[Emit]:
        mid = str(msg.get("id") or rec.get("uuid") or "")
        model = str(msg.get("model") or "")
        content = msg.get("content") if isinstance(msg.get("content"), list) else []
        if model == "<synthetic>" or rec.get("isApiErrorMessage") or rec.get("error"):
            message = _text_of(content) or str(rec.get("error") or "model call failed")
            self.turn_failures += 1
            return [self.model_called(False, message, request_id=mid),
                    self.error(message, origin="model", error_type=str(rec.get("error") or ""))]
        if model and not self.state.model:
            self.state.model = model
        out = self.new_message(mid, model)
        before = self.parts
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                text = str(block["text"])
                self.state.final_message = text
                n = self.next_part()
                out += [Emit(MessageAdded(role="assistant", text=text, message_id=mid,
                                          model=model or self.state.model), n),
                        Emit(PartEnded(part_kind="message", title=title_of(text)), n)]
            elif btype in ("thinking", "redacted_thinking"):
                text = str(block.get("thinking") or "")
                n = self.next_part()
                out += [Emit(ReasoningAdded(text=text, encrypted=not text), n),
                        Emit(PartEnded(part_kind="reasoning",
                                       title=title_of(text) or "(redacted thinking)"), n)]
            elif btype == "tool_use":
                self.pending[str(block.get("id") or "")] = (
                    str(block.get("name") or "tool"), block.get("input"), self.now_ns())
            elif btype not in ASSISTANT_BLOCKS:
                self.unknown(f"assistant/{btype}")
        if isinstance(msg.get("usage"), dict):
            for name in unknown_counters(msg["usage"], ANTHROPIC_COUNTERS):
                self.unknown(f"usage.{name}")
            attach = self.parts if self.parts > before else None
            out += self.usage(mid, usage_from_anthropic(msg["usage"]), model, attach)
        return out

    def user(self, msg: dict[str, Any]) -> list[Emit]:
        out: list[Emit] = []
        content = msg.get("content") if isinstance(msg.get("content"), list) else []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            call_id = str(block.get("tool_use_id") or "")
            tool, args, called = self.pending.pop(call_id, ("unknown", None, None))
            output = _text_of(block.get("content"))
            failed = bool(block.get("is_error"))
            command = self.command_of(tool, args)
            exit_code = None
            if tool == "Bash":
                found = _EXIT.search(output) if failed else None
                exit_code = int(found.group(1)) if found else (None if failed else 0)
            detail = command or self.detail_of(args)
            out += self.tool_part(
                call_id=call_id, tool=tool, arguments=args, command=command,
                status="error" if failed else "ok", output=output, exit_code=exit_code,
                error=title_of(output) if failed else "", called_ns=called,
                changes=self.changes_of(tool, args, output),
                title=title_of(f"{tool}: {detail}" if detail else tool))
        return out

    def stream_event(self, ev: dict[str, Any]) -> list[Emit]:
        etype = ev.get("type")
        if etype == "message_start":
            msg = ev.get("message") or {}
            self.stream_mid = str(msg.get("id") or "")
            out = self.new_message(self.stream_mid, str(msg.get("model") or ""))
            if isinstance(msg.get("usage"), dict):
                out += self.usage(self.stream_mid, usage_from_anthropic(msg["usage"]),
                                  str(msg.get("model") or ""), None)
            return out
        if etype == "message_delta" and isinstance(ev.get("usage"), dict) and self.stream_mid:
            return self.usage(self.stream_mid, usage_from_anthropic(ev["usage"]), "", None)
        return []

    def result(self, rec: dict[str, Any]) -> list[Emit]:
        out: list[Emit] = []
        self.state.session_id = str(rec.get("session_id") or self.state.session_id)
        for key in ("num_turns", "duration_ms", "subtype"):
            if key in rec:
                self.state.extra[key] = rec[key]
        total = usage_from_anthropic(rec["usage"]) if isinstance(rec.get("usage"), dict) else ZERO
        remainder = increase(total, self.dedupe.total())
        cost = rec.get("total_cost_usd")
        cost_delta = None
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > self.cost_reported:
            cost_delta = float(cost) - self.cost_reported
            self.cost_reported = float(cost)
        if not is_zero(remainder) or cost_delta:
            self.dedupe.feed(f"result:{self.turn}", remainder)
            out.append(Emit(UsageReported(usage=remainder, model=self.state.model,
                                          cost_usd=cost_delta, cumulative=total)))
        subtype = str(rec.get("subtype") or "")
        if not rec.get("is_error") and not subtype.startswith("error"):
            if isinstance(rec.get("result"), str):
                self.state.final_message = rec["result"]
            return out + self.end_turn("completed")
        errors = rec.get("errors") if isinstance(rec.get("errors"), list) else []
        message = str(rec.get("result") or "; ".join(map(str, errors)) or subtype or "failed")
        if subtype == "error_max_turns":
            self.state.extra["limit"] = "max_turns"
            out.append(self.error(message, origin="agent", error_type=subtype))
        else:
            if not self.turn_failures:
                out.append(self.model_called(False, message))
            out.append(self.error(message, origin="model", error_type=subtype))
        return out + self.end_turn("failed", message)

    # -- helpers --------------------------------------------------------------------------------

    def new_message(self, mid: str, model: str) -> list[Emit]:
        """``model_called(ok)`` the first time a message id is seen."""
        if not mid or mid in self.dedupe:
            return []
        self.dedupe.feed(mid, ZERO)
        return [self.model_called(True, request_id=mid, model=model)]

    def usage(self, mid: str, usage: Usage, model: str, part: int | None) -> list[Emit]:
        delta = self.dedupe.feed(mid, usage)
        if delta is None:
            return []
        return [Emit(UsageReported(usage=delta, model=model or self.state.model, request_id=mid),
                     part)]

    @staticmethod
    def command_of(tool: str, args: Any) -> str:
        if isinstance(args, dict) and isinstance(args.get("command"), str):
            return args["command"]
        return ""

    @staticmethod
    def detail_of(args: Any) -> str:
        """What a non-shell call is about, for its part title (path, pattern, url, ...)."""
        if not isinstance(args, dict):
            return ""
        for key in ("file_path", "notebook_path", "path", "pattern", "url", "query",
                    "description"):
            if isinstance(args.get(key), str) and args[key]:
                return args[key]
        return ""

    @staticmethod
    def changes_of(tool: str, args: Any, output: str) -> list[tuple[str, str]]:
        if not isinstance(args, dict):
            return []
        path = str(args.get("file_path") or args.get("notebook_path") or "")
        if not path:
            return []
        if tool in _EDIT_TOOLS:
            return [(path, "modify")]
        if tool == "Write":
            return [(path, "add" if "created" in output.lower() else "modify")]
        return []
