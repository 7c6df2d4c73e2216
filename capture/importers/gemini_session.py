"""Importer of Gemini CLI sessions (``--format gemini-cli``).

Gemini CLI records every chat in ``~/.gemini/tmp/<project hash>/chats/`` (``ChatRecordingService``):

* ``session-<time>-<id8>.jsonl`` (current): a metadata line ``{sessionId, projectHash,
  startTime, lastUpdated, kind}``, then one line per message write. A message is re-written
  with the same ``id`` as it grows (tool calls, tokens), so the last line of an id wins;
  ``{"$set": {...}}`` updates metadata (or replaces ``messages``), ``{"$rewindTo": id}`` marks a
  rewind (the rewound messages are kept: their tokens were spent).
* ``session-*.json`` (older releases): one document ``{sessionId, projectHash, startTime,
  lastUpdated, messages: [...]}``.
* ``/chat save`` checkpoints (``checkpoint-<tag>.json``): a JSON array of Gemini API
  ``Content`` objects ``{role, parts}`` (no ids, tokens or times).

Every line (or the whole document) is kept verbatim as ``raw_recorded``.

================================  ================================================================
message (``type``)                events
================================  ================================================================
``user`` (text)                   ``turn_started`` + ``message_added(user)``; one made only of
                                  ``functionResponse`` parts repeats tool results: skipped; the
                                  ``<session_context>`` preamble is a system message
``gemini``                        ``thoughts`` → a ``reasoning`` part; ``content`` → a ``message``
                                  part; each of ``toolCalls`` → a tool part (``args``, the
                                  ``functionResponse`` output, ``status``; ``run_shell_command``'s
                                  ``Exit Code: N``, else 0; ``write_file``/``replace`` →
                                  ``file_changed``) [+ ``tests_ran``]; ``model_called`` and one
                                  ``usage_reported`` per message id (``tokens``: ``input``
                                  includes ``cached``, ``output`` excludes ``thoughts``)
``info``/``warning``              ``message_added(system)``
``error``                         ``error_occurred``
================================  ================================================================

Status from evidence: the CLI ends a turn when the model answers without calling a tool, so a
session whose last message is such a ``gemini`` answer is ``completed``; one whose last message
is an ``error`` is ``failed``; anything else has no end marker (``crashed`` once stale).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    ErrorOccurred,
    MessageAdded,
    ModelCalled,
    RunStarted,
    TurnStarted,
    Usage,
    UsageReported,
)

from ..adapter import known_types
from ..adapters.base import title_of
from ..usage import token_count
from . import register
from .base import DETECT_BYTES, ImportContext, ImportError_, sniff_json_lines
from .transcript import (
    Transcript,
    file_sha256,
    head,
    json_lines,
    load_json_document,
    parse_ts,
    source_key,
    text_of,
)

FORMAT = "gemini-cli"
RECORDS = frozenset({"metadata", "message", "$set", "$rewindTo"})
MESSAGES = frozenset({"user", "gemini", "info", "error", "warning"})
KNOWN = {"*": RECORDS | {f"message:{m}" for m in MESSAGES}}
_EXIT = re.compile(r"^Exit Code: (-?\d+)\s*$", re.M)
_WORKSPACE = re.compile(r"Workspace Directories:\*\*\s*\n\s*- (.+)")
_EDITS = {"write_file": "add", "replace": "modify", "edit": "modify"}


def _record_type(obj: dict[str, Any]) -> str:
    if isinstance(obj.get("$rewindTo"), str):
        return "$rewindTo"
    if isinstance(obj.get("$set"), dict):
        return "$set"
    if isinstance(obj.get("id"), str):
        return "message"
    if isinstance(obj.get("sessionId"), str) and isinstance(obj.get("projectHash"), str):
        return "metadata"
    return "record:" + ",".join(sorted(obj)[:3])


def _parts_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and "text" in p)
    return text_of(content)


def _only_responses(content: Any) -> bool:
    return isinstance(content, list) and bool(content) and all(
        isinstance(p, dict) and "functionResponse" in p for p in content)


class GeminiSessionImporter:
    """``--format gemini-cli``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        if path.suffix == ".jsonl":  # the first JSON object decides: the metadata line
            return sniff_json_lines(path, lambda obj: _record_type(obj) == "metadata")
        text = head(path, DETECT_BYTES)
        stripped = text.lstrip()
        if stripped.startswith(b"{"):
            return b'"sessionId"' in text and b'"projectHash"' in text and b'"messages"' in text
        return (stripped.startswith(b"[") and path.name.startswith("checkpoint")
                and b'"role"' in text and b'"parts"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        digest = file_sha256(path)
        if path.suffix == ".jsonl":
            meta, lines = self._jsonl(path)
        else:
            doc, text = load_json_document(path, FORMAT)
            if isinstance(doc, list):
                doc = {"messages": _from_contents(doc)}
            if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
                raise ImportError_(f"{path}: not a Gemini CLI session (expected {{sessionId, messages}} "
                                   "or a checkpoint array of {role, parts})")
            meta = {k: v for k, v in doc.items() if k != "messages"}
            lines = [(path.name, text, None)] + [
                (f"{path.name}#messages[{i}]", "", m) for i, m in enumerate(doc["messages"])]
        messages = _final_messages([obj for _, _, obj in lines if isinstance(obj, dict)
                                    and _record_type(obj) in ("message", "$set", "metadata")])
        users = [m for m in messages if m.get("type") == "user" and not _only_responses(m.get("content"))]
        texts = [_parts_text(m.get("content")) for m in users]
        prompt = next((x for x in texts if not x.lstrip().startswith("<session_context>")), "")
        context = next((x for x in texts if x.lstrip().startswith("<session_context>")), "")
        workdir = m.group(1).strip() if (m := _WORKSPACE.search(context)) else ""
        model = next((str(m["model"]) for m in messages if m.get("type") == "gemini" and m.get("model")), "")
        session = str(meta.get("sessionId") or "")
        started_ts = parse_ts(meta.get("startTime")) or next(
            (ts for m in messages if (ts := parse_ts(m.get("timestamp")))), 0)
        started = RunStarted(
            agent="gemini-cli", model=model, prompt=prompt, workdir=workdir,
            prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            tags={k: str(v) for k, v in (("session_id", session), ("project_hash", meta.get("projectHash")),
                                          ("kind", meta.get("kind"))) if v},
            source=f"import:{FORMAT}")
        sink = ctx.new_run(source_key(FORMAT, digest, session), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts)
        t.parts.workdir = workdir
        types = known_types(KNOWN)
        for location, text, obj in lines:
            if text:
                t.raw(text, location, parse_error=obj if isinstance(obj, str) else "")
            if isinstance(obj, dict):
                kind = _record_type(obj)
                kind = f"message:{obj.get('type')}" if kind == "message" else kind
                if kind not in types:
                    sink.unknown(location, kind)
        where = {obj["id"]: loc for loc, _, obj in lines if isinstance(obj, dict) and isinstance(obj.get("id"), str)}
        _Session(t, model, where).write(messages)

    def _jsonl(self, path: Path) -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
        meta: dict[str, Any] = {}
        lines: list[tuple[str, str, Any]] = []
        for n, text, obj, error in json_lines(path):
            lines.append((f"{path.name}:{n}", text, error or obj))
            if isinstance(obj, dict) and _record_type(obj) == "metadata":
                meta.update(obj)
            elif isinstance(obj, dict) and _record_type(obj) == "$set":
                meta.update({k: v for k, v in obj["$set"].items() if k != "messages"})
        if not meta.get("sessionId"):
            raise ImportError_(f"{path}: no session metadata line (sessionId, projectHash); it is "
                               "truncated or not a Gemini CLI session")
        return meta, lines


def _from_contents(contents: list[Any]) -> list[dict[str, Any]]:
    """Messages of a ``/chat save`` checkpoint (Gemini API ``Content`` list)."""
    out: list[dict[str, Any]] = []
    for i, c in enumerate(contents):
        if not isinstance(c, dict):
            continue
        parts = [p for p in c.get("parts") or [] if isinstance(p, dict)]
        if c.get("role") == "model":
            calls = [{"id": str((p["functionCall"] or {}).get("id") or f"call-{i}-{k}"),
                      "name": (p["functionCall"] or {}).get("name"), "args": (p["functionCall"] or {}).get("args")}
                     for k, p in enumerate(parts) if isinstance(p.get("functionCall"), dict)]
            responses = [p["functionResponse"] for p in (contents[i + 1].get("parts") or [])
                         if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)] \
                if i + 1 < len(contents) and isinstance(contents[i + 1], dict) else []
            for call, resp in zip(calls, responses, strict=False):
                call["result"], call["status"] = [{"functionResponse": resp}], "success"
            out.append({"id": f"content-{i}", "type": "gemini",
                        "content": "".join(str(p.get("text") or "") for p in parts if not p.get("thought")),
                        "thoughts": [{"description": p.get("text")} for p in parts if p.get("thought")],
                        "toolCalls": calls})
        else:
            out.append({"id": f"content-{i}", "type": "user", "content": parts})
    return out


