"""Today's real test runners still print what the goldens hold, as far as the parser sees.

Runs every scenario of ``tests/runner_projects.py`` with the real runner (pytest, unittest,
go, cargo, node, vitest and jest from the npm registry, ctest, perl, prove) into a temporary
directory and requires: the counts the project was written to give, the golden's parse
(counts, tally and the named cases; durations differ from run to run), the golden's exit code,
and agreement with the runner's own verdict. A runner missing from the machine skips its
scenarios, except under CI (``.ci/run`` installs them), where it fails.
"""

from __future__ import annotations

import json
import os

import pytest

from agtrace.eventlog import parse_test_file, parse_test_output

from .runner_goldens import install_npm_runners, missing_tool
from .runner_goldens import run as run_scenario
from .runner_projects import COUNTS, NPM_RUNNERS, SCENARIOS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def npm_runners():
    """vitest and jest, pinned, installed once into the runners' cache."""
    install_npm_runners()


def cases_of(summary: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["outcome"]) for c in summary.get("cases", [])]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_real_runner_output_parses_as_its_golden(scenario, tmp_path, request):
    tool = missing_tool(scenario)
    if tool:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run installs it")
        pytest.skip(f"{tool} is not installed")
    if scenario.runner in NPM_RUNNERS:
        request.getfixturevalue("npm_runners")
    ran = run_scenario(scenario, tmp_path)
    summary = (parse_test_file(ran.data, scenario.fmt) if scenario.result_file
               else parse_test_output(ran.output))
    assert summary is not None, ran.output[-2000:]
    assert {k: getattr(summary, k) for k in COUNTS} == scenario.expect, ran.output[-2000:]
    expected = json.loads(scenario.expected_path.read_text())
    golden = expected["summary"]
    got = summary.as_dict()
    assert got.get("tally") == golden.get("tally")
    assert sorted(cases_of(got)) == sorted(cases_of(golden))  # parallel runners reorder
    assert ran.exit_code == expected["exit_code"]
    if ran.exit_code == 0:
        assert summary.green
    if not summary.green:
        assert ran.exit_code != 0
