"""The adapter contract: turn an agent's output lines into events, one line at a time.

An adapter is fed every line the agent prints (stdout and stderr, already redacted) in arrival
order and returns what that line means as :class:`Emit` items. It never raises for bad input:
a line it cannot parse becomes a ``raw_recorded`` event with ``parse_error`` set (the recorder
keeps every line verbatim anyway; adapters do not emit raw records themselves).

Parts: an adapter numbers parts 1..N in order of completion. Every event that belongs to a part
carries its number, and the part is closed by a :class:`PartEnded` emit; the recorder then
snapshots the workspace and stamps the tree id onto the ``part_ended`` event it stores.

Usage: adapters emit ``usage_reported`` as per-part *deltas* (see ``capture/usage.py`` for the
cumulative-to-delta and dedupe helpers), and ``model_called`` for every model response or
failure they can see, because run status is derived from that evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agtrace.eventlog import Event


@dataclass(frozen=True, slots=True)
class Emit:
    """One event an adapter wants stored, with its part (None = not part of a part)."""

    event: Event
    part: int | None = None
    ts: int | None = None  # ns; None = now


@dataclass
class AdapterState:
    """What an adapter learned about the run, read by the recorder when it ends the run."""

    agent_version: str = ""
    model: str = ""
    session_id: str = ""
    model_calls_ok: int = 0
    model_calls_failed: int = 0
    last_error: str = ""
    final_message: str = ""
    extra: dict = field(default_factory=dict)


class Adapter(Protocol):
    """What ``agtrace run`` needs from an agent output parser."""

    name: str
    """Stable adapter name, also used as the raw record ``source`` (``codex.exec_json``)."""

    state: AdapterState

    def feed(self, line: str, stream: str) -> list[Emit]:
        """Parse one line (without its newline) from ``stream`` (``stdout`` or ``stderr``)."""
        ...

    def finish(self) -> list[Emit]:
        """The agent exited: close any part still open and return the last events."""
        ...
