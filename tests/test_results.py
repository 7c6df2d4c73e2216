"""The one test-result parser, on real runners' output kept as goldens, read by capture and
by re-scoring alike.

The goldens under ``tests/golden/results/`` were printed (or written) by real runners on the
projects of ``tests/runner_projects.py``, by ``python -m tests.runner_goldens``;
``tests/test_results_real.py`` (slow) reruns them with today's runners and checks they still
parse the same.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.capture import LocalSandbox, Recorder, looks_like_test, make_adapter
from agtrace.eventlog import (
    TEST_OUTPUT_FORMATS,
    TestsRan,
    TestSummary,
    UnreadableResult,
    parse_test_file,
    parse_test_output,
)
from agtrace.replay import ResultSpec, parse_result, rescore

from .runner_goldens import command_text
from .runner_projects import COUNTS, SCENARIOS

TEXT = [s for s in SCENARIOS if not s.result_file]
FILES = [s for s in SCENARIOS if s.result_file]
# commands no tool would take for a test run: a bare TAP script
NOT_A_TEST_COMMAND = {"tap/perl", "tap/perl-crash"}


def golden(scenario):
    data = scenario.golden.read_bytes()
    expected = json.loads(scenario.expected_path.read_text())
    return data, expected


def parse_golden(scenario) -> TestSummary | None:
    data, _ = golden(scenario)
    if scenario.result_file:
        return parse_test_file(data, scenario.fmt)
    return parse_test_output(data.decode())


def counts(obj) -> dict[str, int]:
    return {k: getattr(obj, k) for k in COUNTS}


def test_every_scenario_has_its_golden():
    missing = [s.id for s in SCENARIOS if not (s.golden.exists() and s.expected_path.exists())]
    assert not missing, "run `python -m tests.runner_goldens` to write them"
    runners = {s.runner for s in SCENARIOS}
    assert set(TEST_OUTPUT_FORMATS) <= runners | {"tap"}, "every text format has real output"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_golden_parses_to_its_expected_summary(scenario):
    summary = parse_golden(scenario)
    _, expected = golden(scenario)
    assert summary is not None
    assert summary.as_dict() == expected["summary"]
    assert counts(summary) == scenario.expect  # the count the project was written to give


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_counts_agree_with_the_runners_verdict(scenario):
    summary = parse_golden(scenario)
    exit_code = golden(scenario)[1]["exit_code"]
    assert summary.total == summary.passed + summary.failed + summary.errors + summary.skipped
    if exit_code == 0:
        assert summary.green, "the runner called it green"
    if not summary.green:
        assert exit_code != 0, "the runner must have failed the run"
    assert {c.outcome for c in summary.cases} <= {"passed", "failed", "error", "skipped"}


@pytest.mark.parametrize("scenario", TEXT, ids=lambda s: s.id)
def test_capture_and_rescore_count_an_output_the_same(scenario):
    """The issue's bug: one output, two parsers, two answers. Now one parser."""
    data, expected = golden(scenario)
    output, command = data.decode(), command_text(scenario)
    if scenario.id not in NOT_A_TEST_COMMAND:
        assert looks_like_test("Bash", command), command
    emits = make_adapter("codex").tool_part(call_id="c1", tool="run_tests", command=command,
                                         output=output, exit_code=expected["exit_code"])
    (captured,) = [e.event for e in emits if isinstance(e.event, TestsRan)]
    scored = parse_result(ResultSpec(), expected["exit_code"], output, {})
    assert counts(captured) == counts(scored) == scenario.expect
    assert scored.fmt == captured.suite == scenario.runner
    assert scored.value == pytest.approx(parse_test_output(output).pass_rate)
    assert scored.tally == captured.tally


@pytest.mark.parametrize("scenario", FILES, ids=lambda s: s.id)
def test_rescore_reads_result_files_with_the_same_parser(scenario):
    data, expected = golden(scenario)
    spec = ResultSpec(scenario.fmt, path=scenario.result_file)
    scored = parse_result(spec, expected["exit_code"], "", {scenario.result_file: data})
    assert scored.status == "ok"
    assert counts(scored) == counts(parse_test_file(data, scenario.fmt)) == scenario.expect


