"""Parquet output of an export: one schema for every file, rows buffered as columns.

Files are hive-partitioned by the UTC day of the event and its kind, not by run:
``out/day=<YYYY-MM-DD>/kind=<kind>/part-<n>.parquet`` (``day=unknown`` for events without a
time), so an export of many runs is a few large
files (one per day and kind, rolled at :data:`FILE_ROWS` rows) of row groups of up to
:data:`ROW_GROUP_ROWS` rows, with the schema of :func:`parquet_schema`: typed columns for the
fields most queries need (null where a kind has no such field) and the whole event body as JSON
text in ``body``; ``run`` is a column. Memory is bounded: rows wait in per-(day, kind) buffers
holding at most :data:`MAX_BUFFER_ROWS` rows and :data:`MAX_BUFFER_BYTES` bytes of bodies
together (the largest buffers are written when either is reached), and at most
:data:`MAX_OPEN_FILES` files are open (the least recently written is closed; its partition goes
on in the next ``part-<n>``). pyarrow is imported only when a Parquet export runs.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from agtrace.eventlog import KINDS, Record, UsageReported, event_to_json

from .errors import ExportError

ROW_GROUP_ROWS = 65_536
"""A (day, kind) buffer is written as a row group when it reaches this many rows."""
MAX_BUFFER_ROWS = 65_536
"""The largest buffers are written when together they hold this many rows..."""
MAX_BUFFER_BYTES = 32 * 1024 * 1024
"""...or this many bytes of event bodies."""
FILE_ROWS = 4_000_000
"""A partition's file is closed after this many rows; the next rows go to ``part-<n+1>``."""
MAX_OPEN_FILES = 64
"""At most this many Parquet files are open at once."""
_DAY_NS = 86_400 * 10**9
UNKNOWN_DAY = "unknown"
"""The ``day=`` partition of events without a time (``ts`` 0); their ``time`` column is null."""

TYPED_COLUMNS = ("tool", "call_id", "exit_code", "cost_usd", "model", "status")
TOKEN_COLUMNS = ("tokens_input", "tokens_output", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning")
COLUMNS = ("run", "seq", "ts", "time", "part", "kind", *TYPED_COLUMNS[:3], *TOKEN_COLUMNS,
           *TYPED_COLUMNS[3:], "body")
"""The Parquet columns, in file order."""


def arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("Parquet export needs pyarrow: pip install 'pyarrow>=15'") from None
    return pa, pq


def parquet_schema():
    """The Arrow schema of every exported Parquet file (see ``docs/export.md``)."""
    pa, _ = arrow()
    string, i64 = pa.string(), pa.int64()
    types = {"run": string, "seq": i64, "ts": i64, "time": pa.timestamp("us", tz="UTC"), "part": pa.int32(),
             "kind": string, "tool": string, "call_id": string, "exit_code": pa.int32(),
             **{c: i64 for c in TOKEN_COLUMNS}, "cost_usd": pa.float64(), "model": string,
             "status": string, "body": string}
    return pa.schema([pa.field(name, types[name], nullable=name not in ("run", "seq", "ts", "kind", "body"))
                      for name in COLUMNS])


def _fields_of(kind: str) -> tuple[str, ...]:
    """The typed columns (besides the envelope) that events of ``kind`` can fill."""
    cls = KINDS.get(kind)
    names = cls.__struct_fields__ if cls is not None else ()
    return tuple(c for c in TYPED_COLUMNS if c in names)


class _Buffer:
    """Rows of one (day, kind) partition waiting to be written, kept as columns, and the
    partition's open file."""

    __slots__ = ("day", "kind", "fields", "run", "seq", "ts", "part", "body", "offsets", "cols", "usage",
                 "nbytes", "writer", "file_no", "file_rows")

    def __init__(self, day: str, kind: str):
        self.day, self.kind = day, kind
        self.fields = _fields_of(kind)
        self.usage = KINDS.get(kind) is UsageReported
        self.writer = None
        self.file_no = 0
        self.file_rows = 0
        self.reset()

    def reset(self) -> None:
        # Bodies are kept concatenated with their offsets (an Arrow binary array's own layout),
        # so a buffered row costs its JSON bytes plus a few machine words, not Python objects.
        self.run, self.seq, self.ts, self.part = [], array("q"), array("q"), []
        self.body, self.offsets = bytearray(), array("q", [0])
        self.cols = {name: [] for name in self.fields}
        if self.usage:
            self.cols.update({name: [] for name in TOKEN_COLUMNS})
        self.nbytes = 0

    def add(self, run_id: str, rec: Record) -> int:
        ev = rec.event
        body = event_to_json(ev)
        self.run.append(run_id)
        self.seq.append(rec.seq)
        self.ts.append(rec.ts)
        self.part.append(rec.part)
        self.body += body
        self.offsets.append(len(self.body))
        cols = self.cols
        for name in self.fields:
            value = getattr(ev, name)
            cols[name].append(value if value != "" else None)
        if self.usage:
            u = ev.usage
            cols["tokens_input"].append(u.input)
            cols["tokens_output"].append(u.output)
            cols["tokens_cache_read"].append(u.cache_read)
            cols["tokens_cache_write"].append(u.cache_write)
            cols["tokens_reasoning"].append(u.reasoning)
        self.nbytes += len(body)
        return len(body)

    def table(self, pa, schema):
        n = len(self.seq)
        ts = pa.array(self.ts, pa.int64())
        arrays = []
        for f in schema:
            name = f.name
            if name == "run":
                arrays.append(pa.array(self.run, f.type))
            elif name == "kind":
                arrays.append(pa.array([self.kind] * n, f.type))
            elif name == "seq":
                arrays.append(pa.array(self.seq, f.type))
            elif name == "ts":
                arrays.append(ts)
            elif name == "time":
                import pyarrow.compute as pc

                arrays.append(pa.nulls(n, f.type) if self.day == UNKNOWN_DAY  # every ts of it is 0
                              else pc.divide(ts, 1000).cast(f.type))
            elif name == "part":
                arrays.append(pa.array(self.part, f.type))
            elif name == "body":
                data = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(self.offsets),
                                                                     pa.py_buffer(self.body)])
                arrays.append(data.cast(pa.large_string()).cast(f.type))  # validates UTF-8
            elif name in self.cols:
                arrays.append(pa.array(self.cols[name], f.type))
            else:
                arrays.append(pa.nulls(n, f.type))
        return pa.Table.from_arrays(arrays, schema=schema)


