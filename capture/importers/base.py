"""The import framework: formats are detected, each source becomes runs, atomically and once.

Contracts every importer gets from here (importers only parse):

* **Atomic**: a run is built in a staging directory and moved into the store by one rename when
  it is complete. A source that fails (truncated file, corrupt bundle, wrong format) leaves the
  store exactly as it was.
* **Idempotent**: a run's id is derived from its source key (see ``derived_run_id``); importing
  the same source again finds the run and skips it.
* **Never overwritten**: a session that went on (its file grew, so its key changed) imports as a
  new run of the whole session, whose ``parent_run`` is the most complete earlier import of the
  same session that it extends: same ``source`` and the same ``session_id`` (and ``agent_id``)
  tags (:meth:`ImportContext.new_run`), its raw records first (:func:`~.continuation.extends`); a truncated
  or older copy is a run of its own. The earlier run stays as it was.
* **Lossless**: importers keep every source record verbatim as a ``raw_recorded`` event (source
  ``import:<format>``, location ``file:line`` or ``file#member``) beside the parsed events.
* **Redacted**: every event and every text put in the blob store goes through one
  :class:`~agtrace.eventlog.Redactor` (here, not in the importers): secrets in parsed events and
  raw records are replaced before anything is stored, a raw record says how many it lost
  (``redactions``), and ``run_ended.redactions`` counts the run's. A text (a raw record above
  all) is redacted as :meth:`~agtrace.eventlog.Redactor.redact_json` redacts an appended line:
  when it is JSON with ``\\u`` escapes, string by string too, so a secret written as
  ``\\u0073k-…`` is found in its decoded form (and the line is re-encoded).
* **No credential files in trees**: repository state an importer brings (a bundle's commits,
  patches applied to a base commit) goes into a scratch repository, and each tree a snapshot
  records is without the credential files a captured snapshot would leave out; only those
  snapshots reach the run's shadow repository and bundles (``trees.py``).
* **Bad records** (malformed: bad JSON, wrong shape, a field of the wrong type) are reported
  with their location through :meth:`RunSink.bad` and skipped; the rest of the source is
  imported, and the command exits non-zero with the count.
* **Unknown records** are tolerated by design: each importer lists the record types it knows per
  format version (:attr:`Importer.known`, looked up with
  :func:`~agtrace.capture.adapter.known_types`); a record of any
  other type was written by a newer tool. It is kept raw like every record, counted by type with
  :meth:`RunSink.unknown` and reported as a warning (:attr:`ImportResult.unknown`); it is never
  an error and never an ``error_occurred`` event, so a newer tool version cannot turn a good
  file into a failure.
* **Detection** (:meth:`Importer.detect`) reads as much of a source as it needs to decide, up to
  :data:`DETECT_BYTES` or :data:`DETECT_RECORDS` records (:func:`sniff_json_lines`), never a
  fixed first few lines.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from agtrace.eventlog import (
    INT_MAX,
    ErrorOccurred,
    Event,
    InvalidEvent,
    RawRecorded,
    Redactor,
    RunEnded,
    RunExists,
    RunStarted,
    RunWriter,
    Scored,
    Store,
    check_record,
    derived_run_id,
)

from ..errors import ImportError_, UnknownFormat
from ..usage import token_count
from .continuation import wrong_parents
from .result import BadRecord, ImportResult
from .trees import ImportedTrees

DETECT_BYTES = 256 * 1024
"""How far into a file detection may read."""
DETECT_RECORDS = 200
"""How many records detection may look at before it gives up undecided."""



class RunSink:
    """Where an importer writes one run. Obtained from :meth:`ImportContext.new_run`."""

    def __init__(self, store: Store, run_id: str, staging: Path, started: RunStarted, started_ts: int,
                 redactor: Redactor | None = None):
        self.store = store
        self.run_id = run_id
        self.dir = staging / run_id
        self.dir.mkdir(parents=True)
        self.redactor = redactor or Redactor.from_env(os.environ)
        self.redactions = 0
        """Secrets redacted in this run so far (``run_ended.redactions``)."""
        self._blob_redactions: dict[str, int] = {}
        self._inline: tuple[str, int] = ("", 0)
        """The last inline text :meth:`text` returned and how many secrets it lost (for its raw record)."""
        self._location = ""
        self.writer = RunWriter(self.dir, run_id, durability="off")
        started = self._redacted(started)
        self.writer.append(started, ts=started_ts)
        self.started = started
        self.bad_records: list[BadRecord] = []
        self.unknown_records: dict[str, int] = {}
        self.unknown_at: dict[str, str] = {}
        self.ignored_times = 0
        self.ignored_time_at = ""
        self.ignored_counts = 0
        self.ignored_count_at = ""
        self.trees = ImportedTrees(self.dir)
        """Repository state this importer brings (``trees.py``)."""
        self._scores: RunWriter | None = None

    def append(self, event: Event, part: int | None = None, ts: int | None = None) -> None:
        """Append ``event``, redacted (see the module docstring). An event whose values break
        the store's limits (``agtrace.eventlog.check_record``: an integer beyond 64 bits, too
        deep, invalid text) is a bad record at the location of the raw record before it."""
        if isinstance(event, RawRecorded) and event.location:
            self._location = event.location
        try:
            check_record(event, ts, part, text=True)
        except InvalidEvent as exc:
            if isinstance(event, ErrorOccurred):
                raise  # a bad record's own report: the source cannot be imported
            self.bad(self._location or f"run {self.run_id}", str(exc))
            return
        self.writer.append(self._redacted(event), part=part, ts=ts)

    def _redacted(self, event: Event) -> Event:
        """``event`` with its secrets replaced and counted. The inline text of a raw record is
        redacted once, as JSON (:meth:`_redact_text`, by :meth:`text` or here); the rest of the
        event apart from it, so the record's text, the bulk of an import, is not redacted twice."""
        if isinstance(event, RawRecorded) and event.text and not event.blob:
            inline, held = self._inline
            if event.text != inline:  # not redacted by text() yet: a raw line's \u-escaped secrets
                inline, held = self._redact_text(event.text)
                self.redactions += held
            self._inline = ("", 0)
            rest, n = self.redactor.redact_event(msgspec.structs.replace(event, text=""))
            self.redactions += n
            return msgspec.structs.replace(rest, text=inline, redactions=rest.redactions + held)
        event, n = self.redactor.redact_event(event)
        self.redactions += n
        if isinstance(event, RawRecorded) and event.blob in self._blob_redactions:
            held = self._blob_redactions.pop(event.blob)
            event = msgspec.structs.replace(event, redactions=event.redactions + held)
        elif isinstance(event, RunEnded):
            event = msgspec.structs.replace(event, redactions=event.redactions + self.redactions)
        return event

    def score(self, event: Scored, part: int | None = None, ts: int | None = None) -> None:
        """Append a score the source recorded to the run's score stream, where re-scores go
        too (``agtrace scores`` lists both)."""
        if self._scores is None:
            self._scores = RunWriter(self.dir, self.run_id, stream="scores", durability="off")
        self._scores.append(self._redacted(event), part=part, ts=ts)

    def close(self) -> None:
        """Close the run's writers and publish its snapshots (the run is complete; it can be
        adopted)."""
        self.writer.close()
        if self._scores is not None:
            self._scores.close()
        self.trees.publish()

    def abandon(self) -> None:
        """Drop what a failed import left open."""
        for writer in (self.writer, self._scores):
            if writer is not None and not writer._closed:  # noqa: SLF001
                writer.abandon()

    def bad(self, location: str, message: str) -> None:
        """Report a malformed record (bad JSON, wrong shape, a field of the wrong type); it is
        recorded as an error event too, and the import exits non-zero."""
        message = self.redactor.redact(message)[0]
        self.bad_records.append(BadRecord(location, message))
        self.append(ErrorOccurred(message=f"{location}: {message}", origin="import"))

    def unknown(self, location: str, record_type: str) -> None:
        """Count a record of a type the importer does not know (a newer tool wrote it).

        The importer keeps the record raw as it keeps every record; this only counts it, by
        type, with the first ``location`` of each type. A warning, never an error or an event.
        """
        self.unknown_records[record_type] = self.unknown_records.get(record_type, 0) + 1
        self.unknown_at.setdefault(record_type, location)

    def ignored_time(self, location: str, problem: str) -> None:
        """Count a record whose time no event can carry (NaN, past the year 2262): the record is
        imported at the time before it. A warning with the first location, never an error."""
        self.ignored_times += 1
        if not self.ignored_time_at:
            self.ignored_time_at = f"{location}: {self.redactor.redact(problem)[0]}"

    def count(self, value: Any, name: str, location: str) -> int:
        """A counter the source recorded (retries, tests passed or total, tokens sent) as an int
        ≥ 0, read as :func:`~agtrace.capture.usage.token_count` reads token counts. Absent or
        null is 0 in silence; any other value that is no finite number ≥ 0 (a string, ``NaN``,
        ``Infinity``, ``1e400``, a negative number) counts 0 too and is reported as a warning with
        the first ``location`` (never an error: the rest of the source imports)."""
        n = token_count(value)
        if value is not None and (n != value or isinstance(value, bool)):
            self.ignored_counts += 1
            if not self.ignored_count_at:
                shown = repr(value) if isinstance(value, str) else str(value)
                shown = shown if len(shown) <= 40 else f"{shown[:20]}…({len(shown)} characters)"
                self.ignored_count_at = f"{location}: {self.redactor.redact(f'{name} {shown}')[0]}"
        return n

    def text(self, text: str) -> tuple[str, str, int]:
        """``(inline, blob, nbytes)`` for a possibly large text (see BlobStore.inline_or_put),
        redacted before it is stored (a JSON text also string by string, see the module
        docstring); a raw record of the text (the blob, or the inline text just returned)
        counts its redactions."""
        text, n = self._redact_text(text)
        inline, blob, nbytes = self.store.blobs.inline_or_put(text)
        if not blob:
            self._inline = (inline, n)
        if n:
            self.redactions += n
            if blob:
                self._blob_redactions[blob] = self._blob_redactions.get(blob, 0) + n
        return inline, blob, nbytes

    def _redact_text(self, text: str) -> tuple[str, int]:
        """``text`` redacted by :meth:`~agtrace.eventlog.Redactor.redact_json` (as ``agtrace
        append`` redacts a line): a text that is not JSON is redacted as text."""
        data, n = self.redactor.redact_json(text.encode("utf-8", "surrogateescape"))
        return (data.decode("utf-8", "surrogateescape"), n) if n else (text, 0)


