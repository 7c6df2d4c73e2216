"""A store: a directory of runs, a blob store and the derived catalog.

Layout (normative copy in ``docs/format.md``)::

    <store>/catalog.db                     projections (derived); `agtrace reindex` rebuilds it
    <store>/blobs/<aa>/<sha256>.zst        content-addressed large payloads
    <store>/runs/<run id>/lock             one writer per run
    <store>/runs/<run id>/events/*.seg     the run's events (the truth)
    <store>/runs/<run id>/scores/*.seg     re-scoring results (appended later, never rewritten)
    <store>/runs/<run id>/repo.git         shadow git repository of workspace snapshots
    <store>/runs/<run id>/bundles/*.bundle sealed snapshots as git bundles

This is the public Python API that the CLI wraps: open a store, create a run, append, flush,
read, tail, list, verify, reindex.

The store holds a registry of projections (:mod:`agtrace.eventlog.projection`; by default
:func:`default_projections`: the run catalog, metrics, scores). They are maintained as events
are written: a writer opened by :meth:`Store.open_writer` hands what it wrote to them (at a
run's start and end at once, otherwise at most a second later or when a flush or close is
asked for); :meth:`Store.sync` catches them up from the segments (events written by another
process, a projection rebuilt on open), reading each stream once from the lowest position.

A store whose directory cannot be written (:attr:`Store.read_only`: a read-only mount) is read in
memory: its catalog is a copy of ``catalog.db``, caught up from the segments and never written
back. What must write it raises :class:`ReadOnlyStore` first (:meth:`Store.require_writable`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec

from . import fingerprint, reader, segment, verification
from .annotation import merge_tags, tag_overrides
from .blobs import BlobStore
from .catalog import Catalog, CatalogProjection, RunInfo, damage_status, open_catalog, status_of
from .containment import is_content_address
from .database import BUSY_TIMEOUT_S
from .errors import AmbiguousRunId, CorruptLog, InvalidEvent, RunExists, RunNotFound, StoreError
from .events import Record, RunEnded, RunStarted, kind_of
from .fold_child import FoldChild
from .ids import looks_like_run_id, new_run_id
from .location import is_writable, prepare_root, read_only_error
from .lock import is_locked
from .projection import DAMAGED, NEWER, STREAMS, Projection, ProjectionFailure
from .registry import default_projections
from .verification import VerifyReport
from .writer import RunWriter

SYNC_BATCH = 10_000
"""Records folded per transaction when catching up from the segments."""
_INHERITED: list[Catalog] = []
"""Catalogs a forked child inherited from its parent: held so that they are never closed there."""


class Store:
    """A store directory. Cheap to open; holds one catalog connection (opened on first use).

    ``projections`` is the registry (default :func:`default_projections`); it must include the
    run catalog (:class:`CatalogProjection`). With ``create=False`` a directory that is not a
    store yet (missing, or holding neither ``runs/`` nor ``catalog.db``) raises :class:`StoreError` and nothing is created:
    commands that only read open their store so. With ``claim_directory=False`` (the CLI) an
    existing directory that is no store and not empty raises :class:`StoreNotFound` instead of
    becoming one: a store is never mixed into someone's files. The catalog waits up to ``wait_s`` seconds
    for another process (default 30); ``on_wait(sentence)`` is told when it has waited a second.
    """

    def __init__(self, root: str | os.PathLike, *, create: bool = True, claim_directory: bool = True,
                 projections: Sequence[Projection] | None = None, on_wait: Callable[[str], None] | None = None,
                 wait_s: float = BUSY_TIMEOUT_S):
        self.projections = tuple(projections) if projections is not None else default_projections()
        if not any(isinstance(p, CatalogProjection) for p in self.projections):
            raise ValueError("a store needs the run catalog projection (CatalogProjection) among its projections")
        self.root = Path(root).expanduser()
        self.runs_dir = self.root / "runs"
        prepare_root(self.root, create=create, claim_directory=claim_directory)
        self.read_only = not is_writable(self.root)  # read in memory only (see the module docstring)
        self.runs_dir.mkdir(exist_ok=True)
        self.blobs = BlobStore(self.root / "blobs")
        self._catalog: Catalog | None = None
        self._catalog_pid = 0
        self._on_wait, self.wait_s = on_wait, wait_s
        self.catalog_set_aside: Path | None = None
        self._fold_children: dict[RunWriter, FoldChild] = {}  # a writer's fold child (open_writer)

    @property
    def catalog(self) -> Catalog:
        """The catalog, opened on first use. A ``catalog.db`` that is not an SQLite database (or
        whose header is damaged) is derived data: it is moved aside to
        ``catalog.db.damaged-<ns>`` (named in :attr:`catalog_set_aside`) and rebuilt from the
        segments, so a damaged or replaced catalog never stops a command. A forked child (a
        harness's ``multiprocessing`` pool) opens its own: SQLite forbids using a connection
        across ``fork``, and the parent's is kept, never used or closed, in the child."""
        if self._catalog is not None and self._catalog_pid != os.getpid():
            self.close()
        if self._catalog is None:
            self._catalog, self.catalog_set_aside = open_catalog(
                self.root / "catalog.db", self.projections, on_wait=self._on_wait, read_only=self.read_only,
                wait_s=self.wait_s)
            self._catalog_pid = os.getpid()
        return self._catalog

    def require_writable(self, what: str) -> None:
        """Raise :class:`ReadOnlyStore` (naming the store) before ``what`` writes a read-only store."""
        if self.read_only:
            raise read_only_error(self.root, what)

    def close(self) -> None:
        if self._catalog is not None and self._catalog_pid != os.getpid():
            _INHERITED.append(self._catalog)  # the parent's, in a forked child: never closed here
        elif self._catalog is not None:
            self._catalog.close()
        self._catalog = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run(self, started: RunStarted | None = None, *, run_id: str | None = None,
                   durability: str = "normal", ts: int | None = None) -> RunWriter:
        """Create a run whose first event is ``started``; return its (locked) writer.

        ``prompt_sha256``, ``config_sha256`` and ``host`` are filled in when left empty.
        The ``run_started`` event is durable when this returns (unless durability is ``off``).
        """
        started = started or RunStarted()
        fill = {}
        if started.prompt and not started.prompt_sha256:
            fill["prompt_sha256"] = hashlib.sha256(started.prompt.encode()).hexdigest()
        if started.config and not started.config_sha256:
            canon = msgspec.json.encode(started.config, order="sorted")
            fill["config_sha256"] = hashlib.sha256(canon).hexdigest()
        if not started.host:
            fill["host"] = os.uname().nodename
        if fill:
            started = msgspec.structs.replace(started, **fill)
        self.require_writable("create a run")
        ts = ts if ts is not None else time.time_ns()
        run_id = run_id or new_run_id(ts)
        run_dir = self.run_dir(run_id)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise StoreError(f"run {run_id} already exists in {self.root}; runs are never overwritten") from None
        writer = self.open_writer(run_id, durability=durability)
        writer.append(started, ts=ts)
        return writer

    def open_writer(self, run_id: str, *, durability: str = "normal", stream: str = "events",
                    segment_bytes: int | None = None, fold: str = "here") -> RunWriter:
        """The writer of an existing run's ``stream`` (takes its lock; recovers a torn tail).

        The stream's projections are brought up to date first (if that fails the lock is
        released again), then fed by the writer as it writes (see the module docstring), or
        with ``fold="child"`` (a bulk append) by a forked child following the run's files
        (:mod:`~agtrace.eventlog.fold_child`; where none can be forked, by the writer).
        """
        if fold not in ("here", "child"):
            raise ValueError(f"fold must be 'here' or 'child', not {fold!r}")
        self.require_writable(f"write run {run_id}")
        catalog = self.catalog
        eager = bool(catalog.projections.of(stream))
        child = FoldChild.start(self, run_id) if fold == "child" and eager else None

        def feed(first_seq: int, items) -> None:
            records = [Record(seq, ts, part, ev) for seq, (ts, part, ev) in enumerate(items, first_seq)]
            if not catalog.apply(run_id, records, stream):
                self._sync_stream(run_id, stream)  # a projection is behind (rebuilt): from disk

        extra = {"segment_bytes": segment_bytes} if segment_bytes else {}
        listener = feed if eager and child is None else None
        writer = None
        try:
            writer = RunWriter(self.run_dir(run_id), run_id, stream=stream, durability=durability,
                               listener=listener, **extra)
            self._sync_stream(run_id, stream)
        except BaseException:
            if writer is not None:
                writer.abandon()
            if child is not None:
                child.finish()
            raise
        if child is not None:
            self._fold_children[writer] = child
        return writer

    def close_writer(self, writer: RunWriter) -> None:
        """Close a writer, wait for its fold child (what a failed one left is folded here), record its segments."""
        child = self._fold_children.pop(writer, None)
        try:
            writer.close()
        finally:
            if child is not None and not child.finish():
                self._sync_stream(writer.run_id, writer.stream)
        self.record_segments(writer.run_id)

    def staging_dir(self) -> Path:
        """A fresh private directory on the store's filesystem for building a run off to the side.

        Its name holds this process's host and pid; what a killed import left in ``staging/``
        (its process gone) is removed first."""
        import tempfile

        from . import leftover

        self.require_writable("add a run")
        root = self.root / "staging"
        root.mkdir(exist_ok=True)
        leftover.remove_stale(root)
        return Path(tempfile.mkdtemp(prefix=f"tmp{leftover.tag()}", dir=root))

    def adopt(self, run_dir: str | os.PathLike) -> str:
        """Move a complete run directory built elsewhere (see :meth:`staging_dir`) into the store.

        Atomic (one rename on the same filesystem); refuses to replace an existing run with
        :class:`RunExists`, also when another process adopts the same run id at the same time
        (the rename then finds the directory in place). The catalog is brought up to date.
        Returns the run id (the directory's name).
        """
        run_dir = Path(run_dir)
        run_id = run_dir.name
        self.require_writable(f"add run {run_id}")
        dest = self.run_dir(run_id)
        exists = RunExists(f"run {run_id} already exists in {self.root}; runs are never overwritten")
        if dest.exists():
            raise exists
        try:
            os.rename(run_dir, dest)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and dest.exists():
                raise exists from None
            raise
        self.sync(run_id)
        self.record_segments(run_id)
        return run_id

    def resolve(self, prefix: str) -> str:
        """The full id of the run named by ``prefix`` (a unique prefix, case-insensitive)."""
        prefix = prefix.strip()
        if not looks_like_run_id(prefix):
            raise RunNotFound(f"{prefix!r} is not a run id; `agtrace ls` lists the runs")
        prefix = prefix.upper()
        if (self.runs_dir / prefix / "events").is_dir():  # a whole id: no listing of the runs
            return prefix
        matches = sorted(n for n in os.listdir(self.runs_dir) if n.startswith(prefix))
        if not matches:
            raise RunNotFound(f"no run matches {prefix!r} in {self.root}; `agtrace ls` lists the runs")
        if len(matches) > 1:
            shown = ", ".join(matches[:5])
            raise AmbiguousRunId(f"{prefix!r} matches {len(matches)} runs ({shown}…); give more characters")
        return matches[0]

    def run_ids(self) -> list[str]:
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "events").is_dir())

    def has_run(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "events").is_dir()

    # -- reading -----------------------------------------------------------------------------

    def read(self, run_id: str, start: int = 1, end: int | None = None, *, stream: str = "events") -> Iterator[Record]:
        """Records of a run in seq order (``start..end`` inclusive)."""
        return reader.read_stream(self.run_dir(run_id) / stream, start, end)

    def read_part(self, run_id: str, part: int) -> list[Record]:
        """The events of part ``part``, read by seq range from the catalog (no full scan)."""
        self.sync(run_id)
        row = self.catalog.part_row(run_id, part)
        if row is None:
            return []
        return [r for r in self.read(run_id, row["first_seq"], row["last_seq"]) if r.part == part]

    def tail(self, run_id: str, start: int = 1, *, poll_s: float = 0.2, stream: str = "events") -> Iterator[Record]:
        """Follow a run's ``stream`` until its ``run_ended`` event (events), or until the stream's
        writer is gone (``agtrace rescore`` writing scores)."""
        lock = self.run_dir(run_id) / ("lock" if stream == "events" else f"{stream}.lock")
        seen_end = False

        def stop() -> bool:
            return seen_end or not is_locked(lock)

        for rec in reader.tail(self.run_dir(run_id) / stream, start, poll_s=poll_s, stop=stop):
            yield rec
            if stream == "events" and isinstance(rec.event, RunEnded):
                seen_end = True
                return

    def check_blobs(self, event) -> None:
        """Refuse an event from outside (``agtrace append``) whose blob fields name a blob this
        store does not hold: fields that name blobs are set only by the store (when it puts the
        text), so such an event would fail `verify` and `push` forever.

        Raises:
            InvalidEvent: naming the field's value.
        """
        for digest in verification.blob_refs(event):
            if not is_content_address(digest):
                raise InvalidEvent(f"{kind_of(event)}: blob field {digest[:80]!r} is not a content address (64 "
                                   "lowercase hex digits); blob fields are set by the store, leave them empty")
            if not self.blobs.has(digest):
                raise InvalidEvent(f"{kind_of(event)}: blob {digest} is not in {self.blobs.root}; blob fields are "
                                   "set by the store: pass the full text inline and leave the blob field empty")

    def text(self, inline: str, blob: str) -> str:
        """The full text of an inline-or-blob field pair."""
        return self.blobs.get(blob).decode() if blob else inline

    # -- catalog -----------------------------------------------------------------------------

    def sync(self, run_id: str) -> None:
        """Bring every eager projection up to date with a run's streams (cheap when they are)."""
        for stream in STREAMS:
            self._sync_stream(run_id, stream)

    def catch_up(self, names: Sequence[str], run_ids: Sequence[str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """Bring the lazy projections ``names`` (and every eager one) up to date with the
        events of ``run_ids`` (default: every run), reading only the runs they are behind on.
        ``progress(done, todo)`` is called after each run folded.

        Which runs are behind is one query over ``run_ids`` (:meth:`Catalog.stale_runs`: runs not
        ended count as behind, they may have grown), plus the run directories the catalog does
        not know yet, so a caught-up store costs a directory listing and that query."""
        catalog = self.catalog
        if not names or not all(catalog.projections.get(n) for n in names):
            return
        check = [*names, *(p.name for p in catalog.projections.of("events"))]
        if run_ids is None:
            known = set(catalog.run_ids())
            todo = [r for r in catalog.stale_runs(sorted(os.listdir(self.runs_dir)), check)
                    if r in known or self.has_run(r)]
        else:
            todo = catalog.stale_runs(run_ids, check)
        for i, run_id in enumerate(todo):
            self._sync_stream(run_id, "events", lazy=names)
            if progress:
                progress(i + 1, len(todo))

    def _sync_stream(self, run_id: str, stream: str, *, lazy: Sequence[str] = ()) -> None:
        """Fold what the projections of ``stream`` lack. A stream that cannot be read past some
        seq (a damaged segment) is folded up to there and the run is marked damaged (every
        projection of the stream stops there, see :meth:`Projections.mark_damaged`): one
        damaged run never stops a command on the others."""
        catalog = self.catalog
        for _ in range(3):
            start = catalog.projections.start(run_id, stream, lazy=lazy)
            if start is None:
                return
            fresh = stream == "events" and catalog.position(run_id) == 0
            batch: list[Record] = []
            caught_up = True
            records = self.read(run_id, start, stream=stream)
            damage: Exception | None = None
            next_seq = start
            while True:
                try:
                    rec = next(records)
                except StopIteration:
                    break
                except (OSError, MemoryError):
                    raise
                except Exception as exc:  # noqa: BLE001 - unreadable data: the run is marked below
                    damage = exc
                    break
                batch.append(rec)
                next_seq = rec.seq + 1
                if len(batch) >= SYNC_BATCH:
                    caught_up = catalog.apply(run_id, batch, stream, lazy=lazy)
                    batch = []
                    if not caught_up:
                        break
            if batch and caught_up:
                caught_up = catalog.apply(run_id, batch, stream, lazy=lazy)
            if caught_up:
                if damage is not None:
                    catalog.projections.mark_damaged(run_id, stream, next_seq, _one_line(damage))
                if fresh:
                    self.record_segments(run_id)
                return
        raise StoreError(f"the projections of run {run_id} kept moving back while being caught up "
                         "(another process re-indexing?); run the command again")

    def rebuild(self, run_id: str) -> None:
        """Forget a run's rows in every projection and fold them again from its segments: what
        to do with a catalog row that disagrees with the events (they are the truth)."""
        self.catalog.forget(run_id)
        self.sync(run_id)
        self.record_segments(run_id)

    def record_segments(self, run_id: str) -> None:
        """Refresh the catalog's rows for a run's sealed segments from the files."""
        self.catalog.record_segments(run_id, "events", fingerprint.sealed_segments(self.run_dir(run_id) / "events"))

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Delete the catalog and rebuild every registered projection (and the segment rows)
        from every run's segments. Returns the run count."""
        self.require_writable("rebuild its catalog")
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.root / "catalog.db") + suffix).unlink(missing_ok=True)
        ids = self.run_ids()
        for i, run_id in enumerate(ids):
            self.sync(run_id)
            self.record_segments(run_id)
            if progress:
                progress(i + 1, len(ids))
        return len(ids)

    def info(self, run_id: str, *, sync: bool = True) -> RunInfo:
        """The run's catalog row with its live status (see :func:`status_of`); every projection
        of the run is brought up to date first unless ``sync`` is False (the caller knows they
        are: it holds the run's writer and flushed it); a run whose sealed segments changed on
        disk since they were indexed is folded again first (:mod:`.fingerprint`)."""
        if sync:
            fingerprint.refold_changed(self, [run_id])
            self.sync(run_id)
        row = self.catalog.run_row(run_id)
        if row is None:
            damage = self.damage(run_id)
            if damage is not None:  # damaged before its first event: say so, not "no events"
                raise CorruptLog(damage)
            raise RunNotFound(f"run {run_id} has no events; `agtrace verify {run_id}` checks it")
        return self._info(row, self.catalog.errors(run_id), tag_overrides(self.catalog.conn, run_id).get(run_id))

    def damage(self, run_id: str) -> str | None:
        """Why the run's events cannot be read past some seq (a damaged segment, as the last
        :meth:`sync` found it), in words that name the file and byte and point at ``agtrace
        verify``; None when they read to the end."""
        for failure in self.catalog.errors(run_id):
            if failure.damaged:
                detail = failure.message[len(DAMAGED):].removeprefix("CorruptLog: ")
                if detail.startswith(NEWER):  # no damage: the message says to upgrade
                    return f"run {run_id} cannot be read from seq {failure.seq} on: {detail[len(NEWER):]}"
                verify = f"`agtrace verify {run_id}`"
                detail = (detail.replace("`agtrace verify`", verify) if "`agtrace verify`" in detail
                          else f"{detail}; {verify} says what is damaged and which parts still replay")
                return f"run {run_id} cannot be read from seq {failure.seq} on: {detail}"
        return None

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first, with live status. Folds only the runs some events projection
        has not caught up with (unknown, unfinished, or behind the run catalog), and folds again
        those whose sealed segments changed on disk since they were indexed (:mod:`.fingerprint`)."""
        catalog = self.catalog
        fingerprint.refold_changed(self)
        known = set(catalog.run_ids())
        names = [n for n in os.listdir(self.runs_dir)  # a run the catalog knows has its events dir
                 if n in known or os.path.isdir(os.path.join(self.runs_dir, n, "events"))]
        for run_id in catalog.stale_runs(sorted(names)):
            self._sync_stream(run_id, "events")
        errors: dict[str, list[ProjectionFailure]] = {}
        for e in catalog.errors():
            errors.setdefault(e.run_id, []).append(e)
        tags, rows = tag_overrides(catalog.conn), catalog.run_rows()
        for run_id in sorted(set(errors) - {r["id"] for r in rows}):  # unreadable from their first event:
            if self.has_run(run_id):  # listed as damaged, or as newer-format (upgrade)
                why = str(errors[run_id][0])
                rows.append({"id": run_id, "end_reason": why, "end_status": "newer-format" if segment.NEWER_WORDS in why else "damaged"})
        rows.sort(key=lambda r: r["id"])
        return [self._info(r, errors.get(r["id"], ()), tags.get(r["id"])) for r in rows]

    def _info(self, row: dict, failures: Sequence[ProjectionFailure] = (), tags=None) -> RunInfo:
        """A run's :class:`RunInfo` from its ``runs`` row, its projection failures (a damaged log
        makes it ``damaged``, see :func:`damage_status`) and the tags set or removed after the
        fact (``run_tags``), laid over ``run_started``'s."""
        damage = damage_status(failures)  # else an ended run's status is its end event's: no lock to look at
        alive = not damage and not row["end_status"] and is_locked(self.run_dir(row["id"]) / "lock")
        status, reason = damage or status_of(row, alive)
        stored = json.loads(t) if (t := row.get("tags")) not in (None, "", "{}") else {}
        return RunInfo.of_row(row, status, reason, merge_tags(stored, tags), [str(f) for f in failures])

    # -- verifying ---------------------------------------------------------------------------

    def verify(self, run_id: str | None = None, progress: Callable[[int, int], None] | None = None, *,
               snapshots: bool = True) -> VerifyReport:
        """Check one or all runs: every frame, the run's completeness (manifest, open segment,
        catalog, ``run_ended``), every referenced blob, and the snapshot trees in the shadow
        repository and the bundles; see :mod:`agtrace.eventlog.verification`. The report says,
        per run, which parts can still be replayed. ``snapshots=False`` skips the snapshots."""
        return verification.verify(self, run_id, progress, snapshots=snapshots)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:500]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
