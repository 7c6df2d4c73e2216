"""DataFrames for notebooks: runs, parts, events and scores of a store as pandas frames.

Needs the optional extra ``agtrace[frames]`` (pandas). Each frame is built from the same
projections the CLI reads — ``runs_df`` from :func:`agtrace.replay.list_runs` (what ``agtrace ls
--json`` prints) joined with the run metrics and costs, ``parts_df`` from the part metrics,
``scores_df`` from the scores projection — and ``events_df`` from the segments (the truth).
Every function takes ``limit``/``offset`` for paging; column lists are in ``docs/frames.md``
and in :data:`RUN_COLUMNS`, :data:`PART_COLUMNS`, :data:`EVENT_COLUMNS`, :data:`SCORE_COLUMNS`.
Times are kept as ns integers under their catalog names (``started_at``) and added as UTC
timestamps (``started``, ``ended``, ``time``). Integer columns with missing values are
pandas' nullable ``Int64``, not floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agtrace.eventlog import (
    RunMetrics,
    Store,
    part_costs,
    part_metrics,
    runs_metrics,
    score_rows,
    searchable_text,
    to_builtins,
)

from .errors import ReplayError
from .listing import list_runs

if TYPE_CHECKING:
    import pandas as pd

_LS = ("id", "agent", "agent_version", "model", "task_id", "status", "reason", "parts", "events", "started_at",
       "ended_at", "last_ts", "duration_s", "parent_run", "tags", "exit_code", "projection_errors", "tokens")
_COST = ("cost_usd", "cost_complete", "cost_label", "unpriced_models", "prices", "reported_cost_usd")
_METRICS = tuple(f for f in RunMetrics.__dataclass_fields__
                 if f not in ("run_id", "status", "reason", "cost_usd", "tools", *_LS))
RUN_COLUMNS = (*_LS, "started", "ended", *_COST, *_METRICS)
"""Columns of :func:`runs_df`: what ``ls --json`` prints, start/end as timestamps, the priced
cost flattened (``cost_usd`` is the price table's; the agent's is ``reported_cost_usd``), then
the run metrics (``docs/metrics.md``)."""
PART_COLUMNS = ("run_id", "part", "kind", "title", "tool", "ended_at", "ended", "tokens", "tokens_input",
                "tokens_output", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning", "cost_usd",
                "priced_cost_usd", "tool_calls", "tool_errors", "tests_passed", "tests_failed", "tests_total",
                "files_changed", "churn_lines_added", "churn_lines_removed")
"""Columns of :func:`parts_df`: the part metrics (``metrics --per-part``) and the part's priced cost."""
EVENT_COLUMNS = ("run_id", "seq", "ts", "time", "part", "kind", "text", "event")
"""Columns of :func:`events_df`: the envelope, the event's searchable text (messages, reasoning,
tool calls and outputs, errors; else None) and the whole event as a dict."""
SCORE_COLUMNS = ("run_id", "seq", "ts", "time", "scorer", "scorer_digest", "tree_id", "scored_part", "final",
                 "value", "passed", "failed", "total", "status", "exit_code", "duration_ms", "reused_from")
"""Columns of :func:`scores_df`: the scores projection's rows (``agtrace scores``)."""


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise ReplayError("DataFrames need pandas: pip install 'agtrace[frames]'") from None
    return pd


def _page(rows: list, limit: int | None, offset: int) -> list:
    return rows[offset:offset + limit] if limit is not None else rows[offset:]


def _frame(rows: list[dict], columns: Sequence[str], times: dict[str, str]) -> pd.DataFrame:
    pd = _pandas()
    df = pd.DataFrame.from_records(rows, columns=[c for c in columns if c not in times.values()])
    for col in df.columns:  # integers with gaps stay integers (nullable Int64), not floats
        values = [v for v in (r.get(col) for r in rows) if v is not None]
        if values and all(type(v) is int for v in values) and len(values) < len(rows):
            df[col] = pd.array([r.get(col) for r in rows], dtype="Int64")
    for src, dst in times.items():
        df.insert(df.columns.get_loc(src) + 1, dst, pd.to_datetime(df[src], unit="ns", utc=True))
    return df[list(columns)]


def runs_df(store: Store, *, limit: int | None = None, offset: int = 0, **filters: Any) -> pd.DataFrame:
    """One row per run, newest first as `agtrace ls` lists them (:data:`RUN_COLUMNS`). ``filters`` are those of
    :func:`agtrace.replay.list_runs` (``agent``, ``model``, ``status``, ``since_ns``, ``tags``,
    ``sort``, ``reverse``)."""
    listed = _page(list_runs(store, costs=True, **filters), limit, offset)
    metrics = runs_metrics(store, [r.info.id for r in listed])
    rows = []
    for r in listed:
        row = r.to_dict()
        cost = row.pop("cost")
        row.update(cost_usd=cost["cost_usd"], cost_complete=cost["complete"], cost_label=cost["label"],
                   unpriced_models=cost["unpriced_models"], prices=cost["prices"],
                   reported_cost_usd=cost["reported_cost_usd"])
        m = metrics.get(r.info.id)
        row.update({k: getattr(m, k) if m else None for k in _METRICS})
        rows.append(row)
    return _frame(rows, RUN_COLUMNS, {"started_at": "started", "ended_at": "ended"})


def _ids(store: Store, run_ids: Sequence[str] | None) -> list[str]:
    return [store.resolve(r) for r in run_ids] if run_ids is not None else store.run_ids()


def parts_df(store: Store, run_ids: Sequence[str] | None = None, *, limit: int | None = None,
             offset: int = 0) -> pd.DataFrame:
    """One row per part of the given runs (default: every run), by run and part (:data:`PART_COLUMNS`)."""
    rows = []
    for run_id in _ids(store, run_ids):
        priced = part_costs(store, run_id)
        rows += [{"run_id": run_id, **p.to_dict(), "priced_cost_usd": priced.get(p.part)}
                 for p in part_metrics(store, run_id)]
    return _frame(_page(rows, limit, offset), PART_COLUMNS, {"ended_at": "ended"})


def events_df(store: Store, run_ids: Sequence[str] | None = None, *, kinds: Sequence[str] | None = None,
              limit: int | None = None, offset: int = 0) -> pd.DataFrame:
    """One row per event of the given runs (default: every run), by run and seq, optionally of
    some kinds only (``tool_called``, ...) (:data:`EVENT_COLUMNS`). Reads the segments; stops
    reading once ``offset + limit`` rows are found."""
    wanted = set(kinds) if kinds else None
    rows: list[dict] = []
    stop = None if limit is None else offset + limit
    for run_id in _ids(store, run_ids):
        for rec in store.read(run_id):
            if wanted is not None and rec.kind not in wanted:
                continue
            rows.append({"run_id": run_id, "seq": rec.seq, "ts": rec.ts, "part": rec.part, "kind": rec.kind,
                         "text": searchable_text(rec.event), "event": to_builtins(rec.event)})
            if stop is not None and len(rows) >= stop:
                break
        if stop is not None and len(rows) >= stop:
            break
    return _frame(rows[offset:], EVENT_COLUMNS, {"ts": "time"})


def scores_df(store: Store, run_ids: Sequence[str] | None = None, *, limit: int | None = None,
              offset: int = 0) -> pd.DataFrame:
    """One row per re-scoring result of the given runs (default: every run), by run and seq
    (:data:`SCORE_COLUMNS`)."""
    rows = []
    for run_id in _ids(store, run_ids):
        rows += score_rows(store, run_id)
    return _frame(_page(rows, limit, offset), SCORE_COLUMNS, {"ts": "time"})
