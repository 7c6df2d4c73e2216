"""One contract for every capture backend: the same limits, signals, timings and status.

Each test runs against every backend of the capture pipeline's agent port: ``local`` (a local
process, `agtrace run`) and ``sandbox`` (the in-memory ``SandboxAPI``, through
``run_agent_in_sandbox``), and ``modal`` when Modal credentials exist (the same code path as
``sandbox`` with ``ModalSandboxAPI``; add another backend by adding one entry to BACKENDS). The
agents are small bash scripts written here, run as real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.capture import (
    AgentNotFound,
    InMemorySandboxAPI,
    ModalSandboxAPI,
    run_agent,
    run_agent_in_sandbox,
)
from agtrace.capture.pipeline import TICK_S
from agtrace.eventlog import LineLogged, RunEnded, RunNotFound, RunStarted, SnapshotTaken, Store

SLACK_S = 2.0
"""What a loaded machine may add to a stop: the final snapshot, the run's end, scheduling."""


def _modal_credentials() -> bool:
    try:
        import modal  # noqa: F401
    except ImportError:
        return False
    return bool(os.environ.get("MODAL_TOKEN_ID")) or (Path.home() / ".modal.toml").exists()


class Local:
    """`agtrace run` on this machine; interrupts go to a real `agtrace run` subprocess."""

    name = "local"

    def __init__(self, tmp: Path):
        self.workdir = tmp / "work"
        self.workdir.mkdir()

    def run(self, store: Store, command: list[str], **kw):
        return run_agent(store, command, workdir=self.workdir, **kw)

    def spawn(self, store_path: Path, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--workdir",
             str(self.workdir), "--json", "--", *command],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "AGTRACE_HOME": str(store_path)},
        )

    def close(self) -> None:
        pass


SANDBOX_MAIN = """
import json, sys
from agtrace.capture import InMemorySandboxAPI, ModalSandboxAPI, run_agent_in_sandbox
from agtrace.eventlog import Store
kind, store, command = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
api = InMemorySandboxAPI() if kind == "sandbox" else ModalSandboxAPI.create()
try:
    print(json.dumps(run_agent_in_sandbox(Store(store), api, command).to_dict()))
finally:
    api.terminate()
"""


