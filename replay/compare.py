"""Several runs side by side: a metrics table (``compare_table``) and one HTML page of curves.

``render_compare(store, run_ids)`` draws the runs' tests passed, pass rate (passed / (passed +
failed + errors), the rule of ``TestSummary.pass_rate``), cumulative tokens and (when any usage
was priced) cumulative priced cost (:func:`agtrace.eventlog.part_costs`) on shared axes, over parts or over time since each
run's start, above the table. Like the run report it is one self-contained file.

A row is the run's metrics (:func:`agtrace.eventlog.run_metrics`, every figure under its metrics
name), its identity, its last re-score and its net change (:func:`net_change`); the curves are
built from the per-part rows (:func:`agtrace.eventlog.part_metrics`). Nothing is folded here.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from agtrace.eventlog import (
    PartMetrics,
    RunMetrics,
    RunStarted,
    Store,
    TestSummary,
    latest_score,
    part_costs,
    part_metrics,
    run_metrics,
    score_rows,
    score_series,
)

from .compare_trees import RunTreesDiff, diff_final_trees
from .errors import CompareError, ReplayError
from .report import fmt_duration, header, part_time, usage_points
from .report_page import page
from .workspace import base_tree, snapshots

COLUMNS = [
    ("id", "run"), ("agent", "agent"), ("model", "model"), ("task_id", "task"), ("status", "status"),
    ("parts", "parts"), ("duration_s", "duration"), ("tokens", "tokens"), ("cost", "cost (price table)"),
    ("cost_usd", "cost (agent reported)"),
    ("tool_calls", "tool calls"), ("tool_errors", "failed calls"), ("tests_final_passed", "tests passed (last)"),
    ("tests_final_total", "tests run (last)"), ("tests_best_passed", "best passed"),
    ("tests_best_part", "first part at best"), ("score", "last re-score"),
    ("net_files_changed", "files changed (net)"), ("net_lines_added", "+lines (net)"),
    ("net_lines_removed", "−lines (net)"), ("churn_lines_added", "+lines (churn)"),
    ("churn_lines_removed", "−lines (churn)"),
]


def net_change(store: Store, run_id: str) -> tuple[int, int, int] | None:
    """``(files, lines added, lines removed)`` from the base tree to the last part's tree, with
    git's own line counts; None when the run recorded no snapshot or its repository is gone."""
    trees = [r["tree_id"] for r in store.catalog.part_rows(run_id) if r["tree_id"]]
    if not trees:
        return None
    try:
        changes = snapshots(store, run_id).diff(base_tree(store, run_id) or None, trees[-1])
    except ReplayError:
        return None
    return len(changes), sum(c.lines_added for c in changes), sum(c.lines_removed for c in changes)


def _row(store: Store, run_id: str, metrics: RunMetrics) -> dict:
    first = next(store.read(run_id, 1, 1), None)
    started = first.event if first and isinstance(first.event, RunStarted) else None
    row = header(store, run_id, started, metrics)
    for key in ("prompt", "tags", "host"):
        row.pop(key, None)
    row["score"] = latest_score(score_rows(store, run_id))
    row["scorers"] = {name: {"value": series[-1]["value"], "status": series[-1]["status"],
                             "part": series[-1]["part"], "final": series[-1]["final"], "series": series}
                      for name, series in score_series(store, run_id).items()}
    net = net_change(store, run_id)
    row.update(zip(("net_files_changed", "net_lines_added", "net_lines_removed"), net or (None, None, None),
                   strict=True))
    return row


def _scorer_curves(scores: list[dict], at: dict[int, int]) -> dict[str, list[list]]:
    """Each scorer's newest value per scored part, in part order, then its final tree's (scored
    apart from the last part) at the last part's time: ``{name: [[part, t_ms, value, final]]}``."""
    latest: dict[str, dict[tuple[bool, int], float]] = {}
    for s in scores:
        if s["value"] is not None and s["scored_part"] is not None:
            latest.setdefault(s["scorer"], {})[(s["final"], s["scored_part"])] = s["value"]
    end = max(at.values(), default=0)
    return {name: [[part, end if final else at.get(part, 0), v, final] for (final, part), v in sorted(values.items())]
            for name, values in sorted(latest.items())}


def _pass_rate(p: PartMetrics) -> float:
    """The part's last test result's pass rate, by the one counting rule (``TestSummary.pass_rate``:
    passed / (passed + failed + errors); a part's ``tests_failed`` holds failed + errors)."""
    return TestSummary(runner="", passed=p.tests_passed or 0, failed=p.tests_failed or 0).pass_rate


def _curves(run_id: str, row: dict, metrics: RunMetrics, parts: list[PartMetrics], scores: list[dict],
            part_cost: dict[int, float | None]) -> dict:
    at = {p.part: part_time(p, metrics) for p in parts}
    tests = [[p.part, at[p.part], p.tests_passed] for p in parts if p.tests_total is not None]
    rate = [[p.part, at[p.part], _pass_rate(p)] for p in parts if p.tests_total is not None]
    tokens, cost = [], []
    total, spent = 0, 0.0
    for slot, t, n, usd in usage_points(metrics, parts, part_cost, row["cost"]["cost_usd"]):
        total += n
        tokens.append([slot, t, total])
        if usd is not None:
            spent += usd
            cost.append([slot, t, spent])
    label = " ".join(x for x in (run_id[:10], row["agent"], row["model"]) if x)
    return {"id": run_id, "label": label, "tests": tests, "rate": rate, "tokens": tokens, "cost": cost,
            "scores": _scorer_curves(scores, at),
            "parts_max": max((p.part for p in parts), default=0), "t_max": max([*at.values(), 0])}


