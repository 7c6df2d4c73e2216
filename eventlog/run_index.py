"""One page of the runs index: filtered, sorted and cut by SQL over the catalog.

:func:`index_runs` is what ``agtrace view`` lists: one ``SELECT … ORDER BY … LIMIT … OFFSET``
over ``runs`` joined with ``run_metrics`` (and the latest score per run from ``scores``), so a
page of a 10,000-run store costs one indexed query, not a fold or a scan of 10,000 rows in
Python. The live status is the only figure the database cannot hold (it depends on whether a
writer holds the run's lock): the runs without an end event are few, their statuses are
computed first (:func:`live_statuses`) and handed to the query as a map of run id to status.

Costs come from the ``usage_costs`` table of a costs projection when the store has one (the sum
over the priced calls, as ``show``'s, with ``cost_unpriced`` counting the calls left out, so a
partial sum never shows as whole), else from the metrics' reported ``cost_usd``; tags from ``run_tags`` (tags added after the fact)
over ``run_started``'s when that table exists.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .catalog import UNENDED_STATUSES, damage_status, status_of
from .lock import is_locked

if TYPE_CHECKING:
    from .store import Store

SORTS = ("started", "duration", "parts", "events", "tokens", "cost", "tests", "score", "agent", "model",
         "task", "status", "id")
"""What an index page can be sorted by."""

RANGES = ("tokens", "cost", "duration", "parts", "score", "tests")
"""The figures a page can be filtered to a range of (``min_X``/``max_X``)."""

_GLOBS = {"agent": "r.agent", "model": "r.model", "task": "r.task_id"}


@dataclass(frozen=True)
class IndexQuery:
    """What to list. Text filters match exactly or as case-insensitive shell globs
    (``claude*``); ``status`` is the live status (``running``, ``open``, ``crashed``, ``unknown``, ``damaged`` or an end status);
    ``tags`` must all be present with these values; ``run_ids`` restricts to those runs (a
    search's hits); ``ranges`` maps a figure of :data:`RANGES` to ``(min, max)`` (either None);
    ``tests`` is ``pass`` (the last test run passed every test), ``fail`` or ``none``;
    ``scorer`` picks the scorer whose latest value is the ``score`` column (default: the latest
    score of any scorer). ``group_by_task`` sorts by task first, so a task's runs are adjacent."""

    agent: str | None = None
    model: str | None = None
    task: str | None = None
    status: str | None = None
    since_ns: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_ids: tuple[str, ...] | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    tests: str | None = None
    scorer: str | None = None
    sort: str = "started"
    reverse: bool = False
    group_by_task: bool = False
    limit: int = 50
    offset: int = 0


@dataclass
class IndexPage:
    """The rows of one page (dicts, see :data:`ROW_KEYS`), how many runs matched in all, and
    (when grouped by task) per task on the page its count and passing runs among every match."""

    rows: list[dict]
    matched: int
    offset: int
    groups: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "matched": self.matched, "offset": self.offset, "groups": self.groups}


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", [name]).fetchone() is not None


def live_statuses(store: Store) -> dict[str, tuple[str, str]]:
    """``(status, reason)`` of every run without an end event: running while a writer holds its
    lock, else open (`agtrace new` runs), crashed (captured) or unknown (imported; see
    :func:`agtrace.eventlog.catalog.status_of`)."""
    rows = store.catalog.query("SELECT id, end_status, end_reason, heartbeat_s, source, last_ts, started_at "
                               "FROM runs WHERE end_status IS NULL")
    return {r["id"]: status_of(r, is_locked(store.run_dir(r["id"]) / "lock")) for r in rows}


def damages(store: Store) -> dict[str, tuple[str, str]]:
    """``(status, reason)`` of every run whose log is damaged (few): ``damaged`` or
    ``newer-format`` (see :func:`agtrace.eventlog.catalog.damage_status`)."""
    failures: dict[str, list] = {}
    for failure in store.catalog.errors():
        failures.setdefault(failure.run_id, []).append(failure)
    return {run_id: d for run_id, f in failures.items() if (d := damage_status(f))}


def _glob(column: str, pattern: str) -> tuple[str, list]:
    if any(c in pattern for c in "*?["):
        return f"lower(coalesce({column}, '')) GLOB ?", [pattern.lower()]
    return f"lower(coalesce({column}, '')) = ?", [pattern.lower()]


