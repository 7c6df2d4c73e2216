"""Importer of ``opencode export <session>`` JSON (``--format opencode-export``).

The document is ``{info: Session.Info, messages: [{info: Message, parts: [Part]}], todos}``
(``packages/opencode/src/cli/cmd/export.ts``); one document = one session = one run. No real
export was available: the format was written from the documented types
(``session/message-v2.ts``) and is tested on a hand-written sample
(``tests/golden/import/opencode-export_handwritten.input.json``).

Parts go through the live ``opencode run`` adapter as the records ``opencode run --format json``
would have printed for them, so both OpenCode formats map alike:

===============================  ==============================================================
message / part                   events
===============================  ==============================================================
``info``                         ``run_started``: ``agent_version`` = ``version``, ``workdir`` =
                                 ``directory``, model = the first assistant's
                                 ``providerID/modelID``, title and ids in ``tags``
user message                     ``turn_started`` (prompt = its text parts) +
                                 ``message_added(user)``
``text`` / ``reasoning`` part    one message / reasoning part
``tool`` part                    one tool part (``completed`` = ok, ``error``; ``pending`` or
                                 ``running`` = the export was taken before it finished)
``step-finish`` part             ``model_called`` + ``usage_reported`` (per step, with cost)
assistant without step-finish    ``model_called`` + ``usage_reported`` from the message's
                                 ``tokens``/``cost``
``patch`` part                   one ``patch`` part: ``file_changed(origin=agent)`` per file
assistant ``error``              ``model_called(failed)`` + ``error_occurred``
===============================  ==============================================================

Record types are ``message/<role>`` and ``part/<type>`` (:data:`KNOWN`); a message or part of
another type is kept raw (in the document) and counted as unknown, not read.
``source_version`` is ``info.version``.

Status from the last assistant message: ``error`` → ``failed`` (``MessageAbortedError`` →
``interrupted``); completed with a final ``finish`` (not ``tool-calls``) → ``completed``;
otherwise ``crashed`` once stale. Snapshot hashes name trees of OpenCode's own snapshot
repository, which an export does not carry: they are kept in the raw record only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from agtrace.eventlog import FileChanged, MessageAdded, ModelCalled, RunStarted, UsageReported

from ..adapters.opencode import OpenCodeRunAdapter
from ..usage import usage_from_opencode
from . import register
from .base import ImportContext, ImportError_
from .transcript import Transcript, file_sha256, head, load_json_document, parse_ts, source_key

FORMAT = "opencode-export"
_PARTS = ("text", "reasoning", "tool", "step-start", "step-finish", "patch", "file", "snapshot",
          "agent", "subtask", "retry", "compaction")
KNOWN = {"*": frozenset(("message/user", "message/assistant", *(f"part/{t}" for t in _PARTS)))}


def _text(parts: list[Any]) -> str:
    return "\n".join(str(p.get("text") or "") for p in parts
                     if isinstance(p, dict) and p.get("type") == "text" and not p.get("synthetic"))


def _part_ts(part: dict[str, Any]) -> int | None:
    times = part.get("time") if isinstance(part.get("time"), dict) else {}
    state = part.get("state") if isinstance(part.get("state"), dict) else {}
    stimes = state.get("time") if isinstance(state.get("time"), dict) else {}
    return parse_ts(times.get("end") or stimes.get("end") or times.get("start") or stimes.get("start"))


class OpenCodeExportImporter:
    """``--format opencode-export``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        text = head(path).lstrip()
        return (text.startswith(b"{") and b'"messages"' in text and b'"info"' in text
                and b'"parts"' in text and b'"sessionID"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, dict) or not isinstance(doc.get("info"), dict) or not isinstance(
                doc.get("messages"), list):
            raise ImportError_(f"{path}: not an opencode export (expected an object with info and "
                               "messages[])")
        write_session(ctx, doc, FORMAT, file_sha256(path), [(path.name, text)], path.name)


