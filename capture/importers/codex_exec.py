"""Importer of saved ``codex exec --json`` output (``--format codex-exec-json``).

One file = one ``codex exec`` process = one run. Every line goes through the live adapter
(:class:`~agtrace.capture.adapters.codex.CodexExecAdapter`), so an imported stream yields exactly
the events a live capture of it would have (see that module for the mapping; usage is the
thread's cumulative total turned into deltas). The stream has no timestamps: every event is
stamped with the run's start, taken from the thread id (a UUIDv7 in Codex ≥ 0.4x) or 0, so that
the run id stays a pure function of the file. The stream names neither the model nor the Codex
version; both stay empty.

Status: the last turn's ``turn.completed`` → ``completed``; ``turn.failed`` → ``failed`` with its
message (also when every model call failed); a turn with neither (the stream was cut) ends the
run ``crashed`` once the file is stale.
"""

from __future__ import annotations

from pathlib import Path

from agtrace.eventlog import RunStarted

from ..adapters.codex import CodexExecAdapter
from . import register
from .base import ImportContext
from .transcript import (
    Transcript,
    file_sha256,
    first_json_lines,
    json_lines,
    require_records,
    source_key,
    uuid7_ns,
)

FORMAT = "codex-exec-json"
_TYPES = {"thread.started", "turn.started", "turn.completed", "turn.failed", "item.started",
          "item.updated", "item.completed", "item.plan.delta", "request_user_input", "error"}


class CodexExecImporter:
    """``--format codex-exec-json``."""

    name = FORMAT

    def detect(self, path: Path) -> bool:
        lines = first_json_lines(path, 2)
        return bool(lines) and lines[0].get("type") in _TYPES and "payload" not in lines[0]

    def read(self, path: Path, ctx: ImportContext) -> None:
        thread, records, bad = "", 0, 0
        for _, _, rec, err in json_lines(path):
            if err or rec.get("type") not in _TYPES:
                bad += 1
                continue
            records += 1
            if rec["type"] == "thread.started" and not thread:
                thread = str(rec.get("thread_id") or "")
        require_records(path, FORMAT, records, bad)
        started_ts = uuid7_ns(thread) or 0
        started = RunStarted(agent="codex", tags={"session_id": thread} if thread else {},
                             source=f"import:{FORMAT}")
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), thread), started, started_ts)
        if sink is None:
            return
        adapter = CodexExecAdapter(clock=lambda: 0)
        t = Transcript(sink, FORMAT, started_ts, adapter)
        for n, text, _, err in json_lines(path):
            t.raw(text, f"{path.name}:{n}", err)
            if not err:
                t.emits(adapter.feed(text, "stdout"))
        t.emits(adapter.finish())
        state = adapter.state
        if state.model_calls_failed and not state.model_calls_ok:
            t.end("failed", f"no model call succeeded ({state.model_calls_failed} failed): "
                            f"{state.last_error}")
        elif t.turn_status == "completed":
            t.end("completed")
        elif t.turn_status == "failed":
            t.end("failed", state.last_error or "the last turn failed")
        else:
            t.end_without_marker("the stream ends without turn.completed or turn.failed"
                                 if adapter.turn else "the stream has no turn")


register(CodexExecImporter())
