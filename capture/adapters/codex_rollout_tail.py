"""Following the rollout file of a live ``codex exec --json`` run (local capture only).

The JSON stream names no model, reports one cumulative usage per turn and calls every command
``shell``; the rollout the same process writes (``$CODEX_HOME/sessions/**/rollout-*-<thread
id>.jsonl``) has the model of each ``turn_context``, one usage per model response and the
tool each command was run with. :class:`RolloutTail` reads that file as it grows, with the
rollout importer's own record reading (``capture/importers/codex_rollout.py``: the same
record types, the same usage rule: ``token_usage_record`` when the file has them, else the
de-duplicated cumulative ``token_count``), so a live capture and the import of its rollout
give one set of figures.

Only lines stamped at or after ``since_ns`` (the capture's start) count: a ``codex exec
resume`` appends to the thread's existing file, whose earlier turns are not this run's. Their
cumulative ``token_count`` totals still feed the counter, so the first delta of this run is
this run's spend only.

Reads never block and never wait for Codex: a line not yet on disk is read on a later call
(an incomplete last line is left for then). The file is looked for (in ``sessions/YYYY/MM/DD/``,
where Codex writes it) until found, then only the bytes appended since the last read are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agtrace.eventlog import Usage

from ..usage import CumulativeCounter, usage_from_openai

SHELL_TOOLS = frozenset({"exec_command", "shell", "shell_command", "local_shell"})
"""Rollout tools whose calls the stream shows as ``command_execution`` items."""


def codex_home(env: dict[str, str] | None = None) -> Path:
    """The Codex home the agent uses: ``CODEX_HOME`` of its environment, else ``~/.codex``."""
    env = {**os.environ, **(env or {})}
    return Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else Path.home() / ".codex"


class RolloutTail:
    """What the rollout of one thread says so far, past ``since_ns`` (see the module docstring)."""

    def __init__(self, home: Path, since_ns: int) -> None:
        self.home, self.since_ns = home, since_ns
        self.thread_id = ""
        self.path: Path | None = None
        self.offset = 0
        self.model = ""
        self.shell_tools: list[str] = []
        """The tool of each shell call, in order (the n-th ``command_execution`` of the stream)."""
        self.records: list[tuple[str, Usage]] = []  # (response id, usage) of token_usage_record
        self.counts: list[Usage] = []  # de-duplicated token_count deltas
        self._counter = CumulativeCounter()

    def follow(self, thread_id: str) -> None:
        self.thread_id = thread_id

    def usages(self) -> list[tuple[str, Usage]]:
        """One ``(response id, usage)`` per model response so far, as the importer counts them."""
        return self.records or [("", u) for u in self.counts]

    def read(self) -> None:
        """Read what was appended since the last call (finding the file first, if need be)."""
        if not self.thread_id:
            return
        if self.path is None:
            sessions = self.home / "sessions"  # sessions/YYYY/MM/DD/, as Codex writes them
            found = sorted(sessions.glob(f"*/*/*/rollout-*-{self.thread_id}.jsonl")) if sessions.is_dir() else []
            if not found:
                return
            self.path = found[-1]
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for raw in data[:end].splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self._line(rec)

    def _line(self, rec: dict[str, Any]) -> None:
        from ..importers.codex_rollout import record_type
        from ..importers.transcript import parse_ts

        kind = record_type(rec)
        p = rec.get("payload")
        if kind is None or not isinstance(p, dict):
            return
        current = (parse_ts(rec.get("timestamp")) or 0) >= self.since_ns
        if kind == "event_msg/token_count":
            info = p.get("info")
            if isinstance(info, dict) and isinstance(info.get("total_token_usage"), dict):
                delta = self._counter.feed(usage_from_openai(info["total_token_usage"]))
                if delta is not None and current:
                    self.counts.append(delta)
        elif not current:
            return
        elif kind == "turn_context" and p.get("model"):
            self.model = str(p["model"])
        elif kind == "token_usage_record" and isinstance(p.get("usage"), dict):
            self.records.append((str(p.get("response_id") or ""), usage_from_openai(p["usage"])))
        elif kind in ("response_item/function_call", "response_item/local_shell_call"):
            name = "local_shell" if kind.endswith("local_shell_call") else str(p.get("name") or "")
            if name in SHELL_TOOLS:
                self.shell_tools.append(name)
