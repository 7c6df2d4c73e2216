"""Importers of saved live streams: what an agent CLI prints in its machine-readable mode,
saved to a file, imported through the very adapter ``agtrace run`` parses it with.

=========================  ==============================================  ====================
format                     the stream                                      adapter
=========================  ==============================================  ====================
``claude-stream-json``     ``claude -p --output-format stream-json``       ``ClaudeStreamAdapter``
                           ``--verbose`` [``--include-partial-messages``]
``codex-exec-json``        ``codex exec --json``                           ``CodexExecAdapter``
``opencode-run``           ``opencode run --format json``                  ``OpenCodeRunAdapter``
=========================  ==============================================  ====================

One file = one process = one run. Every line is kept raw, then fed to the adapter, so an
imported stream yields exactly the events a live capture of it would have (see the adapters
for the mappings); records the adapter does not know are counted as unknown, lines it cannot
parse are bad records. What the stream says about itself fills ``run_started``: the session id
(``thread_id``, ``session_id``, ``sessionID``), Claude Code's ``claude_code_version``
(``agent_version`` and ``source_version``), model and ``cwd`` (the workdir) from its
``system/init``. Events are
stamped with the records' ``timestamp`` where the stream has one (OpenCode, Claude Code ≥ 2.1);
otherwise with the run's start, taken from a UUIDv7 thread id (Codex) or 0, so that the run id
stays a pure function of the file.

Status, from the stream alone: every model call failed → ``failed``; the last turn completed →
``completed``; it failed → ``failed`` (``limit`` when Claude Code hit ``--max-turns``);
a stream cut inside a turn → ``crashed`` once the file is stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agtrace.eventlog import RunStarted

from ..adapters.base import JsonLineAdapter
from ..adapters.claude import ClaudeStreamAdapter
from ..adapters.codex import CodexExecAdapter
from ..adapters.opencode import OpenCodeRunAdapter
from . import register
from .base import ImportContext, sniff_json_lines
from .transcript import (
    Transcript,
    file_sha256,
    json_lines,
    parse_ts,
    require_records,
    source_key,
    uuid7_ns,
)


@dataclass(frozen=True)
class StreamFormat:
    """One saved-stream format: its adapter and how to read the stream's own metadata."""

    name: str
    agent: str
    adapter: type[JsonLineAdapter]
    decide: Callable[[dict[str, Any]], bool | None]
    """Detection verdict on one record (see ``sniff_json_lines``)."""
    session_key: str
    """The field naming the session in the stream's records."""
    evidence: str
    """What a cut stream lacks, for the reason of ``crashed``."""


def _codex(rec: dict[str, Any]) -> bool | None:
    kind = rec.get("type")
    return isinstance(kind, str) and "payload" not in rec and (
        kind == "thread.started" or kind.startswith(("turn.", "item.")))


def _opencode(rec: dict[str, Any]) -> bool | None:
    return "sessionID" in rec and isinstance(rec.get("type"), str) and isinstance(
        rec.get("part", {}), dict)


def _claude(rec: dict[str, Any]) -> bool | None:
    if "session_id" not in rec or not isinstance(rec.get("type"), str):
        return False
    if rec["type"] == "system" and rec.get("subtype") == "init":
        return True
    return True if rec["type"] in ("assistant", "user", "result", "stream_event") else None


FORMATS = (
    StreamFormat("claude-stream-json", "claude-code", ClaudeStreamAdapter, _claude,
                 "session_id", "the stream ends without a result record"),
    StreamFormat("codex-exec-json", "codex", CodexExecAdapter, _codex, "thread_id",
                 "the stream ends without turn.completed or turn.failed"),
    StreamFormat("opencode-run", "opencode", OpenCodeRunAdapter, _opencode, "sessionID",
                 "the stream ends inside a step (no done record, no final step_finish)"),
)


class LiveStreamImporter:
    """``--format claude-stream-json|codex-exec-json|opencode-run`` (see the module docstring)."""

    def __init__(self, fmt: StreamFormat):
        self.fmt = fmt
        self.name = fmt.name
        self.known = fmt.adapter.known

    def detect(self, path: Path) -> bool:
        return sniff_json_lines(path, self.fmt.decide)

    def read(self, path: Path, ctx: ImportContext) -> None:
        fmt = self.fmt
        session = version = model = cwd = ""
        first_ts, records, bad = None, 0, 0
        for _, _, rec, err in json_lines(path):
            if err or not isinstance(rec.get("type"), str):
                bad += 1
                continue
            records += 1
            session = session or str(rec.get(fmt.session_key) or "")
            first_ts = first_ts or parse_ts(rec.get("timestamp"))
            if rec["type"] == "system" and rec.get("subtype") == "init":
                version = version or str(rec.get("claude_code_version") or "")
                model = model or str(rec.get("model") or "")
                cwd = cwd or str(rec.get("cwd") or "")
        require_records(path, fmt.name, records, bad)
        started_ts = first_ts or uuid7_ns(session) or 0
        started = RunStarted(agent=fmt.agent, agent_version=version, model=model, workdir=cwd,
                             tags={"session_id": session} if session else {},
                             source=f"import:{fmt.name}", source_version=version)
        sink = ctx.new_run(source_key(fmt.name, file_sha256(path), session), started, started_ts)
        if sink is None:
            return
        adapter = fmt.adapter(clock=lambda: 0)
        t = Transcript(sink, fmt.name, started_ts, adapter)
        for n, text, rec, err in json_lines(path):
            if rec is not None:
                t.location = f"{path.name}:{n}"
                t.at_time(rec.get("timestamp"))
            t.raw(text, f"{path.name}:{n}", err)
            if not err:
                t.emits(adapter.feed(text, "stdout"))
        t.emits(adapter.finish())
        _end(t, adapter, fmt)


def _end(t: Transcript, adapter: JsonLineAdapter, fmt: StreamFormat) -> None:
    state = adapter.state
    if state.model_calls_failed and not state.model_calls_ok:
        t.end("failed", f"no model call succeeded ({state.model_calls_failed} failed): "
                        f"{state.last_error}")
    elif t.turn_status == "completed":
        t.end("completed")
    elif t.turn_status == "failed":
        limit = state.extra.get("limit")
        t.end("limit" if limit else "failed",
              state.last_error or ("the last turn failed" if not limit else str(limit)))
    else:
        t.end_without_marker(fmt.evidence if adapter.turn else "the stream has no turn")


for _fmt in FORMATS:
    register(LiveStreamImporter(_fmt))
