"""Importer of Claude Code session transcripts (``~/.claude/projects/<dir>/<session>.jsonl``).

One file = one run. Records are ``user``/``assistant`` messages linked by ``uuid`` →
``parentUuid`` into a tree: ``/rewind`` starts a sibling branch from an earlier message and the
old branch stays in the file. Branches are KEPT, not flattened:

* every ``message_added`` carries ``message_id`` = the record's ``uuid``, ``parent_id`` = its
  ``parentUuid`` (``logicalParentUuid`` for a ``compact_boundary``, whose ``parentUuid`` is null),
  and ``branch`` = the uuid of the first record of its branch: a record continues its parent's
  branch unless the parent already had a child, in which case it starts a new branch named by
  its own uuid. A record without any parent (hand-written logs, old versions) continues the
  record before it in the file;
* parts are numbered in file order across branches.

What becomes what:

=======================================  ======================================================
record                                   events
=======================================  ======================================================
``user`` with text (a prompt)            ``turn_started`` (ends the previous turn) +
                                         ``message_added(user)``, no part
``user`` ``isCompactSummary``            ``message_added(user)`` (the summary), no new turn
``user`` local command (``/exit``,        ``message_added(user)``, no turn: a command the user ran
``!cmd``: ``<command-name>``,             in the CLI is not a prompt the model must answer
``<local-command-stdout>``, …)
``assistant`` text block                 ``message_added(assistant)`` + ``part_ended(message)``
``assistant`` thinking / redacted        ``reasoning_added`` + ``part_ended(reasoning)``
``assistant`` tool_use + the             one tool part (``Edit``/``MultiEdit``/``Write``/
``user`` tool_result with its id         ``NotebookEdit`` → ``file_changed``; ``Bash`` test
                                         commands → ``tests_ran``)
new ``message.id``                       ``model_called(ok)``
``message.usage``                        ``usage_reported``: what the record adds for its
                                         ``message.id`` (``DedupeById``; one line per content
                                         block repeats the usage), on the part it completed,
                                         or on the tool part of the call it asked for
``assistant`` ``<synthetic>`` / API       ``model_called(failed)`` + ``error_occurred(model)``
error, ``system/api_error``
``system/compact_boundary``              ``message_added(system)`` "[compacted …]"
``summary``, ``file-history-snapshot``,  raw only
bookkeeping records
=======================================  ======================================================

Record types are the records' ``type`` (:data:`KNOWN`); a record of another type is kept raw and
counted as unknown (a newer Claude Code wrote it). Print-mode sessions (``claude -p``) begin
with bookkeeping records (``queue-operation``; from 2.1.337 ``api-request-route``, which names the
provider and the kind of credential, never its value): detection reads past them to the first
message.
Sub-agent transcripts (``agent-<id>.jsonl``, ``isSidechain``) import as runs of their own,
tagged ``agent_id`` and ``sidechain``.

Status: there is no end record. The session is ``completed`` when its last message is an
assistant reply that ended its turn (``stop_reason`` ``end_turn``/``stop_sequence``, or no stop
reason and no tool call in it) with no tool call left open; ``interrupted`` when the user
interrupted the last request, or left with ``/exit`` before the reply; otherwise (an unanswered
prompt, a tool call without result) ``crashed`` once the file is stale. Local commands after the
last reply (``/exit``, ``/cost``, …) do not change that.
"""

from __future__ import annotations

import hashlib
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
from ..adapters.base import title_of
from ..adapters.claude import _EXIT, ASSISTANT_BLOCKS, ClaudeStreamAdapter
from ..usage import ANTHROPIC_COUNTERS, DedupeById, unknown_counters, usage_from_anthropic
from . import register
from .base import ImportContext, sniff_json_lines
from .transcript import (
    Transcript,
    file_sha256,
    json_lines,
    parse_ts,
    require_records,
    source_key,
    text_of,
)

FORMAT = "claude-session"
_MESSAGES = {"user", "assistant"}
KNOWN = {"*": frozenset(_MESSAGES | {
    "system", "summary", "file-history-snapshot", "file-history-delta", "progress",
    "attachment", "mode", "permission-mode", "queue-operation", "last-prompt", "worktree-state",
    "pr-link", "ai-title", "custom-title", "tools-used", "cost-state", "atis-latch",
    "api-request", "api-request-shape", "api-request-blob", "api-request-route"})}
