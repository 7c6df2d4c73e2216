"""Listing runs: filter by identity, status, start time and tags; sort by a metric.

A query over the catalog and the metrics projection, so it never scans segments except to
bring projections that are behind up to date (see :func:`agtrace.eventlog.runs_metrics`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from agtrace.eventlog import RunCost, RunInfo, Store, run_costs, run_tokens

SORT_KEYS = ("started", "duration", "parts", "tokens")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class RunListing:
    """A run as ``agtrace ls`` shows it: its :class:`RunInfo`, its token total and its cost
    (None when not asked for)."""

    info: RunInfo
    tokens: int | None
    cost: RunCost | None = None

    def to_dict(self) -> dict:
        d = {**self.info.to_dict(), "tokens": self.tokens}
        if self.cost is not None:
            cost = self.cost.to_dict()
            cost.pop("run_id")
            d["cost"] = cost
        return d


def parse_time(value: str, option: str = "--since") -> int:
    """An ISO date or time in ns since the epoch. A time without a zone is **UTC**, as every
    time agtrace prints is (``ls``, ``show``, ``log``: ``2026-12-03 13:38:12Z``), so a time
    copied from them, or from a colleague's machine, means the same instant under any ``TZ``;
    ``+02:00`` or ``Z`` name a zone. A date alone is its midnight, UTC.

    Raises:
        ValueError: not an ISO date or time; the message names ``option`` and an example.
    """
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{option} takes an ISO date or time (2026-11-20, 2026-11-20T12:00, UTC unless it "
                         f"names a zone), not {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def parse_since(value: str, now_ns: int | None = None) -> int:
    """A start bound in ns: an ISO date or time (UTC when no zone is given; see
    :func:`parse_time`), or an age such as ``30m``, ``3h``, ``2d``, ``1w`` counted back from
    ``now_ns``.

    Raises:
        ValueError: the value is neither; the message says what is accepted.
    """
    value = value.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", value)
    if m:
        now_ns = now_ns if now_ns is not None else time.time_ns()
        return now_ns - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError(f"--since takes an ISO date or time (2026-11-20, 2026-11-20T12:00, UTC unless it names "
                         f"a zone) or an age (30m, 3h, 2d, 1w), not {value!r}") from None


def _matches(pattern: str | None, value: str) -> bool:
    """Exact match, or a shell glob (``claude*``) when the pattern has wildcards; case-insensitive."""
    if not pattern:
        return True
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


@dataclass(frozen=True)
class RunPage:
    """One page of a listing: the rows shown and how many runs matched in all."""

    rows: list[RunListing]
    matched: int

    @property
    def more(self) -> int:
        """Matching runs left out by the limit."""
        return self.matched - len(self.rows)


def query_runs(
    store: Store,
    *,
    agent: str | None = None,
    model: str | None = None,
    task: str | None = None,
    status: str | None = None,
    since_ns: int | None = None,
    tags: dict[str, str] | None = None,
    sort: str = "started",
    reverse: bool = False,
    limit: int | None = None,
    costs: bool = True,
) -> RunPage:
    """Runs that match every given filter, sorted by ``sort``, then cut to ``limit``.

    The order is descending — newest, longest, most parts, most tokens first — and ascending
    with ``reverse``. The whole matching set is sorted before the limit applies, so
    ``sort="tokens", limit=3`` gives the three runs with the most tokens. ``agent``, ``model``
    and ``task`` (the task id) match exactly or as case-insensitive globs; ``status`` is the live
    status (``running`` and ``crashed`` included); ``since_ns`` keeps runs started at or after
    it; every tag in ``tags`` must be present with that value. Ties sort by run id (newest id
    first, following the order), so the order is stable; runs without the value (no tokens
    reported, no start time) come last either way. With ``costs`` each row has its
    :class:`RunCost` (the costs projection is caught up with the rows kept first).
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"sort by one of {', '.join(SORT_KEYS)}, not {sort!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"a limit counts runs, so it is 0 or more, not {limit}")
    runs = [
        r for r in store.runs()
        if _matches(agent, r.agent)
        and _matches(model, r.model)
        and _matches(task, r.task_id)
        and (not status or r.status == status)
        and (since_ns is None or (r.started_at or 0) >= since_ns)
        and all(r.tags.get(k) == v for k, v in (tags or {}).items())
    ]
    matched = len(runs)
    tokens = run_tokens(store)  # store.runs() brought the metrics up to date: one column
    if sort != "tokens":  # the catalog has the key: sort and cut first
        runs = _ordered(runs, _INFO_KEYS[sort], attrgetter("id"), reverse)[:limit]
        return RunPage(_priced(store, [RunListing(r, tokens.get(r.id)) for r in runs], costs), matched)
    rows = [RunListing(r, tokens.get(r.id)) for r in runs]
    return RunPage(_priced(store, _ordered(rows, lambda r: r.tokens, lambda r: r.info.id, reverse)[:limit], costs),
                   matched)


def _priced(store: Store, rows: list[RunListing], costs: bool) -> list[RunListing]:
    """The rows with their :class:`RunCost` (the costs projection caught up with them first)."""
    if not costs:
        return rows
    priced = run_costs(store, [r.info.id for r in rows])
    return [RunListing(r.info, r.tokens, priced.get(r.info.id)) for r in rows]


def list_runs(store: Store, **query) -> list[RunListing]:
    """The rows of :func:`query_runs` (same arguments)."""
    return query_runs(store, **query).rows


_INFO_KEYS = {"started": attrgetter("started_at"), "duration": attrgetter("duration_s"), "parts": attrgetter("parts")}


def _ordered(items: list, value, ident, reverse: bool) -> list:
    """Descending by (value, id) unless ``reverse``; items without a value last either way."""
    known = sorted((i for i in items if value(i) is not None), key=lambda i: (value(i), ident(i)),
                   reverse=not reverse)
    return known + [i for i in items if value(i) is None]


RUN_FIELDS = ("id", "agent", "agent_version", "model", "task_id", "status", "parent_run")


def matches(info: RunInfo, where: dict[str, str]) -> bool:
    """True if the run matches every ``KEY=VALUE``: run fields (:data:`RUN_FIELDS`) as
    case-insensitive shell globs (``claude*``), ``tag.NAME`` or any other key as an exact tag."""
    for key, want in where.items():
        if key in RUN_FIELDS:
            if not fnmatch.fnmatchcase(str(getattr(info, key) or "").lower(), want.lower()):
                return False
        elif info.tags.get(key.removeprefix("tag.")) != want:
            return False
    return True


def select_runs(
    store: Store, ids: Sequence[str] = (), *, all_runs: bool = False, where: dict[str, str] | None = None
) -> list[str]:
    """Run ids (oldest first) named by unique prefixes, or every run, filtered by ``where``.

    With no ids, ``all_runs`` or a ``where`` is needed (an empty selection is never "all" by
    accident); :class:`RunNotFound` for an unknown prefix, :class:`ValueError` if nothing is named.
    """
    if not ids and not all_runs and not where:
        raise ValueError("name runs: give run ids, --all, or --where KEY=VALUE")
    infos = {i.id: i for i in store.runs()}
    chosen = [store.resolve(i) for i in ids] if ids else list(infos)
    return [r for r in chosen if r in infos and matches(infos[r], where or {})]
