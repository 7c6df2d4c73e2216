"""Parquet output of an export: one schema for every file, rows buffered as columns.

Every file is hive-partitioned as ``out/run=<id>/kind=<kind>/part-0.parquet`` (one file per run
and kind, written as row groups of at most :data:`ROW_GROUP_ROWS` rows) with the schema of
:func:`parquet_schema`: typed columns for the fields most queries need (null where a kind has no
such field) and the whole event body as JSON text in ``body``. Memory is bounded by
:data:`MAX_BUFFER_ROWS` rows and :data:`MAX_BUFFER_BYTES` bytes of bodies over all buffers.
pyarrow is imported only when a Parquet export runs.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from agtrace.eventlog import KINDS, Record, UsageReported, event_to_json

from .errors import ExportError

ROW_GROUP_ROWS = 32_768
"""A (run, kind) buffer is written as a row group when it reaches this many rows."""
MAX_BUFFER_ROWS = 32_768
"""All buffers are written when together they hold this many rows..."""
MAX_BUFFER_BYTES = 32 * 1024 * 1024
"""...or this many bytes of event bodies."""

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
    return pa.schema([pa.field(name, types[name], nullable=name not in ("run", "seq", "ts", "time", "kind", "body"))
                      for name in COLUMNS])


def _fields_of(kind: str) -> tuple[str, ...]:
    """The typed columns (besides the envelope) that events of ``kind`` can fill."""
    cls = KINDS.get(kind)
    names = cls.__struct_fields__ if cls is not None else ()
    return tuple(c for c in TYPED_COLUMNS if c in names)


class _Buffer:
    """Rows of one (run, kind) waiting to be written, kept as columns."""

    __slots__ = ("run", "kind", "fields", "seq", "ts", "part", "body", "offsets", "cols", "usage", "nbytes",
                 "writer")

    def __init__(self, run: str, kind: str):
        self.run, self.kind = run, kind
        self.fields = _fields_of(kind)
        self.usage = KINDS.get(kind) is UsageReported
        self.writer = None
        self.reset()

    def reset(self) -> None:
        # Bodies are kept concatenated with their offsets (an Arrow binary array's own layout),
        # so a buffered row costs its JSON bytes plus a few machine words, not Python objects.
        self.seq, self.ts, self.part = array("q"), array("q"), []
        self.body, self.offsets = bytearray(), array("q", [0])
        self.cols = {name: [] for name in self.fields}
        if self.usage:
            self.cols.update({name: [] for name in TOKEN_COLUMNS})
        self.nbytes = 0

    def add(self, rec: Record) -> int:
        ev = rec.event
        body = event_to_json(ev)
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
                arrays.append(pa.array([self.run] * n, f.type))
            elif name == "kind":
                arrays.append(pa.array([self.kind] * n, f.type))
            elif name == "seq":
                arrays.append(pa.array(self.seq, f.type))
            elif name == "ts":
                arrays.append(ts)
            elif name == "time":
                import pyarrow.compute as pc

                arrays.append(pc.divide(ts, 1000).cast(f.type))
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
    """Writes ``(run, kind, record)`` triples as hive-partitioned Parquet under ``root``."""

    def __init__(self, root: Path):
        self.pa, self.pq = arrow()
        self.schema = parquet_schema()
        self.root = root
        self.buffers: dict[str, _Buffer] = {}
        self.run: str | None = None
        self.rows = 0
        self.nbytes = 0

    def write(self, records) -> None:
        try:
            for run_id, kind, rec in records:
                if run_id != self.run:
                    self._close_run()
                    self.run = run_id
                buf = self.buffers.get(kind)
                if buf is None:
                    buf = self.buffers[kind] = _Buffer(run_id, kind)
                self.nbytes += buf.add(rec)
                self.rows += 1
                if len(buf.seq) >= ROW_GROUP_ROWS:
                    self._flush(buf)
                if self.rows >= MAX_BUFFER_ROWS or self.nbytes >= MAX_BUFFER_BYTES:
                    for b in self.buffers.values():
                        self._flush(b)
            self._close_run()
        finally:
            for buf in self.buffers.values():
                if buf.writer is not None:
                    buf.writer.close()

    def _flush(self, buf: _Buffer) -> None:
        if not buf.seq:
            return
        if buf.writer is None:
            directory = self.root / f"run={buf.run}" / f"kind={buf.kind}"
            directory.mkdir(parents=True, exist_ok=True)
            buf.writer = self.pq.ParquetWriter(directory / "part-0.parquet", self.schema, compression="zstd")
        buf.writer.write_table(buf.table(self.pa, self.schema), row_group_size=ROW_GROUP_ROWS)
        self.rows -= len(buf.seq)
        self.nbytes -= buf.nbytes
        buf.reset()

    def _close_run(self) -> None:
        for buf in self.buffers.values():
            self._flush(buf)
            if buf.writer is not None:
                buf.writer.close()
                buf.writer = None
        self.buffers = {}