def index_runs(store: Store, query: IndexQuery, *, live: dict[str, tuple[str, str]] | None = None) -> IndexPage:
    """One page of runs matching ``query``, sorted and cut in SQL (see the module docstring).

    ``live`` is :func:`live_statuses` when the caller has it. Ties sort by run id; runs
    without the sorted value come last either way. The projections are read as they are:
    bring the runs that grew up to date first (``store.runs()`` or ``store.sync``).

    Raises:
        ValueError: an unknown sort key or range, a negative limit or offset.
    """
    if query.sort not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)}, not {query.sort!r}")
    if query.limit < 0 or query.offset < 0:
        raise ValueError("a page's limit and offset count runs, so they are 0 or more")
    conn = store.catalog.conn
    live = live_statuses(store) if live is None else live
    priced = _has_table(conn, "usage_costs")
    cost = "(SELECT sum(c.cost_usd) FROM usage_costs c WHERE c.run_id = r.id)" if priced else "m.cost_usd"
    unpriced = ("(SELECT count(*) - count(c.cost_usd) FROM usage_costs c WHERE c.run_id = r.id)"
                if priced else "NULL")
    overrides = _has_table(conn, "run_tags")
    score_where = "s.run_id = r.id AND s.value IS NOT NULL" + (" AND s.scorer = :scorer" if query.scorer else "")
    score = f"(SELECT s.value FROM scores s WHERE {score_where} ORDER BY s.final DESC, s.scored_part DESC, s.seq DESC LIMIT 1)"
    damage = damages(store)  # a damaged log wins over the end status and the lock (catalog.damage_status)
    status = ("coalesce((SELECT value FROM json_each(:damaged) WHERE key = r.id), r.end_status, "
              "(SELECT value FROM json_each(:live) WHERE key = r.id), 'crashed')")
    tests = "(CAST(m.tests_final_passed AS REAL) / nullif(m.tests_final_total, 0))"
    duration = ("(CASE WHEN coalesce(r.ended_at, r.last_ts) >= r.started_at "  # never negative (RunInfo.duration_s)
                "THEN (coalesce(r.ended_at, r.last_ts) - r.started_at) / 1e9 END)")
    figures = {"started": "r.started_at", "duration": duration, "parts": "r.parts", "events": "r.events",
               "tokens": "m.tokens", "cost": cost, "tests": tests, "score": score, "agent": "r.agent",
               "model": "r.model", "task": "r.task_id", "status": status, "id": "r.id"}
    where, args = ["1=1"], {"live": json.dumps({k: s for k, (s, _) in live.items()}), "damaged": json.dumps({k: v[0] for k, v in damage.items()}), "scorer": query.scorer}
    for key, column in _GLOBS.items():
        pattern = getattr(query, key)
        if pattern:
            clause, values = _glob(column, pattern)
            name = f"g_{key}"
            where.append(clause.replace("?", f":{name}"))
            args[name] = values[0]
    if query.status:
        where.append(f"{status} = :status")
        args["status"] = query.status
    if query.since_ns is not None:
        where.append("r.started_at >= :since")
        args["since"] = query.since_ns
    for i, (key, value) in enumerate(sorted(query.tags.items())):
        path = "$." + json.dumps(key)
        started_tag = f"json_extract(r.tags, :tp{i})"
        tag = (f"(CASE WHEN EXISTS (SELECT 1 FROM run_tags t WHERE t.run_id = r.id AND t.key = :tk{i}) THEN "
               f"(SELECT t.value FROM run_tags t WHERE t.run_id = r.id AND t.key = :tk{i}) ELSE {started_tag} END)"
               if overrides else started_tag)
        where.append(f"{tag} = :tv{i}")
        args.update({f"tp{i}": path, f"tk{i}": key, f"tv{i}": value})
    if query.run_ids is not None:
        where.append("r.id IN (SELECT value FROM json_each(:ids))")
        args["ids"] = json.dumps(list(query.run_ids))
    for key, (low, high) in query.ranges.items():
        if key not in RANGES:
            raise ValueError(f"filter a range of one of {', '.join(RANGES)}, not {key!r}")
        if low is not None:
            where.append(f"{figures[key]} >= :lo_{key}")
            args[f"lo_{key}"] = low
        if high is not None:
            where.append(f"{figures[key]} <= :hi_{key}")
            args[f"hi_{key}"] = high
    if query.tests == "pass":
        where.append("m.tests_final_total > 0 AND m.tests_final_failed = 0 AND m.tests_final_passed = m.tests_final_total")
    elif query.tests == "fail":
        where.append("m.tests_final_total IS NOT NULL AND NOT (m.tests_final_failed = 0 AND "
                     "m.tests_final_passed = m.tests_final_total AND m.tests_final_total > 0)")
    elif query.tests == "none":
        where.append("m.tests_final_total IS NULL")
    elif query.tests:
        raise ValueError(f"the tests filter is pass, fail or none, not {query.tests!r}")
    direction = "ASC" if query.reverse else "DESC"
    key = figures[query.sort]
    # NULLs sort last in SQLite's DESC by themselves; saying so would keep an index from serving it
    order = f"{key} {direction}, r.id {direction}" if direction == "DESC" else \
        f"({key}) IS NULL, ({key}) {direction}, r.id {direction}"
    if query.group_by_task:
        order = f"coalesce(r.task_id, '') ASC, {order}"
    condition = " AND ".join(where)
    joined = "m." in condition or "m." in key
    base = f"FROM runs r {'LEFT JOIN run_metrics m ON m.run_id = r.id ' if joined else ''}WHERE {condition}"
    matched = conn.execute(f"SELECT count(*) {base}", args).fetchone()[0]
    tag_json = ("(SELECT json_group_object(t.key, t.value) FROM run_tags t WHERE t.run_id = r.id)"
                if overrides else "NULL")
    select = (f"SELECT r.id, r.agent, r.agent_version, r.model, r.task_id, {status} AS status, r.end_reason, "
              f"r.parts, r.events, r.started_at, r.ended_at, r.last_ts, {duration} AS duration_s, r.tags, "
              f"{tag_json} AS tag_overrides, r.parent_run, m.tokens, {cost} AS cost_usd, {unpriced} AS cost_unpriced, m.tests_final_passed, "
              f"m.tests_final_failed, m.tests_final_total, m.tool_calls, m.tool_errors, {score} AS score ")
    # the page's ids first (only the sort key is computed per matching run), then their columns
    page_ids = [r[0] for r in conn.execute(f"SELECT r.id {base} ORDER BY {order} LIMIT :limit OFFSET :offset",
                                           {**args, "limit": query.limit, "offset": query.offset})]
    cursor = conn.execute(f"{select}FROM runs r LEFT JOIN run_metrics m ON m.run_id = r.id "
                          "WHERE r.id IN (SELECT value FROM json_each(:page))",
                          {**args, "page": json.dumps(page_ids)})
    names = [d[0] for d in cursor.description]
    found = {values[0]: dict(zip(names, values, strict=True)) for values in cursor.fetchall()}
    rows = [_row(found[r], live, damage) for r in page_ids if r in found]
    groups: dict[str, dict] = {}
    tasks = sorted({r["task_id"] for r in rows}) if query.group_by_task else []
    if tasks:
        args["tasks"] = json.dumps(tasks)
        untasked = " OR r.task_id IS NULL" if "" in tasks else ""
        for task, n, passing in conn.execute(
                "SELECT coalesce(r.task_id, ''), count(*), sum(m.tests_final_total > 0 AND m.tests_final_failed = 0 "
                "AND m.tests_final_passed = m.tests_final_total) FROM runs r LEFT JOIN run_metrics m ON "
                f"m.run_id = r.id WHERE {condition} AND (r.task_id IN (SELECT value FROM json_each(:tasks)){untasked}) "
                "GROUP BY 1", args):
            groups[task] = {"runs": n, "passing": passing or 0}
    return IndexPage(rows, matched, query.offset, groups)


