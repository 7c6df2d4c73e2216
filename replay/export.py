"""Bulk export of runs to JSON lines or partitioned Parquet, with bounded memory.

Contracts:

* **Streaming.** Records are read run by run in seq order and written in batches; no run is
  ever held in memory. What is held at once is bounded by the Parquet buffers (``parquet.py``)
  or one write buffer (JSONL), plus the one segment the reader has open (at most 32 MiB).
* **All or nothing.** The export is written into a temporary sibling of ``out`` and renamed
  into place when complete; ``out`` must not exist. A failed or interrupted export leaves no
  partial output under ``out``.
* **To a stream.** A JSONL export may go to a writable binary stream instead of a path
  (``out=sys.stdout.buffer``: ``agtrace export -o -``); it is written as it is read, so a
  failed export leaves what was written so far, and ``metrics`` (files beside the export) is
  refused. Parquet is a directory and cannot.
* **JSONL** is one line per event: exactly what ``agtrace log --json`` prints, with a leading
  ``run`` field: ``{"run":"01J…","seq":1,"ts":…,"part":null,"kind":"run_started",…}``.
* **Parquet** is hive-partitioned by the events' UTC day and kind,
  ``out/day=<YYYY-MM-DD>/kind=<kind>/part-<n>.parquet`` (a few large files, not one per run;
  written by ``parquet.py``), every file with the schema of :func:`parquet_schema`:
  typed columns for the fields most queries need (null where a kind has no such field) and the
  whole event body as JSON text in ``body``. ``run`` and
  ``kind`` are kept in the files too, so a file read alone is self-describing. Metrics tables
  (``--metrics``) go to ``out/_metrics/`` (a leading underscore hides them from Hive/Spark
  partition discovery).
* **Damaged runs.** A run whose events cannot be read past some seq (a damaged segment) never
  stops the export of the others: its events before the damage are exported (the figures
  ``agtrace metrics`` has for it stop there too) and ``ExportReport.damaged`` names the run and
  the damage. ATIF and OTLP exports leave such a run out instead (``damaged_run``).
* **Remote output.** An ``s3://bucket/prefix`` (or any URL with a scheme) ``out`` is exported
  to a local temporary directory, then every file is uploaded through
  :func:`agtrace.eventlog.remote_for` (never overwriting: a key holding other bytes
  raises the remote's conflict error).

What every column means is in ``docs/export.md``, with DuckDB queries over an export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from agtrace.eventlog import (
    KINDS,
    CorruptLog,
    Record,
    RunNotFound,
    Store,
    part_metrics,
    record_to_json,
    remote_for,
    run_costs,
    runs_metrics,
    score_rows,
    temp_beside,
)

from .errors import ExportError, OutputNotEmpty
from .parquet import COLUMNS, ParquetSink, parquet_schema
from .parquet import arrow as _pa

FORMATS = ("jsonl", "parquet")
JSONL_WRITE_BUFFER = 1024 * 1024
PROGRESS_EVERY = 50_000


@dataclass
class ExportReport:
    """What an export wrote. ``out`` is where it is (a path, the URL it was uploaded to, or the
    OTLP endpoint it was sent to). ``events`` counts the events read (all of each run for ATIF
    and OTLP); ``steps`` the ATIF steps and ``spans`` the OTLP spans written. ``damaged`` has
    one ``{"run", "problem"}`` per run that could not be read to its end (see the module
    docstring); an export with any is incomplete."""

    format: str
    out: str
    runs: int = 0
    events: int = 0
    steps: int = 0
    spans: int = 0
    files: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    metrics_tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged: list[dict] = field(default_factory=list)

    def add_damaged(self, store: Store, run_id: str, exc: CorruptLog, next_seq: int | None = None) -> None:
        """Record that ``run_id`` could not be read (from ``next_seq`` on, when known), in the
        words of :meth:`Store.damage` (file, byte, `agtrace verify RUN`)."""
        problem = store.damage(run_id)
        if problem is None:
            if next_seq is None:  # read up to the damage again to say where it is
                next_seq = 1
                try:
                    for rec in store.read(run_id):
                        next_seq = rec.seq + 1
                except CorruptLog:
                    pass
            problem = f"run {run_id} cannot be read from seq {next_seq} on: {exc}"
        self.damaged.append({"run": run_id, "problem": problem})

    @property
    def events_per_s(self) -> float:
        return self.events / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "events_per_s": round(self.events_per_s, 1)}


def export(
    store: Store,
    run_ids: Iterable[str],
    *,
    format: str = "jsonl",
    out: str | os.PathLike | BinaryIO,
    kinds: Sequence[str] | None = None,
    since_ns: int | None = None,
    metrics: bool = False,
    progress: Callable[[int, int], None] | None = None,
    remote_options: dict | None = None,
) -> ExportReport:
    """Export the events of ``run_ids`` (in that order) to ``out``; see the module docstring.

    ``kinds`` keeps only events of those kinds; ``since_ns`` only events with ``ts >= since_ns``.
    ``metrics`` also writes the run and part metrics (``agtrace metrics --json`` and
    ``--per-part --json``, one row per run and per part). ``progress(done, total)`` is called
    every few tens of thousands of events with the events read so far and the runs' total.

    Raises:
        ExportError: unknown format or kind, or remote output without the remote module.
        OutputNotEmpty: ``out`` already exists.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise ExportError(f"unknown event kind(s) {', '.join(unknown)}; known kinds: {', '.join(sorted(KINDS))}")
    run_ids = list(run_ids)
    missing = [r for r in run_ids if not store.has_run(r)]
    if missing:
        raise RunNotFound(f"no run {missing[0]} in {store.root}; `agtrace ls` lists the runs")
    if is_stream(out):
        return _export_to_stream(store, run_ids, format, out, kinds, since_ns, metrics, progress)
    out_str = os.fspath(out)
    remote_url = out_str if "://" in out_str else None
    started = time.perf_counter()
    if remote_url:
        with tempfile.TemporaryDirectory(prefix="agtrace-export-") as tmp:
            local = Path(tmp) / (_url_basename(remote_url) if format == "jsonl" else "export")
            report = export(store, run_ids, format=format, out=local, kinds=kinds, since_ns=since_ns,
                            metrics=metrics, progress=progress)
            _upload(local, remote_url, format, remote_options or {})
        report.out = remote_url
        report.duration_s = time.perf_counter() - started
        return report

    dest = Path(out_str).expanduser()
    if dest.exists():
        raise OutputNotEmpty(f"{dest} already exists; an export never overwrites: remove it or pick another -o")
    dest.parent.mkdir(parents=True, exist_ok=True)
    report = ExportReport(format=format, out=str(dest), runs=len(run_ids))
    total = sum(_event_count(store, r) for r in run_ids)
    kind_set = frozenset(kinds) if kinds else None
    records = _records(store, run_ids, kind_set, since_ns, report, progress, total)
    building = temp_beside(dest, directory=True)  # a killed export's is removed by the next one
    try:
        if format == "jsonl":
            target = building / dest.name
            _write_jsonl(records, target)
            if metrics:
                _write_metrics(store, run_ids, building, dest.name.removesuffix(".jsonl"), "jsonl", report)
        else:
            target = building / "export"
            target.mkdir()
            ParquetSink(target).write(records)
            if metrics:
                _write_metrics(store, run_ids, target / "_metrics", "", "parquet", report)
        for path in sorted(p for p in building.rglob("*") if p.is_file()):
            report.files += 1
            report.bytes += path.stat().st_size
        if format == "jsonl":
            moves = [(path, dest.parent / path.name) for path in building.iterdir()]
            clash = [str(d) for p, d in moves if d.exists() and p.name != dest.name]
            if clash:
                raise OutputNotEmpty(f"{', '.join(clash)} already exist(s); remove them or pick another -o")
            for path, final in moves:
                os.rename(path, final)
        else:
            os.rename(target, dest)
    except OSError as exc:
        raise output_error(exc, building) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    if progress:
        progress(total, total)
    report.duration_s = time.perf_counter() - started
    return report


