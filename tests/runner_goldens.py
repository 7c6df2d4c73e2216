"""Run the scenarios of ``tests/runner_projects.py`` with the real runners; write goldens.

``python -m tests.runner_goldens [NAME…]`` regenerates the goldens under
``tests/golden/results/<runner>/`` (output, expected parse beside it) and the results section
of ``tests/golden/SOURCES.md``; ``--reparse`` only rewrites the expected parses from the stored
goldens (after a parser change: review the diff). ``tests/test_results_real.py`` (slow) runs
the same scenarios into a temporary directory and checks that today's runners parse the same.

vitest and jest come from the npm registry, pinned in :data:`NPM_RUNNERS`, installed once into
``$AGTRACE_RUNNERS_DIR`` (default ``/tmp/agtrace-runners``), like the agent CLIs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .runner_projects import (
    COUNTS,
    GOLDEN,
    NPM_RUNNERS,
    PY,
    REPO,
    RUNNERS_DIR,
    SCENARIOS,
    Scenario,
)

SOURCES = REPO / "tests" / "golden" / "SOURCES.md"

NEEDS = {"go": "go", "cargo": "cargo", "node": "node", "vitest": "node", "jest": "node",
         "ctest": "ctest", "tap": "perl", "prove": "prove"}


def environment(work: Path) -> dict[str, str]:
    """A quiet, offline, reproducible environment for the runners (caches under ``work``)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "CI", "FORCE_COLOR", "NODE_OPTIONS", "GO", "CARGO"))}
    cache = RUNNERS_DIR / "cache"
    env.update({
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "GOPATH": str(cache / "gopath"), "GOCACHE": str(cache / "gocache"),
        "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GO111MODULE": "on", "CGO_ENABLED": "0",
        "CARGO_NET_OFFLINE": "true", "CARGO_TERM_COLOR": "never",
        "CARGO_TARGET_DIR": str(work / "target"), "npm_config_update_notifier": "false",
    })
    return env


def install_npm_runners() -> Path:
    """Install the pinned vitest and jest into :data:`RUNNERS_DIR` (once; idempotent)."""
    modules = RUNNERS_DIR / "node_modules"
    want = [f"{p}@{v}" for p, v in NPM_RUNNERS.items()
            if _npm_version(modules / p / "package.json") != v]
    if want:
        RUNNERS_DIR.mkdir(parents=True, exist_ok=True)
        pkg = RUNNERS_DIR / "package.json"
        if not pkg.exists():
            pkg.write_text('{"name": "agtrace-runners", "private": true}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact", *want],
                       cwd=RUNNERS_DIR, check=True, capture_output=True, text=True,
                       env={**os.environ, "npm_config_update_notifier": "false"})
    return modules


