"""No agent left frozen: the freeze around a snapshot is guarded whatever happens to the capture.

Real processes throughout: `agtrace run` is SIGKILLed at random moments while it snapshots a
workdir big enough for snapshots to take a while, an agent forks while it is frozen and thawed,
agents are stopped by someone else, leave processes behind that ignore SIGTERM or hold their
output, and a capture hangs with its agent frozen. Process states are read from
``/proc/<pid>/stat`` of every process of the agent's session.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agtrace.capture import (
    InMemorySandboxAPI,
    LocalProcess,
    ProcessGroup,
    Snapshotter,
    adapter_for,
    run_agent,
    run_capture,
)
from agtrace.capture import pipeline as pipeline_module
from agtrace.eventlog import ErrorOccurred, PartEnded, Store

from .conftest import run_agtrace

SIGKILL_TRIALS = 8  # in the default run; -m slow runs SOAK_TRIALS
SOAK_TRIALS = 120
RACE_CYCLES = 150  # freeze/thaw cycles of a forking agent; -m slow runs RACE_SOAK_CYCLES
RACE_SOAK_CYCLES = 3000

if not sys.platform.startswith("linux"):
    pytest.skip("process states are read from /proc", allow_module_level=True)


# -- helpers ---------------------------------------------------------------------------------


def stat_of(pid: int) -> tuple[str, int, int] | None:
    """``(state, pgrp, session)`` of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[3])


