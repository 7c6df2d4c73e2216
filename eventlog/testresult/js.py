"""JavaScript test frameworks' output: vitest and jest (node's own runner is in ``tap.py``).

vitest closes with ``Tests  1 failed | 3 passed | 1 skipped | 1 todo (6)`` and ``Test Files
1 failed | 1 passed (2)``; a file that failed to load (``FAIL  f.test.js [ f.test.js ]``) and
an ``Errors  N errors`` line (errors outside tests, which fail the run) are errors.

jest closes with ``Tests:       1 failed, 1 skipped, 1 todo, 2 passed, 5 total`` and
``Test Suites: …``; each ``● Test suite failed to run`` is an error.

For both, todo tests are skipped. Cases come from the per-test lines (``✓``/``×``/``↓`` in
vitest, ``✓``/``✕``/``○``/``✎`` in jest, printed for one test file or with ``--verbose``).
"""

from __future__ import annotations

import re

from ..events import TestCase
from .summary import TestSummary, add, summary_of, words

_VITEST_TESTS = re.compile(r"^\s*Tests\s+(\d+ \w+(?: \| \d+ \w+)*)\s+\((\d+)\)$")
_VITEST_FILES = re.compile(r"^\s*Test Files\s+(\d+ \w+(?: \| \d+ \w+)*)\s+\((\d+)\)$")
_VITEST_ERRORS = re.compile(r"^\s*Errors\s+(\d+) errors?\b")
_VITEST_LOAD = re.compile(r"^\s*FAIL\s+(\S+) \[ (\S+) \]$")
_VITEST_CASE = re.compile(r"^\s*(✓|×|↓) (.+?)(?: (\d+)ms)?$")
_VITEST_FILE_LINE = re.compile(r"\(\d+ tests?(?: \|[^)]*)?\)$")
_VITEST_OUTCOME = {"✓": "passed", "×": "failed", "↓": "skipped"}


def read_vitest(lines: list[str]) -> TestSummary | None:
    """The closing ``Tests`` line(s), summed, plus files that failed to load."""
    tally: dict[str, int] = {}
    found = False
    load_failures: set[str] = set()
    for line in lines:
        if "Tests" in line and (m := _VITEST_TESTS.match(line)):
            found = True
            add(tally, words(m.group(1), "|"))
            add(tally, {"total": int(m.group(2))})
        elif "Test Files" in line and (m := _VITEST_FILES.match(line)):
            add(tally, {f"files {k}": v for k, v in words(m.group(1), "|").items()})
        elif "Errors" in line and (m := _VITEST_ERRORS.match(line)):
            add(tally, {"errors": int(m.group(1))})
        elif "FAIL" in line and (m := _VITEST_LOAD.match(line)) and m.group(1) == m.group(2):
            load_failures.add(m.group(1))
    if not found and not load_failures:
        return None
    add(tally, {"files failed to load": len(load_failures)})
    t = tally.get
    cases = []
    for line in lines:
        m = _VITEST_CASE.match(line) if line.lstrip()[:1] in _VITEST_OUTCOME else None
        if m is None or _VITEST_FILE_LINE.search(m.group(2)):
            continue  # " ✓ file.test.js (3 tests) 4ms" is a file, not a test
        took = m.group(3)
        cases.append(TestCase(name=m.group(2), outcome=_VITEST_OUTCOME[m.group(1)],
                              duration_ms=float(took) if took else None))
    return summary_of("vitest", cases, tally, passed=t("passed", 0), failed=t("failed", 0),
                      errors=t("errors", 0) + len(load_failures),
                      skipped=t("skipped", 0) + t("todo", 0))


_JEST_TESTS = re.compile(r"^Tests:\s+(.+)$")
_JEST_SUITES = re.compile(r"^Test Suites:\s+(.+)$")
_JEST_CASE = re.compile(r"^\s+(✓|✕|○|✎) (?:skipped |todo )?(.+?)(?: \((\d+) ms\))?$")
_JEST_OUTCOME = {"✓": "passed", "✕": "failed", "○": "skipped", "✎": "skipped"}


def read_jest(lines: list[str]) -> TestSummary | None:
    """The closing ``Tests:`` line(s), summed, plus suites that failed to run."""
    tally: dict[str, int] = {}
    found = False
    cases = []
    for line in lines:
        if line.startswith("Tests:") and (m := _JEST_TESTS.match(line)):
            said = words(m.group(1))
            if "total" in said:  # jest always ends with "N total"
                found = True
                add(tally, said)
        elif line.startswith("Test Suites:") and (m := _JEST_SUITES.match(line)):
            add(tally, {f"suites {k}": v for k, v in words(m.group(1)).items()})
        elif "● Test suite failed to run" in line:
            add(tally, {"suites failed to run": 1})
        elif (m := _JEST_CASE.match(line)) is not None:
            took = m.group(3)
            cases.append(TestCase(name=m.group(2), outcome=_JEST_OUTCOME[m.group(1)],
                                  duration_ms=float(took) if took else None))
    if not found:
        return None
    t = tally.get
    return summary_of("jest", cases, tally, passed=t("passed", 0), failed=t("failed", 0),
                      errors=t("suites failed to run", 0),
                      skipped=t("skipped", 0) + t("todo", 0))