@dataclass
class Comparison:
    """Folded runs: ``rows`` (one metrics dict per run, in order) and the curves the page draws."""

    rows: list[dict]
    curves: list[dict]
    tree_diffs: list[RunTreesDiff] = field(default_factory=list)
    """Each run after the first against the first: the difference of their final trees."""

    def html(self) -> str:
        """The comparison as one self-contained HTML page."""
        ids = ", ".join(html.escape(r["id"]) for r in self.rows)
        header_html = (f"<h1>{len(self.rows)} runs compared</h1><p class=note>{ids}</p>"
                       f"<section><h2>Metrics</h2>{table_html(self.rows, self.curves)}</section>"
                       f"{trees_html(self.tree_diffs)}")
        return page(title=f"agtrace · compare {len(self.rows)} runs", kind="compare", header_html=header_html,
                    blocks={"agtrace-data": {"v": 1, "runs": self.curves}},
                    footer="Time axes start at each run's own start.")


def compare_runs(store: Store, run_ids: list[str], *,
                 progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Each run's row and curves (in the order given), from its metrics."""
    if not run_ids:
        raise CompareError("name at least one run to compare; `agtrace ls` lists the runs")
    rows, curves, diffs = [], [], []
    for i, run_id in enumerate(run_ids, 1):
        metrics = run_metrics(store, run_id)
        row = _row(store, run_id, metrics)
        if i > 1:
            diffs.append(diff_final_trees(store, run_ids[0], run_id))
        row["final_tree_diff"] = diffs[-1].to_dict() if i > 1 else None
        rows.append(row)
        curves.append(_curves(run_id, row, metrics, part_metrics(store, run_id), score_rows(store, run_id),
                              part_costs(store, run_id)))
        if progress:
            progress(i, len(run_ids))
    return Comparison(rows, curves, diffs)


def compare_table(store: Store, run_ids: list[str], *,
                  progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """One dict of metrics per run, in the order given (the ``--json`` output of `agtrace compare`)."""
    return compare_runs(store, run_ids, progress=progress).rows


def render_compare(store: Store, run_ids: list[str], *,
                   progress: Callable[[int, int], None] | None = None) -> str:
    """Several runs as one self-contained HTML page: a metrics table and curves on shared axes."""
    return compare_runs(store, run_ids, progress=progress).html()


TREE_HTML_BYTES = 512 * 1024
"""Patch text the comparison page embeds per pair of runs; beyond it, files are listed only."""


def trees_html(diffs: list[RunTreesDiff]) -> str:
    """The final trees' differences: per later run, a stat line per file and its patch."""
    if not diffs:
        return ""
    e = html.escape
    out = ["<section><h2>Final trees</h2><p class=note>What each run's final tree holds that the first "
           "run's does not (<code>a/</code> is the first run, <code>b/</code> the other).</p>"]
    for d in diffs:
        title = f"{e(d.run_a[:10])} → {e(d.run_b[:10])}"
        if d.reason:
            out.append(f"<h3>{title}</h3><p class=note>{e(d.reason)}</p>")
            continue
        if not d.files:
            out.append(f"<h3>{title}</h3><p class=note>the final trees are identical</p>")
            continue
        out.append(f"<h3>{title}: {len(d.files)} file{'s' if len(d.files) != 1 else ''}, "
                   f"<span class=added>+{d.lines_added}</span> <span class=removed>−{d.lines_removed}</span></h3>")
        budget = TREE_HTML_BYTES
        for f in d.files:
            counts = ("binary" if f.binary else
                      f"<span class=added>+{f.lines_added}</span><span class=removed>−{f.lines_removed}</span>")
            body = ""
            if f.patch and len(f.patch) <= budget:
                budget -= len(f.patch)
                body = "<pre>" + "".join(f"<span class={_line_class(line)}>{e(line) or ' '}</span>"
                                         for line in f.patch.splitlines()) + "</pre>"
            elif f.patch or f.note:
                body = f"<p class=note>{e(f.note or 'patch left out (size cap); `agtrace compare --patch` prints it')}</p>"
            out.append(f"<details class=diff open><summary class=fh><span class=p>{e(f.path)}</span>"
                       f"<span class=badge>{e(f.status)}</span>{counts}</summary>{body}</details>")
    return "".join(out) + "</section>"


def _line_class(line: str) -> str:
    if line.startswith(("+++", "---", "@@")):
        return "dl-h"
    return "dl-a" if line.startswith("+") else "dl-d" if line.startswith("-") else "dl-c"


def _last_score(points: list[list] | None) -> str:
    if not points:
        return "–"
    part, _, value, final = points[-1]
    return f"{value:.3g} ({'final tree' if final else f'part {part}'})"


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    if key == "duration_s":
        return fmt_duration(value)
    if key == "cost_usd":
        return f"${value:.4f}"
    if key == "cost":
        return value["label"]
    if key == "score" and isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_html(rows: list[dict], curves: list[dict] | None = None) -> str:
    """The metrics with one column per run (runs are few, metrics many), then each scorer's
    last score (of the latest part it scored) per run."""
    e = html.escape
    head = "".join(f"<th>{e(r['id'][:10])}</th>" for r in rows)
    body = []
    for key, label in COLUMNS[1:]:
        cells = "".join(
            f"<td class={'num' if isinstance(r.get(key), (int, float)) else 'txt'}>{e(_cell(key, r.get(key)))}</td>"
            for r in rows)
        body.append(f"<tr><th>{e(label)}</th>{cells}</tr>")
    for name in sorted({n for c in curves or [] for n in c["scores"]}):
        cells = "".join(f"<td class=num>{e(_last_score(c['scores'].get(name)))}</td>" for c in curves or [])
        body.append(f"<tr><th>score: {e(name)}</th>{cells}</tr>")
    return f"<table class=metrics><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