_DONE = {"end_turn", "stop_sequence"}
_INTERRUPTED = "[Request interrupted by user"
_LOCAL_COMMAND = ("<command-name>", "<command-message>", "<local-command-stdout>",
                  "<local-command-stderr>", "<local-command-caveat>", "<bash-input>",
                  "<bash-stdout>", "<bash-stderr>")
_EXIT_COMMAND = ("<command-name>/exit</command-name>", "<command-name>/quit</command-name>")


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(b.get("text") or "") for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    return text_of(content)


class ClaudeSessionImporter:
    """``--format claude-session``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        def decide(rec: dict[str, Any]) -> bool | None:
            if rec.get("type") in _MESSAGES and "uuid" in rec and "message" in rec:
                return True
            if isinstance(rec.get("type"), str) and ("sessionId" in rec or rec["type"] in (
                    "summary", "file-history-snapshot")):
                return None  # bookkeeping (queue-operation, …): read on to the first message
            return False

        return sniff_json_lines(path, decide)

    def read(self, path: Path, ctx: ImportContext) -> None:
        session = version = cwd = model = prompt = branch = agent_id = ""
        first_ts, records, bad, sidechain = None, 0, 0, False
        for _, _, rec, err in json_lines(path):
            if err or not isinstance(rec.get("type"), str):
                bad += 1
                continue
            records += 1
            first_ts = first_ts or parse_ts(rec.get("timestamp"))
            session = session or str(rec.get("sessionId") or "")
            version = version or str(rec.get("version") or "")
            cwd = cwd or str(rec.get("cwd") or "")
            branch = branch or str(rec.get("gitBranch") or "")
            agent_id = agent_id or str(rec.get("agentId") or "")
            sidechain = sidechain or rec.get("isSidechain") is True
            msg = rec.get("message") if isinstance(rec.get("message"), dict) else {}
            if rec["type"] == "assistant" and not model and msg.get("model") != "<synthetic>":
                model = str(msg.get("model") or "")
            if rec["type"] == "user" and not prompt and not rec.get("isMeta"):
                text = "\n".join(str(b.get("text") or "") for b in _blocks(msg.get("content"))
                                  if isinstance(b, dict) and b.get("type") == "text")
                prompt = "" if is_local_command(text) else text
        require_records(path, FORMAT, records, bad)
        tags = {k: v for k, v in (("session_id", session), ("git_branch", branch),
                                  ("agent_id", agent_id),
                                  ("sidechain", "true" if sidechain else "")) if v}
        started = RunStarted(
            agent="claude-code", agent_version=version, model=model, prompt=prompt,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            workdir=cwd, tags=tags, source=f"import:{FORMAT}", source_version=version)
        started_ts = first_ts or 0
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), session), started, started_ts)
        if sink is not None:
            t = Transcript(sink, FORMAT, started_ts, types=known_types(KNOWN, version))
            _Session(t).write(path)


def is_local_command(text: str) -> bool:
    """A user record of a command run in the CLI (``/exit``, ``!ls``), not a prompt."""
    return text.lstrip().startswith(_LOCAL_COMMAND)


class _Session:
    def __init__(self, t: Transcript):
        self.t = t
        self.dedupe = DedupeById()
        self.pending: dict[str, tuple[str, Any, int]] = {}
        self.held: dict[str, list[UsageReported]] = {}  # call id -> usage of the asking message
        self.children: dict[str, int] = {}
        self.branch_of: dict[str, str] = {}
        self.prev_uuid = ""
        self.turn = 0
        self.turn_open = False
        self.model = ""
        self.last: tuple[str, str] = ("", "")  # (kind of the last message, detail)
        self.exited = False  # the user left with /exit after the last message

    def write(self, path: Path) -> None:
        t = self.t
        for n, text, rec, err in json_lines(path):
            t.raw(text, f"{path.name}:{n}", err)
            if err:
                continue
            kind = rec.get("type")
            if not isinstance(kind, str):
                t.bad("not a Claude Code session record (no type)")
                continue
            if not t.knows(kind):
                continue
            t.at_time(rec.get("timestamp"))
            if kind in _MESSAGES:
                msg = rec.get("message")
                if not isinstance(msg, dict):
                    t.bad(f"{kind} record without a message object")
                    continue
                if "content" not in msg:
                    t.bad(f"{kind} message has no content")
                    continue
                self.message(kind, rec, msg)
            elif kind == "system":
                self.system(rec)
        self.finish()

    # -- the tree

    def place(self, rec: dict[str, Any]) -> tuple[str, str, str]:
        """``(uuid, parent_id, branch)`` of a record (see the module docstring)."""
        uid = str(rec.get("uuid") or "")
        parent = str(rec.get("parentUuid") or rec.get("logicalParentUuid") or "")
        anchor = parent or self.prev_uuid
        if not anchor:
            branch = uid or "main"
        elif self.children.get(anchor, 0) and parent:
            branch = uid  # a sibling of an earlier child: a rewind started a new branch
        else:
            branch = self.branch_of.get(anchor, anchor)
        if anchor:
            self.children[anchor] = self.children.get(anchor, 0) + 1
        if uid:
            self.branch_of[uid] = branch
            self.prev_uuid = uid
        return uid, parent, branch

    # -- records

    def message(self, kind: str, rec: dict[str, Any], msg: dict[str, Any]) -> None:
        uid, parent, branch = self.place(rec)
        if kind == "assistant":
            self.assistant(rec, msg, uid, parent, branch)
        else:
            self.user(rec, msg, uid, parent, branch)

    def user(self, rec: dict, msg: dict, uid: str, parent: str, branch: str) -> None:
        t = self.t
        texts: list[str] = []
        for i, block in enumerate(_blocks(msg.get("content"))):
            if not isinstance(block, dict):
                t.bad(f"content block {i} is not an object")
                continue
            if block.get("type") == "tool_result":
                self.tool_result(block)
            elif block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
        if not texts:
            return
        text = "\n".join(texts)
        if is_local_command(text):
            t.emit(MessageAdded(role="user", text=text, message_id=uid, branch=branch,
                                parent_id=parent))
            self.exited = self.exited or text.lstrip().startswith(_EXIT_COMMAND)
            return
        self.exited = False
        if not rec.get("isMeta") and not rec.get("isCompactSummary"):
            self.end_turn("completed" if self.last[0] == "done" else "interrupted")
            self.turn += 1
            self.turn_open = True
            t.emit(TurnStarted(turn=self.turn, prompt=text))
        t.emit(MessageAdded(role="user", text=text, message_id=uid, branch=branch,
                            parent_id=parent))
        if not rec.get("isMeta") and not rec.get("isCompactSummary"):
            self.last = ("interrupted" if text.startswith(_INTERRUPTED) else "prompt", text)

    def assistant(self, rec: dict, msg: dict, uid: str, parent: str, branch: str) -> None:
        t = self.t
        mid = str(msg.get("id") or rec.get("requestId") or uid)
        model = str(msg.get("model") or "")
        blocks = _blocks(msg.get("content"))
        if model == "<synthetic>" or rec.get("isApiErrorMessage"):
            message = "\n".join(str(b.get("text") or "") for b in blocks if isinstance(b, dict))
            t.emit(ModelCalled(model=self.model, ok=False, error=message or "API error",
                               request_id=mid))
            t.emit(ErrorOccurred(message=message or "API error", origin="model",
                                 error_type=str(rec.get("error") or "api_error")))
            self.last = ("error", message)
            return
        self.model = model or self.model
        if mid not in self.dedupe:
            self.dedupe.feed(mid, usage_from_anthropic({}))
            t.emit(ModelCalled(model=self.model, ok=True, request_id=mid))
        before = t.parts.parts
        calls: list[str] = []
        for i, block in enumerate(blocks):
            if not isinstance(block, dict):
                t.bad(f"content block {i} is not an object")
                continue
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                t.message_part("assistant", str(block["text"]), message_id=uid, model=self.model,
                               branch=branch, parent_id=parent)
            elif btype in ("thinking", "redacted_thinking"):
                t.reasoning_part(str(block.get("thinking") or ""))
            elif btype == "tool_use":
                calls.append(str(block.get("id") or ""))
                self.pending[calls[-1]] = (
                    str(block.get("name") or "tool"), block.get("input"), t.ts)
            elif btype not in ASSISTANT_BLOCKS:
                t.sink.unknown(t.location, f"assistant/{btype}")
        if isinstance(msg.get("usage"), dict):
            for name in unknown_counters(msg["usage"], ANTHROPIC_COUNTERS):
                t.sink.unknown(t.location, f"usage.{name}")
            delta = self.dedupe.feed(mid, usage_from_anthropic(msg["usage"]))
            if delta is not None:
                usage = UsageReported(usage=delta, model=self.model, request_id=mid)
                if t.parts.parts > before:
                    t.emit(usage, t.parts.parts)
                elif calls:  # counted on the part of the tool call it asked for
                    self.held.setdefault(calls[0], []).append(usage)
                else:
                    t.emit(usage)
        stop = msg.get("stop_reason")
        ended = stop in _DONE or (stop is None and not calls)
        self.last = ("done" if ended and not self.pending else "assistant", str(stop))

    def tool_result(self, block: dict[str, Any]) -> None:
        call_id = str(block.get("tool_use_id") or "")
        if call_id not in self.pending:
            self.t.bad(f"tool_result for unknown tool_use id {call_id!r}")
            return
        tool, args, called = self.pending.pop(call_id)
        output = _result_text(block.get("content"))
        self.tool(call_id, tool, args, called, output, bool(block.get("is_error")))
        self.last = ("tool_result", call_id)

    def tool(self, call_id: str, tool: str, args: Any, called: int, output: str, failed: bool,
             error: str = "") -> None:
        command = ClaudeStreamAdapter.command_of(tool, args)
        exit_code = None
        if tool == "Bash" and not error:
            found = _EXIT.search(output) if failed else None
            exit_code = int(found.group(1)) if found else (None if failed else 0)
        detail = command or ClaudeStreamAdapter.detail_of(args)
        self.t.tool_part(
            call_id=call_id, tool=tool, arguments=args, command=command,
            status="error" if failed else "ok", output=output, exit_code=exit_code,
            error=(error or title_of(output) or "tool error") if failed else "", called_ns=called,
            changes=ClaudeStreamAdapter.changes_of(tool, args, output),
            title=title_of(f"{tool}: {detail}" if detail else tool))
        for usage in self.held.pop(call_id, []):
            self.t.emit(usage, self.t.parts.parts)

    def system(self, rec: dict[str, Any]) -> None:
        t = self.t
        sub = rec.get("subtype")
        if sub == "compact_boundary":
            uid, parent, branch = self.place(rec)
            meta = rec.get("compactMetadata") if isinstance(rec.get("compactMetadata"), dict) else {}
            detail = ", ".join(f"{k}={v}" for k, v in meta.items())
            t.emit(MessageAdded(role="system", text=f"[compacted{': ' + detail if detail else ''}] "
                                f"{rec.get('content') or ''}".strip(),
                                message_id=uid, branch=branch, parent_id=parent))
        elif sub == "api_error":
            err = rec.get("error")
            message = text_of(err.get("message") if isinstance(err, dict) else err) or "API error"
            t.emit(ModelCalled(model=self.model, ok=False, error=message,
                               retry=t.sink.count(rec.get("retryAttempt"), "retryAttempt", t.location)))
            t.emit(ErrorOccurred(message=message, origin="model", error_type="api_error"))

    def end_turn(self, status: str) -> None:
        if self.turn_open:
            self.t.emit(TurnEnded(turn=self.turn, status=status))
            self.turn_open = False

    def finish(self) -> None:
        t = self.t
        open_calls = list(self.pending)
        for call_id in open_calls:
            tool, args, called = self.pending.pop(call_id)
            self.tool(call_id, tool, args, called, "", True,
                      error="the transcript ends before the tool returned")
        kind, detail = self.last
        if open_calls:
            kind = "open_tool"
        if kind == "done":
            self.end_turn("completed")
            t.end("completed")
            return
        self.end_turn("interrupted")
        if kind == "interrupted":
            t.end("interrupted", "the user interrupted the last request")
            return
        if self.exited:
            t.end("interrupted", "the user left with /exit before the last request was answered")
            return
        evidence = {
            "open_tool": f"tool call {open_calls[-1] if open_calls else ''} has no result",
            "prompt": "the last user message has no reply",
            "tool_result": "the last tool result has no reply",
            "assistant": f"the last assistant message did not end its turn (stop_reason {detail})",
            "error": f"the last model call failed: {title_of(detail)}",
            "": "the transcript has no messages",
        }[kind]
        t.end_without_marker(evidence)


register(ClaudeSessionImporter())
