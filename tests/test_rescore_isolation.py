"""What a rescore's workers share and leave behind, with real processes: private temp roots,
leftovers of a SIGKILLed rescore, the scorer's program in the digest."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

from agtrace.eventlog import Store
from agtrace.replay.sandbox import command_program

from .conftest import run_agtrace
from .test_rescore import make_run

REGEX = r"^v=(?P<value>\d+)"


def test_each_worker_has_a_private_root(store, tmp_path):
    """-j 2: the two scorers' scratch trees are under two different 0700 roots, so a scorer
    that deletes its scratch's parent cannot remove its sibling's tree."""
    run_id = make_run(store, tmp_path / "w", [1, 2])
    store.close()
    temp, seen = tmp_path / "tmp", tmp_path / "seen"
    temp.mkdir()
    cmd = f"dirname \"$PWD\" >> {seen}; echo v=$(cat n.txt)"
    run_agtrace(["rescore", run_id, "--name", "p", "--cmd", cmd, "--parts", "all", "-j", "2", "--regex", REGEX],
                store.root, env={"TMPDIR": str(temp)}, check=True)
    parents = seen.read_text().split()
    assert len(parents) == 2 and parents[0] != parents[1]
    assert list(temp.iterdir()) == []  # removed at the end


def test_a_sigkilled_rescore_leaves_roots_the_next_one_removes(store, tmp_path):
    run_id = make_run(store, tmp_path / "w", [1, 2])
    store.close()
    temp, started = tmp_path / "tmp", tmp_path / "started"
    temp.mkdir()
    cmd = f"if [ ! -e {tmp_path}/rerun ]; then touch {started}; sleep 300; fi; echo v=$(cat n.txt)"
    args = ["rescore", run_id, "--name", "k", "--cmd", cmd, "--parts", "all", "--regex", REGEX]
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                            env={**os.environ, "AGTRACE_HOME": str(store.root), "TMPDIR": str(temp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        left = [p for p in temp.iterdir() if p.name.startswith("agtrace-rescore-")]
        assert len(left) == 1 and f"-{proc.pid}@" in left[0].name
        assert stat.S_IMODE(left[0].stat().st_mode) == 0o700
    finally:
        proc.send_signal(9)  # SIGKILL: no cleanup runs
        proc.wait()
    assert left[0].exists()
    foreign = temp / "agtrace-rescore-someone-else"  # untagged: not ours to remove
    foreign.mkdir()
    (tmp_path / "rerun").touch()
    run_agtrace(args, store.root, env={"TMPDIR": str(temp)}, check=True)
    assert sorted(p.name for p in temp.iterdir()) == [foreign.name]
    with Store(store.root) as reopened:
        assert sorted((r.event.scored_part, r.event.value) for r in reopened.read(run_id, stream="scores")) == [
            (1, 1.0), (2, 2.0)]


def ran(args, root, env) -> int:
    return json.loads(run_agtrace(args, root, env=env, check=True).stdout)["ran"]


def test_the_digest_changes_when_the_scorer_program_changes(store, tmp_path):
    """A rebuilt program on PATH (another size or mtime) is another scorer: nothing is reused."""
    run_id = make_run(store, tmp_path / "w", [1])
    store.close()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "myscorer"
    tool.write_text("#!/bin/sh\necho v=$(cat n.txt)\n")
    tool.chmod(0o755)
    first = command_program("myscorer --x", str(bin_dir))
    assert first.startswith(f"{tool} ")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    args = ["rescore", run_id, "--name", "m", "--cmd", "myscorer", "--regex", REGEX, "--json"]
    assert ran(args, store.root, env) == 1
    assert ran(args, store.root, env) == 0
    tool.write_text("#!/bin/sh\n# upgraded\necho v=$(cat n.txt)\n")
    assert command_program("myscorer", str(bin_dir)) != first
    assert ran(args, store.root, env) == 1
    assert command_program("cd x && true", str(bin_dir)) == ""  # a builtin: nothing to describe
