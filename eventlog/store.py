"""A store: a directory of runs, a blob store and the derived catalog.

Layout (normative copy in ``docs/format.md``)::

    <store>/catalog.db                     derived; `agtrace reindex` rebuilds it
    <store>/blobs/<aa>/<sha256>.zst        content-addressed large payloads
    <store>/runs/<run id>/lock             one writer per run
    <store>/runs/<run id>/events/*.seg     the run's events (the truth)
    <store>/runs/<run id>/scores/*.seg     re-scoring results (appended later, never rewritten)
    <store>/runs/<run id>/repo.git         shadow git repository of workspace snapshots
    <store>/runs/<run id>/bundles/*.bundle sealed snapshots as git bundles

This is the public Python API that the CLI wraps: open a store, create a run, append, flush,
read, tail, list, verify, reindex.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from . import reader, segment
from .blobs import BlobStore
from .catalog import Catalog
from .errors import AmbiguousRunId, CorruptBlob, CorruptLog, RunNotFound, StoreError
from .events import (
    Event,
    MessageAdded,
    RawRecorded,
    Record,
    RunEnded,
    RunStarted,
    ToolReturned,
)
from .ids import looks_like_run_id, new_run_id
from .lock import is_locked
from .writer import RunWriter

STALE_WITHOUT_HEARTBEAT_S = 15 * 60
"""A run with no end event, no live writer and no heartbeat setting counts as crashed after
this long without events (plumbing runs fed by `agtrace append`)."""


@dataclass(frozen=True)
class RunInfo:
    """One run as listed: the catalog row plus the live status."""

    id: str
    agent: str
    agent_version: str
    model: str
    task_id: str
    status: str
    reason: str
    parts: int
    events: int
    started_at: int | None
    ended_at: int | None
    last_ts: int | None
    parent_run: str
    tags: dict
    exit_code: int | None = None

    @property
    def duration_s(self) -> float | None:
        end = self.ended_at or self.last_ts
        if self.started_at is None or end is None:
            return None
        return (end - self.started_at) / 1e9

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["duration_s"] = self.duration_s
        return d


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` found. ``ok`` is False when any problem was found."""

    runs: int = 0
    segments: int = 0
    frames: int = 0
    events: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Store:
    """A store directory. Cheap to open; holds one catalog connection."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root).expanduser()
        if not self.root.exists():
            if not create:
                raise StoreError(f"no store at {self.root}; create one with `agtrace new` or pass --store")
            self.root.mkdir(parents=True)
        elif not self.root.is_dir():
            raise StoreError(f"{self.root} is not a directory; pass --store DIR pointing at a store")
        self.runs_dir = self.root / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.blobs = BlobStore(self.root / "blobs")
        self._catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.root / "catalog.db")
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run(
        self,
        started: RunStarted | None = None,
        *,
        run_id: str | None = None,
        durability: str = "normal",
        ts: int | None = None,
    ) -> RunWriter:
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
            fill["host"] = socket.gethostname()
        if fill:
            started = msgspec.structs.replace(started, **fill)
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

    def open_writer(
        self,
        run_id: str,
        *,
        durability: str = "normal",
        stream: str = "events",
        segment_bytes: int | None = None,
    ) -> RunWriter:
        """The writer of an existing run (takes its lock; recovers a torn tail).

        The catalog is brought up to date first; if that fails the lock is released again.
        """
        catalog = self.catalog

        def index(first_seq: int, items) -> None:
            if stream == "events":
                catalog.apply(run_id, first_seq, items)

        extra = {"segment_bytes": segment_bytes} if segment_bytes else {}
        writer = RunWriter(self.run_dir(run_id), run_id, stream=stream, durability=durability,
                           listener=index, **extra)
        if stream == "events":
            try:
                self.sync(run_id)
            except BaseException:
                writer.abandon()
                raise
        return writer

    def close_writer(self, writer: RunWriter) -> None:
        """Close a writer and record its sealed segments in the catalog."""
        writer.close()
        self.record_segments(writer.run_id)

    def staging_dir(self) -> Path:
        """A fresh private directory on the store's filesystem for building a run off to the side."""
        import tempfile

        root = self.root / "staging"
        root.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=root))

    def adopt(self, run_dir: str | os.PathLike) -> str:
        """Move a complete run directory built elsewhere (see :meth:`staging_dir`) into the store.

        Atomic (one rename on the same filesystem); refuses to replace an existing run. The
        catalog is brought up to date. Returns the run id (the directory's name).
        """
        run_dir = Path(run_dir)
        run_id = run_dir.name
        dest = self.run_dir(run_id)
        if dest.exists():
            raise StoreError(f"run {run_id} already exists in {self.root}; runs are never overwritten")
        os.rename(run_dir, dest)
        self.sync(run_id)
        self.record_segments(run_id)
        return run_id

    def resolve(self, prefix: str) -> str:
        """The full id of the run named by ``prefix`` (a unique prefix, case-insensitive)."""
        prefix = prefix.strip()
        if not looks_like_run_id(prefix):
            raise RunNotFound(f"{prefix!r} is not a run id; `agtrace ls` lists the runs")
        prefix = prefix.upper()
        matches = sorted(p.name for p in self.runs_dir.iterdir() if p.name.startswith(prefix))
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

    def tail(self, run_id: str, start: int = 1, *, poll_s: float = 0.2) -> Iterator[Record]:
        """Follow a run until its ``run_ended`` event, or until its writer is gone."""
        lock = self.run_dir(run_id) / "lock"
        seen_end = False

        def stop() -> bool:
            return seen_end or not is_locked(lock)

        for rec in reader.tail(self.run_dir(run_id) / "events", start, poll_s=poll_s, stop=stop):
            yield rec
            if isinstance(rec.event, RunEnded):
                seen_end = True
                return

    def text(self, inline: str, blob: str) -> str:
        """The full text of an inline-or-blob field pair."""
        return self.blobs.get(blob).decode() if blob else inline

    # -- catalog -----------------------------------------------------------------------------

    def sync(self, run_id: str) -> None:
        """Bring the catalog up to date with a run's segments (cheap when it already is)."""
        done = self.catalog.indexed_seq(run_id)
        batch: list = []
        first = done + 1
        for rec in self.read(run_id, done + 1):
            if not batch:
                first = rec.seq
            batch.append((rec.ts, rec.part, rec.event))
            if len(batch) >= 10_000:
                self.catalog.apply(run_id, first, batch)
                batch = []
        if batch:
            self.catalog.apply(run_id, first, batch)

    def record_segments(self, run_id: str) -> None:
        """Refresh the catalog's rows for a run's sealed segments from the files."""
        rows = []
        for first, last, path in reader.list_segments(self.run_dir(run_id) / "events"):
            if last is None:
                continue
            rows.append((path.name, first, last, path.stat().st_size, True))
        self.catalog.record_segments(run_id, "events", rows)

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Delete the catalog and rebuild it from every run's segments. Returns the run count."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(str(self.root / "catalog.db") + suffix)
            except FileNotFoundError:
                pass
        ids = self.run_ids()
        for i, run_id in enumerate(ids):
            self.sync(run_id)
            self.record_segments(run_id)
            if progress:
                progress(i + 1, len(ids))
        return len(ids)

    def info(self, run_id: str) -> RunInfo:
        """The run's catalog row with its live status (see :func:`status_of`)."""
        self.sync(run_id)
        row = self.catalog.run_row(run_id)
        if row is None:
            raise RunNotFound(f"run {run_id} has no events; `agtrace verify {run_id}` checks it")
        return self._info(row)

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first, with live status. Catches the catalog up on unfinished runs."""
        known = {r["id"]: r for r in self.catalog.run_rows()}
        for run_id in self.run_ids():
            row = known.get(run_id)
            if row is None or row["end_status"] is None:
                self.sync(run_id)
        return [self._info(r) for r in self.catalog.run_rows()]

    def _info(self, row: dict) -> RunInfo:
        import json

        status, reason = status_of(row, is_locked(self.run_dir(row["id"]) / "lock"))
        return RunInfo(
            id=row["id"],
            agent=row["agent"] or "",
            agent_version=row["agent_version"] or "",
            model=row["model"] or "",
            task_id=row["task_id"] or "",
            status=status,
            reason=reason,
            parts=row["parts"] or 0,
            events=row["events"] or 0,
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            last_ts=row["last_ts"],
            parent_run=row["parent_run"] or "",
            tags=json.loads(row["tags"] or "{}"),
            exit_code=row["exit_code"],
        )

    # -- verifying ---------------------------------------------------------------------------

    def verify(self, run_id: str | None = None, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Check every frame of every segment (and every referenced blob) of one or all runs.

        Problems are listed with the segment path and byte offset of the first bad frame.
        """
        report = VerifyReport()
        ids = [run_id] if run_id else self.run_ids()
        for i, rid in enumerate(ids):
            report.runs += 1
            for stream in ("events", "scores"):
                self._verify_stream(rid, stream, report)
            if progress:
                progress(i + 1, len(ids))
        return report

    def _verify_stream(self, run_id: str, stream: str, report: VerifyReport) -> None:
        expected = 1
        for first, last, path in reader.list_segments(self.run_dir(run_id) / stream):
            report.segments += 1
            frames, problem, off = segment.scan(path)
            report.frames += len(frames)
            if first != expected:
                report.problems.append(f"{path}: starts at seq {first}, expected {expected} (a segment is missing)")
            if problem:
                report.problems.append(f"{path}: frame at byte {off}: {problem}")
                return
            if frames and frames[0].first_seq != first:
                report.problems.append(f"{path}: first frame starts at seq {frames[0].first_seq}, name says {first}")
            if last is not None and (not frames or frames[-1].last_seq != last):
                report.problems.append(f"{path}: last seq differs from the name's {last}")
            expected = frames[-1].last_seq + 1 if frames else expected
            with open(path, "rb") as fh:
                for info in frames:
                    try:
                        records = _decode_frame(fh, info)
                    except (CorruptLog, msgspec.DecodeError, Exception) as exc:  # noqa: BLE001
                        report.problems.append(f"{path}: frame at byte {info.offset}: does not decode: {exc}")
                        return
                    report.events += len(records)
                    for rec in records:
                        for digest in blob_refs(rec.event):
                            report.blobs += 1
                            try:
                                self.blobs.get(digest)
                            except CorruptBlob as exc:
                                report.problems.append(f"seq {rec.seq} of run {run_id}: {exc}")


