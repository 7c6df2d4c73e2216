"""envoi-trace's test evidence as agtrace events: in-run evaluations of commits and the test
calls an agent made, each a ``tests_ran`` event on the tree it ran on (see ``envoi.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agtrace.eventlog import ErrorOccurred, Event, TestCase, TestsRan

from .transcript import parse_ts, text_of

Count = Callable[[Any, str], int]
"""Reads one counter of the record (``passed``, ``total``) by its value and name: the sink's
:meth:`~agtrace.capture.importers.base.RunSink.count` at the record's location."""


def evaluation_events(ev: dict, tree: str, fallback_ts: int, count: Count) -> list[tuple[Event, int]]:
    """An in-run evaluation of a commit → ``tests_ran`` (suite ``envoi-eval``) on that commit's
    ``tree``, with ``command``, ``exit_code``, ``duration_ms``, per-test detail from ``tests``,
    and one more ``tests_ran`` per entry of ``suite_results``; ``error`` → ``error_occurred``.
    Each event comes with its time (the evaluation's end, else ``fallback_ts``)."""
    commit = ev.get("commit") or ev.get("target_commit") or ""
    ts = parse_ts(ev.get("completed_at") or ev.get("finished_at") or ev.get("started_at")) or fallback_ts
    tests = [test_case(t) for t in ev.get("tests") or [] if isinstance(t, dict)]
    env = {k: str(ev[k]) for k in ("eval_id", "kind", "status", "commit") if ev.get(k)}
    exit_code = ev.get("exit_code")
    duration = ev.get("duration_ms")
    out: list[tuple[Event, int]] = [(TestsRan(
        suite="envoi-eval", passed=count(ev.get("passed"), "passed"), failed=count(ev.get("failed"), "failed"),
        total=count(ev.get("total"), "total"), tests=tests, tree_id=tree, command=text_of(ev.get("command")),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        duration_ms=float(duration) if isinstance(duration, (int, float)) else None, environment=env), ts)]
    for suite, res in (ev.get("suite_results") or {}).items():
        if isinstance(res, dict):
            out.append((TestsRan(suite=f"envoi-eval:{suite}", passed=count(res.get("passed"), "passed"),
                                 failed=count(res.get("failed"), "failed"), total=count(res.get("total"), "total"),
                                 tree_id=tree, environment=env), ts))
    if ev.get("error"):
        out.append((ErrorOccurred(message=f"evaluation of {commit[:12]}: {ev['error']}", origin="tool",
                                  error_type="evaluation"), ts))
    return out


def tests_ran(call: dict, tree: str, count: Count) -> TestsRan:
    """An ``EnvoiCall`` (a test call the agent made) → ``tests_ran`` named by its test path. It
    ran on the live workspace; the part's tree is the closest recorded state."""
    result = call.get("result") if isinstance(call.get("result"), dict) else {}
    tests = [test_case(t) for t in (result.get("tests") or result.get("cases") or []) if isinstance(t, dict)]
    env = {"workspace": "live (tree of the part that made the call)"}
    if call.get("status_code") is not None:
        env["status_code"] = str(call["status_code"])
    if call.get("error"):
        env["error"] = text_of(call["error"])[:500]
    duration = call.get("duration_ms")
    return TestsRan(suite=str(call.get("path") or "envoi"), passed=count(result.get("passed"), "passed"),
                    failed=count(result.get("failed"), "failed"), total=count(result.get("total"), "total"), tests=tests,
                    tree_id=tree, duration_ms=float(duration) if isinstance(duration, (int, float)) else None,
                    environment=env)


def test_case(t: dict) -> TestCase:
    """One test of an evaluation or call result (``test_id``/``name``, ``status`` or ``passed``)."""
    name = t.get("test_id") or t.get("name") or t.get("id") or json.dumps(t, sort_keys=True)[:200]
    if isinstance(t.get("status"), str):
        outcome = t["status"]
    elif isinstance(t.get("passed"), bool):
        outcome = "passed" if t["passed"] else "failed"
    else:
        outcome = "unknown"
    if t.get("suite") and not str(name).startswith(f"{t['suite']}/"):
        name = f"{t['suite']}/{name}"
    duration = t.get("duration_ms")
    return TestCase(name=str(name), outcome=outcome,
                    duration_ms=float(duration) if isinstance(duration, (int, float)) else None,
                    message=text_of(t.get("message") or t.get("failure_type") or t.get("stderr") or "")[:2000])


def evaluations_by_part(evaluations: dict, parts: list[dict]) -> dict[int | None, list[dict]]:
    """The trace's evaluations (keyed by commit) grouped by the part they belong to, in part
    order; an evaluation of a part the trace does not hold goes under None."""
    out: dict[int | None, list[dict]] = {}
    known = {p["part"] for p in parts}
    for commit, ev in sorted(evaluations.items(), key=lambda kv: (kv[1].get("part") or 0, kv[0])):
        if not isinstance(ev, dict):
            continue
        ev = {"commit": commit, **ev}
        part = ev.get("part") if ev.get("part") in known else None
        out.setdefault(part, []).append(ev)
    return out