def output_error(exc: OSError, building: Path) -> OSError:
    """``exc``, raised while an export was written into ``building`` (its temporary sibling of
    ``-o``), with ``building`` as its file name when it had none: a write that found the disk
    full names no file, and would otherwise be taken for the store's (the CLI says it of ``-o``)."""
    if exc.filename is None:
        exc.filename = os.fspath(building)
    return exc


def is_stream(out: object) -> bool:
    """Whether ``out`` is a stream to write into (not a path)."""
    return callable(getattr(out, "write", None))


def _export_to_stream(store: Store, run_ids: list[str], format: str, out: BinaryIO, kinds, since_ns,
                      metrics: bool, progress) -> ExportReport:
    if format != "jsonl":
        raise ExportError(f"a {format} export is a directory; only jsonl can go to a stream (give a path)")
    if metrics:
        raise ExportError("metrics tables are files beside the export; export to a path for them")
    started = time.perf_counter()
    report = ExportReport(format=format, out=str(getattr(out, "name", "<stream>")), runs=len(run_ids), files=1)
    total = sum(_event_count(store, r) for r in run_ids)
    records = _records(store, run_ids, frozenset(kinds) if kinds else None, since_ns, report, progress, total)
    report.bytes = _write_jsonl_lines(records, out)
    out.flush()
    if progress:
        progress(total, total)
    report.duration_s = time.perf_counter() - started
    return report


# -- reading -------------------------------------------------------------------------------------


def _event_count(store: Store, run_id: str) -> int:
    try:
        return store.info(run_id).events
    except Exception:  # noqa: BLE001 - only a progress estimate
        return 0