def test_the_issues_examples_now_agree():
    """unittest ``OK (expected failures=1)`` with 3 tests, and pytest's xfails."""
    unit = next(s for s in TEXT if s.id == "unittest/expected-failure")
    out = golden(unit)[0].decode()
    assert "OK (expected failures=1)" in out
    s = parse_result(ResultSpec(), 0, out, {})
    assert (s.passed, s.failed, s.errors, s.skipped, s.total, s.value) == (2, 0, 0, 1, 3, 1.0)
    green = next(s for s in TEXT if s.id == "pytest/green")
    out = golden(green)[0].decode()
    assert "1 xfailed" in out
    s = parse_result(ResultSpec(), 0, out, {})
    assert (s.passed, s.skipped, s.value) == (3, 2, 1.0)
    assert s.tally["xfailed"] == 1 and s.tally["xpassed"] == 1


def test_several_runs_of_one_runner_are_summed():
    by_id = {s.id: golden(s)[0].decode() for s in TEXT}
    both = parse_test_output(by_id["pytest/mixed"] + by_id["pytest/green"])
    mixed, green = parse_test_output(by_id["pytest/mixed"]), parse_test_output(by_id["pytest/green"])
    assert counts(both) == {k: counts(mixed)[k] + counts(green)[k] for k in COUNTS}
    # different runners in one output: the first format of TEST_OUTPUT_FORMATS wins
    mixed_runners = by_id["tap/perl"] + by_id["cargo/green"] + by_id["unittest/mixed"]
    assert parse_test_output(mixed_runners).runner == "unittest"
    assert parse_test_output(mixed_runners, "tap").runner == "tap"


def test_one_format_only_and_unknown_formats():
    out = golden(next(s for s in TEXT if s.id == "go/mixed-v"))[0].decode()
    assert parse_test_output(out, "pytest") is None
    assert parse_test_output(out, "go").passed == 3
    with pytest.raises(ValueError, match="test output formats are"):
        parse_test_output(out, "maven")
    assert parse_result(ResultSpec("pytest"), 1, out, {}).status == "error"
    assert parse_result(ResultSpec("go"), 1, out, {}).failed == 2


def test_colour_codes_are_ignored():
    out = golden(next(s for s in TEXT if s.id == "cargo/mixed"))[0].decode()
    coloured = out.replace("test result: FAILED.", "test result: \x1b[31mFAILED\x1b[0m.")
    coloured = coloured.replace("... ok", "... \x1b[32mok\x1b[0m")
    assert parse_test_output(coloured) == parse_test_output(out)


def test_pytest_closing_line_variants():
    """Forms of the closing line that need a long or plugin-laden run to produce."""
    long = parse_test_output("=== 3 passed, 1 rerun, 2 warnings in 75.12s (0:01:15) ===")
    assert (long.passed, long.tally) == (3, {"passed": 3, "rerun": 1, "warning": 2})
    assert parse_test_output("Downloaded 3 files in 2.1s") is None
    assert parse_test_output("no tests ran in 0.01s").total == 0


def test_go_and_cargo_crashes_are_errors():
    crashed = parse_test_output(
        "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestSlow\n"
        "panic: test timed out after 1s\nFAIL\texample.com/x\t1.004s\nFAIL\n")
    assert (crashed.runner, crashed.passed, crashed.errors) == ("go", 1, 1)
    data = golden(next(s for s in TEXT if s.id == "cargo/abort"))[0].decode()
    assert "SIGABRT" in data and parse_test_output(data).errors == 2


def parse_json_result(data: bytes):
    return parse_result(ResultSpec("json", path="r.json"), 0, "", {"r.json": data})


def parse_junit(data: bytes):
    return parse_result(ResultSpec("junit", path="r.xml"), 0, "", {"r.xml": data})


def parse_regex(pattern: str, output: str):
    return parse_result(ResultSpec("regex", pattern=pattern), 0, output, {})


def test_json_objects_of_counts():
    s = parse_json_result(json.dumps({"passed": 7, "total": 10}).encode())
    assert (s.passed, s.failed, s.total, s.value) == (7, 3, 10, 0.7)
    s = parse_json_result(json.dumps({"passed": 7, "failed": 1, "skipped": 2}).encode())
    assert (s.passed, s.failed, s.skipped, s.total, s.value) == (7, 1, 2, 10, 7 / 8)
    s = parse_json_result(b'{"value": 0.93}')
    assert (s.value, s.total, s.status) == (0.93, None, "ok")
    s = parse_json_result(b'{"passed": 3, "failed": 1, "value": 0.5}')
    assert (s.passed, s.value) == (3, 0.5)  # the scorer's own value wins
    assert parse_json_result(b'{"score": 1}').status == "error"
    assert parse_json_result(b"nope").status == "error"
    assert parse_json_result(b'{"passed": "many"}').status == "error"
    with pytest.raises(UnreadableResult, match="not JSON"):
        parse_test_file(b"[", "json")