@dataclass
class ImportContext:
    """What an importer gets: the store, options, and a way to start runs."""

    store: Store
    repo: Path | None = None
    staging: Path | None = None
    sinks: list[RunSink] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)
    redactor: Redactor = field(default_factory=lambda: Redactor.from_env(os.environ))
    """One per source: a secret learned in one of its runs is redacted in the others too."""
    chosen_parents: dict[str, str] = field(default_factory=dict)
    """Run id -> the earlier import it continues ("" for none), when already decided (see
    :func:`import_source`: a shorter or older copy of a session is no continuation of it)."""

    def new_run(self, key: str, started: RunStarted, started_ts: int) -> RunSink | None:
        """Start a run for the source record set named by ``key``; None if it was imported before.

        A run of a session imported before under another key (the session went on) gets that
        earlier run as ``parent_run`` (see the module docstring)."""
        started = msgspec.structs.replace(started, config=_fit_ints(started.config))
        run_id = derived_run_id(started_ts, key)
        if self.store.has_run(run_id):
            self.skipped_existing.append(run_id)
            return None
        parent = "" if started.parent_run else self.chosen_parents[run_id] \
            if run_id in self.chosen_parents else self.earlier_import(started, run_id)
        if parent:
            started = msgspec.structs.replace(started, parent_run=parent)
            self.parents[run_id] = parent
        if self.staging is None:
            self.staging = self.store.staging_dir()
        sink = RunSink(self.store, run_id, self.staging, started, started_ts, self.redactor)
        self.sinks.append(sink)
        return sink

    def earlier_import(self, started: RunStarted, run_id: str) -> str:
        """The most complete run imported from the same session (source and session/agent tags),
        or "": the one with the most events, the newest of those (a session that went on has
        more events at each import; an older or truncated copy imported since has fewer)."""
        earlier = self.earlier_imports(started, run_id)
        return earlier[0] if earlier else ""

    def earlier_imports(self, started: RunStarted, run_id: str) -> list[str]:
        """The runs imported from the same session as ``started``, most complete first (see
        :meth:`earlier_import`)."""
        session = started.tags.get("session_id", "")
        if not session or not started.source.startswith("import:"):
            return []
        rows = self.store.catalog.conn.execute(
            "SELECT id FROM runs WHERE source = ? AND id != ? "
            "AND json_extract(tags, '$.session_id') = ? "
            "AND coalesce(json_extract(tags, '$.agent_id'), '') = ? "
            "ORDER BY coalesce(events, 0) DESC, rowid DESC",
            [started.source, run_id, session, started.tags.get("agent_id", "")]).fetchall()
        return [r[0] for r in rows]


