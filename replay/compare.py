"""Several runs side by side: a metrics table (``compare_table``) and one HTML page of curves.

``render_compare(store, run_ids)`` draws the runs' tests passed, pass rate, cumulative tokens and
(when any usage was priced) cumulative cost on shared axes, over parts or over time since each
run's start, above the table. Like the run report it is one self-contained file.

Each run is folded once with :class:`~agtrace.replay.report.RunFold`; the metrics may move to
``replay/projections.py`` once it lands.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from agtrace.eventlog import Store

from .errors import CompareError, ReplayError
from .report import RunFold, fmt_duration, fold_run, header
from .report_page import page
from .workspace import base_tree, snapshots

COLUMNS = [
    ("id", "run"), ("agent", "agent"), ("model", "model"), ("task_id", "task"), ("status", "status"),
    ("parts", "parts"), ("duration_s", "duration"), ("tokens", "tokens"), ("cost_usd", "cost"),
    ("tool_calls", "tool calls"), ("tool_errors", "failed calls"), ("tests_passed", "tests passed (last)"),
    ("tests_total", "tests run (last)"), ("best_passed", "best passed"), ("first_best_part", "first part at best"),
    ("score", "last re-score"), ("files_changed", "files changed"), ("lines_added", "+lines"),
    ("lines_removed", "−lines"),
]


def _metrics(store: Store, run_id: str, fold: RunFold, scores: list[list]) -> dict:
    row = header(store, run_id, fold)
    for key in ("prompt", "tags", "host", "usage"):
        row.pop(key, None)
    row.update({f"tokens_{k}": v for k, v in fold.tokens.items()})
    best = row["best_passed"]
    row["first_best_part"] = next((t[0] for t in fold.tests if t[2] == best), None) if best is not None else None
    scored = [s for s in scores if s[2] is not None]
    row["score"] = scored[-1][2] if scored else None
    row.update(files_changed=None, lines_added=None, lines_removed=None)
    trees = [p["tree"] for _, p in sorted(fold.parts.items()) if p["tree"]]
    if trees:
        try:
            git = snapshots(store, run_id)
            changes = git.diff(base_tree(store, run_id) or None, trees[-1])
        except ReplayError:
            changes = None
        if changes is not None:
            row.update(files_changed=len(changes), lines_added=sum(c.lines_added for c in changes),
                       lines_removed=sum(c.lines_removed for c in changes))
    return row


def _curves(run_id: str, row: dict, fold: RunFold) -> dict:
    tests = [[t[0], t[1], t[2]] for t in fold.tests]
    rate = [[t[0], t[1], t[2] / t[5]] for t in fold.tests if t[5]]
    tokens, cost = [], []
    total, spent = 0, 0.0
    for slot, t, n, usd in fold.usage:
        total += n
        tokens.append([slot, t, total])
        if usd is not None:
            spent += usd
            cost.append([slot, t, spent])
    t_max = max([p["t"] for p in fold.parts.values()] + [u[1] for u in fold.usage] + [0])
    label = " ".join(x for x in (run_id[:10], row["agent"], row["model"]) if x)
    return {"id": run_id, "label": label, "tests": tests, "rate": rate, "tokens": tokens, "cost": cost,
            "parts_max": max(fold.parts, default=0), "t_max": t_max}


@dataclass
class Comparison:
    """Folded runs: ``rows`` (one metrics dict per run, in order) and the curves the page draws."""

    rows: list[dict]
    curves: list[dict]

    def html(self) -> str:
        """The comparison as one self-contained HTML page."""
        ids = ", ".join(html.escape(r["id"]) for r in self.rows)
        header_html = (f"<h1>{len(self.rows)} runs compared</h1><p class=note>{ids}</p>"
                       f"<section><h2>Metrics</h2>{table_html(self.rows)}</section>")
        return page(title=f"agtrace · compare {len(self.rows)} runs", kind="compare", header_html=header_html,
                    blocks={"agtrace-data": {"v": 1, "runs": self.curves}},
                    footer="Time axes start at each run's own start.")


def compare_runs(store: Store, run_ids: list[str], *,
                 progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Fold each run once (in the order given) into its metrics and curves."""
    if not run_ids:
        raise CompareError("name at least one run to compare; `agtrace ls` lists the runs")
    rows, curves = [], []
    for i, run_id in enumerate(run_ids, 1):
        fold, scores = fold_run(store, run_id, transcript=False)
        row = _metrics(store, run_id, fold, scores)
        rows.append(row)
        curves.append(_curves(run_id, row, fold))
        if progress:
            progress(i, len(run_ids))
    return Comparison(rows, curves)


def compare_table(store: Store, run_ids: list[str], *,
                  progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """One dict of metrics per run, in the order given (the ``--json`` output of `agtrace compare`)."""
    return compare_runs(store, run_ids, progress=progress).rows


def render_compare(store: Store, run_ids: list[str], *,
                   progress: Callable[[int, int], None] | None = None) -> str:
    """Several runs as one self-contained HTML page: a metrics table and curves on shared axes."""
    return compare_runs(store, run_ids, progress=progress).html()


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    if key == "duration_s":
        return fmt_duration(value)
    if key == "cost_usd":
        return f"${value:.4f}"
    if key == "score" and isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_html(rows: list[dict]) -> str:
    """The metrics with one column per run (runs are few, metrics many)."""
    e = html.escape
    head = "".join(f"<th>{e(r['id'][:10])}</th>" for r in rows)
    body = []
    for key, label in COLUMNS[1:]:
        cells = "".join(
            f"<td class={'num' if isinstance(r.get(key), (int, float)) else 'txt'}>{e(_cell(key, r.get(key)))}</td>"
            for r in rows)
        body.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    return f"<table class=metrics><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
