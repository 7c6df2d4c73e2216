"""One run as one self-contained HTML page: header, plots, paged transcript, per-part diffs.

``render_report(store, run_id)`` takes every figure from the run's metrics projection (the header:
:func:`agtrace.eventlog.run_metrics`; the per-part rows and the tokens curve:
:func:`agtrace.eventlog.part_metrics`), folds the run's events once for what only the page shows
(:class:`RunFold`: transcript rows, test points, tool-call lanes), diffs every part whose tree
changed (:mod:`agtrace.replay.report_diff`), and returns one HTML document. The page needs no
network: CSS, JS and the plots (SVG drawn by the page's own script) are inline, and the data is embedded as compact JSON in
``<script type="application/json">`` blocks that the script parses when it needs them (the
transcript one block per page of :attr:`ReportLimits.page_parts` parts, parsed when that page is
shown). It works
opened from disk and from an S3 link alike; ``#part-N`` in the URL opens part N.

Size caps (:class:`ReportLimits`) keep the file bounded on long runs: texts are cut at
``text_chars``; a part's diff at ``diff_part_bytes``; all diffs together at ``diff_total_bytes``
(later parts then list their changed paths and line counts only); file versions embedded for the
any-two-parts comparison at ``blob_file_bytes`` each and ``blob_total_bytes`` together (beyond
that the page shows the per-part diffs of the range in order instead). Every cut is said on the
page, with `agtrace replay` as the way to the full content.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    LineLogged,
    MessageAdded,
    ModelCalled,
    PartAttribution,
    PartEnded,
    PartMetrics,
    RawRecorded,
    ReasoningAdded,
    Record,
    RunCost,
    RunEnded,
    RunMetrics,
    RunStarted,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    UnknownEvent,
    UsageReported,
    call_costs,
    collector_paused,
    part_costs,
    part_metrics,
    run_costs,
    run_metrics,
    run_notes,
    score_rows,
    to_builtins,
)

from .report_diff import DiffsAside
from .report_page import page

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReportLimits:
    """Size caps of an embedded report (bytes are of UTF-8 text)."""

    page_parts: int = 100
    text_chars: int = 2_000
    diff_part_bytes: int = 64 * 1024
    diff_total_bytes: int = 16 * 1024 * 1024
    blob_file_bytes: int = 256 * 1024
    blob_total_bytes: int = 8 * 1024 * 1024


class RunFold:
    """A pure fold of one run's records into what only the page draws: transcript rows, test
    points and tool-call lanes. It computes no figure (those are the metrics projection's).

    ``apply`` takes records in seq order; folding in chunks equals folding at once. The *slot*
    of an event is its part by the attribution rule of the metrics (:class:`PartAttribution`:
    an event without a part belongs to the latest part seen before it; 0 before any).
    """

    def __init__(self, text_chars: int = ReportLimits.text_chars, *, transcript: bool = True):
        self.text_chars = text_chars
        self.transcript = transcript
        self.started: RunStarted | None = None
        self.t0: int | None = None
        self.attribution = PartAttribution()
        self.events: list[list] = []
        self.tests: list[list] = []
        self.calls: dict[str, list] = {}

    def rel_ms(self, ts: int | None) -> int:
        return rel_ms(ts, self.t0)

    def apply(self, rec: Record) -> None:
        ev, ts = rec.event, rec.ts
        t0 = self.t0
        if t0 is None:
            t0 = self.t0 = ts
        slot = self.attribution.owner(rec.part) or 0
        t = 0 if ts is None or t0 is None else (ts - t0) // 1_000_000  # rel_ms, inlined (called per event)
        kind = type(ev)
        if kind is RunStarted:
            self.started = ev
            return
        if kind is PartEnded:
            return
        if kind is ToolCalled:  # one lane per call id (the metrics' rule); its last return's outcome
            self.calls.setdefault(ev.call_id, [slot, t, None, ev.tool, "pending", ev.call_id])
        elif kind is ToolReturned:
            call = self.calls.setdefault(ev.call_id, [slot, t, None, ev.tool, "pending", ev.call_id])
            outcome = ev.status if ev.status != "ok" else ("exit" if ev.exit_code not in (None, 0) else "ok")
            start = t - int(ev.duration_ms or 0)
            call[1], call[2], call[4] = min(call[1], start), t, outcome
        elif kind is TestsRan:
            self.tests.append([slot, t, ev.passed, ev.failed, ev.errors, ev.counted_total, ev.suite])
        if self.transcript:
            body = _ROW_BODIES.get(kind, _no_row)(ev, self._cut)
            if body is not None:
                self.events.append([rec.seq, t, slot, rec.kind, body])

    def _cut(self, text: str) -> str:
        if len(text) <= self.text_chars:
            return text
        return f"{text[: self.text_chars]}\n… [{len(text) - self.text_chars:,} more characters: `agtrace log` shows all]"


# The transcript row of each kind of event: ``[seq, t_ms, slot, kind, body]``, where ``body`` is
# what the function of the event's type gives (``cut`` shortens a text to the report's limit); a
# kind without one (snapshots, shown as diffs; heartbeats; part ends, shown as part headers), or a
# function returning None, leaves the event out of the transcript.


def _no_row(ev, cut) -> None:
    return None


def _tool_called(ev: ToolCalled, cut) -> dict:
    args = ev.command or (msgspec.json.encode(ev.arguments).decode() if ev.arguments is not None else "")
    return {"tool": ev.tool, "command": cut(args)}


def _tests_ran(ev: TestsRan, cut) -> dict:
    failing = [c.name for c in ev.tests if c.outcome in ("failed", "error")][:20]
    return {"suite": ev.suite, "passed": ev.passed, "failed": ev.failed, "errors": ev.errors, "total": ev.counted_total,
            "failing": failing}


def _usage_reported(ev: UsageReported, cut) -> dict:
    u = ev.usage
    return {"input": u.input, "output": u.output, "cache_read": u.cache_read, "cache_write": u.cache_write,
            "cost": None, "reported_cost": ev.cost_usd}  # cost: the priced one, set by report_data


_ROW_BODIES: dict[type, Callable[..., dict | None]] = {
    MessageAdded: lambda ev, cut: {"role": ev.role, "text": cut(ev.text) + (" …" if ev.text_blob else "")},
    ReasoningAdded: lambda ev, cut: {"text": "(encrypted)" if ev.encrypted and not ev.text else cut(ev.text)},
    ToolCalled: _tool_called,
    ToolReturned: lambda ev, cut: {"tool": ev.tool, "status": ev.status, "exit_code": ev.exit_code,
                                   "ms": ev.duration_ms, "output": cut(ev.output),
                                   "bytes": ev.output_bytes or len(ev.output.encode())},
    TestsRan: _tests_ran,
    UsageReported: _usage_reported,
    FileChanged: lambda ev, cut: {"change": ev.change, "path": ev.path},
    ErrorOccurred: lambda ev, cut: {"origin": ev.origin, "message": cut(ev.message), "fatal": ev.fatal},
    TurnStarted: lambda ev, cut: {"turn": ev.turn},
    TurnEnded: lambda ev, cut: {"turn": ev.turn},
    LineLogged: lambda ev, cut: {"stream": ev.stream, "text": cut(ev.text)},
    ModelCalled: lambda ev, cut: None if ev.ok else {"model": ev.model, "error": cut(ev.error)},
    RawRecorded: lambda ev, cut: {"source": ev.source, "error": ev.parse_error} if ev.parse_error else None,
    RunEnded: lambda ev, cut: {"status": ev.status, "reason": ev.reason},
    UnknownEvent: lambda ev, cut: {"text": cut(msgspec.json.encode(to_builtins(ev)).decode())},
}


def fold_run(store: Store, run_id: str, *, text_chars: int = ReportLimits.text_chars, transcript: bool = True,
             progress: Progress | None = None, total: int = 0) -> RunFold:
    """Fold a run's events into a :class:`RunFold`."""
    fold = RunFold(text_chars, transcript=transcript)
    for i, rec in enumerate(store.read(run_id), 1):
        fold.apply(rec)
        if progress and i % 2000 == 0:
            progress(i, max(total, i))
    return fold


def header(store: Store, run_id: str, started: RunStarted | None, metrics: RunMetrics) -> dict:
    """The run's identity, live status, every run metric under its metrics name and the priced
    ``cost`` object of ``show``/``metrics``/``ls --json`` (what the page's header shows;
    docs/metrics.md defines the figures)."""
    info = store.info(run_id)
    s = started or RunStarted()
    cost = run_costs(store, [run_id])[run_id].to_dict()
    cost.pop("run_id")
    return {
        "id": run_id, "agent": s.agent, "agent_version": s.agent_version, "model": info.model,
        "task_id": s.task_id, "prompt": s.prompt, "repo": s.repo, "base_commit": s.base_commit,
        "host": s.host, "tags": s.tags, "parent_run": s.parent_run, "attempt": s.attempt,
        "exit_code": info.exit_code, **{k: v for k, v in metrics.to_dict().items() if k != "run_id"},
        "cost": cost,
    }


def outcome(p: PartMetrics) -> str:
    """A part's outcome as the page colours it, from its metrics."""
    if p.tool_errors:
        return "error"
    if p.tests_failed:
        return "fail"
    if p.tests_total is not None:
        return "pass"
    return "ok" if p.tool_calls else ""


def rel_ms(ts: int | None, t0: int | None) -> int:
    """Milliseconds from ``t0`` (the run's first event) to ``ts``; 0 when either is unknown."""
    if ts is None or t0 is None:
        return 0
    return (ts - t0) // 1_000_000


def part_time(p: PartMetrics, metrics: RunMetrics) -> int:
    """When a part ended (its last event's run, for an unfinished one), in ms since the start."""
    return rel_ms(p.ended_at or metrics.last_ts, metrics.started_at)


def usage_points(metrics: RunMetrics, parts: list[PartMetrics], part_cost: dict[int, float | None],
                 run_cost: float | None) -> list[list]:
    """``[part, t_ms, tokens, cost]`` per part that spent tokens (slot 0: usage before any part),
    from the part rows; the tokens and cost curves of the report and of the comparison. The cost
    is the priced one (``part_cost`` = :func:`agtrace.eventlog.part_costs`, ``run_cost`` = the
    run's ``RunCost.cost_usd``), None for a part none of whose calls was priced."""
    points = []
    for p in parts:
        usd = part_cost.get(p.part)
        if p.tokens or usd:
            points.append([p.part, part_time(p, metrics), p.tokens, usd])
    before = metrics.tokens - sum(p.tokens for p in parts)
    before_cost = None if run_cost is None else run_cost - sum(v or 0.0 for v in part_cost.values())
    if before or before_cost:
        points.insert(0, [0, 0, before, before_cost])
    return points


def _row_order(row: list) -> tuple:
    """A transcript row's place: by part, a note (its seq is of the scores stream) after the
    part's events, else by seq."""
    return row[2], row[3] == "note_added", row[0]


def utc_clock(ts_ns: int | None) -> str:
    """A time as the CLI prints it: UTC, marked ``Z`` (``2026-12-03 13:38:12Z``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns // 10**9)) + "Z" if ts_ns else "–"


def report_data(store: Store, run_id: str, *, limits: ReportLimits | None = None,
                progress: Progress | None = None) -> tuple[dict, dict]:
    """The JSON a report embeds: the run (header, parts, series; ``pages``: the transcript's rows
    page by page, :attr:`ReportLimits.page_parts` parts a page, page 0 holding the rows before
    the first part too) and its diffs."""
    limits = limits or ReportLimits()
    metrics = run_metrics(store, run_id)
    total = metrics.events
    parts = part_metrics(store, run_id)
    tree_of = {r["part"]: r["tree_id"] or "" for r in store.catalog.part_rows(run_id)}
    diffs_of = DiffsAside(store, run_id, [(p.part, tree_of.get(p.part, "")) for p in parts], limits)
    try:  # the diffs are computed in a child process while the events are folded here
        fold = fold_run(store, run_id, text_chars=limits.text_chars, progress=progress, total=total)
        if progress:
            progress(total, total + len(parts))
        diffs = diffs_of()
    finally:
        diffs_of.cancel()
    priced = {row["seq"]: row["cost_usd"] for row in call_costs(store, run_id)}
    for e in fold.events:
        if e[3] == "usage_reported":
            e[4]["cost"] = priced.get(e[0])
    trees: dict[str, int] = {}
    pages: list[list] = [[]]
    for e in sorted(fold.events, key=_row_order):  # transcript pages of page_parts parts
        page_no = 0 if e[2] <= 0 else (e[2] - 1) // limits.page_parts
        while len(pages) <= page_no:
            pages.append([])
        pages[page_no].append(e)
    scores = [[r["scored_part"], fold.rel_ms(r["ts"]), r["value"], r["passed"], r["total"], r["scorer"], r["status"],
               r["final"]] for r in score_rows(store, run_id)]
    run = header(store, run_id, fold.started, metrics)
    run["notes"] = run_notes(store, run_id)  # as show --json has them
    noted = set()
    for note in run["notes"]:  # a part's note also shows at its part, after the part's events
        if note["part"] is not None and note["part"] > 0:
            page_no = (note["part"] - 1) // limits.page_parts
            while len(pages) <= page_no:
                pages.append([])
            pages[page_no].append([note["seq"], fold.rel_ms(note["ts"]), note["part"], "note_added",
                                   {"text": fold._cut(note["text"]), "author": note["author"],
                                    "when": utc_clock(note["ts"])}])
            noted.add(page_no)
    for page_no in noted:
        pages[page_no].sort(key=_row_order)
    data = {
        "v": 1, "run": run, "t0": fold.t0, "page": limits.page_parts,
        "parts": {
            "n": [p.part for p in parts], "t": [part_time(p, metrics) for p in parts],
            "kind": [p.kind or "unfinished" for p in parts], "title": [p.title for p in parts],
            "tool": [p.tool for p in parts], "outcome": [outcome(p) for p in parts],
            "tree": [trees.setdefault(tree_of[p.part], len(trees)) if tree_of.get(p.part) else -1 for p in parts],
            "ch": [p.files_changed for p in parts], "add": [p.churn_lines_added for p in parts],
            "del": [p.churn_lines_removed for p in parts],
        },
        "tests": fold.tests, "scores": scores, "calls": list(fold.calls.values()),
        "usage": usage_points(metrics, parts, part_costs(store, run_id), run["cost"]["cost_usd"]),
        "pages": pages, "limits": {"text_chars": limits.text_chars, "diff_part_bytes": limits.diff_part_bytes},
    }
    return data, diffs


def render_report(store: Store, run_id: str, *, limits: ReportLimits | None = None,
                  progress: Progress | None = None) -> str:
    """One run as one self-contained HTML document (see the module docstring for its contract)."""
    with collector_paused():  # the data is many lists and dicts without cycles
        data, diffs = report_data(store, run_id, limits=limits, progress=progress)
    run = data["run"]
    title = f"agtrace · {run['agent'] or 'run'} · {run['task_id'] or run_id}"
    lim = limits or ReportLimits()
    footer = (f"Texts are cut at {lim.text_chars:,} characters, a part's diff at {lim.diff_part_bytes // 1024} KiB, "
              f"all diffs at {lim.diff_total_bytes // 2**20} MiB. {diffs['note']}")
    pages = data.pop("pages")
    data["npages"] = len(pages)
    blocks = {"agtrace-data": data, "agtrace-diffs": diffs, **{f"agtrace-page-{i}": p for i, p in enumerate(pages)}}
    return page(title=title, kind="report", header_html=header_html(run), blocks=blocks, footer=footer)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def fmt_cost(run: dict) -> str:
    """The priced cost as ``show`` prints it (with what the agent reported beside it)."""
    return RunCost.of_dict(run["cost"], run["id"]).line()


def header_html(run: dict) -> str:
    """The header as static HTML, so the page paints it before any script runs."""
    e = html.escape
    started = utc_clock(run["started_at"])
    tests = ("–" if run["tests_final_total"] is None
             else f"{run['tests_final_passed']}/{run['tests_final_total']} passed")
    facts = [
        ("agent", f"{run['agent']} {run['agent_version']}".strip()), ("model", run["model"]),
        ("task", run["task_id"]), ("repo", f"{run['repo']} {run['base_commit'][:12]}".strip()),
        ("started", started), ("duration", fmt_duration(run["duration_s"])),
        ("parts", f"{run['parts']:,} ({run['events']:,} events)"),
        ("tokens", f"{run['tokens']:,} (in {run['tokens_input']:,} · out {run['tokens_output']:,} · cache read "
                   f"{run['tokens_cache_read']:,} · cache write {run['tokens_cache_write']:,})"),
        ("cost", fmt_cost(run)), ("tools", f"{run['tool_calls']:,} calls, {run['tool_errors']:,} failed"),
        ("tests (last)", tests), ("host", run["host"]),
    ]
    if run["parent_run"]:
        facts.append(("parent run", run["parent_run"]))
    if run["tags"]:
        facts.append(("tags", " ".join(f"{k}={v}" for k, v in run["tags"].items())))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v) or '–')}</dd>" for k, v in facts)
    reason = f" <span class=reason>{e(run['reason'])}</span>" if run["reason"] else ""
    prompt = (f"<details class=prompt><summary>task prompt</summary><pre>{e(run['prompt'])}</pre></details>"
              if run["prompt"] else "")
    return (f"<h1>run <code>{e(run['id'])}</code> <span class='status s-{e(run['status'])}'>{e(run['status'])}"
            f"</span>{reason}</h1><dl class=facts>{dl}</dl>{prompt}{notes_html(run.get('notes') or [])}")


def notes_html(notes: list[dict]) -> str:
    """The run's notes (``agtrace note``) as a list, escaped (a note is anyone's text): what
    each is about (the run, or part N, linked), the text, who wrote it and when (UTC)."""
    if not notes:
        return ""
    e = html.escape
    items = []
    for n in notes:
        about = "run" if n["part"] is None else f"<a href='#part-{int(n['part'])}'>part {int(n['part'])}</a>"
        items.append(f"<li><span class=about>{about}</span> <span class=text>{e(n['text'])}</span> "
                     f"<span class=by>{e(n['author'] or '?')}, {e(utc_clock(n['ts']))}</span></li>")
    return f"<section class=notes><h2>notes</h2><ul>{''.join(items)}</ul></section>"