class ParquetSink:
    """Writes ``(run, kind, record)`` triples as Parquet partitioned by day and kind under
    ``root`` (see the module docstring)."""

    def __init__(self, root: Path):
        self.pa, self.pq = arrow()
        self.schema = parquet_schema()
        self.root = root
        self.buffers: dict[tuple[str, str], _Buffer] = {}
        self.open: dict[tuple[str, str], None] = {}  # partitions with an open file, least recent first
        self.rows = 0
        self.nbytes = 0
        self._day_start = self._day_end = 0
        self._day = ""

    def day_of(self, ts: int) -> str:
        """The UTC date of ``ts`` (ns), as ``YYYY-MM-DD``; ``unknown`` for ``ts`` 0, the time of an
        event whose source recorded none (swe-agent, OpenHands, ISO-Bench imports), which is no
        event of 1970-01-01."""
        if ts == 0:
            return UNKNOWN_DAY
        if not self._day_start <= ts < self._day_end:
            import datetime

            self._day_start = ts - ts % _DAY_NS
            self._day_end = self._day_start + _DAY_NS
            when = datetime.datetime.fromtimestamp(self._day_start // 10**9, datetime.UTC)
            self._day = when.strftime("%Y-%m-%d")
        return self._day

    def write(self, records) -> None:
        try:
            for run_id, kind, rec in records:
                key = (self.day_of(rec.ts), kind)
                buf = self.buffers.get(key)
                if buf is None:
                    buf = self.buffers[key] = _Buffer(*key)
                self.nbytes += buf.add(run_id, rec)
                self.rows += 1
                if len(buf.seq) >= ROW_GROUP_ROWS:
                    self._flush(buf)
                if self.rows >= MAX_BUFFER_ROWS or self.nbytes >= MAX_BUFFER_BYTES:
                    for b in sorted(self.buffers.values(), key=lambda b: b.nbytes, reverse=True):
                        self._flush(b)
                        if self.rows < MAX_BUFFER_ROWS // 2 and self.nbytes < MAX_BUFFER_BYTES // 2:
                            break
            for buf in self.buffers.values():
                self._flush(buf)
        except BaseException:
            self._close_all(failed=True)
            raise
        self._close_all(failed=False)

    def _close_all(self, failed: bool) -> None:
        """Close every open file. After a failure (a full disk), a file that cannot be closed
        either is given up, and so is never closed again by pyarrow's finalizer, which would print
        the same error as a traceback when the interpreter exits."""
        for buf in self.buffers.values():
            writer, buf.writer = buf.writer, None
            if writer is None:
                continue
            try:
                writer.close()
            except OSError:
                writer.is_open = False
                if not failed:
                    self._close_all(failed=True)
                    raise

    def _flush(self, buf: _Buffer) -> None:
        if not buf.seq:
            return
        key = (buf.day, buf.kind)
        if buf.writer is None:
            if len(self.open) >= MAX_OPEN_FILES:
                self._close(self.buffers[next(iter(self.open))])
            directory = self.root / f"day={buf.day}" / f"kind={buf.kind}"
            directory.mkdir(parents=True, exist_ok=True)
            buf.writer = self.pq.ParquetWriter(directory / f"part-{buf.file_no}.parquet", self.schema,
                                               compression="zstd")
        self.open.pop(key, None)
        self.open[key] = None  # most recently written last
        buf.writer.write_table(buf.table(self.pa, self.schema), row_group_size=ROW_GROUP_ROWS)
        buf.file_rows += len(buf.seq)
        self.rows -= len(buf.seq)
        self.nbytes -= buf.nbytes
        buf.reset()
        if buf.file_rows >= FILE_ROWS:
            self._close(buf)

    def _close(self, buf: _Buffer) -> None:
        if buf.writer is not None:
            buf.writer.close()
            buf.writer = None
            buf.file_no += 1
            buf.file_rows = 0
        self.open.pop((buf.day, buf.kind), None)
