"""How the CLI shows things: one-line event summaries, tables, times, progress, and JSON.

Machine output (``--json``) is the library's data, encoded as is by :func:`echo_json`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager

import click
import msgspec

from agtrace.eventlog import Record, UnknownEvent, json_safe, to_builtins

from .streams import json_text

_SUMMARY_FIELDS = {
    "run_started": ("agent", "model", "task_id"),
    "turn_started": ("turn",),
    "turn_ended": ("turn", "status", "error"),
    "message_added": ("role", "text"),
    "reasoning_added": ("text",),
    "tool_called": ("tool", "command", "arguments"),
    "tool_returned": ("tool", "status", "exit_code", "output"),
    "file_changed": ("change", "path"),
    "tests_ran": ("suite", "passed", "failed", "total"),
    "usage_reported": ("usage", "model"),
    "model_called": ("model", "ok", "error"),
    "snapshot_taken": ("tree_id", "added", "modified", "deleted"),
    "part_ended": ("part_kind", "title", "tree_id"),
    "line_logged": ("stream", "text"),
    "raw_recorded": ("source", "parse_error", "text"),
    "error_occurred": ("origin", "message"),
    "scored": ("scorer", "scored_part", "final", "value", "passed", "total", "status"),
    "run_tagged": ("tags", "removed", "author"),
    "note_added": ("noted_part", "text", "author"),
    "run_ended": ("status", "reason", "exit_code"),
}


def echo_json(data) -> None:
    """Print ``data`` as one line of JSON on stdout (the ``--json`` output of every command);
    valid JSON in any terminal encoding (see :func:`.streams.json_text`). A string that is not
    UTF-8 text (a file name with bytes that are not) is written in its quoted form
    (``agtrace.eventlog.json_name``; docs/format.md "File names that are not text")."""
    try:
        line = msgspec.json.encode(data)
    except UnicodeEncodeError:
        line = msgspec.json.encode(json_safe(msgspec.to_builtins(data)))
    click.echo(json_text(line))


def clock(ts_ns: int | None) -> str:
    """A time for people, in UTC and marked so (``2026-12-03 13:38:12Z``): the same on every
    machine, and what ``--since``/``--at-time`` read back (a time without a zone is UTC too)."""
    if not ts_ns:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns // 10**9)) + "Z"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def size(nbytes: int) -> str:
    """Bytes for people: ``512 B``, ``23.7 kB``, ``1.2 MB``, ``3.40 GB``."""
    if nbytes < 1000:
        return f"{nbytes} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if nbytes < scale * 1000:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e9:.2f} GB"


def shorten(value, width: int = 80) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(record: Record, width: int = 100) -> str:
    """One line for a person: seq, time, part, kind and the event's telling fields."""
    kind = record.kind
    body = to_builtins(record.event)
    if isinstance(record.event, UnknownEvent):
        fields = list(body)[:3]
    else:
        fields = _SUMMARY_FIELDS.get(kind, ())
    bits = []
    for name in fields:
        value = body.get(name)
        if value in (None, "", [], {}) or name == "final" and value is False:  # final only when it is
            continue
        if isinstance(value, list):
            value = f"{len(value)}"
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        bits.append(f"{name}={shorten(value, 60)}")
    part = "-" if record.part is None else str(record.part)
    line = f"{record.seq:>6} {clock(record.ts)} {part:>5} {kind:<16} {' '.join(bits)}"
    return line if len(line) <= width else line[: width - 1] + "…"


def table(rows: Iterable[list[str]], headers: list[str]) -> str:
    rows = [headers, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@contextmanager
def progress(label: str, enabled: bool = True, *, unit: str = "", thread: bool = True):
    """A rich progress bar on stderr when it is a terminal; a no-op callback otherwise.

    Yields ``update(done, total)``. With ``unit`` (``"files"``), the count done is shown beside
    the bar (for work whose total is not known up front). ``thread=False`` redraws on each
    update instead of from rich's refresh thread: for work that forks, which a running thread
    would keep from forking (a checkout writes half of a big tree from a forked child)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import Progress, TextColumn

    # on stderr (rich's default console is stdout's: the bar would be drawn into the data when
    # both are the terminal, or beside `report -o -`'s page)
    columns = (*Progress.get_default_columns(), TextColumn(f"{{task.completed:,.0f}} {unit}")) if unit else ()
    with Progress(*columns, transient=True, console=Console(stderr=True), auto_refresh=thread) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
            if not thread:
                bar.refresh()

        yield update


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def cost_line(cost) -> str:
    """``$0.0123 (genai-prices 0.2.3)``, ``unpriced (MODEL)``, plus what the agent reported."""
    return cost.line()
