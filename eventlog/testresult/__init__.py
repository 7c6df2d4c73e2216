"""Test results: one type and one counting rule for every test runner agtrace reads.

A :class:`TestSummary` is what a runner's printed output (:func:`parse_test_output`) or result
file (:func:`parse_test_file`: JUnit XML, JSON) says. Capture's ``tests_ran`` events and
re-scoring's ``scored`` events are both made from it, so one output gives the same counts
wherever it is read. Parsing is pure (text or bytes in, a value out) and linear in the input.

The counting rule (``docs/metrics.md`` repeats it; change both together):

* Every test the runner reports lands in exactly one of four buckets, and
  ``total = passed + failed + errors + skipped``.
* **passed**: ran and met its expectation. Includes tests expected to fail that passed where
  the runner still calls the run green (pytest's non-strict ``xpassed``) and cargo's
  ``measured`` benchmarks.
* **failed**: ran and did not meet it: assertion failures, pytest's strict ``XPASS`` (pytest
  itself reports it as failed), unittest's *unexpected successes* (unittest fails the run).
* **errors**: could not run to a verdict: errors outside the test body (fixture setup or
  teardown, collection and import errors), crashes (ctest exceptions, missing executables),
  tests that a TAP plan or cargo's ``running N tests`` announced and that never reported (one
  each), node's ``cancelled`` tests, test files that failed to load (jest, vitest: one each),
  and packages or crates that failed to build (go, cargo: one each).
* **skipped**: reported but counted neither for nor against: skipped, disabled, cargo's
  ``ignored``, every *todo* (jest, vitest, node, TAP ``# TODO``; passing or failing), and
  expected failures (pytest's ``xfailed``, unittest's ``expected failures``).
* Not counted at all: tests the runner did not select (pytest's ``deselected``, cargo's
  ``filtered out``), suites and files as such (node's ``suites``, jest's ``Test Suites``),
  warnings, reruns.
* **pass rate**, the value of a re-scored test run: ``passed / (passed + failed + errors)``;
  0.0 when nothing ran to a verdict.
* The rule agrees with the runner's verdict: a run the runner calls green has
  ``failed + errors == 0``, and one it fails because of its tests has ``failed + errors > 0``.
* Several runs of one runner in one output (``pytest a; pytest b``, cargo's test binaries, go's
  packages) are summed. When an output holds the summaries of different runners, the first
  format of :data:`TEST_OUTPUT_FORMATS` that is found wins.
* The counts are the runner's tally where it prints one (pytest's closing line, unittest's
  ``Ran N tests`` and verdict, cargo's ``test result``, node's, vitest's and jest's closing
  lines); otherwise (go, ctest, TAP) they are counted from the per-test lines.
* ``go test`` without ``-v`` names packages, not passing tests: each package is counted as one
  test (``ok`` passed, ``FAIL`` failed, a build failure an error). ``prove`` without ``-v``
  shows skips and TODOs of failing files only; elsewhere they are counted passed.
* A JUnit ``testcase`` with a ``skipped`` child is skipped (node adds a ``failure`` to a
  failing todo), else one with a ``failure`` failed, else one with an ``error`` errored.
  pytest writes an xfail as skipped, and a passed test whose teardown errors as one error
  (its text output counts a pass and an error).

``tally`` keeps the runner's own counts under the runner's own words (``xfailed``,
``deselected``, ``ignored``, ``todo``, ``cancelled``, …) as evidence; ``cases`` lists the
tests the output names, in order, each with the bucket it was counted in as its ``outcome``
(``passed``, ``failed``, ``error`` or ``skipped``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .files import TEST_FILE_FORMATS, parse_test_file
from .js import read_jest, read_vitest
from .native import read_cargo, read_ctest, read_go
from .python import read_pytest, read_unittest
from .summary import TestSummary
from .tap import read_node, read_prove, read_tap

READERS: dict[str, Callable[[list[str]], TestSummary | None]] = {
    "pytest": read_pytest,
    "unittest": read_unittest,
    "cargo": read_cargo,
    "go": read_go,
    "node": read_node,
    "vitest": read_vitest,
    "jest": read_jest,
    "ctest": read_ctest,
    "prove": read_prove,
    "tap": read_tap,
}
TEST_OUTPUT_FORMATS = tuple(READERS)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def parse_test_output(text: str, runner: str = "auto") -> TestSummary | None:
    """The test summary in a runner's printed output, or None when none is found.

    ``runner`` is ``auto`` (every format in :data:`TEST_OUTPUT_FORMATS` order; the first found
    wins) or one of them (only that one). Colour codes are ignored. Never raises for any text;
    an unknown ``runner`` is a ``ValueError``.
    """
    if runner != "auto" and runner not in READERS:
        known = ", ".join(TEST_OUTPUT_FORMATS)
        raise ValueError(f"test output formats are {known}, not {runner!r}")
    lines = _ANSI.sub("", text).splitlines() if text else []
    for name, read in READERS.items():
        if runner in ("auto", name):
            summary = read(lines)
            if summary is not None:
                return summary
    return None


__all__ = ["TEST_FILE_FORMATS", "TEST_OUTPUT_FORMATS", "TestSummary", "parse_test_file",
           "parse_test_output"]