ROW_KEYS = ("id", "agent", "agent_version", "model", "task_id", "status", "reason", "parts", "events",
            "started_at", "ended_at", "duration_s", "tags", "parent_run", "tokens", "cost_usd",
            "cost_unpriced", "tests_passed", "tests_failed", "tests_total", "tool_calls", "tool_errors", "score")
"""The keys of an index row."""


def _row(r: dict, live: dict[str, tuple[str, str]], damage: dict[str, tuple[str, str]]) -> dict:
    tags = json.loads(r["tags"] or "{}")
    for k, v in json.loads(r["tag_overrides"] or "{}").items():
        if v is None:
            tags.pop(k, None)
        else:
            tags[k] = v
    if r["id"] in damage:
        reason = damage[r["id"]][1]
    else:
        reason = r["end_reason"] or (live.get(r["id"], ("", ""))[1] if r["status"] in UNENDED_STATUSES else "")
    return {
        "id": r["id"], "agent": r["agent"] or "", "agent_version": r["agent_version"] or "",
        "model": r["model"] or "", "task_id": r["task_id"] or "", "status": r["status"], "reason": reason,
        "parts": r["parts"] or 0, "events": r["events"] or 0, "started_at": r["started_at"],
        "ended_at": r["ended_at"], "duration_s": r["duration_s"], "tags": tags, "parent_run": r["parent_run"] or "",
        "tokens": r["tokens"], "cost_usd": r["cost_usd"],
        "cost_unpriced": r["cost_unpriced"] or 0, "tests_passed": r["tests_final_passed"],
        "tests_failed": r["tests_final_failed"], "tests_total": r["tests_final_total"],
        "tool_calls": r["tool_calls"], "tool_errors": r["tool_errors"], "score": r["score"],
    }
