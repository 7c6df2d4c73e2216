"""Run and part metrics: their types, the attribution rule and the pure fold that computes them.

Every figure is defined once in ``docs/metrics.md``; in short:

* **Tokens** are the sum of the ``usage_reported`` deltas, totalled by :attr:`Usage.total`
  (input + output + cache read + cache write; reasoning is inside output). Deltas are never
  deduplicated by ``request_id`` and ``cumulative`` is never summed.
* **Attribution** (:class:`PartAttribution`): an event counts for its own part; an event
  without a part counts for the latest part seen before it, and for the run only before any.
* **Files changed** are the distinct paths of the counted snapshots; a run without any snapshot
  (an import of a transcript) counts the paths of its agent ``file_changed`` events instead.
* **Churn** (``churn_lines_added``/``churn_lines_removed``) sums the snapshots' line counts (a
  run without any snapshot: the line counts of its agent ``file_changed`` events, a patch's);
  the net change of a run is not a metric of this fold (it needs the trees; see
  ``agtrace compare``'s ``net_*``).

:class:`MetricsFold` reads no clock, file or database: the same records give the same rows, and
folding in chunks (carrying :meth:`MetricsFold.state` and the part rows between chunks) equals
folding at once. Its figures are those of the ``metrics`` projection
(:mod:`agtrace.eventlog.metrics_projection`); the run and part fields that come from the run
catalog (events, parts, times, end status; part kind, title, tool, end time) are filled in when
a :class:`RunMetrics`/:class:`PartMetrics` is read from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields

from .events import (
    ErrorOccurred,
    FileChanged,
    ModelCalled,
    Record,
    SnapshotTaken,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnStarted,
    UsageReported,
)

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass
class PartMetrics:
    """Metrics of one part. Test fields are None when no test ran in the part."""

    part: int
    kind: str = ""
    title: str = ""
    tool: str = ""
    ended_at: int | None = None
    tokens: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cache_read: int = 0
    tokens_cache_write: int = 0
    tokens_reasoning: int = 0
    cost_usd: float | None = None
    tool_calls: int = 0
    tool_errors: int = 0
    tests_passed: int | None = None
    tests_failed: int | None = None
    tests_total: int | None = None
    files_changed: int = 0
    churn_lines_added: int = 0
    churn_lines_removed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunMetrics:
    """Metrics of one run. ``status``/``reason`` are live (see ``Store.info``), not stored."""

    run_id: str
    end_status: str | None = None
    end_reason: str = ""
    started_at: int | None = None
    ended_at: int | None = None
    last_ts: int | None = None
    events: int = 0
    parts: int = 0
    turns: int = 0
    tokens: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cache_read: int = 0
    tokens_cache_write: int = 0
    tokens_reasoning: int = 0
    cost_usd: float | None = None
    usage_reports: int = 0
    unpriced_usage: int = 0
    model_calls: int = 0
    model_errors: int = 0
    errors: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tools: dict[str, dict[str, int]] = field(default_factory=dict)
    tests_ran: int = 0
    tests_first_pass_part: int | None = None
    tests_best_part: int | None = None
    tests_best_passed: int | None = None
    tests_best_total: int | None = None
    tests_final_part: int | None = None
    tests_final_passed: int | None = None
    tests_final_failed: int | None = None
    tests_final_total: int | None = None
    files_changed: int = 0
    churn_lines_added: int = 0
    churn_lines_removed: int = 0
    status: str = ""
    reason: str = ""

    @property
    def duration_s(self) -> float | None:
        end = self.ended_at or self.last_ts
        if self.started_at is None or end is None or end < self.started_at:
            return None  # events fed by hand may end before the run started: no duration, not a negative one
        return (end - self.started_at) / 1e9

    def tool_error_rates(self) -> dict[str, float]:
        """Errors / calls per tool name."""
        return {name: (t["errors"] / t["calls"] if t["calls"] else 0.0) for name, t in self.tools.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(duration_s=self.duration_s,
                 tool_error_rate=(self.tool_errors / self.tool_calls) if self.tool_calls else 0.0)
        rates = self.tool_error_rates()
        d["tools"] = {name: {**t, "error_rate": rates[name]} for name, t in self.tools.items()}
        return d


CATALOG_RUN_FIELDS = ("end_status", "end_reason", "started_at", "ended_at", "last_ts", "events", "parts")
"""RunMetrics fields that are the run catalog's (``runs`` table), not this fold's."""
CATALOG_PART_FIELDS = ("kind", "title", "tool", "ended_at")
"""PartMetrics fields that are the run catalog's (``parts`` table)."""
_LIVE = ("status", "reason")
RUN_COLUMNS = [f.name for f in fields(RunMetrics) if f.name not in (*CATALOG_RUN_FIELDS, *_LIVE)]
"""Columns of ``run_metrics`` (``run_id`` first), besides the fold's ``state``."""
PART_COLUMNS = [f.name for f in fields(PartMetrics) if f.name not in CATALOG_PART_FIELDS]
"""Columns of ``part_metrics`` besides ``run_id`` (``part`` first)."""


