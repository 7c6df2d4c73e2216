"""Python's runners' output: pytest (default, ``-q``, ``-v``, ``-rA``, xdist) and unittest.

pytest's closing line (``== 2 failed, 4 passed, 1 xfailed, 2 errors in 0.04s ==``) is its
tally: passed + xpassed are passed, xfailed are skipped, deselected are not counted. Cases come
from ``-v`` lines, else from the short summary (``FAILED path::test - msg``; by default it
names failures and errors only). unittest's ``Ran N tests`` and verdict line (``FAILED
(failures=1, errors=1, skipped=1, expected failures=1, unexpected successes=1)``) are its tally:
unexpected successes are failed, expected failures skipped, passed is what ``N`` leaves.
"""

from __future__ import annotations

import re

from ..events import TestCase
from .summary import TestSummary, add, summary_of, unique, words

_PYTEST_WORDS = {"passed", "failed", "error", "errors", "skipped", "xfailed", "xpassed",
                 "deselected", "warning", "warnings", "rerun", "reruns"}
_PYTEST_END = re.compile(
    r"^=*\s*((?:no tests ran|\d+ [a-z]+)(?:, \d+ [a-z]+)*) in [\d.]+s(?: \([\d:.]+\))?\s*=*$")
_PYTEST_V = re.compile(
    r"^(?:\[gw\d+\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S.*?)"
    r"|(\S+::\S.*?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?: \((.*)\))?\s+\[\s*\d+%\])$")
_PYTEST_SHORT = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+)(?: - (.*))?$")
_PYTEST_OUTCOME = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error",
                   "SKIPPED": "skipped", "XFAIL": "skipped", "XPASS": "passed"}


def read_pytest(lines: list[str]) -> TestSummary | None:
    """Every closing line, summed (``pytest a; pytest b``); all its words must be pytest's."""
    tally: dict[str, int] = {}
    found = False
    for line in lines:
        m = _PYTEST_END.match(line) if " in " in line else None
        if m is None:
            continue
        said = words(m.group(1).replace("no tests ran", "0 passed"))
        if set(said) <= _PYTEST_WORDS:
            found = True
            add(tally, {k.rstrip("s") if k in ("errors", "warnings", "reruns") else k: v
                        for k, v in said.items()})
    if not found:
        return None
    verbose, short = [], []
    for line in lines:
        m = _PYTEST_V.match(line) if line.endswith("%]") else None
        if m:
            word, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            verbose.append(TestCase(name=name, outcome=_PYTEST_OUTCOME[word],
                                    message=m.group(5) or ""))
            continue
        m = _PYTEST_SHORT.match(line)
        if m:
            short.append(TestCase(name=m.group(2), outcome=_PYTEST_OUTCOME[m.group(1)],
                                  message=m.group(3) or ""))
    t = tally.get
    return summary_of("pytest", unique(verbose or short), tally,
                      passed=t("passed", 0) + t("xpassed", 0), failed=t("failed", 0),
                      errors=t("error", 0), skipped=t("skipped", 0) + t("xfailed", 0))


_UT_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s$")
_UT_END = re.compile(r"^(OK|FAILED|NO TESTS RAN)(?: \(([^)]*)\))?$")
_UT_V = re.compile(r"^(\w+) \(([\w.]+)\)(?:\n.*)? \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure"
                   r"|unexpected success)$")
_UT_HEAD = re.compile(r"^(\w+) \(([\w.]+)\)$")
_UT_BLOCK = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\w+) \(([\w.]+)\)")
_UT_OUTCOME = {"ok": "passed", "FAIL": "failed", "ERROR": "error", "expected failure": "skipped",
               "unexpected success": "failed", "UNEXPECTED SUCCESS": "failed"}


def read_unittest(lines: list[str]) -> TestSummary | None:
    """Each ``Ran N tests`` with the verdict line after it, summed."""
    tally: dict[str, int] = {}
    ran = None
    for line in lines:
        m = _UT_RAN.match(line)
        if m:
            ran = int(m.group(1))
            continue
        m = _UT_END.match(line) if ran is not None else None
        if m:
            add(tally, {"ran": ran})
            for item in (m.group(2) or "").split(","):
                key, _, value = item.strip().partition("=")
                if value.isdigit():
                    add(tally, {key: int(value)})
            ran = None
    if "ran" not in tally:
        return None
    t = tally.get
    failed = t("failures", 0) + t("unexpected successes", 0)
    skipped = t("skipped", 0) + t("expected failures", 0)
    passed = max(0, tally["ran"] - failed - t("errors", 0) - skipped)
    return summary_of("unittest", _unittest_cases(lines), tally, passed=passed, failed=failed,
                      errors=t("errors", 0), skipped=skipped)


def _unittest_cases(lines: list[str]) -> list[TestCase]:
    verbose, blocks = [], []
    for i, line in enumerate(lines):
        joined = line
        if _UT_HEAD.match(line) and i + 1 < len(lines):  # a docstring line holds the verdict
            joined = f"{line}\n{lines[i + 1]}"
        m = _UT_V.match(joined) if " ... " in joined else None
        if m:
            word = m.group(3)
            outcome = "skipped" if word.startswith("skipped") else _UT_OUTCOME[word]
            verbose.append(TestCase(name=_unittest_name(m.group(1), m.group(2)),
                                    outcome=outcome))
            continue
        m = _UT_BLOCK.match(line)
        if m:
            outcome = _UT_OUTCOME[m.group(1)]
            blocks.append(TestCase(name=_unittest_name(m.group(2), m.group(3)), outcome=outcome))
    return unique(verbose or blocks)


def _unittest_name(method: str, where: str) -> str:
    """``test_a (pkg.Class.test_a)`` (3.11+) and ``test_a (pkg.Class)`` both name
    ``pkg.Class.test_a``."""
    return where if where.endswith(f".{method}") else f"{where}.{method}"
