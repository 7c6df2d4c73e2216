"""What the importers of agent-native transcripts share (Codex, Claude Code, OpenCode, SWE-agent,
OpenHands, Inspect): source keys, timestamps, peeking, raw records, part numbering, run end.

Contracts kept here for every transcript importer:

* **Key**: a run's source key is ``<format>:<sha256 of the file bytes>:<session or sample id>``,
  so importing the same file again finds its runs, and a file that grew (a session that went on)
  is a new source.
* **Raw first**: every source record is appended verbatim as ``raw_recorded``
  (``source="import:<format>"``, ``location="<file name>:<line>"`` for JSON lines,
  ``<file name>`` for a whole JSON document, ``<file name>#<member>`` for a zip member) before
  the events parsed from it. A record that cannot be parsed keeps its raw event, with
  ``parse_error`` set, and is reported with :meth:`RunSink.bad`; the import goes on.
* **Unknown record types** (not in the importer's ``known`` set for the source's version) are
  kept raw like every record and counted with :meth:`RunSink.unknown`
  (:meth:`Transcript.knows`); records a live adapter does not know are counted the same way.
* **Parts** are numbered 1..N in the order the transcript completes them; :class:`Transcript`
  wraps a :class:`~agtrace.capture.adapters.base.JsonLineAdapter` so tool parts get the same
  events as live capture (``tool_called``, ``tool_returned``, agent ``file_changed``,
  ``tests_ran`` for test commands, ``part_ended``). Absolute paths of agent-reported file
  changes inside the run's ``workdir`` are made relative to it, as live capture does.
* **Status from evidence**: a transcript whose end marker says how it ended gets that
  ``run_ended``. One with no end marker is never ``completed``: when its last record is older than
  :data:`~agtrace.eventlog.store.STALE_WITHOUT_HEARTBEAT_S` it is ended ``crashed`` with the
  evidence as reason; a fresher one is left without an end event (it may still be written).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agtrace.eventlog import (
    STALE_WITHOUT_HEARTBEAT_S,
    Event,
    FileChanged,
    MessageAdded,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    RunEnded,
    TurnEnded,
)

from ..adapter import Emit
from ..adapters.base import JsonLineAdapter, title_of
from .base import DETECT_BYTES, ImportError_, RunSink

HEAD_BYTES = DETECT_BYTES  # what ``detect`` may read of a whole-document source


# -- sources ------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_key(fmt: str, digest: str, ident: str = "") -> str:
    """The idempotency key of one run of a source (see the module docstring)."""
    return f"{fmt}:{digest}:{ident}"


def head(path: Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file ("" for a directory): what ``detect`` may look at."""
    if not path.is_file():
        return b""
    with open(path, "rb") as fh:
        return fh.read(n)


def load_json_document(path: Path, fmt: str) -> tuple[Any, str]:
    """``(document, text)`` of a whole-file JSON source; :class:`ImportError_` naming the file."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{path}: not UTF-8 text ({exc}); is it a {fmt} file?") from exc
    if not text.strip():
        raise ImportError_(f"{path}: the file is empty; nothing to import as {fmt}")
    try:
        return json.loads(text), text
    except RecursionError:
        raise ImportError_(f"{path}: its JSON nests deeper than this reader follows; nothing of it was "
                           "imported") from None
    except ValueError as exc:
        raise ImportError_(
            f"{path}: not valid JSON at line {getattr(exc, 'lineno', '?')} "
            f"({exc}); the file is truncated or is not a {fmt} file") from exc


TORN = ("; it is the file's last line and has no newline: cut off while it was being written (a session still "
        "running, or one whose agent was killed). Import again once the session is complete: it is imported as a "
        "new run continuing this one")
"""What a bad JSON line that is a file's last, without a newline, adds to its error."""


def json_lines(path: Path) -> Iterator[tuple[int, str, Any, str]]:
    """``(line number, text, object or None, error)`` for each non-blank line of a JSONL file.

    ``error`` is "" when the line is a JSON object; otherwise it says why not, and the caller
    reports the line as a bad record (a torn last line of a live transcript is the usual case:
    its error says so when the file's last line is not JSON and has no newline).
    """
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            whole = raw.endswith(b"\n")  # only the file's last line can lack one
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            text = raw.decode("utf-8", "replace")
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                yield n, text, None, f"invalid JSON: {exc}" + ("" if whole else TORN)
                continue
            except RecursionError:
                yield n, text, None, "invalid JSON: nested deeper than this reader follows (the limit is 64 levels)"
                continue
            if not isinstance(obj, dict):
                yield n, text, None, f"expected a JSON object, got {type(obj).__name__}"
                continue
            yield n, text, obj, ""


