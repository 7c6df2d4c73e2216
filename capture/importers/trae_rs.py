"""Importer of trajectories written by TRAE's Rust port, ``trae_agent_rs`` (``--format trae-rs``).

The Rust port (``trae_agent_rs/core/src/utils/trajectory.rs``) writes a different document than
the Python agent (``trae.py``): times are epoch-second *strings* (``"1758699175"``, records
``"1758699175.857286"``), and the calls are ``llm_interaction`` (singular), one ``LLMRecord``
per agent step::

    {task, start_time, end_time, provider, model, max_step, llm_interaction: [
       {step_number, timestamp, request_content, response_content, token_usage, model, provider,
        llmdetails, tool_calls: [ToolCallRecord], error_message,
        steps: {step_number, state, thought, llm_response: {content: [{type, text}], usage,
                model, finish_reason, tool_calls}, tool_calls, tool_results, reflection, error}}],
     success, final_result, execution_time, total_steps, error_count}

The file is rewritten whole after every step, so it is kept verbatim as one ``raw_recorded``.
Per record: a response whose ``finish_reason`` is ``Error`` is a failed ``model_called`` (its
text is the error); any other response is a successful one with its ``usage`` (TRAE's
``LLMUsage``, mapped as for the Python agent), its text as a ``message`` part, and each tool
call (``steps.tool_calls`` or the response's) as a tool part with the ``tool_results`` entry of
its ``call_id`` (else the record's ``ToolCallRecord`` of the same name; the port's editors
``str_replace_based_edit_tool``/``edit_file``/``write_file`` give ``file_changed``); ``thought`` and
``reflection`` are ``reasoning`` parts; ``error``/``error_message`` are ``error_occurred``.
Status as for the Python agent (``trae.Outcome``): every call failed → ``failed`` "no model
call succeeded", ``success`` → completed, "exceeded maximum steps" → limit, else failed. A
step ``state`` other than the port's (``THINKING``, ``CALLING_TOOL``, ``REFLECTING``,
``COMPLETED``, ``ERROR``) is counted as an unknown record type.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agtrace.eventlog import ErrorOccurred, ModelCalled, RunStarted, UsageReported

from ..adapter import known_types
from ..adapters.base import title_of
from . import register
from .atif import edit_tool_changes
from .base import ImportContext, ImportError_
from .trae import Outcome, usage_of
from .transcript import Transcript, file_sha256, head, load_json_document, source_key, text_of

FORMAT = "trae-rs"
STATES = frozenset({"THINKING", "CALLING_TOOL", "REFLECTING", "COMPLETED", "ERROR"})
KNOWN = {"*": STATES}


def epoch_ns(value: Any) -> int | None:
    """Nanoseconds of an epoch-seconds string or number (``"1758699175.857286"``)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return int(seconds * 1_000_000) * 1000 if seconds > 0 else None


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(c.get("text") or "") for c in content if isinstance(c, dict))
    return text_of(content)