def _fit_ints(value: Any) -> Any:
    """``value`` with every integer beyond 64 bits (a seed of 30 digits in a source's config)
    kept as its decimal string: no stored value may hold one (``agtrace.eventlog.INT_MAX``)."""
    if isinstance(value, dict):
        return {k: _fit_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fit_ints(v) for v in value]
    if type(value) is int and not -INT_MAX - 1 <= value <= INT_MAX:
        return str(value)
    return value


class Importer(Protocol):
    """One source format."""

    name: str
    """Format name for ``--format`` (``envoi-trace``, ``codex-rollout``, …)."""

    known: Mapping[str, frozenset[str]]
    """For each format version the importer knows (or ``"*"``), the record types it
    understands; :func:`~agtrace.capture.adapter.known_types` says how a source's version
    picks its set."""

    def detect(self, path: Path) -> bool:
        """True if ``path`` (a file or directory) is in this format. Reads as much as it needs
        to decide, within :data:`DETECT_BYTES` / :data:`DETECT_RECORDS`; a directory importer
        may look inside the directory. Never parses the whole source."""
        ...

    def read(self, path: Path, ctx: ImportContext) -> None:
        """Import ``path``: start runs with ``ctx.new_run`` and append their events.

        Raise :class:`ImportError_` (with the file and what to do) when the source as a whole
        cannot be imported; report single bad records with ``sink.bad`` instead.
        """
        ...




