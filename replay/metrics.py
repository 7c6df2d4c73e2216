"""Metric types and the pure fold that computes them from a run's records.

:class:`MetricsFold` folds records, in seq order, into a :class:`RunMetrics` and
:class:`PartMetrics` rows. It reads no clock, no file and no database: given the same records
it gives the same rows, and folding in chunks (carrying :meth:`MetricsFold.state` and the part
rows between chunks) equals folding at once, field for field. Storage, positions and the
public API are in :mod:`agtrace.replay.projections`; what each metric means is in
``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields

from agtrace.eventlog import (
    ErrorOccurred,
    ModelCalled,
    PartEnded,
    Record,
    RunEnded,
    RunStarted,
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
    lines_added: int = 0
    lines_removed: int = 0

    @property
    def tokens(self) -> int:
        """Input + output + cache read + cache write (reasoning is part of output)."""
        return self.tokens_input + self.tokens_output + self.tokens_cache_read + self.tokens_cache_write

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens": self.tokens}


@dataclass
class RunMetrics:
    """Metrics of one run. ``status``/``reason`` are live (see ``Store.info``), not stored."""

    run_id: str
    position: int = 0
    end_status: str | None = None
    end_reason: str = ""
    started_at: int | None = None
    ended_at: int | None = None
    last_ts: int | None = None
    events: int = 0
    parts: int = 0
    turns: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    tokens_cache_read: int = 0
    tokens_cache_write: int = 0
    tokens_reasoning: int = 0
    cost_usd: float | None = None
    usage_reports: int = 0
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
    lines_added: int = 0
    lines_removed: int = 0
    status: str = ""
    reason: str = ""

    @property
    def tokens(self) -> int:
        """Input + output + cache read + cache write (reasoning is part of output)."""
        return self.tokens_input + self.tokens_output + self.tokens_cache_read + self.tokens_cache_write

    @property
    def duration_s(self) -> float | None:
        end = self.ended_at or self.last_ts
        if self.started_at is None or end is None:
            return None
        return (end - self.started_at) / 1e9

    def tool_error_rates(self) -> dict[str, float]:
        """Errors / calls per tool name."""
        return {name: (t["errors"] / t["calls"] if t["calls"] else 0.0) for name, t in self.tools.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(tokens=self.tokens, duration_s=self.duration_s,
                 tool_error_rate=(self.tool_errors / self.tool_calls) if self.tool_calls else 0.0)
        d["tools"] = {name: {**t, "error_rate": self.tool_error_rates()[name]} for name, t in self.tools.items()}
        return d


_LIVE = ("status", "reason")
RUN_COLUMNS = [f.name for f in fields(RunMetrics) if f.name not in _LIVE]
PART_COLUMNS = [f.name for f in fields(PartMetrics)]


class MetricsFold:
    """Folds a run's records, in seq order, into its run and part metrics.

    ``load_part(n)`` returns the stored :class:`PartMetrics` of part ``n`` or None; it lets an
    incremental update touch only the parts its new events name. ``touched`` holds every part
    row this fold created or changed. ``state`` is what the fold needs beyond the output rows
    (open tool calls, the set of changed paths, the latest part seen); it is stored with them.
    """

    def __init__(self, run: RunMetrics, state: dict | None = None,
                 load_part: Callable[[int], PartMetrics | None] | None = None):
        self.run = run
        state = state or {}
        self.open_calls: dict[str, str] = dict(state.get("open_calls", {}))
        self.paths: set[str] = set(state.get("paths", []))
        self.last_part: int | None = state.get("last_part")
        self.touched: dict[int, PartMetrics] = {}
        self._load = load_part or (lambda n: None)

    def state(self) -> dict:
        """The fold's extra state as canonical JSON-able data."""
        return {"last_part": self.last_part, "open_calls": dict(sorted(self.open_calls.items())),
                "paths": sorted(self.paths)}

    def part(self, n: int) -> PartMetrics:
        row = self.touched.get(n)
        if row is None:
            row = self._load(n) or PartMetrics(part=n)
            self.touched[n] = row
        return row

    def apply(self, records: Iterable[Record]) -> None:
        """Fold ``records``; each must follow the last one folded (``seq > run.position``)."""
        run = self.run
        for rec in records:
            if rec.seq <= run.position:
                continue
            ev = rec.event
            if rec.part is not None:
                self.last_part = rec.part
                self.part(rec.part)
            owner = self.last_part  # the part an event without one counts for
            if isinstance(ev, UsageReported):
                run.usage_reports += 1
                targets = [run] if owner is None else [run, self.part(owner)]
                for t in targets:
                    for name in TOKEN_TYPES:
                        key = "tokens_" + name
                        setattr(t, key, getattr(t, key) + getattr(ev.usage, name))
                    if ev.cost_usd is not None:
                        t.cost_usd = (t.cost_usd or 0.0) + ev.cost_usd
            elif isinstance(ev, ToolCalled):
                self._call(ev.tool or "?", owner)
                self.open_calls[ev.call_id] = ev.tool or "?"
            elif isinstance(ev, ToolReturned):
                self._returned(ev, owner)
            elif isinstance(ev, TestsRan):
                self._tests(ev, owner)
            elif isinstance(ev, SnapshotTaken):
                if rec.part is not None or ev.final:
                    self._snapshot(ev, owner)
            elif isinstance(ev, PartEnded) and rec.part is not None:
                p = self.part(rec.part)
                p.kind, p.title, p.tool, p.ended_at = ev.part_kind, ev.title, ev.tool, rec.ts
                run.parts = max(run.parts, rec.part)
            elif isinstance(ev, TurnStarted):
                run.turns += 1
            elif isinstance(ev, ModelCalled):
                run.model_calls += 1
                run.model_errors += 0 if ev.ok else 1
            elif isinstance(ev, ErrorOccurred):
                run.errors += 1
            elif isinstance(ev, RunStarted):
                run.started_at = rec.ts
            elif isinstance(ev, RunEnded):
                run.ended_at, run.end_status, run.end_reason = rec.ts, ev.status, ev.reason
            run.position = run.events = rec.seq
            run.last_ts = rec.ts if run.last_ts is None else max(run.last_ts, rec.ts)

    def _call(self, tool: str, owner: int | None) -> None:
        stats = self.run.tools.setdefault(tool, {"calls": 0, "errors": 0})
        stats["calls"] += 1
        self.run.tool_calls += 1
        if owner is not None:
            self.part(owner).tool_calls += 1

    def _returned(self, ev: ToolReturned, owner: int | None) -> None:
        called = self.open_calls.pop(ev.call_id, None)
        tool = ev.tool or called or "?"
        if called is None:  # a result without a recorded call (imports): still one call
            self._call(tool, owner)
        if ev.status != "ok" or ev.exit_code not in (None, 0):
            self.run.tools.setdefault(tool, {"calls": 0, "errors": 0})["errors"] += 1
            self.run.tool_errors += 1
            if owner is not None:
                self.part(owner).tool_errors += 1

    def _tests(self, ev: TestsRan, owner: int | None) -> None:
        run, failed = self.run, ev.failed + ev.errors
        total = ev.total or ev.passed + failed + ev.skipped
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

    def _snapshot(self, ev: SnapshotTaken, owner: int | None) -> None:
        changed = [*ev.added, *ev.modified, *ev.deleted]
        self.paths.update(changed)
        run = self.run
        run.files_changed = len(self.paths)
        run.lines_added += ev.lines_added
        run.lines_removed += ev.lines_removed
        if owner is not None:
            p = self.part(owner)
            p.files_changed += len(changed)
            p.lines_added += ev.lines_added
            p.lines_removed += ev.lines_removed


def fold(run_id: str, records: Iterable[Record]) -> tuple[RunMetrics, list[PartMetrics]]:
    """Fold a whole run in memory (no store): its run metrics and its part rows by part."""
    f = MetricsFold(RunMetrics(run_id=run_id))
    f.apply(records)
    return f.run, [f.touched[n] for n in sorted(f.touched)]