def _npm_version(package_json: Path) -> str:
    try:
        return json.loads(package_json.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return ""


def missing_tool(scenario: Scenario) -> str:
    """The runner program this machine lacks for ``scenario``, or ``""``."""
    tool = NEEDS.get(scenario.runner)
    if tool and not shutil.which(tool):
        return tool
    if scenario.runner in ("ctest",) and not shutil.which("cmake"):
        return "cmake"
    return ""


@dataclass
class Ran:
    scenario: Scenario
    exit_code: int
    output: str
    data: bytes  # the golden: the output's bytes, or the result file's


def run(scenario: Scenario, work: Path) -> Ran:
    """Write the project under ``work`` and run the scenario's runner on it."""
    project = work / scenario.runner / scenario.name
    if project.exists():
        shutil.rmtree(project)
    for rel, text in scenario.files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if scenario.runner in ("vitest", "jest"):
        (project / "node_modules").symlink_to(install_npm_runners())
    env = environment(work)
    for step in scenario.setup:
        subprocess.run(step, cwd=project, env=env, check=True, capture_output=True)
    proc = subprocess.run(scenario.command, cwd=project, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    output = proc.stdout.decode("utf-8", "replace")
    data = (project / scenario.result_file).read_bytes() if scenario.result_file \
        else proc.stdout
    return Ran(scenario, proc.returncode, output, data)


def command_text(scenario: Scenario) -> str:
    """The command as a person would type it (no machine paths)."""
    words = [Path(w).name if os.path.isabs(w) else w for w in scenario.command]
    if words[0].startswith("python"):
        words[0] = "python"
    return shlex.join(words)


def version_of(runner: str) -> str:
    """The runner's version, as its own ``--version`` (or its package) reports it."""
    probes = {
        "pytest": [PY, "-m", "pytest", "--version"], "unittest": [PY, "--version"],
        "go": ["go", "version"], "cargo": ["cargo", "--version"], "node": ["node", "--version"],
        "ctest": ["ctest", "--version"], "tap": ["perl", "-MTest::More", "-e",
                                                  "print qq(Test::More $Test::More::VERSION)"],
        "prove": ["prove", "--version"],
    }
    if runner in NPM_RUNNERS:
        return f"{runner} {_npm_version(RUNNERS_DIR / 'node_modules' / runner / 'package.json')}"
    out = subprocess.run(probes[runner], capture_output=True, text=True).stdout.strip()
    return out.splitlines()[0] if out else "?"


def _scrub(text: str, work: Path) -> str:
    """Machine paths out: the work directory, the npm runners' cache, this checkout."""
    text = text.replace(str(work), "/tmp/work").replace(str(RUNNERS_DIR), "/tmp/runners")
    text = text.replace(str(REPO), "/repo").replace(str(Path(sys.prefix)), "/venv")
    return text.replace(str(Path(sys.base_prefix)), "/python")


def write_goldens(names: list[str] | None = None) -> None:
    """Run the scenarios (all, or those named ``runner`` or ``runner/name``) and write their
    goldens with the expected parse beside each, then the SOURCES.md section."""
    from agtrace.eventlog import parse_test_file, parse_test_output

    work = Path(f"/tmp/results-goldens-{os.getpid()}")
    chosen = [s for s in SCENARIOS if not names or s.runner in names or s.id in names]
    try:
        for s in chosen:
            if missing_tool(s):
                print(f"skip {s.id}: no {missing_tool(s)}")
                continue
            ran = run(s, work)
            data = _scrub(ran.data.decode("utf-8", "replace"), work).encode()
            s.golden.parent.mkdir(parents=True, exist_ok=True)
            s.golden.write_bytes(data)
            summary = (parse_test_file(data, s.fmt) if s.result_file
                       else parse_test_output(data.decode()))
            expected = {"command": command_text(s), "exit_code": ran.exit_code,
                        "version": version_of(s.runner),
                        "summary": summary.as_dict() if summary else None}
            s.expected_path.write_text(json.dumps(expected, indent=1) + "\n")
            got = {k: getattr(summary, k) for k in COUNTS} if summary else None
            print(f"{'ok  ' if got == s.expect else 'DIFF'} {s.id} exit={ran.exit_code} "
                  f"{got} expect {s.expect}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_sources()


def reparse() -> None:
    """Rewrite each expected parse from its stored golden (after a parser change; review the
    diff): command, exit code and version stay as the runner gave them."""
    from agtrace.eventlog import parse_test_file, parse_test_output

    for s in SCENARIOS:
        if not s.expected_path.exists():
            continue
        data = s.golden.read_bytes()
        summary = (parse_test_file(data, s.fmt) if s.result_file
                   else parse_test_output(data.decode()))
        expected = json.loads(s.expected_path.read_text())
        expected["summary"] = summary.as_dict() if summary else None
        s.expected_path.write_text(json.dumps(expected, indent=1) + "\n")


def write_sources() -> None:
    """Rewrite the results section of ``tests/golden/SOURCES.md`` from the expected files."""
    rows = []
    for s in SCENARIOS:
        if s.expected_path.exists():
            e = json.loads(s.expected_path.read_text())
            rel = s.golden.relative_to(GOLDEN.parent)
            rows.append(f"| `{rel}` | {e['version']} | `{e['command']}` | {e['exit_code']} |")
    section = "\n".join([
        BEGIN,
        "## results/: test runners' output (tests/runner_projects.py, tests/runner_goldens.py)",
        "",
        "Made by running each real runner on a small project written by "
        "`tests/runner_projects.py` (`python -m tests.runner_goldens` regenerates them); "
        "machine paths are replaced (`/tmp/work`, `/tmp/runners`, `/repo`, `/venv`, "
        "`/python`). Each has `<name>.expected.json` beside it: the command, its exit code, "
        "the runner's version and the expected parse.",
        "",
        "| golden | runner version | command | exit |",
        "|---|---|---|---|",
        *rows,
        END,
    ])
    text = SOURCES.read_text() if SOURCES.exists() else SOURCES_HEAD
    if BEGIN in text:
        text = re.sub(f"{re.escape(BEGIN)}.*?{re.escape(END)}", lambda _: section, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    SOURCES.write_text(text.rstrip("\n") + "\n")


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SOURCES_HEAD = "# Sources of the golden files\n\nWhere every sample under `tests/golden/` came from.\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--reparse"]:
        reparse()
    else:
        write_goldens(sys.argv[1:] or None)
