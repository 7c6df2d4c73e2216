"""Result parsers on outputs as the real runners print them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agtrace.replay.results import (
    ResultSpec,
    parse_json_result,
    parse_junit,
    parse_pytest,
    parse_regex,
    parse_result,
    parse_tap,
    parse_unittest,
)

PYTEST_MIXED = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-8.3.2, pluggy-1.5.0
rootdir: /work/proj
collected 14 items

tests/test_a.py ..F.s                                                    [ 35%]
tests/test_b.py ....E....                                                [100%]

==================================== ERRORS ====================================
___________________________ ERROR at setup of test_db __________________________
=================================== FAILURES ===================================
___________________________________ test_sum ___________________________________
    def test_sum():
>       assert 1 + 1 == 3
E       assert 2 == 3
=========================== short test summary info ============================
FAILED tests/test_a.py::test_sum - assert 2 == 3
ERROR tests/test_b.py::test_db
============== 1 failed, 11 passed, 1 skipped, 1 error in 0.42s ===============
"""

PYTEST_QUIET = "........x.                                                               [100%]\n9 passed, 1 xfailed in 0.05s\n"

UNITTEST_FAIL = """\
test_average (tests.test_top_words.AverageWordLengthTest.test_average) ... ok
test_empty (tests.test_top_words.AverageWordLengthTest.test_empty) ... ok
test_case (tests.test_top_words.TopWordsTest.test_case) ... FAIL
test_count (tests.test_core.CoreTest.test_count) ... ok
test_top (tests.test_core.CoreTest.test_top) ... ERROR

======================================================================
FAIL: test_case (tests.test_top_words.TopWordsTest.test_case)
----------------------------------------------------------------------
AssertionError: Lists differ: [('the', 2)] != [('The', 1)]

----------------------------------------------------------------------
Ran 5 tests in 0.002s

FAILED (failures=1, errors=1)
"""

UNITTEST_OK = "..s.\n----------------------------------------------------------------------\nRan 4 tests in 0.001s\n\nOK (skipped=1)\n"

TAP = """\
TAP version 13
1..6
ok 1 - parses empty input
ok 2 - parses one line
not ok 3 - handles unicode
  ---
  message: 'expected 3, got 2'
  ...
ok 4 - big file # SKIP no fixture
not ok 5 - future feature # TODO not yet
ok 6 - round trip
"""

JUNIT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.1">
<testcase classname="t" name="a" time="0.01"/>
<testcase classname="t" name="b" time="0.01"><failure message="assert 0">tb</failure></testcase>
<testcase classname="t" name="c" time="0.01"><error message="fixture">tb</error></testcase>
<testcase classname="t" name="d" time="0.01"><skipped message="no db"/></testcase>
<testcase classname="t" name="e" time="0.01"/>
</testsuite></testsuites>"""


def test_pytest_summary_with_failures_errors_and_skips():
    s = parse_pytest(PYTEST_MIXED)
    assert (s.passed, s.failed, s.total) == (11, 2, 13)
    assert s.value == pytest.approx(11 / 13)
    assert s.extra == {"errors": 1, "skipped": 1}


def test_pytest_quiet_form_and_xfail():
    s = parse_pytest(PYTEST_QUIET)
    assert (s.passed, s.failed, s.total) == (9, 0, 10)


def test_pytest_no_tests_ran():
    s = parse_pytest("no tests ran in 0.01s\n")
    assert (s.passed, s.total, s.value) == (0, 0, 0.0)


def test_unittest_failed_and_ok_with_skips():
    s = parse_unittest(UNITTEST_FAIL)
    assert (s.passed, s.failed, s.total, s.fmt) == (3, 2, 5, "unittest")
    s = parse_unittest(UNITTEST_OK)
    assert (s.passed, s.failed, s.total, s.value) == (3, 0, 3, 1.0)


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
    assert (s.fmt, s.passed, s.failed, s.total) == ("unittest", 1, 2, 3)


def test_tap_with_skip_todo_and_plan():
    s = parse_tap(TAP)
    assert (s.passed, s.failed, s.total) == (4, 1, 5)
    short = parse_tap("1..4\nok 1\nok 2\n")  # crashed after two of four
    assert (short.passed, short.failed) == (2, 2)


def test_junit_counts_testcases():
    s = parse_junit(JUNIT)
    assert (s.passed, s.failed, s.total) == (2, 2, 4)
    attrs_only = parse_junit(b'<testsuite tests="10" failures="2" errors="1" skipped="3"/>')
    assert (attrs_only.passed, attrs_only.failed, attrs_only.total) == (4, 3, 7)
    assert parse_junit(b"<html>").status == "error"


def test_json_result_file():
    s = parse_json_result(json.dumps({"passed": 7, "total": 10}).encode())
    assert (s.passed, s.failed, s.total, s.value) == (7, 3, 10, 0.7)
    s = parse_json_result(b'{"value": 0.93}')
    assert (s.value, s.total) == (0.93, None)
    assert parse_json_result(b'{"score": 1}').status == "error"
    assert parse_json_result(b"nope").status == "error"


def test_regex_named_groups_last_match_wins():
    out = "epoch 1 acc=0.50 (5/10)\nepoch 2 acc=0.80 (8/10)\n"
    s = parse_regex(r"acc=(?P<value>[\d.]+) \((?P<passed>\d+)/(?P<total>\d+)\)", out)
    assert (s.value, s.passed, s.failed, s.total) == (0.8, 8, 2, 10)
    assert parse_regex(r"acc=(?P<value>[\d.]+)", "nothing").status == "error"
    with pytest.raises(ValueError):
        ResultSpec("regex", pattern=r"acc=([\d.]+)")


def test_auto_detects_each_format_and_falls_back_to_exit_code():
    spec = ResultSpec()
    assert parse_result(spec, 1, PYTEST_MIXED, {}).fmt == "pytest"
    assert parse_result(spec, 1, UNITTEST_FAIL, {}).fmt == "unittest"
    assert parse_result(spec, 1, TAP, {}).fmt == "tap"
    plain = parse_result(spec, 0, "built ok\n", {})
    assert (plain.fmt, plain.value) == ("exit", 1.0)
    assert parse_result(spec, 2, "", {}).value == 0.0


def test_file_results_need_the_file():
    spec = ResultSpec("junit", path="report.xml")
    assert spec.files == ("report.xml",)
    assert parse_result(spec, 0, "", {}).status == "error"
    assert parse_result(spec, 1, "", {"report.xml": JUNIT}).passed == 2
    assert parse_result(ResultSpec("unittest"), 0, PYTEST_MIXED, {}).status == "error"