def _shape_error(exc: Exception) -> str:
    """What a reader's unexpected exception says about the source, in words, with Python's own
    message (the field it tripped on is often in it) for whoever reports it."""
    if isinstance(exc, (AttributeError, TypeError, KeyError, IndexError, ValueError)):
        return f"a field is missing or has a value of another type than this importer reads ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


def import_source(store: Store, path: Path, importer: Importer, repo: Path | None = None) -> ImportResult:
    """Import one source with one importer, all or nothing (see the module docstring)."""
    ctx = ImportContext(store, repo=repo)
    result = ImportResult(str(path), importer.name)
    try:
        importer.read(path, ctx)
        for sink in ctx.sinks:
            sink.close()
        chosen = wrong_parents(store, ctx)
        if chosen:  # a run would continue an import it does not extend: read again, linked right
            _discard(ctx)
            ctx = ImportContext(store, repo=repo, chosen_parents=chosen)
            importer.read(path, ctx)
            for sink in ctx.sinks:
                sink.close()
        for sink in ctx.sinks:
            try:
                store.adopt(sink.dir)
            except RunExists:  # another import of the same source adopted it since new_run
                ctx.skipped_existing.append(sink.run_id)
                continue
            result.runs.append(sink.run_id)
            result.bad_records.extend(sink.bad_records)
            for kind, n in sink.unknown_records.items():
                result.unknown[kind] = result.unknown.get(kind, 0) + n
                result.unknown_at.setdefault(kind, sink.unknown_at[kind])
            result.ignored_times += sink.ignored_times
            result.ignored_time_at = result.ignored_time_at or sink.ignored_time_at
            result.ignored_counts += sink.ignored_counts
            result.ignored_count_at = result.ignored_count_at or sink.ignored_count_at
            result.left_out += len(sink.trees.left_out)
            result.left_out_first = result.left_out_first or next(
                (f"{path} ({why})" for path, why in sink.trees.left_out.items()), "")
            if sink.run_id in ctx.parents:
                result.parents[sink.run_id] = ctx.parents[sink.run_id]
    except ImportError_ as exc:
        result.error = str(exc)
    except RecursionError:
        result.error = (f"{path}: could not be imported as {importer.name}: its JSON nests deeper than "
                        "this reader can follow; nothing of it was stored")
    except Exception as exc:  # noqa: BLE001 - one source fails alone, whatever its reader raised
        result.error = (f"{path}: could not be imported as {importer.name}: {_shape_error(exc)}; nothing of it "
                        f"was stored (if the file is good, e.g. written by a newer version of the tool, report it "
                        f"with the file)")
    finally:
        _discard(ctx)
    if result.error:
        for run_id in result.runs:  # a later run of the same source failed: undo the earlier ones
            shutil.rmtree(store.run_dir(run_id), ignore_errors=True)
            store.catalog.forget(run_id)
        result.runs = []
        result.bad_records, result.unknown, result.unknown_at, result.parents = [], {}, {}, {}
        result.ignored_times, result.ignored_time_at = 0, ""
        result.ignored_counts, result.ignored_count_at = 0, ""
        result.left_out, result.left_out_first = 0, ""
    result.existing = ctx.skipped_existing
    return result