def session_of(sid: int) -> dict[int, str]:
    """``pid -> state`` of every process of session ``sid``."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat_of(int(entry))
            if st is not None and st[2] == sid:
                out[int(entry)] = st[0]
    return out


def stopped_in(sid: int) -> dict[int, str]:
    return {pid: state for pid, state in session_of(sid).items() if state in ("T", "t")}


def wait_for(predicate, timeout: float, step: float = 0.005):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passed; return it."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            return value
        time.sleep(step)


def live_in(sid: int) -> dict[int, str]:
    return {pid: state for pid, state in session_of(sid).items() if state != "Z"}


def is_frozen(pid: int) -> bool:
    return (stat_of(pid) or ("",))[0] == "T"


def settled(sid: int) -> bool:
    """Nothing of session ``sid`` is left stopped (within a few seconds: the supervisor acts on
    the capture's death at once, but signals take effect asynchronously)."""
    return bool(wait_for(lambda: not stopped_in(sid), 5.0))


def ended(sid: int) -> bool:
    """Every process of session ``sid`` ended, within the grace period and some slack."""
    return bool(wait_for(lambda: not live_in(sid), ProcessGroup.grace_s + 5.0, 0.02))


def kill_session(sid: int) -> None:
    """End whatever a test left behind (by pid, only processes of the agent's session)."""
    for pid in session_of(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def read_pid(path: Path, timeout: float = 30.0) -> int:
    def read():
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    pid = wait_for(read, timeout, 0.002)
    assert pid, f"the agent never wrote its pid to {path}"
    return pid


BUSY_AGENT = r"""
echo $$ > "$1"
i=0
while [ $i -lt 400 ]; do
  j=0
  while [ $j -lt {files} ]; do echo "part $i file $j $RANDOM $RANDOM" > "f$j.txt"; j=$((j + 1)); done
  echo "PART $i"
  i=$((i + 1))
done
"""


# -- SIGKILL of the capture while it snapshots ------------------------------------------------


def _sigkill_trials(tmp_path: Path, trials: int, seed: int) -> dict:
    rng = random.Random(seed)
    work = tmp_path / "work"
    work.mkdir()
    for n in range(1500):  # a workdir whose snapshots take a while: 1,500 files, 300 rewritten per part
        (work / f"base{n:04d}.txt").write_text(f"file {n}\n" * 40)
    agent = tmp_path / "agent.sh"
    agent.write_text(BUSY_AGENT.replace("{files}", "300"))
    store_path = tmp_path / "store"
    counts = {"trials": 0, "killed_frozen": 0, "left_stopped": 0, "crashed": 0, "recaptured": 0}
    for trial in range(trials):
        pid_file = tmp_path / f"agent-{trial}.pid"
        proc = subprocess.Popen(
            [sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--workdir", str(work),
             "--marker", "^PART", "-q", "--", "bash", str(agent), str(pid_file)],
            env={**os.environ, "AGTRACE_HOME": str(store_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            pid = read_pid(pid_file)
            if rng.random() < 0.75:  # while frozen, at a random moment of the snapshot
                wait_for(functools.partial(is_frozen, pid), 30.0, 0.0005)
                time.sleep(rng.uniform(0.0, 0.02))
            else:  # anywhere
                time.sleep(rng.uniform(0.0, 1.5))
            frozen = is_frozen(pid)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        counts["trials"] += 1
        counts["killed_frozen"] += frozen
        try:
            calm = settled(pid)
            counts["left_stopped"] += not calm
            assert calm, f"trial {trial}: processes left stopped after the capture died: {stopped_in(pid)}"
            assert ended(pid), f"trial {trial}: the agent was not stopped after the capture died: {session_of(pid)}"
        finally:
            kill_session(pid)
        with Store(store_path) as store:
            run_id = max(store.run_ids())
            info = store.info(run_id)
            parts = [r.part for r in store.read(run_id) if isinstance(r.event, PartEnded)]
        assert info.status == "crashed", (trial, info.status, info.reason)
        assert info.parts == (max(parts) if parts else 0), (trial, info.parts, parts)
        counts["crashed"] += 1
        if trial in (0, trials - 1) or rng.random() < 0.1:  # a new capture of the same workdir works
            done = run_agtrace(["run", "--workdir", str(work), "--json", "--", "bash", "-c",
                                f"echo again {trial} > again.txt; echo ok"], store_path)
            assert done.returncode == 0, done.stderr.decode()
            summary = json.loads(done.stdout)
            assert summary["status"] == "completed" and summary["parts"] >= 1
            with Store(store_path) as store:
                again = [r.event for r in store.read(summary["run_id"]) if r.kind == "snapshot_taken"]
            assert any("again.txt" in (e.added + e.modified) for e in again)
            counts["recaptured"] += 1
    return counts


def _report(name: str, counts: dict) -> None:
    print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@pytest.mark.slow  # 10-30 s on a loaded 2-core machine
def test_sigkill_of_the_capture_during_snapshots_leaves_no_agent_frozen(tmp_path):
    counts = _sigkill_trials(tmp_path, SIGKILL_TRIALS, seed=12)
    _report("sigkill during snapshots", counts)
    assert counts["left_stopped"] == 0 and counts["crashed"] == counts["trials"]
    assert counts["killed_frozen"] >= 1, "no trial hit a snapshot; make snapshots slower"


@pytest.mark.slow
def test_sigkill_of_the_capture_during_snapshots_soak(tmp_path):
    counts = _sigkill_trials(tmp_path, SOAK_TRIALS, seed=1012)
    _report("sigkill during snapshots (soak)", counts)
    assert counts["trials"] >= 100 and counts["left_stopped"] == 0
    assert counts["killed_frozen"] >= counts["trials"] // 2


def test_sigkill_of_a_sandbox_capture_while_frozen_leaves_no_agent_frozen(tmp_path):
    script = (
        "import sys\n"
        "from agtrace.capture import InMemorySandboxAPI, run_agent_in_sandbox\n"
        "from agtrace.eventlog import Store\n"
        "api = InMemorySandboxAPI(sys.argv[3])\n"
        f"agent = {BUSY_AGENT.replace('{files}', '300')!r}\n"
        "run_agent_in_sandbox(Store(sys.argv[1]), api, ['bash', '-c', agent, 'agent', sys.argv[2]],\n"
        "                     adapter_options={'marker': '^PART'})\n"
    )
    frozen_kills = 0
    for trial in range(3):
        pid_file = tmp_path / f"agent-{trial}.pid"
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "store"), str(pid_file),
                                 str(tmp_path / f"sandbox-{trial}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            pid = read_pid(pid_file)
            wait_for(functools.partial(is_frozen, pid), 30.0, 0.0005)
            frozen_kills += is_frozen(pid)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        try:
            assert settled(pid), f"stopped after the capture died: {stopped_in(pid)}"
            assert ended(pid), session_of(pid)
        finally:
            kill_session(pid)
    print(f"\nsandbox sigkill: 3 trials, {frozen_kills} killed while frozen, 0 left stopped")
    assert frozen_kills >= 1


# -- the SIGSTOP/SIGCONT race -----------------------------------------------------------------


def _forking_agent(tmp_path: Path) -> LocalProcess:
    proc = LocalProcess(["bash", "-c", "while :; do /bin/true; (/bin/true &); done"], cwd=tmp_path)
    proc.start()
    return proc


def test_thaw_continues_a_process_that_stopped_after_the_sigcont(tmp_path):
    """The race's outcome, made on purpose: a process of the group acts on a SIGSTOP after the
    thaw's SIGCONT went out. The confirming SIGCONT continues it."""
    proc = LocalProcess(["bash", "-c", "sleep 60 & echo $!; wait"], cwd=tmp_path)
    proc.start()
    try:
        child = int(proc.read(10.0).text)
        proc.freeze()
        proc.thaw()
        os.kill(child, signal.SIGSTOP)  # late: after the group's SIGCONT
        assert wait_for(lambda: (stat_of(child) or ("",))[0] not in ("T", "t"), 5.0), stat_of(child)
    finally:
        proc.stop()
        proc.wait(10)
        proc.close()
        kill_session(proc.popen.pid)


def _state(pid: int) -> str:
    return (stat_of(pid) or ("?",))[0]


def test_freezes_nest_the_group_runs_again_after_the_last_hold(tmp_path):
    """Two marker lines read together: the reader freezes at the first and holds again at the
    second; thawing the first part's snapshot must leave the agent stopped until the second
    part's snapshot is taken, or the agent would run (and edit) between the two parts."""
    proc = LocalProcess(["sleep", "60"], cwd=tmp_path)
    proc.start()
    pid = proc.popen.pid
    try:
        first = proc.freeze()
        assert wait_for(lambda: _state(pid) in ("T", "t"), 5.0), _state(pid)
        second = proc.freeze()
        assert first is not None and second is not None
        proc.thaw(first)
        time.sleep(0.2)  # what a lone thaw would have continued by now
        assert _state(pid) in ("T", "t") and proc.frozen
        proc.thaw(second)
        assert wait_for(lambda: _state(pid) not in ("T", "t"), 5.0), _state(pid)
        assert not proc.frozen
    finally:
        proc.stop()
        proc.wait(10)
        proc.close()
        kill_session(pid)


def test_a_thaw_of_a_hold_the_deadline_ended_leaves_a_later_freeze_alone(tmp_path):
    """The deadline thawed the group (ending every hold) and a later marker froze it again:
    the late thaw of the old hold must not continue the new freeze."""
    proc = LocalProcess(["sleep", "60"], cwd=tmp_path, freeze_deadline_s=0.3)
    proc.start()
    pid = proc.popen.pid
    try:
        old = proc.freeze()
        assert wait_for(lambda: proc.deadline_thaws == 1 and not proc.frozen, 10.0)
        new = proc.freeze()
        assert new == old + 1
        proc.thaw(old)
        assert proc.frozen and wait_for(lambda: _state(pid) in ("T", "t"), 5.0), _state(pid)
        proc.thaw(new)
        assert not proc.frozen and wait_for(lambda: _state(pid) not in ("T", "t"), 5.0), _state(pid)
    finally:
        proc.stop()
        proc.wait(10)
        proc.close()
        kill_session(pid)


def _race(tmp_path: Path, cycles: int) -> int:
    proc = _forking_agent(tmp_path)
    sid = proc.popen.pid
    stuck = 0
    try:
        for _ in range(cycles):
            proc.freeze()
            time.sleep(0.002)
            proc.thaw()
            time.sleep(0.001)
            if stopped_in(sid) and wait_for(lambda: not stopped_in(sid), 1.0, 0.01) is False:
                stuck += 1
    finally:
        proc.stop()
        proc.wait(10)
        proc.close()
        kill_session(sid)
    return stuck


def test_a_forking_agent_frozen_and_thawed_repeatedly_is_left_running(tmp_path):
    stuck = _race(tmp_path, RACE_CYCLES)
    print(f"\nfreeze/thaw race: {RACE_CYCLES} cycles, {stuck} left a process stopped")
    assert stuck == 0


@pytest.mark.slow
def test_a_forking_agent_frozen_and_thawed_repeatedly_soak(tmp_path):
    stuck = _race(tmp_path, RACE_SOAK_CYCLES)
    print(f"\nfreeze/thaw race (soak): {RACE_SOAK_CYCLES} cycles, {stuck} left a process stopped")
    assert stuck == 0


# -- deadlines --------------------------------------------------------------------------------


def test_a_freeze_that_outlasts_its_deadline_is_thawed_and_recorded(tmp_path, store):
    work = tmp_path / "work"
    work.mkdir()
    agent = "for i in 1 2 3; do for j in $(seq 1 400); do echo $i $j > f$j.txt; done; echo PART $i; done"
    process = LocalProcess(["bash", "-c", agent], cwd=work, freeze_deadline_s=0.001)
    summary = run_capture(store, process, adapter_for("raw", {"marker": "^PART"}),
                          snapshotter=lambda run_dir: Snapshotter(run_dir, work), workdir=work)
    assert summary.status == "completed"
    assert process.deadline_thaws >= 1
    errors = [r for r in store.read(summary.run_id) if isinstance(r.event, ErrorOccurred)]
    assert errors and all("freeze deadline" in r.event.message and r.event.origin == "capture" for r in errors)
    # one error per part whose snapshot outlasted the deadline; a part can count two thaws (the
    # reader froze at its marker, the deadline thawed, the capture froze again for the snapshot
    # and the deadline thawed again: seen on a loaded machine), never fewer thaws than errors
    assert len({r.part for r in errors}) == len(errors) <= process.deadline_thaws
    assert any("freeze deadline" in w for w in summary.warnings)


def test_the_supervisor_continues_a_group_when_the_capture_hangs_frozen(tmp_path):
    """The capture itself cannot thaw (it is hung, or stopped): the supervisor's own deadline."""
    proc = LocalProcess(["sleep", "60"], cwd=tmp_path, freeze_deadline_s=0.2)
    proc.start()
    pid = proc.popen.pid
    try:
        assert proc.unsupervised == ""
        proc.supervisor.frozen()  # what freeze() does, without the in-process guard
        os.killpg(pid, signal.SIGSTOP)
        assert wait_for(lambda: (stat_of(pid) or ("",))[0] == "T", 5.0), stat_of(pid)
        assert wait_for(lambda: (stat_of(pid) or ("",))[0] == "S", 15.0, 0.02), stat_of(pid)
    finally:
        proc.stop()
        proc.wait(10)
        proc.close()
        kill_session(pid)


# -- agents stopped by someone else, and what they leave behind -------------------------------

TERM_IGNORING = (
    f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)' &"
)


def _stop_when_started(pid_file: Path) -> threading.Thread:
    def stop_it():
        pid = read_pid(pid_file)
        time.sleep(0.3)
        os.killpg(pid, signal.SIGSTOP)  # someone else stops the agent

    thread = threading.Thread(target=stop_it, daemon=True)
    thread.start()
    return thread


def _in_thread(store_path: Path, fn):
    """``fn(store)`` in a thread with its own store, bounded (the point is that it ends)."""
    box = {}

    def run():
        with Store(store_path) as store:
            box["result"] = fn(store)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the capture did not end"
    return box["result"]


@pytest.mark.slow
def test_timeout_ends_a_capture_whose_agent_was_stopped_and_left_a_term_ignoring_child(tmp_path):
    pid_file = tmp_path / "agent.pid"
    agent = f"echo $$ > {pid_file}; {TERM_IGNORING} echo started; wait"
    _stop_when_started(pid_file)
    try:
        summary = _in_thread(tmp_path / "store",
                             lambda store: run_agent(store, ["bash", "-c", agent], workdir=tmp_path, timeout=2))
        pid = read_pid(pid_file)
        assert summary.status == "timeout"
        assert settled(pid) and ended(pid), session_of(pid)
    finally:
        kill_session(read_pid(pid_file))


@pytest.mark.slow
def test_sigterm_ends_a_capture_whose_agent_was_stopped_by_someone_else(tmp_path):
    pid_file = tmp_path / "agent.pid"
    agent = f"echo $$ > {pid_file}; {TERM_IGNORING} echo started; wait"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--workdir", str(tmp_path),
         "--json", "--", "bash", "-c", agent],
        env={**os.environ, "AGTRACE_HOME": str(tmp_path / "store")}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    pid = read_pid(pid_file)
    try:
        time.sleep(0.3)
        os.killpg(pid, signal.SIGSTOP)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err.decode()  # interrupted (README exit codes)
        assert json.loads(out)["status"] == "interrupted"
        assert settled(pid) and ended(pid), session_of(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_session(pid)


@pytest.mark.slow
def test_output_held_by_a_process_that_left_the_group_does_not_hold_the_capture(tmp_path, monkeypatch):
    monkeypatch.setattr(ProcessGroup, "grace_s", 0.5)
    monkeypatch.setattr(pipeline_module, "DRAIN_S", 0.5)
    leftover = tmp_path / "leftover.pid"
    agent = f"setsid sleep 120 & echo $! > {leftover}; echo bye"
    try:
        summary = _in_thread(tmp_path / "store", lambda store: run_agent(store, ["bash", "-c", agent], workdir=tmp_path))
        assert summary.status == "completed"
        assert any("output stayed open" in w for w in summary.warnings), summary.warnings
    finally:
        pid = read_pid(leftover)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_both_backends_start_a_supervisor(tmp_path):
    local = LocalProcess(["sleep", "30"], cwd=tmp_path)
    local.start()
    api = InMemorySandboxAPI()
    from agtrace.capture import SandboxAgentProcess

    remote = SandboxAgentProcess(api, ["sleep", "30"])
    try:
        remote.start()
        assert local.supervisor is not None and local.unsupervised == ""
        assert remote.supervisor is not None and remote.unsupervised == ""
        assert wait_for(remote.group_exists, 30.0, 0.05) and local.group_exists()  # the pgid file comes late
    finally:
        for proc in (local, remote):
            proc.stop()
            proc.wait(10)
            proc.close()
        api.terminate()
