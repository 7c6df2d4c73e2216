"""Compiled languages' runners: go test (plain, ``-v``, ``-json``), cargo test, ctest.

go prints ``--- PASS/FAIL/SKIP: Name (0.00s)`` per test (passes and skips only with ``-v``;
subtests are tests too, as gotestsum counts them) and one line per package: ``ok``, ``FAIL``,
``?`` (no test files), ``FAIL pkg [build failed]``. Without ``-v`` the package is the unit. A
package that fails with no failing test (build failure, panic, timeout) is one error.

cargo prints ``test result: ok. 3 passed; 0 failed; 2 ignored; 0 measured; 1 filtered out``
per test binary (summed; ignored are skipped, measured passed, filtered out not counted) and
``error: could not compile `crate``` when nothing ran (one error per crate).

ctest prints ``1/7 Test #1: name .....   Passed    0.01 sec`` per test: Passed, Failed (also
``Failed  Required regular expression…``), Skipped and ``Not Run (Disabled)`` are what they
say; Exception (SegFault…), Timeout and other ``Not Run`` (executable missing) are errors.
"""

from __future__ import annotations

import json
import re

from ..events import TestCase
from .summary import TestSummary, add, ms, summary_of

_GO_TEST = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)")
_GO_PKG = re.compile(r"^(ok|FAIL|\?)\s+(\S+)\s+(\(cached\)|[\d.]+s|\[[^\]]*\])(.*)$")
_GO_OUTCOME = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped",
               "pass": "passed", "fail": "failed", "skip": "skipped"}


def read_go(lines: list[str]) -> TestSummary | None:
    """Tests with ``-v`` (or when no package line was printed), else packages; ``-json``
    output is read event by event."""
    if any(line.startswith('{"Time":') for line in lines[:50]):
        return _go_json(lines)
    tests, packages, tally = [], [], {}
    verbose = False
    failed_here = 0
    for line in lines:
        if line.startswith(("=== RUN", "=== PAUSE", "=== CONT")):
            verbose = True
            continue
        m = _GO_TEST.match(line)
        if m:
            word = m.group(1)
            verbose = verbose or word != "FAIL"
            failed_here += word == "FAIL"
            add(tally, {word.lower(): 1})
            tests.append(TestCase(name=m.group(2), outcome=_GO_OUTCOME[word],
                                  duration_ms=ms(m.group(3))))
            continue
        m = _GO_PKG.match(line)
        if m:
            word, detail = m.group(1), m.group(3) + m.group(4)
            if word == "?":
                outcome = ""
            elif word == "ok":
                outcome = "skipped" if "[no tests to run]" in detail else "passed"
            elif "failed]" in detail:  # [build failed], [setup failed]
                outcome = "error"
            else:
                outcome = "failed" if failed_here else "error"  # no failed test: a crash
            add(tally, {f"package {outcome or 'without tests'}": 1})
            if outcome:
                packages.append((TestCase(name=m.group(2), outcome=outcome), failed_here))
            failed_here = 0
    if not tests and not packages:
        return None
    if verbose or not packages:
        errored = [p for p, _ in packages if p.outcome == "error"]
        return summary_of("go", tests + errored, tally)
    return summary_of("go", [p for p, _ in packages], tally)


def _go_json(lines: list[str]) -> TestSummary | None:
    """``go test -json``: one event per line; a package that failed without a failing test
    (build failure, panic, timeout) is one error."""
    cases, tally = [], {}
    failed_in: dict[str, int] = {}
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        action = ev.get("Action") if isinstance(ev, dict) else None
        if action not in ("pass", "fail", "skip"):
            continue
        pkg = str(ev.get("Package") or "")
        if ev.get("Test"):
            add(tally, {action: 1})
            failed_in[pkg] = failed_in.get(pkg, 0) + (action == "fail")
            cases.append(TestCase(name=str(ev["Test"]), outcome=_GO_OUTCOME[action],
                                  duration_ms=ms(ev.get("Elapsed"))))
        elif action == "fail" and not failed_in.get(pkg):
            add(tally, {"package error": 1})
            cases.append(TestCase(name=pkg, outcome="error"))
    return summary_of("go", cases, tally) if tally else None


_CARGO_RESULT = re.compile(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; "
                           r"(\d+) ignored; (\d+) measured; (\d+) filtered out")