def test_junit_without_testcases_counts_suite_attributes():
    s = parse_junit(b'<testsuite tests="10" failures="2" errors="1" skipped="3"/>')
    assert (s.passed, s.failed, s.errors, s.skipped, s.total) == (4, 2, 1, 3, 10)
    bad = parse_junit(b"<html>")
    assert bad.status == "error" and "not JUnit XML" in bad.error
    assert "without testsuite" in parse_junit(b"<html/>").error
    with pytest.raises(UnreadableResult):
        parse_test_file(b"<x/>", "yaml")


def test_regex_named_groups_last_match_wins():
    out = "epoch 1 acc=0.50 (5/10)\nepoch 2 acc=0.80 (8/10)\n"
    s = parse_regex(r"acc=(?P<value>[\d.]+) \((?P<passed>\d+)/(?P<total>\d+)\)", out)
    assert (s.value, s.passed, s.failed, s.total) == (0.8, 8, 2, 10)
    assert parse_regex(r"acc=(?P<value>[\d.]+)", "nothing").status == "error"
    with pytest.raises(ValueError):
        ResultSpec("regex", pattern=r"acc=([\d.]+)")


def test_auto_falls_back_to_the_exit_code():
    plain = parse_result(ResultSpec(), 0, "built ok\n", {})
    assert (plain.fmt, plain.value, plain.passed) == ("exit", 1.0, None)
    assert parse_result(ResultSpec(), 2, "", {}).value == 0.0
    assert parse_result(ResultSpec(), None, "", {}).status == "error"


def test_file_results_need_the_file():
    spec = ResultSpec("junit", path="report.xml")
    assert spec.files == ("report.xml",)
    assert parse_result(spec, 0, "", {}).status == "error"
    with pytest.raises(ValueError, match="result kind"):
        ResultSpec("surefire")


def test_unittest_real_runner_output(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import unittest\nclass T(unittest.TestCase):\n"
        "    def test_a(self): pass\n    def test_b(self): self.fail('no')\n"
        "    def test_c(self): raise KeyError(1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "unittest", "-v"], cwd=tmp_path, capture_output=True, text=True
    )
    s = parse_result(ResultSpec(), proc.returncode, proc.stdout + proc.stderr, {})
    assert (s.fmt, s.passed, s.failed, s.errors, s.total) == ("unittest", 1, 1, 1, 3)


SMALL_SUITE = """\
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("down")


def test_ok():
    pass


def test_needs_it(broken):
    pass


@pytest.mark.xfail(reason="known")
def test_known():
    assert False
"""


def test_rescore_records_every_count_and_a_reused_result_keeps_them(store, tmp_path):
    """A result reused from an earlier rescore (via the scores table) has errors and skipped
    too: they are read from the original ``scored`` event."""
    runs = []
    for name in ("a", "b"):  # two runs with the same tree
        work = tmp_path / name
        work.mkdir()
        (work / "test_small.py").write_text(SMALL_SUITE)
        with Recorder(store, workdir=work, agent="t") as rec:
            rec.tool_result(rec.tool_call("shell", command="true"), output="", exit_code=0)
        runs.append(rec.run_id)
    kwargs = dict(name="unit", cmd=f"{sys.executable} -m pytest -q -p no:cacheprovider",
                  sandbox=LocalSandbox())
    assert rescore(store, runs[:1], **kwargs).ran == 1
    assert rescore(store, runs[1:], **kwargs).reused == 1
    first, reused = (next(r.event for r in store.read(run, stream="scores")) for run in runs)
    assert reused.reused_from and not first.reused_from
    for e in (first, reused):
        assert (e.passed, e.failed, e.errors, e.skipped, e.total) == (1, 0, 1, 1, 3)
        assert e.value == 0.5


LINES = st.sampled_from([
    "ok 1 - a", "not ok 2 # TODO x", "1..3", "=== 1 failed, 2 passed in 0.1s ===",
    "Ran 2 tests in 0.0s", "FAILED (errors=1)", "OK", "--- PASS: TestA (0.00s)",
    "ok  \tpkg\t0.1s", "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
    "running 2 tests", "# tests 2", "# pass 1", "Tests:       1 failed, 1 total",
    "      Tests  1 passed (1)", "1/1 Test #1: a ....   Passed    0.01 sec",
    "Files=1, Tests=2,  0 wallclock secs", "\x1b[31m", "", "::" * 50,
])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=30))
def test_any_text_parses_without_raising(lines):
    summary = parse_test_output("\n".join(lines))
    if summary is not None:
        assert min(summary.passed, summary.failed, summary.errors, summary.skipped) >= 0
        assert summary.runner in TEST_OUTPUT_FORMATS