class PartAttribution:
    """The attribution rule, defined once: :meth:`owner` of each record in seq order is its own
    part, or for a record without one the latest part seen before it (None before any)."""

    __slots__ = ("latest",)

    def __init__(self, latest: int | None = None):
        self.latest = latest

    def owner(self, part: int | None) -> int | None:
        if part is not None:
            self.latest = part
            return part
        return self.latest


RETURNED_KEPT = 64
"""Returned calls the metrics fold remembers, to count a repeated ``tool_called`` or
``tool_returned`` of one call id once (a retried result arrives within a few calls)."""


class MetricsFold:
    """Folds a run's records, in seq order, into its run metrics and touched part rows.

    ``load_part(n)`` returns the stored :class:`PartMetrics` of part ``n`` or None; it lets an
    incremental update touch only the parts its new events name. ``touched`` holds every part
    row this fold created or changed. ``state`` is what the fold needs beyond its output rows
    (open tool calls, returned calls and their outcome, the set of changed paths, the latest part
    seen); it is stored with them.
    """

    def __init__(self, run: RunMetrics, state: dict | None = None,
                 load_part: Callable[[int], PartMetrics | None] | None = None):
        self.run = run
        state = state or {}
        self.open_calls: dict[str, str] = dict(state.get("open_calls", {}))
        # the latest RETURNED_KEPT returned calls, oldest first: call id -> [tool, part its error
        # counts in (or None), erred]; a repeated tool_called or tool_returned of one of them is
        # the same call (its last return's outcome counts). Bounded: the state is rewritten on
        # every update, and a run may make tens of thousands of calls.
        self.returned: dict[str, list] = {k: [tool, part, erred] for k, tool, part, erred in state.get("returned", [])}
        self.paths: set[str] = set(state.get("paths", []))
        # a run without snapshots (an import) counts the agent's reported changes instead
        self.snapshots: bool = bool(state.get("snapshots", False))
        self.agent_paths: set[str] = set(state.get("agent_paths", []))
        self.attribution = PartAttribution(state.get("last_part"))
        self.touched: dict[int, PartMetrics] = {}
        self._load = load_part or (lambda n: None)

    def state(self) -> dict:
        """The fold's extra state as canonical JSON-able data."""
        return {"last_part": self.attribution.latest, "open_calls": dict(sorted(self.open_calls.items())),
                "returned": [[k, *v] for k, v in self.returned.items()],
                "paths": sorted(self.paths), "snapshots": self.snapshots,
                "agent_paths": sorted(self.agent_paths)}

    def part(self, n: int) -> PartMetrics:
        row = self.touched.get(n)
        if row is None:
            row = self._load(n) or PartMetrics(part=n)
            self.touched[n] = row
        return row

    def apply(self, records: Iterable[Record]) -> None:
        """Fold ``records``: the run's records after those already folded, in seq order."""
        handlers, owner = _HANDLERS, self.attribution.owner
        for rec in records:
            where = owner(rec.part)
            handler = handlers.get(type(rec.event))
            if handler is not None:
                handler(self, rec, rec.event, where)

    def _usage(self, rec: Record, ev: UsageReported, owner: int | None) -> None:
        run = self.run
        run.usage_reports += 1
        if ev.cost_usd is None:
            run.unpriced_usage += 1
        u, total = ev.usage, ev.usage.total
        for t in (run,) if owner is None else (run, self.part(owner)):
            t.tokens += total
            t.tokens_input += u.input
            t.tokens_output += u.output
            t.tokens_cache_read += u.cache_read
            t.tokens_cache_write += u.cache_write
            t.tokens_reasoning += u.reasoning
            if ev.cost_usd is not None:
                t.cost_usd = (t.cost_usd or 0.0) + ev.cost_usd

    def _called(self, rec: Record, ev: ToolCalled, owner: int | None) -> None:
        if ev.call_id and (ev.call_id in self.open_calls or ev.call_id in self.returned):
            return  # the same call recorded again: one call
        self._call(ev.tool or "?", owner)
        self.open_calls[ev.call_id] = ev.tool or "?"

    def _call(self, tool: str, owner: int | None) -> None:
        stats = self.run.tools.setdefault(tool, {"calls": 0, "errors": 0})
        stats["calls"] += 1
        self.run.tool_calls += 1
        if owner is not None:
            self.part(owner).tool_calls += 1

    def _returned(self, rec: Record, ev: ToolReturned, owner: int | None) -> None:
        erred = ev.status != "ok" or ev.exit_code not in (None, 0)
        again = self.returned.get(ev.call_id) if ev.call_id else None
        if again is not None:  # a repeated return of one call: its last outcome counts, once
            tool, counted_in, was = again
            if was:
                self._tool_error(tool, counted_in, -1)
            if erred:
                self._tool_error(tool, owner, 1)
            self._remember(ev.call_id, [tool, owner if erred else None, erred])
            return
        called = self.open_calls.pop(ev.call_id, None)
        tool = ev.tool or called or "?"
        if called is None:  # a result without a recorded call (imports): still one call
            self._call(tool, owner)
        if erred:
            self._tool_error(tool, owner, 1)
        if ev.call_id:  # calls without an id cannot be told apart: each counts
            self._remember(ev.call_id, [tool, owner if erred else None, erred])

    def _remember(self, call_id: str, outcome: list) -> None:
        self.returned.pop(call_id, None)  # the latest return goes last
        self.returned[call_id] = outcome
        if len(self.returned) > RETURNED_KEPT:
            del self.returned[next(iter(self.returned))]

    def _tool_error(self, tool: str, owner: int | None, n: int) -> None:
        self.run.tools.setdefault(tool, {"calls": 0, "errors": 0})["errors"] += n
        self.run.tool_errors += n
        if owner is not None:
            self.part(owner).tool_errors += n

    def _tests(self, rec: Record, ev: TestsRan, owner: int | None) -> None:
        run, failed = self.run, ev.failed + ev.errors
        total = ev.counted_total
        where = owner or 0
        run.tests_ran += 1
        if failed == 0 and ev.passed > 0 and run.tests_first_pass_part is None:
            run.tests_first_pass_part = where
        if run.tests_best_passed is None or ev.passed > run.tests_best_passed:
            run.tests_best_part, run.tests_best_passed, run.tests_best_total = where, ev.passed, total
        run.tests_final_part, run.tests_final_passed = where, ev.passed
        run.tests_final_failed, run.tests_final_total = failed, total
        if owner is not None:
            p = self.part(owner)
            p.tests_passed, p.tests_failed, p.tests_total = ev.passed, failed, total

    def _snapshot(self, rec: Record, ev: SnapshotTaken, owner: int | None) -> None:
        if not self.snapshots:  # from the first snapshot on, snapshots are the evidence
            self.snapshots = True
            self.run.files_changed = len(self.paths)
            self.run.churn_lines_added = self.run.churn_lines_removed = 0  # not the agent's counts
        if rec.part is None and not ev.final:
            return  # the base snapshot is the starting tree, not a change
        changed = [*ev.added, *ev.modified, *ev.deleted]
        self.paths.update(changed)
        run = self.run
        run.files_changed = len(self.paths)
        run.churn_lines_added += ev.lines_added
        run.churn_lines_removed += ev.lines_removed
        if owner is not None:
            p = self.part(owner)
            p.files_changed += len(changed)
            p.churn_lines_added += ev.lines_added
            p.churn_lines_removed += ev.lines_removed

    def _changed(self, rec: Record, ev: FileChanged, owner: int | None) -> None:
        """A run without snapshots (an import): the paths the agent reported changing count as
        its changed files, and the line counts it reported (a patch's) as its churn."""
        if ev.origin != "agent" or self.snapshots:
            return
        self.agent_paths.add(ev.path)
        run = self.run
        run.files_changed = len(self.agent_paths)
        added, removed = ev.lines_added or 0, ev.lines_removed or 0
        run.churn_lines_added += added
        run.churn_lines_removed += removed
        if owner is not None:
            p = self.part(owner)
            p.files_changed += 1
            p.churn_lines_added += added
            p.churn_lines_removed += removed

    def _turn(self, rec: Record, ev: TurnStarted, owner: int | None) -> None:
        self.run.turns += 1

    def _model(self, rec: Record, ev: ModelCalled, owner: int | None) -> None:
        self.run.model_calls += 1
        self.run.model_errors += 0 if ev.ok else 1

    def _error(self, rec: Record, ev: ErrorOccurred, owner: int | None) -> None:
        self.run.errors += 1


_HANDLERS = {
    UsageReported: MetricsFold._usage, ToolCalled: MetricsFold._called, ToolReturned: MetricsFold._returned,
    TestsRan: MetricsFold._tests, SnapshotTaken: MetricsFold._snapshot, TurnStarted: MetricsFold._turn,
    ModelCalled: MetricsFold._model, ErrorOccurred: MetricsFold._error, FileChanged: MetricsFold._changed,
}
"""What :meth:`MetricsFold.apply` does with each kind it counts: functions of the class, not methods
bound to a fold (a fold holding its own bound methods would be a reference cycle, so its touched
rows would wait for the cycle collector instead of being freed when the fold is dropped)."""