def require_records(path: Path, fmt: str, records: int, bad: int) -> None:
    """Refuse a JSONL file in which not one line is a record of the format."""
    if records == 0:
        what = f"{bad} lines that are not JSON objects" if bad else "no records"
        raise ImportError_(f"{path}: {what}; it is truncated, empty or not a {fmt} file")


# -- time ---------------------------------------------------------------------------------------


TS_MAX = (1 << 63) - 1
"""The latest time an event can carry: ``ts`` is int64 nanoseconds since the epoch (year 2262)."""


def parse_ts(value: Any) -> int | None:
    """Nanoseconds since the epoch of an ISO-8601 string (naive = UTC) or epoch s/ms number.

    None for anything else, including a time no event can carry (not finite, before 1970,
    after :data:`TS_MAX`; :meth:`Transcript.time_of` reports those)."""
    return _ts(value)[0]


def _ts(value: Any) -> tuple[int | None, str]:
    """``(ns, "")`` of a time, ``(None, why)`` of a time no event can carry, ``(None, "")``
    of anything else (no time, not a time)."""
    if isinstance(value, bool):
        return None, ""
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"timestamp {value!r} is not a finite number"
        if value <= 0:
            return None, ""
        if value > TS_MAX:  # already out of range as ns, whichever unit it is in
            return None, f"timestamp {_short(value)} is after the year 2262"
        ns = int(value * 1e6) if value > 1e11 else int(value * 1e9)
    elif isinstance(value, str) and value:
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None, ""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        try:
            ns = int(when.timestamp() * 1_000_000) * 1000
        except (OverflowError, ValueError):
            return None, f"timestamp {_short(value)} is out of range"
    else:
        return None, ""
    if not 0 <= ns <= TS_MAX:
        return None, f"timestamp {_short(value)} is {'before 1970' if ns < 0 else 'after the year 2262'}"
    return ns, ""


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"


def uuid7_ns(text: Any) -> int | None:
    """The creation time of a UUIDv7 (Codex thread ids), else None."""
    try:
        u = uuid.UUID(str(text))
    except ValueError:
        return None
    return (u.int >> 80) * 1_000_000 if u.version == 7 else None


