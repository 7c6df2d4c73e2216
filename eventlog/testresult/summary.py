"""The result type of every test-result reader, and the helpers the readers share.

:class:`TestSummary` counts by the rule in the package docstring (``__init__.py``);
:func:`summary_of` builds one, from a runner's tally or from its cases.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..events import TestCase, TestsRan

OUTCOMES = ("passed", "failed", "error", "skipped")


class TestSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one test run reported, counted by the rule of ``agtrace.eventlog.testresult``.

    Attributes:
        runner: the format it was read from (``pytest``, ``go``, ``junit``, …).
        passed: tests that met their expectation.
        failed: tests that did not.
        errors: tests that could not run to a verdict (and builds that failed).
        skipped: skipped, ignored, todo and expected-failure tests.
        tally: the runner's own counts under its own words, as evidence.
        cases: the tests the output names, in order, ``outcome`` being the bucket counted.
    """

    __test__ = False  # not a pytest class

    runner: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    tally: dict[str, int] = {}
    cases: list[TestCase] = []

    @property
    def total(self) -> int:
        """Every test counted: ``passed + failed + errors + skipped``."""
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def pass_rate(self) -> float:
        """``passed / (passed + failed + errors)``; 0.0 when nothing ran to a verdict."""
        ran = self.passed + self.failed + self.errors
        return self.passed / ran if ran else 0.0

    @property
    def green(self) -> bool:
        """True when nothing failed or errored (what the runner calls a passing run)."""
        return self.failed + self.errors == 0

    def tests_ran(self, **fields: Any) -> TestsRan:
        """The ``tests_ran`` event of this summary; ``fields`` adds command, exit_code, …"""
        return TestsRan(suite=self.runner, passed=self.passed, failed=self.failed,
                        errors=self.errors, skipped=self.skipped, total=self.total,
                        tests=list(self.cases), tally=dict(self.tally), **fields)

    def as_dict(self) -> dict[str, Any]:
        """Plain data with ``total`` added (what the goldens hold)."""
        out = msgspec.to_builtins(self)
        out["total"] = self.total
        return out


def summary_of(runner: str, cases: list[TestCase], tally: dict[str, int] | None = None,
               **counts: int) -> TestSummary:
    """A summary counting ``counts`` when given (a runner's tally), else ``cases``.

    Zero entries of ``tally`` are dropped, so a tally shows what the runner reported.
    """
    buckets = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    if counts:
        buckets.update(counts)
    else:
        for case in cases:
            buckets["errors" if case.outcome == "error" else case.outcome] += 1
    return TestSummary(runner=runner, tally={k: v for k, v in (tally or {}).items() if v},
                       cases=cases, **buckets)


def with_more(summary: TestSummary, **more: int) -> TestSummary:
    """``summary`` with ``more`` added to its counts (``errors=1``, …)."""
    changes = {k: getattr(summary, k) + v for k, v in more.items()}
    return msgspec.structs.replace(summary, **changes)


def words(items: str, sep: str = ",") -> dict[str, int]:
    """``"2 failed, 4 passed"`` → ``{"failed": 2, "passed": 4}``; repeated words add up."""
    out: dict[str, int] = {}
    for item in items.split(sep):
        count, _, word = item.strip().partition(" ")
        if count.isdigit() and word:
            out[word] = out.get(word, 0) + int(count)
    return out


def add(into: dict[str, int], more: dict[str, int]) -> None:
    """Add ``more``'s counts into ``into``."""
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def unique(cases: list[TestCase]) -> list[TestCase]:
    """``cases`` without repeats of one (name, outcome), the first kept."""
    seen: set[tuple[str, str]] = set()
    out = []
    for case in cases:
        if (case.name, case.outcome) not in seen:
            seen.add((case.name, case.outcome))
            out.append(case)
    return out


def ms(value: Any, scale: float = 1000.0) -> float | None:
    """A duration in ms from seconds (``scale`` 1000) or from ms (``scale`` 1); None if absent."""
    try:
        return round(float(value) * scale, 3)
    except (TypeError, ValueError):
        return None


def to_int(value: Any) -> int:
    """``value`` as an int, 0 when it is not a number."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0