_CARGO_RUNNING = re.compile(r"^running (\d+) tests?$")
_CARGO_TEST = re.compile(r"^test (\S.*?) \.\.\. (ok|FAILED|ignored(?:, .*)?|bench: .*)$")
_CARGO_BUILD = re.compile(r"^error: could not compile `([^`]+)`")
_CARGO_KEYS = ("passed", "failed", "ignored", "measured", "filtered out")


def read_cargo(lines: list[str]) -> TestSummary | None:
    """Summed over test binaries. A binary that announced ``running N tests`` and died before
    its ``test result`` line counts the tests it reported, and the rest as errors."""
    tally: dict[str, int] = {}
    cases: list[TestCase] = []
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    block: list[TestCase] | None = None  # the reported tests of a binary still running
    announced = 0
    crates: set[str] = set()
    found = cargo = False
    for line in [*lines, "running 0 tests"]:  # the sentinel closes the last binary
        cargo = cargo or line.startswith(("     Running ", "   Doc-tests "))
        m = _CARGO_RUNNING.match(line)
        if m:
            if block is not None:
                for case in block:
                    counts[case.outcome] += 1
                missing = max(0, announced - len(block))
                counts["errors"] += missing
                add(tally, {"not reported": missing})
            block, announced = [], int(m.group(1))
            continue
        m = _CARGO_TEST.match(line) if line.startswith("test ") else None
        if m:
            word = m.group(2)
            outcome = ("passed" if word == "ok" or word.startswith("bench") else
                       "failed" if word == "FAILED" else "skipped")
            case = TestCase(name=m.group(1).removesuffix(" - should panic"), outcome=outcome)
            cases.append(case)
            if block is not None:
                block.append(case)
            continue
        m = _CARGO_RESULT.match(line) if line.startswith("test result") else None
        if m:
            found = True
            n = dict(zip(_CARGO_KEYS, map(int, m.groups()), strict=True))
            add(tally, n)
            counts["passed"] += n["passed"] + n["measured"]
            counts["failed"] += n["failed"]
            counts["skipped"] += n["ignored"]
            block = None
            continue
        m = _CARGO_BUILD.match(line) if line.startswith("error") else None
        if m and m.group(1) not in crates:
            crates.add(m.group(1))
            cases.append(TestCase(name=m.group(1), outcome="error", message="could not compile"))
    counts["errors"] += len(crates)
    add(tally, {"could not compile": len(crates)})
    if not (found or crates or cargo and tally.get("not reported")):
        return None
    return summary_of("cargo", cases, tally, **counts)


_CTEST_LINE = re.compile(r"^\s*\d+/\d+ Test\s+#\d+: (\S+) \.*\s*(?:\*\*\*)?(.+?)\s+([\d.]+) sec$")
_CTEST_END = re.compile(r"^(\d+)% tests passed, (\d+) tests? failed out of (\d+)$")


def read_ctest(lines: list[str]) -> TestSummary | None:
    """Counted from the per-test lines; the closing ``N% tests passed, F tests failed out of T``
    (its F is failed + errors) counts alone when the lines are missing (``ctest -Q``)."""
    cases, tally, closing = [], {}, None
    for line in lines:
        m = _CTEST_LINE.match(line) if " sec" in line else None
        if m:
            word = m.group(2)
            if word.startswith("Passed"):
                outcome = "passed"
            elif word.startswith("Failed"):
                outcome = "failed"
            elif word.startswith("Skipped") or "Disabled" in word:
                outcome = "skipped"
            else:
                outcome = "error"
            add(tally, {word.split(":")[0].split("  ")[0].lower(): 1})
            cases.append(TestCase(name=m.group(1), outcome=outcome, duration_ms=ms(m.group(3)),
                                  message="" if outcome == "passed" else word))
            continue
        m = _CTEST_END.match(line)
        if m:
            closing = (int(m.group(2)), int(m.group(3)))
        elif line.startswith("No tests were found"):
            closing = closing or (0, 0)
    if cases:
        return summary_of("ctest", cases, tally)
    if closing is None:
        return None
    failed, total = closing
    return summary_of("ctest", [], {"failed": failed, "out of": total},
                      passed=total - failed, failed=failed)