def text_of(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- patches ------------------------------------------------------------------------------------

_DIFF_HEADER = re.compile(r"^diff --git a/(.+?) b/(.+?)\s*$")


def diff_files(diff: str) -> list[FileChanged]:
    """``file_changed(origin="agent")`` for each file of a unified ``git diff`` text."""
    out: list[FileChanged] = []
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            out.append(FileChanged(path=cur["path"], change=cur["change"], old_path=cur["old"],
                                   origin="agent", lines_added=cur["add"],
                                   lines_removed=cur["del"]))

    for line in (diff or "").replace("\r\n", "\n").split("\n"):
        m = _DIFF_HEADER.match(line)
        if m:
            flush()
            cur = {"path": m.group(2), "change": "modify", "old": "", "add": 0, "del": 0,
                   "hunk": False}
            if m.group(1) != m.group(2):
                cur["change"], cur["old"] = "rename", m.group(1)
            continue
        if cur is None:
            continue
        if not cur["hunk"]:
            if line.startswith("new file mode"):
                cur["change"] = "add"
            elif line.startswith("deleted file mode"):
                cur["change"] = "delete"
            elif line.startswith("@@"):
                cur["hunk"] = True
            continue
        if line.startswith("+") and not line.startswith("+++"):
            cur["add"] += 1
        elif line.startswith("-") and not line.startswith("---"):
            cur["del"] += 1
    flush()
    return out


# -- writing a run ------------------------------------------------------------------------------


class Transcript:
    """Writes one imported run: raw records, numbered parts, the end. Wraps one sink.

    ``parts`` is a live-capture adapter used as the part numberer and tool-part builder, so a
    transcript importer can also feed records straight through a live adapter (``adapter=``).
    """

    def __init__(self, sink: RunSink, fmt: str, ts: int, adapter: JsonLineAdapter | None = None,
                 types: frozenset[str] | None = None):
        self.sink = sink
        self.source = f"import:{fmt}"
        self.ts = ts
        self.last_ts = ts
        self.parts = adapter or JsonLineAdapter(clock=lambda: 0)
        if not self.parts.workdir:  # agent-reported file changes are workdir-relative
            self.parts.workdir = sink.started.workdir
        self.types = types  # the record types known for this source's version; None = all
        self.ended = False
        self.turn_status = ""  # status of the last turn_ended written

    # -- low level

    def at(self, ts: int | None) -> None:
        """Move the clock to a record's time (never backwards: envelopes stay ordered)."""
        if ts is not None and ts > self.ts:
            self.ts = ts

    def time_of(self, value: Any, where: str = "") -> int | None:
        """:func:`parse_ts` of a record's time. A time no event can carry (NaN, infinite, past
        2262) is None and is counted with :meth:`RunSink.ignored_time` at ``where`` (default:
        the current record), a warning: the record keeps the time before it."""
        ts, problem = _ts(value)
        if problem:
            self.sink.ignored_time(where or self.location, problem)
        return ts

    def at_time(self, value: Any) -> None:
        """:meth:`at` the time of the current record, as :meth:`time_of` reads it."""
        self.at(self.time_of(value))

    def emit(self, event: Event, part: int | None = None, ts: int | None = None) -> None:
        ts = self.ts if ts is None else ts
        self.last_ts = max(self.last_ts, ts)
        if isinstance(event, TurnEnded):
            self.turn_status = event.status
        self.sink.append(event, part=part, ts=ts)

    def emits(self, items: list[Emit]) -> None:
        """Append what a live adapter emitted, at the current record's time.

        An adapter reports a record it could not handle as ``raw_recorded`` with
        ``parse_error``; the importer already kept the record, so that becomes a bad record.
        """
        for kind in self.parts.take_unknown():
            self.sink.unknown(self.location, kind)
        for item in items:
            ev = item.event
            if isinstance(ev, RawRecorded):
                self.sink.bad(self.location, ev.parse_error or "record could not be parsed")
                continue
            self.emit(ev, item.part, ts=item.ts or None)

    location = ""

    def raw(self, text: str, location: str, parse_error: str = "") -> None:
        """Keep one source record verbatim; a ``parse_error`` also reports it as bad."""
        self.location = location
        inline, blob, _ = self.sink.text(text)
        self.emit(RawRecorded(source=self.source, text=inline, blob=blob, location=location,
                              parse_error=parse_error))
        if parse_error:
            self.sink.bad(location, parse_error)

    def bad(self, message: str) -> None:
        """Report the current record as bad (its raw event is already kept)."""
        self.sink.bad(self.location, message)

    def knows(self, record_type: str) -> bool:
        """True if the current record's type is known; else it is counted as unknown (its raw
        event is already kept) and the caller skips it."""
        if self.types is None or record_type in self.types:
            return True
        self.sink.unknown(self.location, record_type)
        return False

    # -- parts

    def next_part(self) -> int:
        return self.parts.next_part()

    def message_part(self, role: str, text: str, **fields: Any) -> int:
        n = self.next_part()
        self.emit(MessageAdded(role=role, text=text, **fields), n)
        self.emit(PartEnded(part_kind="message", title=title_of(text) or f"({role} message)"), n)
        return n

    def reasoning_part(self, text: str, encrypted: bool = False) -> int:
        n = self.next_part()
        self.emit(ReasoningAdded(text=text, encrypted=encrypted), n)
        self.emit(PartEnded(part_kind="reasoning",
                            title=title_of(text) or "(encrypted reasoning)"), n)
        return n

    def tool_part(self, **kw: Any) -> int:
        """A tool call with its result as one part (see ``JsonLineAdapter.tool_part``)."""
        self.emits(self.parts.tool_part(**kw))
        return self.parts.parts

    def patch_part(self, changes: list[FileChanged], title: str) -> int | None:
        """A final patch (a submission, a prediction) as one part of agent-reported changes."""
        if not changes:
            return None
        n = self.next_part()
        for change in changes:
            self.emit(change, n)
        self.emit(PartEnded(part_kind="patch", title=title_of(title)), n)
        return n

    # -- the end

    def end(self, status: str, reason: str = "", ts: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self.emit(RunEnded(status=status, reason=reason), ts=max(self.last_ts, ts or 0))

    def end_without_marker(self, evidence: str) -> None:
        """No end marker: ``crashed`` with ``evidence`` once stale, else no end (module doc)."""
        age_s = time.time() - self.last_ts / 1e9
        if age_s > STALE_WITHOUT_HEARTBEAT_S:
            self.end("crashed", f"{evidence}; the transcript has no end marker")