class Sandbox:
    """``run_agent_in_sandbox`` over a SandboxAPI; interrupts go to a real process running it,
    which, like `agtrace run --backend modal`, gets its signal handling from the pipeline."""

    def __init__(self, name: str, tmp: Path):
        self.name = name
        self.api = InMemorySandboxAPI() if name == "sandbox" else ModalSandboxAPI.create()
        self.workdir = Path(self.api.workdir)

    def run(self, store: Store, command: list[str], **kw):
        return run_agent_in_sandbox(store, self.api, command, **kw)

    def spawn(self, store_path: Path, command: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", SANDBOX_MAIN, self.name, str(store_path), json.dumps(command)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def close(self) -> None:
        self.api.terminate()


BACKENDS = [
    pytest.param("local"),
    pytest.param("sandbox"),
    pytest.param("modal", marks=pytest.mark.skipif(not _modal_credentials(), reason="no Modal credentials")),
]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    b = Local(tmp_path) if request.param == "local" else Sandbox(request.param, tmp_path)
    yield b
    b.close()


def _records(store: Store, run_id: str):
    return [r for r in store.read(run_id) if r.kind != "heartbeat_sent"]


def _run_span_s(store: Store, run_id: str) -> float:
    """The run's own duration: from its ``run_started`` to its ``run_ended`` timestamp."""
    recs = _records(store, run_id)
    assert isinstance(recs[0].event, RunStarted) and isinstance(recs[-1].event, RunEnded)
    return (recs[-1].ts - recs[0].ts) / 1e9


def _bash(script: str) -> list[str]:
    return ["bash", "-c", script]


# -- limits ----------------------------------------------------------------------------------


def test_timeout_stops_a_silent_agent_within_the_same_bound(backend, store):
    summary = backend.run(store, _bash("sleep 60"), timeout=1.0)
    assert (summary.status, summary.reason) == ("timeout", "stopped after 1 s (--timeout)")
    span = _run_span_s(store, summary.run_id)
    print(f"\n{backend.name}: 1 s timeout on a silent agent: run span {span:.3f} s, "
          f"summary duration {summary.duration_s:.3f} s")
    assert 1.0 <= summary.duration_s <= 1.0 + TICK_S + SLACK_S
    assert span <= 1.0 + TICK_S + SLACK_S
    ended = _records(store, summary.run_id)[-1].event
    assert ended.signal == signal.SIGTERM and ended.exit_code == -signal.SIGTERM


def test_timeout_stops_a_chatty_agent(backend, store):
    summary = backend.run(store, _bash("while :; do echo tick; sleep 0.01; done"), timeout=1.0)
    assert summary.status == "timeout"
    assert summary.duration_s <= 1.0 + TICK_S + SLACK_S
    lines = [r for r in _records(store, summary.run_id) if isinstance(r.event, LineLogged)]
    assert len(lines) > 10 and all(r.event.text == "tick" for r in lines)


def test_max_parts_stops_the_agent(backend, store):
    script = "for i in $(seq 1 200); do echo \"STEP $i\"; echo $i > n.txt; sleep 0.05; done"
    summary = backend.run(store, _bash(script), max_parts=3, adapter_options={"marker": "^STEP"})
    assert (summary.status, summary.reason) == ("limit", "stopped after 3 parts (--max-parts)")
    assert 3 <= summary.parts < 200
    recs = _records(store, summary.run_id)
    assert isinstance(recs[-2].event, SnapshotTaken) and recs[-2].event.final


def test_a_tick_ends_a_quiet_part_while_the_agent_is_silent(backend, store):
    summary = backend.run(store, _bash("echo one; sleep 1; echo two; sleep 1"), adapter_options={"quiet_s": 0.4})
    assert summary.status == "completed" and summary.parts == 2


# -- signals ---------------------------------------------------------------------------------


def _wait_for_line(store_path: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        runs = store_path / "runs"
        for run in runs.iterdir() if runs.exists() else ():
            s = Store(store_path)
            try:
                if any(isinstance(r.event, LineLogged) and r.event.text == text for r in s.read(run.name)):
                    return run.name
            except RunNotFound:  # the run directory exists before its first event
                pass
            finally:
                s.close()
        time.sleep(0.1)
    raise AssertionError(f"the agent never printed {text!r}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_agent_and_ends_the_run(backend, tmp_path, sig):
    store_path = tmp_path / "store"
    proc = backend.spawn(store_path, _bash("echo $$ > agent.pid; echo ready; sleep 60; echo never"))
    try:
        run_id = _wait_for_line(store_path, "ready", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = json.loads(out.decode().splitlines()[-1])
    assert (summary["run_id"], summary["status"]) == (run_id, "interrupted"), err.decode()
    store = Store(store_path)
    recs = _records(store, run_id)
    assert isinstance(recs[-2].event, SnapshotTaken) and recs[-2].event.final
    assert isinstance(recs[-1].event, RunEnded) and recs[-1].event.signal == signal.SIGTERM
    assert "never" not in [r.event.text for r in recs if isinstance(r.event, LineLogged)]
    assert "agent.pid" in recs[-2].event.added or any(
        "agent.pid" in r.event.added for r in recs if isinstance(r.event, SnapshotTaken))


# -- how agents end --------------------------------------------------------------------------

MID_PART = """
echo '{"type":"thread.started","thread_id":"t1"}'
echo '{"type":"turn.started"}'
echo '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"running the build"}}'
echo '{"type":"item.started","item":{"id":"i1","type":"command_execution","command":"make","status":"in_progress"}}'
echo partial > half.txt
exit 1
"""


def test_an_agent_that_exits_mid_part_ends_that_part_and_keeps_its_edits(backend, store):
    summary = backend.run(store, _bash(MID_PART), agent="codex")
    assert (summary.status, summary.reason, summary.exit_code) == (
        "failed", "agent exited with code 1 after 2 parts", 1)
    recs = _records(store, summary.run_id)
    returned = [r.event for r in recs if r.kind == "tool_returned"]
    assert len(returned) == 1 and returned[0].status == "error" and "before the item completed" in returned[0].error
    snaps = [r for r in recs if isinstance(r.event, SnapshotTaken)]
    assert [r.part for r in snaps] == [None, 1, 2, 2] and snaps[-1].event.final
    assert any("half.txt" in r.event.added for r in snaps)  # the edit made mid-part is kept
    assert snaps[-1].event.tree_id == snaps[-2].event.tree_id


def test_a_killed_agent_fails_the_run_with_the_signal(backend, store):
    summary = backend.run(store, _bash("echo work > w.txt; echo started; kill -9 $$"))
    assert (summary.status, summary.exit_code) == ("failed", -9)
    assert summary.reason == "agent was killed by SIGKILL after 1 parts"
    recs = _records(store, summary.run_id)
    assert recs[-1].event.signal == 9
    assert any("w.txt" in r.event.added for r in recs if isinstance(r.event, SnapshotTaken))


def test_a_failed_snapshot_keeps_every_part_and_fails_the_run(backend, store):
    script = ('echo STEP 1; echo a > a.txt; sleep 0.3; echo STEP 2; sleep 0.3; here=$PWD; cd /; rm -rf "$here"; '
              'echo STEP 3; sleep 0.3')  # a marker starts a part: STEP 2 ends part 1 (with a tree), STEP 3 part 2
    summary = backend.run(store, _bash(script), adapter_options={"marker": "^STEP"})
    assert summary.status == "failed" and summary.reason.startswith("a snapshot failed: "), summary.reason
    trees = [r.event.tree_id for r in _records(store, summary.run_id) if r.kind == "part_ended"]
    assert len(trees) == summary.parts == 3 and trees[0] and not trees[-1]
    assert trees == sorted(trees, key=lambda t: not t)  # no tree only after the failure
    assert summary.bundle, "the snapshots taken before the failure are sealed"


@pytest.mark.parametrize(("script", "status", "reason"), [
    ("echo done", "completed", ""),
    ("echo a; echo b >&2; exit 3", "failed", "agent exited with code 3 after 1 parts"),
    ("exit 4", "failed", "agent exited with code 4 and did no work"),
])
def test_status_and_reason_come_from_evidence_for_raw_agents(backend, store, script, status, reason):
    summary = backend.run(store, _bash(script))
    assert (summary.status, summary.reason) == (status, reason)


def test_failed_model_calls_fail_the_run_even_when_the_agent_exits_0(backend, store):
    error = '{"type":"error","message":"401 Unauthorized: invalid API key"}'
    script = (f"echo '{{\"type\":\"thread.started\",\"thread_id\":\"t\"}}'; echo '{{\"type\":\"turn.started\"}}'; "
              f"echo '{error}'; echo '{{\"type\":\"turn.failed\",\"error\":{{\"message\":\"401\"}}}}'; exit 0")
    summary = backend.run(store, _bash(script), agent="codex")
    assert summary.status == "failed" and summary.reason.startswith("no model call succeeded")
    assert summary.exit_code == 0


def test_an_agent_that_cannot_start_is_refused_and_recorded(backend, store):
    with pytest.raises(AgentNotFound, match="no-such-agent"):
        backend.run(store, ["no-such-agent", "--go"])
    if backend.name == "local":  # checked before the run is created (issue 13): nothing to record
        assert store.run_ids() == []
        return
    (run_id,) = store.run_ids()
    info = store.info(run_id)
    assert info.status == "failed" and "could not start 'no-such-agent'" in info.reason


# -- long lines --------------------------------------------------------------------------------


def _long_line_script(n: int) -> list[str]:
    """An agent that prints ``n`` bytes of words with no newline, then one short line."""
    return _bash(f"yes 'wörd ab' | tr '\\n' ' ' | head -c {n}; printf '\\nafter\\n'")


def _expected_long_line(n: int) -> bytes:
    return (b"w\xc3\xb6rd ab " * (n // 9 + 1))[:n]


def test_a_line_without_a_newline_is_stored_in_bounded_pieces(backend, store, monkeypatch):
    from agtrace.capture import process

    cap = 1 << 20
    monkeypatch.setattr(process, "MAX_LINE_BYTES", cap, raising=False)
    n = 40_000_000
    summary = backend.run(store, _long_line_script(n))
    assert summary.status == "completed", summary
    lines = [r.event for r in store.read(summary.run_id) if isinstance(r.event, LineLogged)]
    pieces = lines[:-1]
    assert len(pieces) >= n // cap + 1 and lines[-1].text == "after"
    assert all(len(p.text.encode()) <= cap for p in pieces)
    assert [p.continued for p in pieces] == [True] * (len(pieces) - 1) + [False]
    assert b"".join(p.text.encode() for p in pieces) == _expected_long_line(n)  # every byte kept
    from agtrace.eventlog import segment
    from agtrace.eventlog.reader import list_segments

    for _first, _last, path in list_segments(store.run_dir(summary.run_id) / "events"):
        frames = segment.scan(path)[0]
        with open(path, "rb") as fh:  # sealing joined the small frames, not the pieces into one
            assert max(len(segment.read_frame(fh, f)) for f in frames) <= 16 * 2**20 + 2 * cap


def test_a_long_line_of_a_structured_agent_is_kept_raw_in_pieces(backend, store, monkeypatch):
    from agtrace.capture import process
    from agtrace.eventlog import RawRecorded

    cap = 1 << 20
    monkeypatch.setattr(process, "MAX_LINE_BYTES", cap, raising=False)
    n = 3_000_000
    summary = backend.run(store, _long_line_script(n), agent="codex")
    raws = [r.event for r in store.read(summary.run_id) if isinstance(r.event, RawRecorded)]
    pieces = [r for r in raws if r.location == "stdout:1"]
    assert len(pieces) == 3 and [p.continued for p in pieces] == [True, True, False]
    assert all("longer than 1048576 bytes" in p.parse_error for p in pieces)
    joined = b"".join(store.blobs.get(p.blob) if p.blob else p.text.encode() for p in pieces)
    assert joined == _expected_long_line(n)
    assert [r.location for r in raws if r.location != "stdout:1"][:1] == ["stdout:2"]


# -- bytes that are not UTF-8 ----------------------------------------------------------------

NOT_UTF8 = ("K=AKIA; printf \"a\\xff\\xfe b ${K}IOSFODNN7EXAMPLE\\xffz\\n\\xff\\nok\\n\"; "
            "printf 'e\\xc3(\\n' >&2")
"""An AWS key id (not in the argv whole) between bytes that are not UTF-8, a lone ``\\xff``, a
UTF-8 line, and a cut UTF-8 sequence on stderr."""


def test_bytes_that_are_not_utf8_are_kept_exactly_and_shown_replaced(backend, store):
    """Issue: the readers decoded with ``errors="replace"``, so ``printf '\\xff\\xfe'`` was stored
    as U+FFFD U+FFFD and the bytes were lost. Now ``data`` keeps the exact (redacted) bytes and
    ``text`` is the replaced decoding every text consumer sees."""
    summary = backend.run(store, _bash(NOT_UTF8))
    assert summary.status == "completed", summary
    logged = [r.event for r in store.read(summary.run_id) if isinstance(r.event, LineLogged)]
    out = [e for e in logged if e.stream == "stdout"]
    (err,) = [e for e in logged if e.stream == "stderr"]
    assert [e.raw for e in out] == [b"a\xff\xfe b [REDACTED:aws_access_key_id]\xffz", b"\xff", b"ok"]
    assert [e.text for e in out] == ["a\ufffd\ufffd b [REDACTED:aws_access_key_id]\ufffdz", "\ufffd", "ok"]
    assert [e.redactions for e in out] == [1, 0, 0] and summary.redactions == 1
    assert out[2].data == b"" and (err.data, err.text) == (b"e\xc3(", "e\ufffd(")


def test_a_structured_agents_line_that_is_not_utf8_keeps_its_bytes(backend, store):
    from agtrace.eventlog import RawRecorded

    summary = backend.run(store, _bash("printf '{\"type\":\"thread.started\",\"x\":\"\\xff\"}\\n\\xfe{\\n'"),
                          agent="codex")
    raws = {r.event.location: r.event for r in store.read(summary.run_id) if isinstance(r.event, RawRecorded)}
    assert raws["stdout:1"].data == b'{"type":"thread.started","x":"\xff"}'
    assert raws["stdout:1"].text == '{"type":"thread.started","x":"\ufffd"}'
    assert (raws["stdout:2"].data, raws["stdout:2"].text) == (b"\xfe{", "\ufffd{")


def test_bytes_that_are_not_utf8_are_kept_across_the_pieces_of_a_long_line(backend, store, monkeypatch):
    """A line longer than the piece size, cut where bytes that are not UTF-8 sit: each piece
    keeps its own bytes, joined they are the line."""
    from agtrace.capture import process

    cap = 64
    monkeypatch.setattr(process, "MAX_LINE_BYTES", cap, raising=False)
    line = b"\xff" * 70 + "é".encode() * 40 + b"\xfe" + b"x" * 61 + b"\xc3"
    script = "printf '" + "".join(f"\\x{b:02x}" for b in line + b"\nafter\n") + "'"
    summary = backend.run(store, _bash(script))
    assert summary.status == "completed", summary
    logged = [r.event for r in store.read(summary.run_id) if isinstance(r.event, LineLogged)]
    pieces, last = logged[:-1], logged[-1]
    assert last.text == "after" and len(pieces) >= len(line) // cap + 1
    assert [p.continued for p in pieces] == [True] * (len(pieces) - 1) + [False]
    assert all(len(p.raw) <= cap for p in pieces)
    assert b"".join(p.raw for p in pieces) == line
    assert "".join(p.text for p in pieces).count("é") == 40


def test_carriage_returns_before_the_line_end_are_output_and_kept(backend, store):
    """Issue: a line's end was stripped with ``rstrip("\\r\\n")``, so every carriage return
    before the newline went too (``progress 50%\\r\\r\\n`` was stored as ``progress 50%``: 360
    bytes of 20 MB of random output were lost). Only one ``\\n`` or ``\\r\\n`` ends a line now."""
    summary = backend.run(store, _bash("printf 'progress 50%%\\r\\r\\nend\\r\\nplain\\nbar\\r\\r\\r\\n'"))
    assert summary.status == "completed", summary
    out = [r.event.raw for r in store.read(summary.run_id)
           if isinstance(r.event, LineLogged) and r.event.stream == "stdout"]
    assert out == [b"progress 50%\r", b"end", b"plain", b"bar\r\r"], out
