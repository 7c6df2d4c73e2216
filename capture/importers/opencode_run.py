"""Importer of saved ``opencode run --format json`` output (``--format opencode-run``).

One file = one ``opencode run`` = one run. Every line goes through the live adapter
(:class:`~agtrace.capture.adapters.opencode.OpenCodeRunAdapter`, see it for the mapping: one
``text``/``reasoning``/``tool_use`` record = one part, ``step_finish`` = one model call with its
per-step tokens and cost), stamped with the record's ``timestamp``. The stream names neither the
model nor the OpenCode version.

Status: ``done`` (or a last step that finished for a final reason) → ``completed``; an ``error``
record → ``failed`` with its message; a stream cut inside a step → ``crashed`` once stale.
"""

from __future__ import annotations

from pathlib import Path

from agtrace.eventlog import RunStarted

from ..adapters.opencode import OpenCodeRunAdapter
from . import register
from .base import ImportContext
from .transcript import (
    Transcript,
    file_sha256,
    first_json_lines,
    json_lines,
    parse_ts,
    require_records,
    source_key,
)

FORMAT = "opencode-run"
_TYPES = {"step_start", "text", "reasoning", "tool_use", "step_finish", "error", "done"}


class OpenCodeRunImporter:
    """``--format opencode-run``."""

    name = FORMAT

    def detect(self, path: Path) -> bool:
        lines = first_json_lines(path, 2)
        return bool(lines) and lines[0].get("type") in _TYPES and "sessionID" in lines[0]

    def read(self, path: Path, ctx: ImportContext) -> None:
        session, first_ts, records, bad = "", None, 0, 0
        for _, _, rec, err in json_lines(path):
            if err or rec.get("type") not in _TYPES:
                bad += 1
                continue
            records += 1
            session = session or str(rec.get("sessionID") or "")
            first_ts = first_ts or parse_ts(rec.get("timestamp"))
        require_records(path, FORMAT, records, bad)
        started_ts = first_ts or 0
        started = RunStarted(agent="opencode", tags={"session_id": session} if session else {},
                             source=f"import:{FORMAT}")
        sink = ctx.new_run(source_key(FORMAT, file_sha256(path), session), started, started_ts)
        if sink is None:
            return
        adapter = OpenCodeRunAdapter(clock=lambda: 0)
        t = Transcript(sink, FORMAT, started_ts, adapter)
        for n, text, rec, err in json_lines(path):
            if rec is not None:
                t.at(parse_ts(rec.get("timestamp")))
            t.raw(text, f"{path.name}:{n}", err)
            if not err:
                t.emits(adapter.feed(text, "stdout"))
        t.emits(adapter.finish())
        if t.turn_status == "completed":
            t.end("completed")
        elif t.turn_status == "failed":
            t.end("failed", adapter.failure or adapter.state.last_error)
        else:
            t.end_without_marker("the stream ends inside a step (no done record, no final "
                                 "step_finish)")


register(OpenCodeRunImporter())
