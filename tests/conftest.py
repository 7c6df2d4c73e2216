"""Shared fixtures: a fresh store per test and one example of every event type."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agtrace.eventlog import (
    ErrorOccurred,
    Excluded,
    FileChanged,
    HeartbeatSent,
    LineLogged,
    MessageAdded,
    ModelCalled,
    PartEnded,
    RawRecorded,
    ReasoningAdded,
    RunEnded,
    RunStarted,
    Scored,
    SnapshotTaken,
    Store,
    TestCase,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnEnded,
    TurnStarted,
    Usage,
    UsageReported,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # started as a background job of a script (`.ci/run &`): SIGINT is ignored, and every process
    # a test starts would inherit that, so the tests that send one would see nothing happen.
    # A handler (not an ignore) is reset by exec: what the tests start can be interrupted again.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    """Write the project's bytecode once, before the workers and the hundreds of `agtrace`
    processes the suite starts. A fresh clone has none, and where PYTHONDONTWRITEBYTECODE is
    set (as on CI machines) no process writes it, so each would compile its modules from
    source: `agtrace show` took 0.27 s so against 0.15 s with bytecode. Installed packages
    have theirs from pip; an editable install's sources get it only here."""
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller has compiled already
    import compileall

    for package in ("eventlog", "capture", "replay", "cli"):
        compileall.compile_dir(REPO / package, quiet=2, workers=1)


@pytest.fixture(scope="session", autouse=True)
def _temp_files_stay_in_pytest_basetemp(tmp_path_factory):
    """Point the temp directory of this process and of every process a test starts (agtrace,
    the agent CLIs, git) into pytest's base temp, which pytest prunes to its last three runs.
    Without it each run of the suite left ~100 directories in /tmp: `agtrace demo`'s kept
    workdirs, the Claude Code CLI's cwd files, OpenHands' editor histories, stores of
    in-process helpers."""
    import tempfile

    scratch = tmp_path_factory.getbasetemp() / "tmp"
    scratch.mkdir(exist_ok=True)
    before_env, before_module = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(scratch), str(scratch)
    yield
    tempfile.tempdir = before_module
    if before_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before_env


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def one_of_each() -> list:
    """One example of every event type, in a plausible order (run_started first, run_ended last)."""
    return [
        RunStarted(agent="demo", agent_version="1.0", model="gpt-x", prompt="fix it", task_id="t1",
                   repo="github.com/o/r", base_commit="abc", command=["agent", "--go"],
                   config={"temperature": 0}, tags={"campaign": "c1"}, heartbeat_s=5.0),
        TurnStarted(turn=1, prompt="fix it"),
        ReasoningAdded(text="think"),
        MessageAdded(role="assistant", text="I will look", message_id="m1", model="gpt-x"),
        ToolCalled(call_id="c1", tool="shell", arguments={"cmd": "ls"}, command="ls"),
        ToolReturned(call_id="c1", tool="shell", output="a\nb\n", exit_code=0, duration_ms=3.5),
        FileChanged(path="a.py", change="modify", origin="agent"),
        TestsRan(suite="unit", passed=3, failed=1, total=4,
                 tests=[TestCase(name="t::a", outcome="failed", message="boom")], tree_id="t" * 40),
        UsageReported(usage=Usage(input=10, output=5, cache_read=2, reasoning=1), model="gpt-x",
                      cost_usd=0.01, request_id="r1"),
        ModelCalled(model="gpt-x", ok=False, error="429", retry=1),
        SnapshotTaken(tree_id="a" * 40, added=["x"], excluded=[Excluded(path="big.bin", reason="size", size=9)]),
        PartEnded(part_kind="tool", title="shell ls", tool="shell", call_id="c1", tree_id="a" * 40),
        LineLogged(stream="stderr", text="warn"),
        RawRecorded(source="codex.exec_json", text='{"type":"x"}', location="stdout:3"),
        RawRecorded(source="raw", data=b"\xff\xfe", parse_error="not utf-8"),
        ErrorOccurred(message="boom", origin="tool"),
        HeartbeatSent(),
        Scored(scorer="pytest", scorer_digest="d" * 64, tree_id="a" * 40, value=0.5),
        TurnEnded(turn=1),
        RunEnded(status="completed", reason="done", exit_code=0, redactions=2),
    ]


def run_on_a_terminal(argv: list[str], env: dict, *, stdin=subprocess.DEVNULL,
                      timeout: float = 120) -> tuple[int | None, bytes, bytes]:
    """Run ``argv`` with standard error a pseudo-terminal (what a person sees: progress bars are
    drawn there) and standard output a pipe; ``(exit code, what was drawn, stdout)``. For
    commands that print little on stdout (it is read once the process has ended)."""
    import pty
    import select
    import time

    primary, secondary = pty.openpty()
    try:
        try:
            proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=secondary)
        finally:
            os.close(secondary)
        drawn, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([primary], [], [], 0.1)[0]:
                try:
                    drawn += os.read(primary, 65536)
                except OSError:  # the terminal's other end closed: the process ended
                    break
            elif proc.poll() is not None:
                break
        out = proc.stdout.read()
        proc.stdout.close()
        proc.wait(30)
    finally:
        os.close(primary)
    return proc.returncode, drawn, out


def run_agtrace(args: list[str], store_path, *, input: bytes | None = None, env=None, check=False, timeout=120):
    """Run the real `agtrace` console entry point in a subprocess."""
    full_env = {**os.environ, "AGTRACE_HOME": str(store_path), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
        input=input, capture_output=True, env=full_env, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"agtrace {args} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc
