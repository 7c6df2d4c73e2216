"""Full-text search over every run's messages, reasoning, tool calls, tool outputs and errors.

The ``search`` projection (lazy, see :mod:`agtrace.eventlog.projection`) keeps one row per
searchable event in ``search_text``, an SQLite FTS5 table (tokenizer ``unicode61``: words are
runs of letters and digits, case- and accent-insensitive). Its text is :func:`searchable_text`
of the event: the inline text, so an output kept in the blob store is searched in its first
:data:`~agtrace.eventlog.blobs.INLINE_LIMIT` bytes (``grep_runs`` reads it whole). It is folded
when a search asks for it (:meth:`Store.catch_up`), never on the write path: indexing costs
far more than appending.

Two ways to search:

* :func:`search`: the index. By default the query's words are one phrase (``git reset --hard``
  finds the words ``git reset hard`` in that order, next to each other); ``fts=True`` passes
  FTS5's own syntax through (``reset AND hard``, ``NEAR(a b, 3)``, ``pyt*``).
* :func:`grep_runs`: a regular expression over the full text of every record (blobs read,
  raw provider records and output lines included), for exact matches the index cannot give.

Both return :class:`Hit` rows ordered by run and seq, filtered by agent (a glob), start time,
run ids and kinds (:data:`SEARCH_KINDS`), paged by ``limit``/``offset``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .errors import StoreError
from .events import (
    ErrorOccurred,
    LineLogged,
    MessageAdded,
    RawRecorded,
    ReasoningAdded,
    Record,
    ToolCalled,
    ToolReturned,
)
from .projection import Projection

if TYPE_CHECKING:
    from .store import Store

SEARCH_KINDS = {"message": MessageAdded, "reasoning": ReasoningAdded, "tool_call": ToolCalled,
                "tool_output": ToolReturned, "error": ErrorOccurred}
"""Kind of a hit → the event type it comes from (what the index holds)."""
GREP_KINDS = {**SEARCH_KINDS, "line": LineLogged, "raw": RawRecorded}
"""Kinds :func:`grep_runs` also reads: output lines and raw provider records."""
_KIND_OF = {t: k for k, t in GREP_KINDS.items()}
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Hit:
    """One matching event: its run, seq, part (None for run-level events), kind and a
    snippet of its text with the match in ``[...]``."""

    run_id: str
    seq: int
    part: int | None
    kind: str
    snippet: str

    def to_dict(self) -> dict:
        return asdict(self)


def searchable_text(event: object) -> str | None:
    """The text the index holds for ``event``, or None for an event that is not searched."""
    t = type(event)
    if t is MessageAdded or t is ReasoningAdded:
        return event.text
    if t is ToolCalled:
        args = event.arguments
        args = args if isinstance(args, str) else "" if args is None else json.dumps(args, ensure_ascii=False)
        return "\n".join(x for x in (event.tool, event.command, args) if x)
    if t is ToolReturned:
        return "\n".join(x for x in (event.output, event.error) if x)
    if t is ErrorOccurred:
        return event.message
    return None


def m001_search(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE VIRTUAL TABLE search_text USING fts5(text, run_id UNINDEXED, seq UNINDEXED, "
                 "part UNINDEXED, kind UNINDEXED, tokenize='unicode61')")


class SearchProjection(Projection):
    """The ``search_text`` full-text index (see the module docstring)."""

    name = "search"
    version = 1
    stream = "events"
    tables = ("search_text",)
    migrations = (m001_search,)
    eager = False

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        rows = []
        for rec in records:
            text = searchable_text(rec.event)
            if text:
                rows.append((text, run_id, rec.seq, rec.part, _KIND_OF[type(rec.event)]))
        conn.executemany("INSERT INTO search_text (text, run_id, seq, part, kind) VALUES (?, ?, ?, ?, ?)", rows)


def phrase(query: str) -> str:
    """The FTS5 query matching ``query``'s words as one phrase.

    Raises:
        ValueError: the query has no word to search for.
    """
    words = _WORD.findall(query)
    if not words:
        raise ValueError(f"{query!r} has no word to search for (letters or digits); use --regex for punctuation")
    return '"' + " ".join(words) + '"'


def _check_kinds(kinds: Sequence[str] | None, known: dict) -> None:
    for k in kinds or ():
        if k not in known:
            raise ValueError(f"unknown kind {k!r}; kinds are {', '.join(known)}")


def _runs(store: Store, agent: str | None, since_ns: int | None, run_ids: Sequence[str] | None) -> list[str] | None:
    """The run ids the filters allow, or None when there is no filter."""
    if agent is None and since_ns is None and run_ids is None:
        return None
    sql, args = "SELECT id FROM runs WHERE 1", []
    if agent is not None:
        sql, args = sql + " AND lower(coalesce(agent, '')) GLOB lower(?)", [*args, agent]
    if since_ns is not None:
        sql, args = sql + " AND coalesce(started_at, 0) >= ?", [*args, since_ns]
    ids = [r[0] for r in store.catalog.conn.execute(sql + " ORDER BY id", args)]
    if run_ids is not None:
        wanted = set(run_ids)
        ids = [r for r in ids if r in wanted]
    return ids


def search(store: Store, query: str, *, agent: str | None = None, since_ns: int | None = None,
           run_ids: Sequence[str] | None = None, kinds: Sequence[str] | None = None, fts: bool = False,
           limit: int | None = 50, offset: int = 0, progress=None) -> list[Hit]:
    """Events whose text matches ``query`` (a phrase, or FTS5 syntax with ``fts``), by run and
    seq; the index is caught up with the runs searched first (``progress(done, todo)``).

    Raises:
        ValueError: an empty query, an unknown kind, or FTS5 syntax it cannot parse.
    """
    _check_kinds(kinds, SEARCH_KINDS)
    match = query if fts else phrase(query)
    if store.catalog.projections.get(SearchProjection.name) is None:
        raise StoreError("this store was opened without the search projection; open it with the default "
                         "projections (Store(root)) to search")
    allowed = _runs(store, agent, since_ns, run_ids)
    store.catch_up([SearchProjection.name], allowed, progress=progress)
    sql = ("SELECT run_id, seq, part, kind, snippet(search_text, 0, '[', ']', '…', 16) FROM search_text "
           "WHERE search_text MATCH ?")
    args: list = [match]
    if allowed is not None:
        sql, args = sql + " AND run_id IN (SELECT value FROM json_each(?))", [*args, json.dumps(allowed)]
    if kinds:
        sql, args = sql + " AND kind IN (SELECT value FROM json_each(?))", [*args, json.dumps(list(kinds))]
    sql += " ORDER BY run_id, seq LIMIT ? OFFSET ?"
    args += [-1 if limit is None else limit, offset]
    try:
        rows = store.catalog.conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if fts and not any(w in str(exc) for w in ("locked", "disk", "corrupt", "readonly")):
            raise ValueError(f"{query!r} is not a valid FTS5 query ({exc}); drop --fts to search for the words as "
                             "a phrase") from None
        raise
    return [Hit(*r) for r in rows]


def full_text(store: Store, event: object) -> str | None:
    """The whole text of ``event`` as :func:`grep_runs` reads it (blobs read), or None."""
    t = type(event)
    if t is MessageAdded:
        return store.text(event.text, event.text_blob)
    if t is ToolReturned:
        return "\n".join(x for x in (store.text(event.output, event.output_blob), event.error) if x)
    if t is LineLogged:
        return event.text
    if t is RawRecorded:
        if event.blob:
            return store.blobs.get(event.blob).decode("utf-8", "replace")
        return event.text or event.data.decode("utf-8", "replace")
    return searchable_text(event)


def grep_runs(store: Store, pattern: str, *, agent: str | None = None, since_ns: int | None = None,
              run_ids: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
              ignore_case: bool = False, limit: int | None = 50, offset: int = 0) -> list[Hit]:
    """Events whose full text (:func:`full_text`) matches the regular expression ``pattern``,
    by run and seq. Reads the segments of every run searched (no index).

    Raises:
        ValueError: an invalid pattern or an unknown kind.
    """
    _check_kinds(kinds, GREP_KINDS)
    try:
        rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    types = tuple(GREP_KINDS[k] for k in kinds) if kinds else tuple(GREP_KINDS.values())
    allowed = _runs(store, agent, since_ns, run_ids)
    hits: list[Hit] = []
    skip = offset
    for run_id in store.run_ids() if allowed is None else allowed:
        for rec in store.read(run_id):
            if type(rec.event) not in types:
                continue
            text = full_text(store, rec.event)
            m = rx.search(text) if text else None
            if m is None:
                continue
            if skip:
                skip -= 1
                continue
            hits.append(Hit(run_id, rec.seq, rec.part, _KIND_OF[type(rec.event)], _snippet(text, m)))
            if limit is not None and len(hits) >= limit:
                return hits
    return hits


def _snippet(text: str, m: re.Match, width: int = 60) -> str:
    start, end = max(0, m.start() - width), min(len(text), m.end() + width)
    out = text[start:m.start()] + "[" + m.group(0) + "]" + text[m.end():end]
    out = " ".join(out.split())
    return ("…" if start else "") + out + ("…" if end < len(text) else "")
