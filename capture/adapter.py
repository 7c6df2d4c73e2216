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

Tolerance: adapters and importers list the record types they know per format version
(``known``, resolved with :func:`known_types`). A record of another type was written by a newer
agent version: it is kept raw (as every line is), counted by type in
:attr:`AdapterState.unknown` and shown as a warning at the end of the run
(:func:`unknown_warning`); it is never a parse error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    unknown: dict[str, int] = field(default_factory=dict)
    """Records of types the adapter does not know, counted by type (kept raw, not parsed)."""
    warnings: list[str] = field(default_factory=list)
    """What the adapter could not read although it should have, in words (shown at the end of
    the run with the capture's own warnings; Codex: a rollout it did not find)."""


class Adapter(Protocol):
    """What ``agtrace run`` needs from an agent output parser."""

    name: str
    """Stable adapter name, also used as the raw record ``source`` (``codex.exec_json``)."""

    state: AdapterState

    def feed(self, line: str, stream: str) -> list[Emit]:
        """Parse one line (without its newline) from ``stream`` (``stdout`` or ``stderr``)."""
        ...

    def tick(self, now_s: float) -> list[Emit]:
        """Called about every 0.2 s with a monotonic clock, lines or not (time-based parts)."""
        ...

    def finish(self) -> list[Emit]:
        """The agent exited: close any part still open and return the last events."""
        ...


_NUMBER = re.compile(r"\d+")


def version_key(version: str) -> tuple[int, ...] | None:
    """The numbers of a version string, for ordering (``"0.104.0-alpha.1"`` → ``(0, 104, 0)``,
    ``"v1"`` → ``(1,)``); None when it has none. A pre-release suffix is ignored."""
    core = re.split(r"[-+ ]", version.strip().lstrip("vV"), maxsplit=1)[0]
    numbers = _NUMBER.findall(core)
    return tuple(int(n) for n in numbers) if numbers else None


def known_types(known: Mapping[str, frozenset[str]], version: str = "") -> frozenset[str]:
    """The record types known for a source (or stream) of ``version``.

    Keys of ``known`` other than ``"*"`` are versions from which a set applies: a source gets
    the set of the newest listed version not newer than its own, so a newer tool keeps the
    newest set and only its new record types are unknown. ``"*"`` is the set for a source whose
    version is unreadable or older than every listed one, and for lists without versions.
    """
    want = version_key(version) if version else None
    best: tuple[tuple[int, ...], frozenset[str]] | None = None
    if want is not None:
        for key, types in known.items():
            have = version_key(key) if key != "*" else None
            if have is not None and have <= want and (best is None or have > best[0]):
                best = (have, types)
    return best[1] if best is not None else known.get("*", frozenset())


def unknown_warning(counts: Mapping[str, int], what: str) -> str:
    """The warning shown for records of unknown types (``what`` names the reader), or ""."""
    if not counts:
        return ""
    kinds = ", ".join(f"{kind} ×{n}" for kind, n in sorted(counts.items()))
    n = sum(counts.values())
    records = "1 record of a type" if n == 1 else f"{n} records of types"
    return (f"{records} unknown to the {what} kept raw, not parsed (written by a newer "
            f"version?): {kinds}")
