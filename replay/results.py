"""Scorer results: from a scorer's exit code, output and result files to a score.

A :class:`ResultSpec` says how to read a result; it is part of the scorer digest (two rescores
reading results differently are different scorers). Test counts are read by the one test-result
parser of ``agtrace.eventlog`` (:func:`~agtrace.eventlog.parse_test_output`,
:func:`~agtrace.eventlog.parse_test_file`), the same one capture uses for ``tests_ran``, with its
counting rule (``docs/metrics.md``). Kinds:

``auto`` (default)
    the first test runner summary found in the output (pytest, unittest, cargo, go, node,
    vitest, jest, ctest, prove, TAP); when none is found, the exit code.
``exit``
    the exit code only: value 1.0 for 0, else 0.0.
``pytest`` / ``unittest`` / ``tap`` / ``go`` / ``cargo`` / ``node`` / ``vitest`` / ``jest`` /
``ctest`` / ``prove``
    that runner's output only (an output without it is an error).
``junit``
    a JUnit XML file (``path``, relative to the tree).
``json``
    a JSON file (``path``): a jest/vitest JSON report, or an object with any of ``passed``,
    ``failed``, ``errors``, ``skipped``, ``total`` (integers) and ``value`` (a number).
``regex``
    a regular expression (``pattern``) searched in the output, with any of the named groups
    ``passed``, ``failed``, ``total``, ``value``; the last match wins.

The value is the scorer's ``value`` when it gives one, else the pass rate ``passed / (passed +
failed + errors)`` (0.0 when nothing ran to a verdict), else 1.0/0.0 from the exit code. A
result that cannot be read (file missing, bad XML, no match) has status ``error`` with the
reason; the command's own failure is not an error.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from agtrace.eventlog import (
    TEST_OUTPUT_FORMATS,
    TestSummary,
    UnreadableResult,
    parse_test_file,
    parse_test_output,
)

OUTPUT_PARSERS = ("auto", "exit", *TEST_OUTPUT_FORMATS)  # the kinds that read the output alone
KINDS = (*OUTPUT_PARSERS, "junit", "json", "regex")


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
        if self.kind in ("junit", "json") and (
            os.path.isabs(self.path) or os.path.normpath(self.path).split(os.sep)[0] == ".."
        ):
            raise ValueError(f"the {self.kind} result file must be relative to the tree and inside it, "
                             f"not {self.path!r}")
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
    """A parsed result. ``status`` is ``ok`` or ``error`` (with ``error`` saying why).

    Counts are None when the result does not say them (exit code, a bare ``value``).
    ``tally`` is the runner's own counts (see :class:`~agtrace.eventlog.TestSummary`).
    """

    value: float | None = None
    passed: int | None = None
    failed: int | None = None
    total: int | None = None
    fmt: str = ""
    status: str = "ok"
    error: str = ""
    errors: int | None = None
    skipped: int | None = None
    tally: dict = field(default_factory=dict)


def parse_result(
    spec: ResultSpec, exit_code: int | None, output: str, files: dict[str, bytes]
) -> Score:
    """Read one scorer result as ``spec`` says (see the module docstring)."""
    kind = spec.kind
    if kind == "exit":
        return _from_exit(exit_code)
    if kind == "regex":
        return parse_regex(spec.pattern, output)
    if kind not in ("junit", "json"):
        summary = parse_test_output(output, kind)
        if summary is not None:
            return score_of(summary)
        if kind == "auto":
            return _from_exit(exit_code)
        return Score(status="error", fmt=kind, error=f"no {kind} summary in the output")
    data = files.get(spec.path)
    if data is None:
        return Score(status="error", fmt=kind, error=f"the scorer wrote no {spec.path}")
    return parse_junit(data) if kind == "junit" else parse_json_result(data)


def score_of(summary: TestSummary, value: float | None = None) -> Score:
    """The score of a test summary: its counts, and ``value`` or else its pass rate."""
    return Score(value=summary.pass_rate if value is None else value, passed=summary.passed,
                 failed=summary.failed, errors=summary.errors, skipped=summary.skipped,
                 total=summary.total, fmt=summary.runner, tally=dict(summary.tally))


def _from_exit(exit_code: int | None) -> Score:
    if exit_code is None:
        return Score(status="error", fmt="exit", error="no exit code")
    return Score(value=1.0 if exit_code == 0 else 0.0, fmt="exit")


def parse_junit(data: bytes) -> Score:
    """A JUnit XML report, read by :func:`~agtrace.eventlog.parse_test_file`."""
    try:
        return score_of(parse_test_file(data, "junit"))
    except UnreadableResult as exc:
        return Score(status="error", fmt="junit", error=str(exc))


def parse_json_result(data: bytes) -> Score:
    """A JSON result: a report the test-result parser reads, with the object's ``value`` (a
    number) as the score when present; an object with only ``value`` is that score."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        return Score(status="error", fmt="json", error=f"not JSON: {exc}")
    try:
        value = float(obj["value"]) if isinstance(obj, dict) and obj.get("value") is not None \
            else None
    except (TypeError, ValueError) as exc:
        return Score(status="error", fmt="json", error=f"the value is not a number: {exc}")
    try:
        return score_of(parse_test_file(data, "json"), value)
    except UnreadableResult as exc:
        if value is not None:
            return Score(value=value, fmt="json")
        return Score(status="error", fmt="json", error=str(exc))


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
