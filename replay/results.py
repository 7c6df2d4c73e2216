"""Scorer result parsers: from a scorer's exit code, output and result files to a score.

A :class:`ResultSpec` says how to read a result; it is part of the scorer digest (two rescores
reading results differently are different scorers). Kinds:

``auto`` (default)
    the output's last pytest summary line, else unittest's ``Ran N tests`` + ``OK``/``FAILED
    (…)``, else a TAP plan with ``ok``/``not ok`` lines; when none is found, the exit code.
``exit``
    the exit code only: value 1.0 for 0, else 0.0.
``pytest`` / ``unittest`` / ``tap``
    that format only (an output without it is an error).
``junit``
    a JUnit XML file (``path``, relative to the tree): ``testsuite`` / ``testsuites`` elements,
    counted from their ``testcase`` children when present, else from their attributes.
``json``
    a JSON file (``path``) with any of ``passed``, ``failed``, ``total``, ``value``.
``regex``
    a regular expression (``pattern``) searched in the output, with any of the named groups
    ``passed``, ``failed``, ``total``, ``value``; the last match wins.

The value is the scorer's ``value`` when it gives one, else ``passed / total`` (0.0 for no
tests), else 1.0/0.0 from the exit code. A result that cannot be read (file missing, bad XML,
no match) has status ``error`` with the reason; the command's own failure is not an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree

KINDS = ("auto", "exit", "pytest", "unittest", "tap", "junit", "json", "regex")


@dataclass(frozen=True)
class ResultSpec:
    """How to read a scorer's result. ``path`` for junit/json, ``pattern`` for regex."""

    kind: str = "auto"
    path: str = ""
    pattern: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"result kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind in ("junit", "json") and not self.path:
            raise ValueError(f"a {self.kind} result needs the file's path (relative to the tree)")
        if self.kind == "regex":
            groups = re.compile(self.pattern).groupindex
            if not set(groups) & {"passed", "failed", "total", "value"}:
                raise ValueError("--regex needs a named group: passed, failed, total or value")

    def describe(self) -> dict[str, str]:
        """The settings, as they go into the scorer digest."""
        return {"kind": self.kind, "path": self.path, "pattern": self.pattern}

    @property
    def files(self) -> tuple[str, ...]:
        """Result files the sandbox must return."""
        return (self.path,) if self.kind in ("junit", "json") else ()


@dataclass
class Score:
    """A parsed result. ``status`` is ``ok`` or ``error`` (with ``error`` saying why)."""

    value: float | None = None
    passed: int | None = None
    failed: int | None = None
    total: int | None = None
    fmt: str = ""
    status: str = "ok"
    error: str = ""
    extra: dict = field(default_factory=dict)


def parse_result(
    spec: ResultSpec, exit_code: int | None, output: str, files: dict[str, bytes]
) -> Score:
    """Read one scorer result as ``spec`` says (see the module docstring)."""
    kind = spec.kind
    if kind == "exit":
        return _from_exit(exit_code)
    if kind == "auto":
        for parse in (parse_pytest, parse_unittest, parse_tap):
            score = parse(output)
            if score is not None:
                return score
        return _from_exit(exit_code)
    if kind in ("pytest", "unittest", "tap"):
        score = {"pytest": parse_pytest, "unittest": parse_unittest, "tap": parse_tap}[kind](output)
        return score or Score(status="error", fmt=kind, error=f"no {kind} summary in the output")
    if kind == "regex":
        return parse_regex(spec.pattern, output)
    data = files.get(spec.path)
    if data is None:
        return Score(status="error", fmt=kind, error=f"the scorer wrote no {spec.path}")
    return parse_junit(data) if kind == "junit" else parse_json_result(data)


def _from_exit(exit_code: int | None) -> Score:
    if exit_code is None:
        return Score(status="error", fmt="exit", error="no exit code")
    return Score(value=1.0 if exit_code == 0 else 0.0, fmt="exit")


def _counts(
    passed: int | None, failed: int | None, total: int | None, fmt: str, value: float | None = None
) -> Score:
    if total is None and passed is not None and failed is not None:
        total = passed + failed
    if passed is None and total is not None and failed is not None:
        passed = max(0, total - failed)
    if failed is None and total is not None and passed is not None:
        failed = max(0, total - passed)
    if value is None and passed is not None and total is not None:
        value = passed / total if total else 0.0
    return Score(value=value, passed=passed, failed=failed, total=total, fmt=fmt)


_PYTEST_LINE = re.compile(
    r"(?:\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed|warnings?)"
    r"|no tests ran)\b.* in [\d.]+s"
)
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def parse_pytest(output: str) -> Score | None:
    """pytest's last summary line (``=== 3 failed, 10 passed, 1 error in 1.2s ===``, or the
    ``-q`` form). Errors count as failed; skipped and deselected tests are not in the total."""
    lines = [ln for ln in output.splitlines() if _PYTEST_LINE.search(ln)]
    if not lines:
        return None
    n: dict[str, int] = {}
    for count, what in _PYTEST_COUNT.findall(lines[-1]):
        key = "errors" if what.startswith("error") else what
        n[key] = n.get(key, 0) + int(count)
    passed = n.get("passed", 0) + n.get("xpassed", 0)
    failed = n.get("failed", 0) + n.get("errors", 0)
    score = _counts(passed, failed, passed + failed + n.get("xfailed", 0), "pytest")
    score.extra = {
        k: v for k, v in n.items() if k in ("errors", "skipped", "xfailed", "deselected")
    }
    return score


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s", re.M)
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.M)