class TraeRsImporter:
    """``--format trae-rs``."""

    name = FORMAT
    known = KNOWN

    def detect(self, path: Path) -> bool:
        if not path.is_file():
            return False
        text = head(path, 256 * 1024)
        return (text.lstrip().startswith(b"{") and b'"llm_interaction"' in text
                and b'"max_step"' in text)

    def read(self, path: Path, ctx: ImportContext) -> None:
        doc, text = load_json_document(path, FORMAT)
        if not isinstance(doc, dict) or not isinstance(doc.get("llm_interaction"), list):
            raise ImportError_(f"{path}: JSON without llm_interaction[]; not a trajectory of TRAE's Rust port")
        records = doc["llm_interaction"]
        model = next((str(r["steps"]["llm_response"]["model"]) for r in records
                      if isinstance(r, dict) and isinstance(r.get("steps"), dict)
                      and isinstance(r["steps"].get("llm_response"), dict)
                      and r["steps"]["llm_response"].get("finish_reason") != "Error"
                      and r["steps"]["llm_response"].get("model")), str(doc.get("model") or ""))
        task = str(doc.get("task") or "")
        started_ts = epoch_ns(doc.get("start_time")) or 0
        started = RunStarted(
            agent="trae", model=model, prompt=task,
            prompt_sha256=hashlib.sha256(task.encode()).hexdigest() if task else "",
            config={k: doc[k] for k in ("provider", "model", "max_step") if doc.get(k) is not None},
            source=f"import:{FORMAT}", source_version="rs", tags={"file": path.name})
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), ""), started, started_ts)
        if sink is None:
            return
        t = Transcript(sink, FORMAT, started_ts)
        t.raw(text, path.name)
        provider = str(doc.get("provider") or "")
        out = Outcome()
        for i, record in enumerate(records):
            t.location = f"{path.name}#llm_interaction[{i}]"
            if not isinstance(record, dict):
                t.bad("an llm_interaction entry must be an object")
                continue
            t.at(epoch_ns(record.get("timestamp")))
            try:
                self.record(t, record, provider, model, out)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                t.bad(f"step {record.get('step_number')}: {type(exc).__name__}: {exc}")
        out.parts = t.parts.parts
        status, reason = out.status({"success": doc.get("success"), "final_result": doc.get("final_result")})
        t.end(status, reason, ts=epoch_ns(doc.get("end_time")))

    def record(self, t: Transcript, r: dict[str, Any], provider: str, model: str, out: Outcome) -> None:
        step = r.get("steps") if isinstance(r.get("steps"), dict) else {}
        state = step.get("state")
        if state is not None and state not in known_types(KNOWN):
            t.sink.unknown(t.location, f"state:{state}")
        resp = step.get("llm_response") if isinstance(step.get("llm_response"), dict) else None
        first = t.parts.parts + 1
        pending: list = []
        if resp is not None and resp.get("finish_reason") == "Error":
            error = _text(resp.get("content")) or "the model call failed"
            pending.append(ModelCalled(model=str(r.get("model") or model), ok=False, error=error))
            out.calls_failed += 1
            out.last_error = error
        elif resp is not None:
            call_model = str(resp.get("model") or r.get("model") or model)
            pending.append(ModelCalled(model=call_model, ok=True))
            if isinstance(resp.get("usage"), dict):
                pending.append(UsageReported(usage=usage_of(resp["usage"], provider), model=call_model))
            out.calls_ok += 1
            if step.get("thought"):
                t.reasoning_part(str(step["thought"]))
            text = _text(resp.get("content"))
            if text.strip():
                t.message_part("assistant", text, model=call_model)
            calls = step.get("tool_calls") or resp.get("tool_calls") or []
            results = {x.get("call_id"): x for x in step.get("tool_results") or [] if isinstance(x, dict)}
            records = {x.get("tool_name"): x for x in r.get("tool_calls") or [] if isinstance(x, dict)}
            for call in calls:
                if isinstance(call, dict):
                    self.tool(t, call, results.get(call.get("call_id")), records.get(call.get("name")))
            if step.get("reflection"):
                t.reasoning_part(str(step["reflection"]))
        part = first if t.parts.parts >= first else None
        for ev in pending:
            t.emit(ev, part)
        for error in (step.get("error"), r.get("error_message")):
            if error:
                out.last_error = str(error)
                t.emit(ErrorOccurred(message=str(error), origin="agent" if resp else "model"), part)

    def tool(self, t: Transcript, call: dict[str, Any], result: dict | None, record: dict | None) -> None:
        name = str(call.get("name") or "tool")
        args = call.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        command = str(args.get("command") or "") if isinstance(args, dict) and name == "bash" else ""
        if result is not None:
            ok = result.get("success") is not False and not result.get("error")
            output, error = text_of(result.get("result")), str(result.get("error") or "")
        elif record is not None:
            ok = record.get("success") is not False and not record.get("error_message")
            output, error = text_of(record.get("tool_output")), str(record.get("error_message") or "")
        else:
            ok, output, error = False, "", "no tool result was recorded"
        t.tool_part(call_id=str(call.get("call_id") or call.get("id") or ""), tool=name, arguments=args,
                    command=command, status="ok" if ok else "error", output=output,
                    changes=edit_tool_changes(name, args),
                    error="" if ok else (error or "the tool failed"),
                    title=title_of(f"{name}: {command}" if command else name))


register(TraeRsImporter())
