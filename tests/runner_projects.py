"""Small test projects for real test runners: what each scenario writes and runs.

Each :class:`Scenario` writes a tiny project and runs one real runner on it (pytest, unittest,
go test, cargo test, node --test, vitest, jest, ctest, perl's Test::More and prove). What the
runner printed (stdout and stderr interleaved, as an agent's shell tool sees them), or the
result file it wrote (JUnit XML, JSON), is its golden. ``expect`` is the count the project was
built to give under the counting rule of ``agtrace.eventlog.testresult``, written by hand from
the project's tests, so a golden checks the parser against the runner, not against itself.
Running them and writing the goldens is ``tests/runner_goldens.py``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "results"
RUNNERS_DIR = Path(os.environ.get("AGTRACE_RUNNERS_DIR", "/tmp/agtrace-runners"))
NPM_RUNNERS = {"vitest": "3.2.4", "jest": "30.5.2"}
COUNTS = ("passed", "failed", "errors", "skipped", "total")


@dataclass
class Scenario:
    """One runner invocation on one project. ``result_file`` names a file the runner writes
    (relative to the project) that is the golden instead of the printed output."""

    runner: str
    name: str
    files: dict[str, str]
    command: list[str]
    expect: dict[str, int]
    setup: list[list[str]] = field(default_factory=list)
    result_file: str = ""
    fmt: str = ""  # the parser's format for a result file: "junit" or "json"

    @property
    def id(self) -> str:
        return f"{self.runner}/{self.name}"

    @property
    def golden(self) -> Path:
        suffix = Path(self.result_file).suffix if self.result_file else ".out"
        return GOLDEN / self.runner / f"{self.name}{suffix}"

    @property
    def expected_path(self) -> Path:
        return GOLDEN / self.runner / f"{self.name}.expected.json"


def counts(passed=0, failed=0, errors=0, skipped=0) -> dict[str, int]:
    return {"passed": passed, "failed": failed, "errors": errors, "skipped": skipped,
            "total": passed + failed + errors + skipped}


PY = sys.executable

PYTEST_MIXED = {"test_mixed.py": '''\
import pytest


@pytest.fixture
def database():
    raise RuntimeError("database is down")


@pytest.fixture
def scratch():
    yield 1
    raise RuntimeError("cleanup failed")


def test_add():
    assert 1 + 1 == 2


def test_wrong():
    assert 1 + 1 == 3


def test_needs_database(database):
    pass


def test_cleans_up(scratch):
    assert scratch == 1


@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False


@pytest.mark.xfail(reason="fixed upstream")
def test_fixed_upstream():
    pass


@pytest.mark.xfail(strict=True, reason="must fail")
def test_strict():
    pass


@pytest.mark.parametrize("n", [1, 2])
def test_positive(n):
    assert n > 0
'''}
# pytest's tally: 2 failed (wrong, strict xpass), 4 passed (add, cleans_up, positive x2),
# 1 skipped, 1 xfailed, 1 xpassed, 2 errors (setup of needs_database, teardown of cleans_up)
PYTEST_MIXED_COUNTS = counts(passed=5, failed=2, errors=2, skipped=2)

PYTEST_GREEN = {"test_green.py": '''\
import pytest


def test_one():
    assert True


def test_two():
    assert [1, 2] == [1, 2]


@pytest.mark.skip(reason="later")
def test_later():
    pass


@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    raise ValueError("still broken")


@pytest.mark.xfail(reason="maybe fixed")
def test_maybe_fixed():
    pass
'''}

PYTEST_COLLECTION = {
    "test_ok.py": "def test_fine():\n    assert True\n",
    "test_broken.py": "def test_broken(:\n    pass\n",
}

UNITTEST_MIXED = {"test_calc.py": '''\
import unittest


class Calc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 1, 2)

    def test_wrong(self):
        self.assertEqual(1 + 1, 3)

    def test_crash(self):
        raise KeyError("missing")

    @unittest.skip("not today")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_known_bug(self):
        self.assertEqual(1, 2)

    @unittest.expectedFailure
    def test_fixed(self):
        pass

    def test_range(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 5)
'''}

UNITTEST_EXPECTED = {"test_expected.py": '''\
import unittest


class Known(unittest.TestCase):
    def test_one(self):
        self.assertTrue(True)

    def test_two(self):
        self.assertIn(2, [1, 2])

    @unittest.expectedFailure
    def test_known_bug(self):
        self.assertEqual("a", "b")
'''}

UNITTEST_IMPORT = {
    "test_fine.py": "import unittest\n\n\nclass Fine(unittest.TestCase):\n"
                    "    def test_fine(self):\n        pass\n",
    "test_broken.py": "import missing_module_xyz  # noqa\n",
}

GO_MOD = {"go.mod": "module example.com/calc\n\ngo 1.19\n"}
GO_CALC = {
    "calc/calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n",
    "calc/calc_test.go": '''\
package calc

import "testing"

func TestAdd(t *testing.T) {
	if Add(1, 2) != 3 {
		t.Fatal("1+2 != 3")
	}
}

func TestTable(t *testing.T) {
	for _, c := range []struct {
		name      string
		a, b, sum int
	}{{"small", 1, 1, 2}, {"wrong", 2, 2, 5}} {
		t.Run(c.name, func(t *testing.T) {
			if got := Add(c.a, c.b); got != c.sum {
				t.Errorf("Add(%d, %d) = %d, want %d", c.a, c.b, got, c.sum)
			}
		})
	}
}

func TestSkipped(t *testing.T) {
	t.Skip("needs a database")
}
''',
    "text/text.go": "package text\n\nimport \"strings\"\n\n"
                    "func Shout(s string) string { return strings.ToUpper(s) }\n",
    "text/text_test.go": '''\
package text

import "testing"

func TestShout(t *testing.T) {
	if Shout("hi") != "HI" {
		t.Fatal("not shouted")
	}
}
''',
    "cmd/main.go": "package main\n\nfunc main() {}\n",
}
GO_GREEN = {**GO_CALC, "calc/calc_test.go": GO_CALC["calc/calc_test.go"].replace(
    '{"wrong", 2, 2, 5}', '{"right", 2, 2, 4}')}
GO_BROKEN = {**GO_CALC, "text/text.go": "package text\n\nfunc Shout(s string) int { return s }\n"}

CARGO_TOML = {"Cargo.toml": '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n'
                            "[dependencies]\n"}
CARGO_LIB = '''\
/// Adds two numbers.
///
/// ```
/// assert_eq!(calc::add(1, 2), 3);
/// ```
pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }

    #[test]
    fn wrong() {
        assert_eq!(add(1, 1), 3);
    }

    #[test]
    #[ignore]
    fn slow() {}

    #[test]
    #[ignore = "needs network"]
    fn network() {}

    #[test]
    #[should_panic(expected = "boom")]
    fn panics() {
        panic!("boom");
    }
}
'''
CARGO_MIXED = {
    **CARGO_TOML,
    "src/lib.rs": CARGO_LIB,
    "tests/integration.rs": "#[test]\nfn integrates() {\n    assert_eq!(calc::add(2, 2), 4);\n}\n",
}
CARGO_GREEN = {**CARGO_MIXED, "src/lib.rs": CARGO_LIB.replace("add(1, 1), 3", "add(1, 1), 2")}
CARGO_BROKEN = {**CARGO_MIXED, "src/lib.rs": CARGO_LIB.replace("a + b", '"nope"')}
CARGO_ABORT = {**CARGO_TOML, "src/lib.rs": """\
#[cfg(test)]
mod tests {
    #[test]
    fn aborts() {
        std::process::abort();
    }