def _decode_frame(fh, info: segment.FrameInfo) -> list[Record]:
    from . import codec

    return codec.decode_batch(segment.read_frame(fh, info), info.first_seq)


def blob_refs(event: Event) -> list[str]:
    """The blob addresses an event refers to."""
    if isinstance(event, ToolReturned) and event.output_blob:
        return [event.output_blob]
    if isinstance(event, RawRecorded) and event.blob:
        return [event.blob]
    if isinstance(event, MessageAdded) and event.text_blob:
        return [event.text_blob]
    return []


def status_of(row: dict, writer_alive: bool, now_ns: int | None = None) -> tuple[str, str]:
    """A run's status from its catalog row and whether a writer holds its lock.

    ``running`` while a writer is alive; the end event's status once ended; otherwise
    ``crashed`` — at once for captured runs (they send heartbeats), after
    :data:`STALE_WITHOUT_HEARTBEAT_S` of silence for runs fed by hand.
    """
    if row.get("end_status"):
        return row["end_status"], row.get("end_reason") or ""
    if writer_alive:
        return "running", ""
    if row.get("heartbeat_s"):
        return "crashed", "the capture process stopped without ending the run"
    now_ns = now_ns if now_ns is not None else time.time_ns()
    last = row.get("last_ts") or row.get("started_at") or 0
    if now_ns - last > STALE_WITHOUT_HEARTBEAT_S * 1e9:
        return "crashed", f"no events for over {STALE_WITHOUT_HEARTBEAT_S // 60} minutes and no end event"
    return "running", ""