def _final_messages(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Known messages in order of first appearance, each as its last write."""
    by_id: dict[str, dict[str, Any]] = {}
    for rec in records:
        kind = _record_type(rec)
        batch = rec["$set"].get("messages") if kind == "$set" else rec.get("messages") if kind == "metadata" else [rec]
        for m in batch if isinstance(batch, list) else []:
            if isinstance(m, dict) and isinstance(m.get("id"), str) and m.get("type") in MESSAGES:
                by_id[m["id"]] = m
    return list(by_id.values())


class _Session:
    def __init__(self, t: Transcript, model: str, where: dict[str, str]):
        self.t = t
        self.model = model
        self.where = where  # message id -> the location of its last write
        self.turn = 0

    def write(self, messages: list[dict[str, Any]]) -> None:
        t = self.t
        for i, m in enumerate(messages):
            t.location = self.where.get(str(m.get("id")), f"message {m.get('id')}")
            t.at_time(m.get("timestamp"))
            try:
                self.message(m)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"message {i}: {type(exc).__name__}: {exc}")
        last = messages[-1] if messages else {}
        if last.get("type") == "error":
            t.end("failed", title_of(_parts_text(last.get("content"))) or "the session ends with an error")
        elif last.get("type") == "gemini" and not last.get("toolCalls") and _parts_text(last.get("content")).strip():
            t.end("completed")
        else:
            t.end_without_marker("the session does not end with the model's answer")

    def message(self, m: dict[str, Any]) -> None:
        t = self.t
        kind = m.get("type")
        if kind == "user":
            if _only_responses(m.get("content")):
                return
            text = _parts_text(m.get("content"))
            if text.lstrip().startswith("<session_context>"):
                t.emit(MessageAdded(role="system", text=text, message_id=str(m.get("id") or "")))
                return
            self.turn += 1
            t.emit(TurnStarted(turn=self.turn, prompt=text))
            t.emit(MessageAdded(role="user", text=text, message_id=str(m.get("id") or "")))
        elif kind in ("info", "warning"):
            t.emit(MessageAdded(role="system", text=_parts_text(m.get("content")), message_id=str(m.get("id") or "")))
        elif kind == "error":
            t.emit(ErrorOccurred(message=_parts_text(m.get("content")) or "error", origin="agent"))
        elif kind == "gemini":
            self.reply(m)

    def reply(self, m: dict[str, Any]) -> None:
        t = self.t
        model = str(m.get("model") or self.model)
        first = t.parts.parts + 1
        thoughts = [th for th in m.get("thoughts") or [] if isinstance(th, dict)]
        if thoughts:
            t.reasoning_part("\n\n".join(
                f"{th.get('subject')}: {th.get('description') or ''}" if th.get("subject")
                else str(th.get("description") or "") for th in thoughts))
        text = _parts_text(m.get("content"))
        if text.strip():
            t.message_part("assistant", text, model=model, message_id=str(m.get("id") or ""))
        for call in m.get("toolCalls") or []:
            if isinstance(call, dict):
                self.tool(call)
        part = first if t.parts.parts >= first else None
        t.emit(ModelCalled(model=model, ok=True, request_id=str(m.get("id") or "")), part)
        tokens = m.get("tokens")
        if isinstance(tokens, dict):
            cached = token_count(tokens.get("cached"))
            thought = token_count(tokens.get("thoughts"))
            usage = Usage(input=max(0, token_count(tokens.get("input")) - cached), cache_read=cached,
                          output=token_count(tokens.get("output")) + thought, reasoning=thought)
            t.emit(UsageReported(usage=usage, model=model, request_id=str(m.get("id") or "")), part)

    def tool(self, call: dict[str, Any]) -> None:
        name = str(call.get("name") or "tool")
        args = call.get("args") if isinstance(call.get("args"), dict) else {}
        outputs, errors = [], []
        for r in call.get("result") or []:
            resp = (r.get("functionResponse") or {}).get("response") if isinstance(r, dict) else None
            if isinstance(resp, dict):
                if "output" in resp:
                    outputs.append(text_of(resp["output"]))
                if "error" in resp:
                    errors.append(text_of(resp["error"]))
        output = "\n".join(outputs) or "\n".join(errors)
        status = str(call.get("status") or "")
        command = str(args.get("command") or "") if name == "run_shell_command" else ""
        exit_code = None
        if name == "run_shell_command" and status == "success":
            found = _EXIT.findall(output)
            exit_code = int(found[-1]) if found else 0
        failed = status not in ("success", "") or bool(errors) or exit_code not in (None, 0)
        path = str(args.get("file_path") or args.get("absolute_path") or args.get("path")
                   or args.get("dir_path") or "")
        changes = []
        if name in _EDITS and path:
            new = name == "write_file" and "created" in output.lower()
            changes = [(path, "add" if new else "modify")]
        detail = command or path
        self.t.tool_part(call_id=str(call.get("id") or ""), tool=name, arguments=args, command=command,
                         status="error" if failed else "ok", output=output, exit_code=exit_code,
                         error=(("\n".join(errors) or status or f"exit code {exit_code}") if failed else ""),
                         changes=changes,
                         title=title_of(f"{name}: {detail}" if detail else name))


register(GeminiSessionImporter())
