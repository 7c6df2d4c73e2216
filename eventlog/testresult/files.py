"""Result files → :class:`~agtrace.eventlog.testresult.TestSummary`: JUnit XML and JSON.

JUnit XML as pytest (``--junitxml``), node (``--test-reporter=junit``), vitest and ctest
(``--output-junit``) write it; JSON as jest (``--json``) and vitest (``--reporter=json``) write
it, or a scorer's own object of counts. Bad input raises :class:`UnreadableResult` with the
reason, never another exception.
"""

from __future__ import annotations

import json

from ..errors import UnreadableResult
from ..events import TestCase
from .summary import TestSummary, ms, summary_of, to_int

TEST_FILE_FORMATS = ("junit", "json")


def parse_test_file(data: bytes, fmt: str) -> TestSummary:
    """Read a result file: ``fmt`` is ``junit`` (JUnit XML) or ``json``.

    JSON is a jest or vitest ``--json`` report, or an object with any of ``passed``,
    ``failed``, ``errors``, ``skipped`` and ``total`` (a missing count is what ``total``
    leaves over). Raises :class:`UnreadableResult` saying why when ``data`` is neither.
    """
    if fmt == "junit":
        return _junit(data)
    if fmt == "json":
        return _json(data)
    raise UnreadableResult(f"result files are {' or '.join(TEST_FILE_FORMATS)}, not {fmt!r}")


def _junit(data: bytes) -> TestSummary:
    """One case per ``testcase``: a ``skipped`` child (node adds a ``failure`` to a failing
    todo) or a ``disabled``/``notrun`` status skips it, else ``failure`` fails it, else
    ``error`` errs it, else it passed. Without testcases, the suites' attributes count."""
    from xml.etree import ElementTree  # only result files need it: keep imports cheap

    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise UnreadableResult(f"not JUnit XML: {exc}") from None
    cases, tally = [], {}
    for case in root.iter("testcase"):
        children = {child.tag: child for child in case}
        status = case.get("status", "")
        if "skipped" in children or status in ("disabled", "notrun"):
            outcome, why = "skipped", children.get("skipped")
            kind = (why.get("type") if why is not None else "") or status or "skipped"
            key = "xfailed" if kind == "pytest.xfail" else kind
        elif "failure" in children or "error" in children:
            key = "failure" if "failure" in children else "error"
            outcome, why = ("failed" if key == "failure" else "error"), children[key]
        else:
            outcome, why, key = "passed", None, "passed"
        tally[key] = tally.get(key, 0) + 1
        name = case.get("name", "")
        classname = case.get("classname", "")
        cases.append(TestCase(
            name=f"{classname}.{name}" if classname and classname != name else name,
            outcome=outcome, duration_ms=ms(case.get("time")),
            message=(why.get("message") or "") if why is not None else ""))
    if cases:
        return summary_of("junit", cases, tally)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if not suites:
        raise UnreadableResult("JUnit XML without testsuite or testcase elements")
    n = {k: sum(to_int(s.get(k)) for s in suites)
         for k in ("tests", "failures", "errors", "skipped", "disabled")}
    skipped = n["skipped"] + n["disabled"]
    passed = max(0, n["tests"] - n["failures"] - n["errors"] - skipped)
    return summary_of("junit", [], n, passed=passed, failed=n["failures"],
                      errors=n["errors"], skipped=skipped)


_JEST_STATUS = {"passed": "passed", "failed": "failed", "pending": "skipped",
                "skipped": "skipped", "todo": "skipped", "disabled": "skipped"}
_COUNT_KEYS = ("passed", "failed", "errors", "skipped", "total")


def _json(data: bytes) -> TestSummary:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise UnreadableResult(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise UnreadableResult(f"expected a JSON object, got {type(obj).__name__}")
    if "numTotalTests" in obj:
        return _jest_report(obj)
    if not set(_COUNT_KEYS) & set(obj):
        raise UnreadableResult(
            "expected a jest/vitest report or an object with passed/failed/errors/skipped/total")
    try:
        n = {k: None if obj.get(k) is None else int(obj[k]) for k in _COUNT_KEYS}
    except (TypeError, ValueError) as exc:
        raise UnreadableResult(f"a count is not a number: {exc}") from None
    known = sum(v or 0 for k, v in n.items() if k != "total")
    rest = max(0, n["total"] - known) if n["total"] is not None else 0
    missing = ("passed" if n["passed"] is None else "failed") \
        if (n["passed"] is None) != (n["failed"] is None) else ""
    counts = {k: n[k] or 0 for k in ("passed", "failed", "errors", "skipped")}
    if missing:
        counts[missing] += rest
    return summary_of("json", [], {k: v for k, v in n.items() if v is not None}, **counts)


def _jest_report(obj: dict) -> TestSummary:
    """jest ``--json`` / vitest ``--reporter=json``: counts from the ``num*`` fields; files
    that failed to load are errors (jest counts them, vitest lists them without tests)."""
    cases = []
    load_errors = 0
    for result in obj.get("testResults") or []:
        assertions = result.get("assertionResults") or []
        if result.get("status") == "failed" and not assertions:
            load_errors += 1
        for a in assertions:
            outcome = _JEST_STATUS.get(str(a.get("status")), "error")
            message = "\n".join(a.get("failureMessages") or [])[:500]
            cases.append(TestCase(name=str(a.get("fullName") or a.get("title") or ""),
                                  outcome=outcome, duration_ms=ms(a.get("duration"), 1),
                                  message=message))
    tally = {k: to_int(v) for k, v in obj.items() if k.startswith("num")}
    errors = tally.get("numRuntimeErrorTestSuites", load_errors)
    return summary_of("json", cases, tally, passed=tally.get("numPassedTests", 0),
                      failed=tally.get("numFailedTests", 0), errors=errors,
                      skipped=tally.get("numPendingTests", 0) + tally.get("numTodoTests", 0))