def write_session(ctx: ImportContext, doc: dict[str, Any], fmt: str, digest: str,
                  raws: list[tuple[str, str]], where: str,
                  problems: list[tuple[str, str]] | tuple = ()) -> None:
    """Import one session in the export's shape ``{info, messages: [{info, parts}]}`` as one run
    of format ``fmt`` (also what ``opencode-storage`` assembles from OpenCode's own storage).
    ``raws`` are the source records kept verbatim, ``(location, text)``; ``digest`` names the
    session's content in the run's key; ``where`` prefixes the messages' locations;
    ``problems`` are ``(location, message)`` of records that could not be read (bad records)."""
    info = doc["info"]
    messages = [m for m in doc["messages"] if isinstance(m, dict)]
    infos = [m.get("info") if isinstance(m.get("info"), dict) else {} for m in messages]
    first_asst = next((i for i in infos if i.get("role") == "assistant"), {})
    first_user = next((m for m, i in zip(messages, infos, strict=True) if i.get("role") == "user"), {})
    model = "/".join(str(first_asst[k]) for k in ("providerID", "modelID") if first_asst.get(k))
    prompt = _text(first_user.get("parts") or [])
    times = info.get("time") if isinstance(info.get("time"), dict) else {}
    started_ts = parse_ts(times.get("created")) or 0
    tags = {k: str(info[f]) for k, f in (("session_id", "id"), ("title", "title"),
                                         ("project_id", "projectID"), ("parent_session", "parentID"))
            if info.get(f)}
    started = RunStarted(
        agent="opencode", agent_version=str(info.get("version") or ""), model=model,
        prompt=prompt, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
        workdir=str(info.get("directory") or ""), tags=tags, source=f"import:{fmt}",
        source_version=str(info.get("version") or ""))
    sink = ctx.new_run(source_key(fmt, digest, str(info.get("id") or "")), started, started_ts)
    if sink is None:
        return
    workdir = str(info.get("directory") or "")
    adapter = OpenCodeRunAdapter(clock=lambda: 0, model=model, workdir=workdir)
    t = Transcript(sink, fmt, started_ts, adapter, types=KNOWN["*"])
    for location, text in raws:
        t.raw(text, location)
    for location, message in problems:
        sink.bad(location, message)
    last: dict[str, Any] = {}
    for i, (msg, minfo) in enumerate(zip(messages, infos, strict=True)):
        t.location = f"{where}#messages[{i}]"
        mtimes = minfo.get("time") if isinstance(minfo.get("time"), dict) else {}
        t.at_time(mtimes.get("created"))
        parts = msg.get("parts") if isinstance(msg.get("parts"), list) else None
        if parts is None:
            t.bad("message without a parts list")
            continue
        if not isinstance(minfo.get("role"), str):
            t.bad("message without a role")
            continue
        if not t.knows(f"message/{minfo['role']}"):
            continue
        if minfo.get("role") == "user":
            prompt = _text(parts)
            t.emits(adapter.end_turn("completed"))
            t.emits(adapter.start_turn(prompt))
            t.emit(MessageAdded(role="user", text=prompt, message_id=str(minfo.get("id") or "")))
        elif minfo.get("role") == "assistant":
            _assistant(t, adapter, minfo, parts, workdir)
            last = minfo
    _end(t, adapter, last)


def _assistant(t: Transcript, adapter: OpenCodeRunAdapter, info: dict, parts: list,
               workdir: str) -> None:
    model = "/".join(str(info[k]) for k in ("providerID", "modelID") if info.get(k))
    adapter.state.model = model or adapter.state.model
    if not adapter.turn_open:
        t.emits(adapter.start_turn())
    steps = 0
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            t.bad(f"part {j} is not an object")
            continue
        t.at(_part_ts(part))
        kind = part.get("type")
        if not isinstance(kind, str):
            t.bad(f"part {j} has no type")
            continue
        if not t.knows(f"part/{kind}"):
            continue
        if kind == "step-start":
            t.emits(adapter.handle({"type": "step_start", "part": part}))
        elif kind in ("text", "reasoning"):
            if part.get("synthetic") or part.get("ignored"):
                continue
            t.emits(adapter.handle({"type": kind, "part": part}))
        elif kind == "tool":
            state = dict(part.get("state") or {})
            if state.get("status") not in ("completed", "error"):
                state["error"] = (f"the export was taken while the tool was "
                                  f"{state.get('status') or 'pending'}")
                state["status"] = "error"
            t.emits(adapter.handle({"type": "tool_use", "part": {**part, "state": state}}))
        elif kind == "step-finish":
            steps += 1
            t.emits(adapter.handle({"type": "step_finish", "part": part}))
        elif kind == "patch":
            files = [str(f) for f in part.get("files") or []]
            rel = [os.path.relpath(f, workdir) if workdir and os.path.isabs(f)
                   and not os.path.relpath(f, workdir).startswith("..") else f for f in files]
            t.patch_part([FileChanged(path=f, change="modify", origin="agent") for f in rel],
                         f"patch: {', '.join(rel)}")
    if isinstance(info.get("error"), dict):
        t.emits(adapter.handle({"type": "error", "error": info["error"]}))
    elif not steps and isinstance(info.get("tokens"), dict):  # no per-step usage: the message's
        cost = info.get("cost")
        t.emit(ModelCalled(model=model, ok=True, request_id=str(info.get("id") or "")))
        t.emit(UsageReported(usage=usage_from_opencode(info["tokens"]), model=model,
                             cost_usd=float(cost) if isinstance(cost, int | float) else None,
                             request_id=str(info.get("id") or "")))


def _end(t: Transcript, adapter: OpenCodeRunAdapter, last: dict[str, Any]) -> None:
    err = last.get("error") if isinstance(last.get("error"), dict) else None
    times = last.get("time") if isinstance(last.get("time"), dict) else {}
    t.at_time(times.get("completed"))
    if err is not None:
        name = str(err.get("name") or "")
        t.emits(adapter.end_turn("failed", adapter.failure))
        if name == "MessageAbortedError":
            t.end("interrupted", adapter.failure or "the user aborted the last message")
        else:
            t.end("failed", adapter.failure)
        return
    if last and times.get("completed") and last.get("finish") not in (None, "", "tool-calls"):
        t.emits(adapter.end_turn("completed"))
        t.end("completed")
        return
    t.emits(adapter.end_turn("interrupted"))
    t.end_without_marker("the last assistant message did not complete" if last
                         else "the session has no assistant message")


register(OpenCodeExportImporter())
