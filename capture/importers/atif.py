"""Importer of ATIF, the Agent Trajectory Interchange Format of Harbor / Terminal-Bench
(``--format atif``; the schema is ``harbor.models.trajectories``, ATIF-v1.0 … v1.8).

One document = one run; it is kept verbatim as one ``raw_recorded``::

    {schema_version, session_id, trajectory_id, agent: {name, version, model_name, extra},
     steps: [{step_id, timestamp, source: system|user|agent, model_name, message,
              reasoning_content, tool_calls: [{tool_call_id, function_name, arguments}],
              observation: {results: [{source_call_id, content}]},
              metrics: {prompt_tokens, completion_tokens, cached_tokens, cost_usd, extra},
              llm_call_count, is_copied_context, extra}],
     notes, final_metrics: {total_prompt_tokens, total_completion_tokens, total_cached_tokens,
                            total_cost_usd, total_steps}}

==============================  =================================================================
step                            events
==============================  =================================================================
``system``                      ``message_added(system)``, no part
``user``                        ``turn_started`` + ``message_added(user)``
``agent``                       ``reasoning_content`` → a ``reasoning`` part; with tool calls:
                                one tool part per call (the ``message`` as the first one's
                                ``message_added(assistant)``; its observation result by
                                ``source_call_id``; an exit code when the result or the call's
                                ``extra`` carries ``returncode``/``exit_code``; the file changes
                                of common edit tools, see ``edit_tool_changes``); without: a
                                ``message`` part. ``model_called`` unless ``llm_call_count`` is
                                0, and ``usage_reported`` from ``metrics`` (``prompt_tokens``
                                includes ``cached_tokens``; reasoning from
                                ``extra.completion_tokens_details`` when present)
==============================  =================================================================

Copied-context steps (``is_copied_context``, continuations) are kept as messages but spend no
tokens here (their tokens were spent in the earlier trajectory). When no step has metrics,
``final_metrics`` totals are one run-total ``usage_reported`` outside any part. ATIF records no
task outcome: a document with ``final_metrics`` was finalized by its producer, so the run is
``completed``; without it, no end marker (``crashed`` once stale). A step ``source`` outside the
schema is an unknown record type. Embedded ``subagent_trajectories`` are kept raw only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    MessageAdded,
    ModelCalled,
    RunStarted,
    TurnStarted,
    Usage,
    UsageReported,
)

from ..adapter import known_types
from ..adapters.base import paths_from_patch, title_of
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

FORMAT = "atif"
SOURCES = frozenset({"system", "user", "agent"})
VERSIONS = tuple(f"ATIF-v1.{n}" for n in range(9))
KNOWN = {**{v.split("-v")[1]: SOURCES for v in VERSIONS}, "*": SOURCES}
_VERSION = re.compile(rb'"schema_version"\s*:\s*"ATIF-v')


def _text(message: Any) -> str:
    if isinstance(message, list):
        return "\n".join(str(p.get("text") or "") for p in message if isinstance(p, dict) and p.get("type") == "text")
    return text_of(message)


_WRITE_TOOLS = frozenset({"write", "write_file", "Write", "create_file"})
_EDIT_TOOLS = frozenset({"edit", "edit_file", "Edit", "MultiEdit", "replace", "str_replace",
                         "str_replace_editor", "str_replace_based_edit_tool", "file_editor"})


def edit_tool_changes(tool: str, args: Any) -> list[tuple[str, str]]:
    """``(path, change)`` pairs a common edit tool's arguments name (the editors of SWE-agent,
    OpenHands, TRAE, Claude Code, OpenCode, Gemini CLI, and ``apply_patch`` texts); [] for
    any other tool or a read-only command (``view``)."""
    if not isinstance(args, dict):
        return []
    if tool == "apply_patch":
        return paths_from_patch(str(args.get("input") or args.get("patch") or ""))
    path = str(args.get("path") or args.get("file_path") or args.get("filePath") or "")
    if not path:
        return []
    if tool in _WRITE_TOOLS:
        return [(path, "add" if args.get("create") else "modify")]
    if tool in _EDIT_TOOLS:
        command = args.get("command")
        if command in ("view", "undo_edit"):
            return []
        return [(path, "add" if command == "create" else "modify")]
    return []


def _exit_code(*sources: Any) -> int | None:
    for src in sources:
        if isinstance(src, str) and src.lstrip().startswith("{"):
            try:
                src = json.loads(src)
            except ValueError:
                continue
        if isinstance(src, dict):
            for key in ("returncode", "exit_code"):
                v = src.get(key)
                if isinstance(v, int) and not isinstance(v, bool):
                    return v
    return None


class AtifImporter:
    """``--format atif``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        text = head(path, 256 * 1024)
        return text.lstrip().startswith(b"{") and _VERSION.search(text) is not None

    def read(self, path: Path, ctx: ImportContext) -> None:
        doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
            raise ImportError_(f"{path}: not an ATIF trajectory (expected {{schema_version, agent, steps}})")
        version = str(doc.get("schema_version") or "")
        agent = doc.get("agent") if isinstance(doc.get("agent"), dict) else {}
        steps = [s for s in doc["steps"] if isinstance(s, dict)]
        model = str(agent.get("model_name") or next((s["model_name"] for s in steps if s.get("model_name")), ""))
        prompt = next((_text(s.get("message")) for s in steps if s.get("source") == "user"), "")
        session = str(doc.get("session_id") or doc.get("trajectory_id") or "")
        started_ts = next((ts for s in steps if (ts := parse_ts(s.get("timestamp")))), 0)
        started = RunStarted(
            agent=str(agent.get("name") or ""), agent_version=str(agent.get("version") or ""), model=model,
            prompt=prompt, prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest() if prompt else "",
            tags={k: str(v) for k, v in (("session_id", doc.get("session_id")),
                                          ("trajectory_id", doc.get("trajectory_id"))) if v},
            source=f"import:{FORMAT}", source_version=version)
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), session), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts)
        t.raw(text, path.name)
        types = known_types(KNOWN, version.rsplit("v", 1)[-1])  # a newer version keeps v1.8's set
        metered = any(isinstance(s.get("metrics"), dict) for s in steps)
        turn = 0
        for i, s in enumerate(doc["steps"]):
            t.location = f"{path.name}#steps[{i}]"
            if not isinstance(s, dict):
                t.bad("a step must be an object")
                continue
            source = s.get("source")
            if source not in types:
                sink.unknown(t.location, f"step:{source}")
                continue
            t.at_time(s.get("timestamp"))
            text_ = _text(s.get("message"))
            if source == "system":
                t.emit(MessageAdded(role="system", text=text_, message_id=str(s.get("step_id") or "")))
            elif source == "user":
                turn += 1
                t.emit(TurnStarted(turn=turn, prompt=text_))
                t.emit(MessageAdded(role="user", text=text_, message_id=str(s.get("step_id") or "")))
            else:
                try:
                    self.agent_step(t, s, model)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    t.bad(f"step {s.get('step_id')}: {type(exc).__name__}: {exc}")
        final = doc.get("final_metrics") if isinstance(doc.get("final_metrics"), dict) else None
        if final is not None and not metered:
            prompt_t, cached = token_count(final.get("total_prompt_tokens")), token_count(final.get("total_cached_tokens"))
            usage = Usage(input=max(0, prompt_t - cached), cache_read=cached,
                          output=token_count(final.get("total_completion_tokens")))
            cost = final.get("total_cost_usd")
            t.emit(UsageReported(usage=usage, model=model, request_id="run-total:final_metrics", cumulative=usage,
                                 cost_usd=float(cost) if isinstance(cost, int | float) and cost else None))
        if final is not None:
            t.end("completed", "")
        else:
            t.end_without_marker("no final_metrics")

    def agent_step(self, t: Transcript, s: dict[str, Any], model: str) -> None:
        step_model = str(s.get("model_name") or model)
        first = t.parts.parts + 1
        if s.get("reasoning_content"):
            t.reasoning_part(str(s["reasoning_content"]))
        message = _text(s.get("message"))
        calls = [c for c in s.get("tool_calls") or [] if isinstance(c, dict)]
        obs = s.get("observation") if isinstance(s.get("observation"), dict) else {}
        results = [r for r in obs.get("results") or [] if isinstance(r, dict)]
        by_call = {str(r.get("source_call_id")): r for r in results if r.get("source_call_id")}
        if not calls and message.strip():
            t.message_part("assistant", message, model=step_model, message_id=str(s.get("step_id") or ""))
        for k, call in enumerate(calls):
            call_id = str(call.get("tool_call_id") or f"step{s.get('step_id')}-{k}")
            result = by_call.get(call_id) or (results[k] if len(results) == len(calls) and not by_call else {})
            output = _text(result.get("content"))
            exit_code = _exit_code(result.get("extra"), call.get("extra"), result.get("content"))
            if isinstance(result.get("content"), str) and exit_code is not None:
                try:
                    decoded = json.loads(result["content"])
                    output = text_of(decoded.get("output", output)) if isinstance(decoded, dict) else output
                except ValueError:
                    pass
            name = str(call.get("function_name") or "tool")
            args = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
            command = str(args.get("command") or args.get("cmd") or "")
            if k == 0 and message.strip():
                t.emit(MessageAdded(role="assistant", text=message, model=step_model,
                                    message_id=str(s.get("step_id") or "")), t.parts.parts + 1)
            failed = exit_code not in (None, 0) or not result
            t.tool_part(call_id=call_id, tool=name, arguments=args, command=command,
                        status="error" if failed else "ok", output=output, exit_code=exit_code,
                        changes=edit_tool_changes(name, args),
                        error=("no observation result" if not result else f"exit code {exit_code}") if failed else "",
                        title=title_of(f"{name}: {command}" if command else name))
        part = first if t.parts.parts >= first else None
        if s.get("llm_call_count") == 0 or s.get("is_copied_context"):
            return
        t.emit(ModelCalled(model=step_model, ok=True, request_id=f"step-{s.get('step_id')}"), part)
        m = s.get("metrics")
        if isinstance(m, dict):
            extra = m.get("extra") if isinstance(m.get("extra"), dict) else {}
            details = extra.get("completion_tokens_details") if isinstance(
                extra.get("completion_tokens_details"), dict) else {}
            cached = token_count(m.get("cached_tokens"))
            usage = Usage(input=max(0, token_count(m.get("prompt_tokens")) - cached), cache_read=cached,
                          output=token_count(m.get("completion_tokens")),
                          reasoning=token_count(details.get("reasoning_tokens")))
            cost = m.get("cost_usd")
            t.emit(UsageReported(usage=usage, model=step_model, request_id=f"step-{s.get('step_id')}",
                                 cost_usd=float(cost) if isinstance(cost, int | float) and cost else None), part)


register(AtifImporter())