def parse_unittest(output: str) -> Score | None:
    """unittest's ``Ran N tests in Ts`` and its verdict, ``OK (skipped=1)`` or ``FAILED
    (failures=1, errors=2)``. Errors count as failed; skipped tests are not in the total."""
    ran = _UNITTEST_RAN.findall(output)
    end = _UNITTEST_END.findall(output)
    if not ran or not end:
        return None
    kv = {k.strip(): int(v) for k, v in re.findall(r"([\w ]+)=(\d+)", end[-1][1] or "")}
    total = int(ran[-1]) - kv.get("skipped", 0)
    failed = kv.get("failures", 0) + kv.get("errors", 0) + kv.get("unexpected successes", 0)
    score = _counts(max(0, total - failed), failed, total, "unittest")
    score.extra = {k: v for k, v in kv.items() if k in ("errors", "skipped", "expected failures")}
    return score


_TAP_PLAN = re.compile(r"^1\.\.(\d+)", re.M)
_TAP_LINE = re.compile(r"^(not ok|ok)\b(?:\s+\d+)?[^#\n]*(?:#\s*(SKIP|TODO)\S*)?", re.M | re.I)


def parse_tap(output: str) -> Score | None:
    """TAP: ``1..N`` and ``ok``/``not ok`` lines. ``# SKIP`` lines are left out; ``# TODO``
    failures do not count as failures; planned tests that never reported count as failed."""
    plan = _TAP_PLAN.findall(output)
    lines = _TAP_LINE.findall(output)
    if not plan and not lines:
        return None
    if not plan and not any(v.lower() == "ok" for v, _ in lines) and len(lines) < 2:
        return None
    passed = failed = skipped = 0
    for verdict, directive in lines:
        directive = directive.upper()
        if directive == "SKIP":
            skipped += 1
        elif verdict.lower() == "ok" or directive == "TODO":
            passed += 1
        else:
            failed += 1
    planned = int(plan[-1]) - skipped if plan else passed + failed
    failed += max(0, planned - passed - failed)  # a crash cut the run short
    return _counts(passed, failed, passed + failed, "tap")


def parse_junit(data: bytes) -> Score:
    """A JUnit XML report. A testcase with a ``failure`` or ``error`` child failed, with a
    ``skipped`` child is left out; suites without testcases are counted from their attributes."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        return Score(status="error", fmt="junit", error=f"not JUnit XML: {exc}")
    cases = list(root.iter("testcase"))
    if cases:
        passed = failed = 0
        for case in cases:
            tags = {child.tag for child in case}
            if "skipped" in tags:
                continue
            if tags & {"failure", "error"}:
                failed += 1
            else:
                passed += 1
        return _counts(passed, failed, passed + failed, "junit")
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if not suites:
        return Score(status="error", fmt="junit", error="no testsuite or testcase element")
    total = failed = 0
    for suite in suites:
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        total += tests - skipped
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return _counts(total - failed, failed, total, "junit")


def parse_json_result(data: bytes) -> Score:
    """A JSON object with any of ``passed``, ``failed``, ``total`` (integers), ``value`` (number)."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        return Score(status="error", fmt="json", error=f"not JSON: {exc}")
    if not isinstance(obj, dict) or not {"passed", "failed", "total", "value"} & set(obj):
        return Score(
            status="error", fmt="json", error="expected an object with passed/failed/total/value"
        )
    try:
        ints = {
            k: None if obj.get(k) is None else int(obj[k]) for k in ("passed", "failed", "total")
        }
        value = None if obj.get("value") is None else float(obj["value"])
    except (TypeError, ValueError) as exc:
        return Score(status="error", fmt="json", error=f"a count or value is not a number: {exc}")
    return _counts(ints["passed"], ints["failed"], ints["total"], "json", value)


def parse_regex(pattern: str, output: str) -> Score:
    """The last match of ``pattern`` in the output; named groups passed/failed/total/value."""
    matches = list(re.finditer(pattern, output, re.M))
    if not matches:
        return Score(status="error", fmt="regex", error=f"no match for {pattern!r} in the output")
    groups = {k: v for k, v in matches[-1].groupdict().items() if v is not None}
    try:
        ints = {k: int(groups[k]) if k in groups else None for k in ("passed", "failed", "total")}
        value = float(groups["value"]) if "value" in groups else None
    except ValueError as exc:
        return Score(status="error", fmt="regex", error=f"a matched group is not a number: {exc}")
    return _counts(ints["passed"], ints["failed"], ints["total"], "regex", value)
