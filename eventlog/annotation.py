"""Annotations after the fact: tags and notes appended to a run, never edits of its events.

``agtrace tag`` and ``agtrace note`` append :class:`~agtrace.eventlog.RunTagged` and
:class:`~agtrace.eventlog.NoteAdded` to the run's ``scores`` stream (the stream of what is
added to a run later; it has its own lock, so a live run can be annotated while it is being
captured). The ``annotations`` projection folds that stream into:

``run_tags``
    ``(run_id, key, value, seq)``: the latest ``run_tagged`` value of each key (``value`` NULL
    when the key was removed), which :meth:`Store.runs` and :meth:`Store.info` lay over the
    ``run_started`` tags, so ``RunInfo.tags`` (and ``ls --tag``, ``--where tag.K=V``) is one
    field for both;
``notes``
    ``(run_id, seq, ts, part, text, author)``: every note, in order.
"""

from __future__ import annotations

import getpass
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import StoreError
from .events import NoteAdded, Record, RunTagged
from .projection import Projection

if TYPE_CHECKING:
    from .store import Store


def m001_annotations(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE run_tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, seq INTEGER NOT NULL, "
                 "PRIMARY KEY (run_id, key))")
    conn.execute("CREATE TABLE notes (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, part INTEGER, "
                 "text TEXT NOT NULL, author TEXT, PRIMARY KEY (run_id, seq))")


class AnnotationsProjection(Projection):
    """The ``run_tags`` and ``notes`` tables (see the module docstring)."""

    name = "annotations"
    version = 1
    stream = "scores"
    tables = ("run_tags", "notes")
    migrations = (m001_annotations,)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        for rec in records:
            ev = rec.event
            if type(ev) is RunTagged:
                rows = [(run_id, k, v, rec.seq) for k, v in ev.tags.items()]
                rows += [(run_id, k, None, rec.seq) for k in ev.removed if k not in ev.tags]
                conn.executemany("INSERT OR REPLACE INTO run_tags (run_id, key, value, seq) VALUES (?, ?, ?, ?)", rows)
            elif type(ev) is NoteAdded:
                conn.execute("INSERT INTO notes (run_id, seq, ts, part, text, author) VALUES (?, ?, ?, ?, ?, ?)",
                             [run_id, rec.seq, rec.ts, ev.noted_part, ev.text, ev.author])


def tag_overrides(conn: sqlite3.Connection, run_id: str | None = None) -> dict[str, dict[str, str | None]]:
    """``{run_id: {key: value or None (removed)}}`` from ``run_tags`` (one run's, or all);
    empty when the store has no annotations projection."""
    try:
        rows = conn.execute("SELECT run_id, key, value FROM run_tags" + (" WHERE run_id=?" if run_id else ""),
                            [run_id] if run_id else [])
    except sqlite3.OperationalError:  # a store opened without the annotations projection
        return {}
    out: dict[str, dict[str, str | None]] = {}
    for r, k, v in rows:
        out.setdefault(r, {})[k] = v
    return out


def merge_tags(started: Mapping[str, str], overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    """``run_started``'s tags with the later ``run_tagged`` values laid over them."""
    tags = dict(started)
    for k, v in (overrides or {}).items():
        if v is None:
            tags.pop(k, None)
        else:
            tags[k] = v
    return dict(sorted(tags.items()))


def _author(author: str | None) -> str:
    if author is not None:
        return author
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _append(store: Store, run_id: str, event) -> int:
    if store.catalog.projections.get(AnnotationsProjection.name) is None:
        raise StoreError("this store was opened without the annotations projection; open it with the default "
                         "projections (Store(root)) to annotate runs")
    writer = store.open_writer(run_id, stream="scores", durability="strict")
    try:
        ack = writer.append(event)
    finally:
        store.close_writer(writer)
    return ack.seq


def tag_run(store: Store, run_id: str, tags: Mapping[str, str], removed: Sequence[str] = (), *,
            author: str | None = None) -> int:
    """Append a ``run_tagged`` event (durable when this returns); return its seq in the run's
    ``scores`` stream.

    Raises:
        ValueError: nothing to set or remove, or an empty key.
    """
    if not tags and not removed:
        raise ValueError("give at least one KEY=VALUE to set or --remove KEY")
    if any(not k for k in [*tags, *removed]):
        raise ValueError("a tag needs a non-empty key")
    store.info(run_id)  # the run exists and has events
    return _append(store, run_id, RunTagged(tags=dict(tags), removed=list(removed), author=_author(author)))


def add_note(store: Store, run_id: str, text: str, part: int | None = None, *, author: str | None = None) -> int:
    """Append a ``note_added`` event about the run or one of its parts; return its seq.

    Raises:
        ValueError: an empty note, or a part the run does not have.
    """
    if not text.strip():
        raise ValueError("a note needs some text")
    info = store.info(run_id)
    if part is not None and store.catalog.part_row(run_id, part) is None:
        raise ValueError(f"run {run_id} has no part {part} (it has {info.parts}); "
                         f"`agtrace show {run_id}` lists them")
    return _append(store, run_id, NoteAdded(text=text, noted_part=part, author=_author(author)))


def run_notes(store: Store, run_id: str) -> list[dict]:
    """The notes of a run in the order they were added: ``seq``, ``ts``, ``part`` (None for
    the whole run), ``text``, ``author``."""
    store.sync(run_id)
    try:
        rows = store.catalog.conn.execute(
            "SELECT seq, ts, part, text, author FROM notes WHERE run_id=? ORDER BY seq", [run_id]).fetchall()
    except sqlite3.OperationalError:
        return []
    return [dict(zip(("seq", "ts", "part", "text", "author"), r, strict=True)) for r in rows]