    #[test]
    fn never_reported() {
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}
"""}

NODE_MIXED = {"test/math.test.mjs": '''\
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

test('adds', () => {
  assert.equal(1 + 1, 2);
});

test('fails', () => {
  assert.equal(1 + 1, 3);
});

test('skipped', { skip: 'not today' }, () => {});

test('later', { todo: 'not written yet' }, () => {
  assert.fail('not yet');
});

describe('suite', () => {
  test('inner passes', () => {});
  test('inner fails', () => {
    throw new Error('boom');
  });
});
'''}
NODE_GREEN = {"test/green.test.mjs": '''\
import { test } from 'node:test';
import assert from 'node:assert/strict';

test('adds', () => {
  assert.equal(1 + 1, 2);
});

test('skipped', { skip: true }, () => {});

test('later', { todo: true }, () => {});
'''}

JS_MIXED_BODY = '''\
test('adds', () => {
  expect(1 + 1).toBe(2);
});

test('fails', () => {
  expect(1 + 1).toBe(3);
});

test.skip('skipped', () => {});

test.todo('later');

describe('suite', () => {
  test('inner passes', () => {
    expect([1]).toHaveLength(1);
  });
});
'''
VITEST_MIXED = {
    "package.json": '{"name": "vt", "private": true, "type": "module"}\n',
    "sum.test.js": "import { describe, expect, test } from 'vitest';\n\n" + JS_MIXED_BODY,
    "green.test.js": "import { expect, test } from 'vitest';\n\n"
                     "test('one', () => {\n  expect(true).toBe(true);\n});\n",
}
VITEST_GREEN = {k: v for k, v in VITEST_MIXED.items() if k != "sum.test.js"}
VITEST_BROKEN = {"broken.test.js": "import { test } from 'vitest';\n\ntest('never runs', () => {\n"}
JEST_MIXED = {
    "package.json": '{"name": "jt", "private": true}\n',
    "sum.test.js": JS_MIXED_BODY,
    "broken.test.js": "test('never runs', () => {\n  expect(1).toBe(1)\n",
}
JEST_GREEN = {
    "package.json": JEST_MIXED["package.json"],
    "green.test.js": "test('one', () => {\n  expect(true).toBe(true);\n});\n\n"
                     "test.todo('later');\n",
}

CTEST_MIXED = {"CMakeLists.txt": '''\
cmake_minimum_required(VERSION 3.16)
project(checks NONE)
enable_testing()
add_test(NAME passes COMMAND ${CMAKE_COMMAND} -E true)
add_test(NAME fails COMMAND ${CMAKE_COMMAND} -E false)
add_test(NAME expected_to_fail COMMAND ${CMAKE_COMMAND} -E false)
set_tests_properties(expected_to_fail PROPERTIES WILL_FAIL TRUE)
add_test(NAME skipped COMMAND sh -c "exit 77")
set_tests_properties(skipped PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME disabled COMMAND ${CMAKE_COMMAND} -E true)
set_tests_properties(disabled PROPERTIES DISABLED TRUE)
add_test(NAME crashes COMMAND sh -c "kill -SEGV $$")
add_test(NAME missing COMMAND /nonexistent/agtrace-binary)
'''}
CTEST_GREEN = {"CMakeLists.txt": '''\
cmake_minimum_required(VERSION 3.16)
project(checks NONE)
enable_testing()
add_test(NAME passes COMMAND ${CMAKE_COMMAND} -E true)
add_test(NAME also_passes COMMAND ${CMAKE_COMMAND} -E echo ok)
add_test(NAME skipped COMMAND sh -c "exit 77")
set_tests_properties(skipped PROPERTIES SKIP_RETURN_CODE 77)
'''}
CMAKE_SETUP = [["cmake", "-S", ".", "-B", "build"]]

TAP_MIXED = {
    "t/basic.t": '''\
use strict;
use warnings;
use Test::More tests => 5;

ok(1, 'parses empty input');
is(1 + 1, 3, 'adds');
SKIP: {
    skip 'no database', 1;
    ok(1, 'stores');
}
TODO: {
    local $TODO = 'not written yet';
    ok(0, 'future feature');
}
ok(1, 'round trip');
''',
    "t/green.t": "use strict;\nuse warnings;\nuse Test::More tests => 2;\n\n"
                 "ok(1, 'one');\nok(1, 'two');\n",
}
TAP_CRASH = {"t/crash.t": '''\
use strict;
use warnings;
use Test::More tests => 4;

ok(1, 'first');
ok(1, 'second');
die "lost the connection\\n";
'''}


def _scenarios() -> list[Scenario]:
    pt = [PY, "-m", "pytest", "-p", "no:cacheprovider"]
    ut = [PY, "-m", "unittest"]
    go = ["go", "test"]
    node = ["node", "--test"]
    vitest = [str(RUNNERS_DIR / "node_modules" / ".bin" / "vitest"), "run"]
    jest = [str(RUNNERS_DIR / "node_modules" / ".bin" / "jest")]
    ct = ["ctest", "--test-dir", "build"]
    return [
        Scenario("pytest", "mixed", PYTEST_MIXED, pt, PYTEST_MIXED_COUNTS),
        Scenario("pytest", "mixed-q", PYTEST_MIXED, [*pt, "-q"], PYTEST_MIXED_COUNTS),
        Scenario("pytest", "mixed-v", PYTEST_MIXED, [*pt, "-v"], PYTEST_MIXED_COUNTS),
        Scenario("pytest", "mixed-rA", PYTEST_MIXED, [*pt, "-rA"], PYTEST_MIXED_COUNTS),
        Scenario("pytest", "green", PYTEST_GREEN, pt, counts(passed=3, skipped=2)),
        Scenario("pytest", "deselected", PYTEST_GREEN, [*pt, "-q", "-k", "one or two"],
                 counts(passed=2)),
        Scenario("pytest", "collection-error", PYTEST_COLLECTION, pt, counts(errors=1)),
        Scenario("pytest", "no-tests", {"README": "nothing here\n"}, pt, counts()),
        Scenario("pytest", "junit", PYTEST_MIXED, [*pt, "-q", "--junitxml=report.xml"],
                 # JUnit has one testcase per test: the teardown error of a passed test
                 # replaces its pass (pytest's own text tally counts both)
                 counts(passed=4, failed=2, errors=2, skipped=2),
                 result_file="report.xml", fmt="junit"),
        Scenario("unittest", "mixed", UNITTEST_MIXED, ut,
                 counts(passed=2, failed=2, errors=1, skipped=2)),
        Scenario("unittest", "mixed-v", UNITTEST_MIXED, [*ut, "-v"],
                 counts(passed=2, failed=2, errors=1, skipped=2)),
        Scenario("unittest", "expected-failure", UNITTEST_EXPECTED, ut,
                 counts(passed=2, skipped=1)),
        Scenario("unittest", "import-error", UNITTEST_IMPORT, [*ut, "-v"],
                 counts(passed=1, errors=1)),
        Scenario("go", "mixed", {**GO_MOD, **GO_CALC}, [*go, "./..."],
                 counts(passed=1, failed=1)),  # packages: without -v go names no passes
        # subtests are tests too: TestTable fails with TestTable/wrong
        Scenario("go", "mixed-v", {**GO_MOD, **GO_CALC}, [*go, "-v", "./..."],
                 counts(passed=3, failed=2, skipped=1)),
        Scenario("go", "mixed-json", {**GO_MOD, **GO_CALC}, [*go, "-json", "./..."],
                 counts(passed=3, failed=2, skipped=1)),
        Scenario("go", "green-v", {**GO_MOD, **GO_GREEN}, [*go, "-v", "./..."],
                 counts(passed=5, skipped=1)),
        Scenario("go", "build-failed", {**GO_MOD, **GO_BROKEN}, [*go, "./..."],
                 counts(failed=1, errors=1)),
        Scenario("cargo", "mixed", CARGO_MIXED, ["cargo", "test"],
                 counts(passed=2, failed=1, skipped=2)),
        Scenario("cargo", "no-fail-fast", CARGO_MIXED, ["cargo", "test", "--no-fail-fast"],
                 counts(passed=4, failed=1, skipped=2)),
        Scenario("cargo", "green", CARGO_GREEN, ["cargo", "test"], counts(passed=5, skipped=2)),
        Scenario("cargo", "filtered", CARGO_GREEN, ["cargo", "test", "--lib", "adds"],
                 counts(passed=1)),
        Scenario("cargo", "compile-error", CARGO_BROKEN, ["cargo", "test"], counts(errors=1)),
        Scenario("cargo", "abort", CARGO_ABORT, ["cargo", "test", "--lib"],
                 counts(errors=2)),
        Scenario("node", "default", NODE_MIXED, node, counts(passed=2, failed=2, skipped=2)),
        Scenario("node", "spec", NODE_MIXED, [*node, "--test-reporter=spec"],
                 counts(passed=2, failed=2, skipped=2)),
        Scenario("node", "tap", NODE_MIXED, [*node, "--test-reporter=tap"],
                 counts(passed=2, failed=2, skipped=2)),
        Scenario("node", "junit", NODE_MIXED,
                 [*node, "--test-reporter=junit", "--test-reporter-destination=report.xml"],
                 counts(passed=2, failed=2, skipped=2), result_file="report.xml", fmt="junit"),
        Scenario("node", "green", NODE_GREEN, node, counts(passed=1, skipped=2)),
        Scenario("vitest", "mixed", VITEST_MIXED, vitest,
                 counts(passed=3, failed=1, skipped=2)),
        Scenario("vitest", "verbose", VITEST_MIXED, [*vitest, "--reporter=verbose"],
                 counts(passed=3, failed=1, skipped=2)),
        Scenario("vitest", "json", VITEST_MIXED,
                 [*vitest, "--reporter=json", "--outputFile=report.json"],
                 counts(passed=3, failed=1, skipped=2), result_file="report.json", fmt="json"),
        Scenario("vitest", "junit", VITEST_MIXED,
                 [*vitest, "--reporter=junit", "--outputFile=report.xml"],
                 counts(passed=3, failed=1, skipped=2), result_file="report.xml", fmt="junit"),
        Scenario("vitest", "green", VITEST_GREEN, vitest, counts(passed=1)),
        Scenario("vitest", "load-error", {**VITEST_GREEN, **VITEST_BROKEN}, vitest,
                 counts(passed=1, errors=1)),
        Scenario("jest", "mixed", JEST_MIXED, jest, counts(passed=2, failed=1, errors=1,
                                                            skipped=2)),
        Scenario("jest", "verbose", JEST_MIXED, [*jest, "--verbose"],
                 counts(passed=2, failed=1, errors=1, skipped=2)),
        Scenario("jest", "json", JEST_MIXED, [*jest, "--json", "--outputFile=report.json"],
                 counts(passed=2, failed=1, errors=1, skipped=2),
                 result_file="report.json", fmt="json"),
        Scenario("jest", "green", JEST_GREEN, jest, counts(passed=1, skipped=1)),
        Scenario("ctest", "mixed", CTEST_MIXED, ct, counts(passed=2, failed=1, errors=2,
                                                            skipped=2), setup=CMAKE_SETUP),
        # ctest's JUnit calls the crash a failure and the missing executable "notrun"
        Scenario("ctest", "junit", CTEST_MIXED, [*ct, "--output-junit", "../report.xml"],
                 counts(passed=2, failed=2, skipped=3), setup=CMAKE_SETUP,
                 result_file="report.xml", fmt="junit"),
        Scenario("ctest", "green", CTEST_GREEN, ct, counts(passed=2, skipped=1),
                 setup=CMAKE_SETUP),
        Scenario("tap", "perl", TAP_MIXED, ["perl", "t/basic.t"],
                 counts(passed=2, failed=1, skipped=2)),
        Scenario("tap", "perl-crash", TAP_CRASH, ["perl", "t/crash.t"],
                 counts(passed=2, errors=2)),
        # without -v prove shows the skip of the failing file, not its TODO
        Scenario("prove", "mixed", TAP_MIXED, ["prove", "t/"], counts(passed=5, failed=1,
                                                                       skipped=1)),
        Scenario("prove", "verbose", TAP_MIXED, ["prove", "-v", "t/"],
                 counts(passed=4, failed=1, skipped=2)),
        Scenario("prove", "crash", TAP_CRASH, ["prove", "t/"], counts(passed=2, errors=2)),
    ]


SCENARIOS = _scenarios()