def _discard(ctx: ImportContext) -> None:
    """Drop what ``ctx``'s importer left open and staged (adopted runs have left staging)."""
    for sink in ctx.sinks:
        sink.abandon()
    if ctx.staging is not None:
        shutil.rmtree(ctx.staging, ignore_errors=True)


MALFORMED = (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError, OverflowError)
"""What reading a malformed or unreadable source raises: it fails that source alone (or, while
detecting, means "not this format"), never the whole import."""


def detect(path: Path, importers: dict[str, Importer]) -> Importer:
    """The importer whose ``detect`` accepts ``path``; :class:`UnknownFormat` if none does."""
    for importer in importers.values():
        try:
            if importer.detect(path):
                return importer
        except MALFORMED:
            continue
    known = ", ".join(sorted(importers))
    if _is_empty(path):  # "not recognised" sent people looking for a --format that reads nothing
        raise UnknownFormat(f"{path}: the file is empty (or only blank); nothing to import")
    raise UnknownFormat(f"{path}: format not recognised; pass --format (one of: {known})")


def _is_empty(path: Path) -> bool:
    """Whether ``path`` is a regular file of nothing but whitespace (read up to 64 KiB)."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(65536)
            return not head.strip() and not fh.read(1)
    except OSError:
        return False


def stat_key(path: Path) -> str:
    """A source key from the content of a file or of every file under a directory."""
    import hashlib

    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(os.fsencode(f.relative_to(path.parent if path.is_file() else path)))
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# -- tolerance ----------------------------------------------------------------------------------


def sniff_json_lines(path: Path, decide: Callable[[dict[str, Any]], bool | None], *,
                     max_bytes: int = DETECT_BYTES, max_records: int = DETECT_RECORDS) -> bool:
    """Detection of a JSON-lines format: ``decide`` is asked about each JSON-object line in turn
    until it answers True (this format) or False (another format); None means "undecided, read
    on" (bookkeeping records, a line that is not JSON). Stops undecided (False) after
    ``max_bytes`` or ``max_records`` records. A directory is never a JSON-lines source."""
    if not path.is_file():
        return False
    records = 0
    with open(path, "rb") as fh:
        data = fh.read(max_bytes)
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a torn, foreign or absurdly nested line: it does not decide anything
        records += 1
        if isinstance(obj, dict):
            verdict = decide(obj)
            if verdict is not None:
                return verdict
        if records >= max_records:
            break
    return False