def _records(store, run_ids, kinds, since_ns, report: ExportReport, progress, total):
    """``(run_id, kind, record)`` of every exported event, counting them into ``report``."""
    done = 0
    counts: dict[type, int] = {}
    kind_of_type = {cls: tag for tag, cls in KINDS.items()}
    try:
        for run_id in run_ids:
            reached = 0
            try:
                for rec in store.read(run_id):
                    reached = rec.seq
                    done += 1
                    if progress is not None and done % PROGRESS_EVERY == 0:
                        progress(done, max(total, done))
                    if since_ns is not None and rec.ts < since_ns:
                        continue
                    cls = type(rec.event)
                    kind = kind_of_type.get(cls) or rec.kind
                    if kinds is not None and kind not in kinds:
                        continue
                    counts[kind] = counts.get(kind, 0) + 1
                    yield run_id, kind, rec
            except CorruptLog as exc:
                report.add_damaged(store, run_id, exc, reached + 1)
    finally:
        report.by_kind = dict(sorted(counts.items()))
        report.events = sum(counts.values())


# -- JSONL ---------------------------------------------------------------------------------------


def jsonl_line(run_id: str, record: Record) -> bytes:
    """The export line of one record (without newline): ``record_to_json`` with ``run`` first."""
    return b'{"run":"%s",%s' % (run_id.encode(), record_to_json(record)[1:])


def _write_jsonl(records, path: Path) -> None:
    with open(path, "wb") as fh:
        _write_jsonl_lines(records, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _write_jsonl_lines(records, fh: BinaryIO) -> int:
    """Write the records' export lines into ``fh`` in batches; return the bytes written."""
    lines: list[bytes] = []
    size = written = 0
    run, head = None, b""
    for run_id, _kind, rec in records:
        if run_id != run:
            run, head = run_id, b'{"run":"%s",' % run_id.encode()
        line = head + record_to_json(rec)[1:] + b"\n"
        lines.append(line)
        size += len(line)
        if size >= JSONL_WRITE_BUFFER:
            fh.write(b"".join(lines))
            lines, written, size = [], written + size, 0
    fh.write(b"".join(lines))
    return written + size


# -- metrics tables ------------------------------------------------------------------------------


def _write_metrics(store: Store, run_ids: list[str], directory: Path, stem: str, format: str,
                   report: ExportReport) -> None:
    """The run and part metrics of the exported runs (the figures of ``agtrace metrics``), and
    their re-scores (the rows of ``agtrace scores RUN --json``, run by run, in append order)."""
    runs = metrics_json(store, run_ids)
    run_rows = [_flat(runs[rid]) for rid in run_ids if rid in runs]
    part_rows = [_flat({"run_id": rid, **p.to_dict()}) for rid in run_ids for p in part_metrics(store, rid)]
    score_table = [row for rid in run_ids for row in score_rows(store, rid)]
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("run_metrics", run_rows), ("part_metrics", part_rows), ("scores", score_table)):
        if format == "jsonl":
            path = directory / f"{stem}.{name}.jsonl"
            with open(path, "w") as fh:
                for row in rows:
                    fh.write(json.dumps(row, sort_keys=False) + "\n")
        else:
            pa, pq = _pa()
            path = directory / f"{name}.parquet"
            pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"run_id": pa.array([], pa.string())}),
                           path, compression="zstd")
        report.metrics_tables.append(path.name)


def metrics_json(store: Store, run_ids: Sequence[str]) -> dict[str, dict]:
    """Each run's figures exactly as ``agtrace metrics RUN --json`` prints them: its
    :class:`RunMetrics` and, under ``cost``, its priced :class:`RunCost` (without ``run_id``), so
    that every export carries the cost the pages and ``show`` give."""
    runs = runs_metrics(store, run_ids)
    costs = run_costs(store, [rid for rid in run_ids if rid in runs])
    return {rid: {**runs[rid].to_dict(), "cost": costs[rid].cost_object()} for rid in run_ids if rid in runs}


def _flat(row: dict) -> dict:
    """Nested values (per-tool counts) as JSON text, so every column has one scalar type."""
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in row.items()}


# -- remote output -------------------------------------------------------------------------------


def _url_basename(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name or "export.jsonl"


def _upload(local: Path, url: str, format: str, options: dict) -> None:
    if format == "jsonl":
        base, _, _ = url.rstrip("/").rpartition("/")
        files = [p for p in local.parent.iterdir() if p.is_file()]
        root = local.parent
    else:
        base, root = url.rstrip("/"), local
        files = sorted(p for p in local.rglob("*") if p.is_file())
    with remote_for(base, **options) as remote:
        for path in files:
            remote.put_file(path.relative_to(root).as_posix(), path)


__all__ = ["COLUMNS", "FORMATS", "ExportError", "ExportReport", "export", "jsonl_line", "metrics_json",
           "parquet_schema"]
