"""TAP and the runners that speak it: any TAP producer (Perl's Test::More, …), prove, and
node's built-in runner (``node --test``: TAP, its default when not on a terminal in node 20,
or the ``spec`` reporter).

TAP: top-level ``ok``/``not ok`` lines (indented subtests are summarised by their parent);
``# SKIP`` and ``# TODO`` (passing or failing) are skipped; each test the ``1..N`` plan
announced that never reported is an error, and so is a ``Bail out!``.

prove: its closing ``Files=F, Tests=N`` and ``Result: PASS|FAIL`` with the per-file report
(``Tests: 5 Failed: 1``, ``Parse errors: Bad plan.  You planned 4 tests but ran 2.``); the
TAP lines of ``prove -v`` say which tests were skipped or todo.

node: its closing tally (``# tests 6`` / ``ℹ tests 6``, then pass, fail, cancelled, skipped,
todo; suites are not tests): cancelled are errors, todo skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..events import TestCase
from .summary import TestSummary, add, summary_of, with_more

_TAP_LINE = re.compile(r"^(\s*)(not ok|ok)\b(?: (\d+))?(?: -)?(?: ([^#]*?))?\s*"
                       r"(?:#\s*(SKIP|TODO)\b\S*\s*(.*))?$", re.I)
_TAP_PLAN = re.compile(r"^(\s*)1\.\.(\d+)(?:\s*#.*)?$")
_NODE_SUMMARY = re.compile(r"^(?:#|ℹ) (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$")
_NODE_SPEC = re.compile(r"^(\s*)(✔|✖|﹣) (.+?)(?: \(([\d.]+)ms\))?(?: # (.*))?$")


def _tap_lines(lines: list[str]) -> Iterator[tuple[int, TestCase, bool]]:
    """``(depth, case, is_suite)`` for every TAP test line (node marks suites in YAML)."""
    pending = None
    for line in lines:
        m = _TAP_LINE.match(line)
        if m and (m.group(3) or m.group(4)):
            if pending:
                yield pending
            verdict, directive = m.group(2).lower(), (m.group(5) or "").upper()
            outcome = "skipped" if directive else "passed" if verdict == "ok" else "failed"
            case = TestCase(name=(m.group(4) or "").strip() or f"#{m.group(3)}", outcome=outcome,
                            message=m.group(6) or "")
            pending = (len(m.group(1)), case, False)
        elif pending and line.strip() == "type: 'suite'":
            pending = (pending[0], pending[1], True)
    if pending:
        yield pending


def read_tap(lines: list[str]) -> TestSummary | None:
    """Top-level lines only (indented subtests are summarised by their parent); each test a
    plan announced that never reported is an error, and so is a ``Bail out!``."""
    plans = [int(m.group(2)) for m in map(_TAP_PLAN.match, lines) if m and not m.group(1)]
    cases = [case for depth, case, _ in _tap_lines(lines) if depth == 0]
    numbered = sum(1 for line in lines if re.match(r"(?:not )?ok \d+", line))
    if not plans and numbered < 2:
        return None
    tally = {"planned": sum(plans), "ok": sum(c.outcome != "failed" for c in cases),
             "not ok": sum(c.outcome == "failed" for c in cases),
             "skip or todo": sum(c.outcome == "skipped" for c in cases)}
    missing = max(0, sum(plans) - len(cases)) if plans else 0
    bailed = sum(1 for line in lines if line.startswith("Bail out!"))
    cases += [TestCase(name=f"#{len(cases) + i + 1}", outcome="error", message="not reported")
              for i in range(missing)]
    summary = summary_of("tap", cases, {**tally, "missing": missing, "bail out": bailed})
    return with_more(summary, errors=bailed) if bailed else summary


def read_node(lines: list[str]) -> TestSummary | None:
    """node --test (TAP or spec reporter): its closing tally, summed over runs."""
    tally: dict[str, int] = {}
    for line in lines:
        m = _NODE_SUMMARY.match(line)
        if m:
            add(tally, {m.group(1): int(m.group(2))})
    if "tests" not in tally or "pass" not in tally:
        return None
    cases = [case for _, case, suite in _tap_lines(lines) if not suite]
    if not cases:
        cases = _node_spec_cases(lines)
    t = tally.get
    return summary_of("node", cases, tally, passed=t("pass", 0), failed=t("fail", 0),
                      errors=t("cancelled", 0), skipped=t("skipped", 0) + t("todo", 0))


def _node_spec_cases(lines: list[str]) -> list[TestCase]:
    suites, cases = set(), []
    for line in lines:
        if line.startswith("ℹ tests ") or line.startswith("✖ failing tests:"):
            break
        if line.lstrip().startswith("▶ "):
            suites.add(line.strip()[2:])
            continue
        m = _NODE_SPEC.match(line)
        if m and m.group(3) not in suites:
            mark, note = m.group(2), m.group(5)
            outcome = ("skipped" if mark == "﹣" or note is not None
                       else "passed" if mark == "✔" else "failed")
            cases.append(TestCase(name=m.group(3), outcome=outcome, duration_ms=(
                round(float(m.group(4)), 3) if m.group(4) else None), message=note or ""))
    return cases


_PROVE_FILES = re.compile(r"^Files=(\d+), Tests=(\d+),")
_PROVE_FILE = re.compile(r"^\S.* \(Wstat: (\d+).*Tests: (\d+) Failed: (\d+)\)$")
_PROVE_PLAN = re.compile(r"^\s+Parse errors: Bad plan\.\s+You planned (\d+) tests? but ran (\d+)")
_PROVE_LESS = re.compile(r"\(less (\d+) skipped subtests?: \d+ okay\)")


def read_prove(lines: list[str]) -> TestSummary | None:
    """prove's report (see the module docstring). In a file's report, each planned test that
    never ran is an error; a file that exits non-zero or has parse errors with no failed or
    missing test is one error."""
    ran = failed = errors = less = 0
    found = False
    current: list[int] | None = None  # [wstat, failed, missing, parse error] of one file

    def close() -> int:
        if current is None:
            return 0
        wstat, fails, missing, bad = current
        return missing or int((wstat != 0 or bad) and not fails)

    for line in lines:
        m = _PROVE_FILE.match(line)
        if m:
            errors += close()
            current = [int(m.group(1)), int(m.group(3)), 0, 0]
            failed += current[1]
            continue
        if current is not None and line[:1].isspace():
            m = _PROVE_PLAN.match(line)
            if m:
                current[2] = max(0, int(m.group(1)) - int(m.group(2)))
            current[3] |= "Parse errors:" in line
            continue
        errors += close()
        current = None
        m = _PROVE_FILES.match(line)
        if m:
            found = True
            ran += int(m.group(2))
        elif "(less " in line and (m := _PROVE_LESS.search(line)):
            less += int(m.group(1))
    errors += close()
    if not found:
        return None
    verbose = [case for depth, case, _ in _tap_lines(lines) if depth == 0]
    skipped = sum(c.outcome == "skipped" for c in verbose) if len(verbose) == ran else less
    tally = {"tests": ran, "failed": failed, "skipped": less}
    return summary_of("prove", verbose if len(verbose) == ran else [], tally,
                      passed=max(0, ran - failed - skipped), failed=failed, errors=errors,
                      skipped=skipped)
