"""`agtrace append` and a terminal: it says what it waits for when standard input is one, and
draws a progress bar on standard error when that is one (the real CLI, real pseudo-terminals)."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys

from agtrace.eventlog import Store, append_json_lines

from .conftest import run_agtrace, run_on_a_terminal

CLI = [sys.executable, "-c", "from agtrace.cli.main import main; main()"]


def _events(n: int) -> bytes:
    return b"".join(json.dumps({"kind": "message_added", "role": "assistant", "text": f"step {i} " + "x" * 180,
                                "part": 1 + i // 100}).encode() + b"\n" for i in range(n))


def test_append_from_a_terminal_says_it_reads_json_lines_until_ctrl_d(tmp_path):
    """Standard input a terminal (the pipe forgotten): a hint on standard error, then the lines
    typed are appended once Ctrl-D ends them. Before, it waited in silence."""
    store = tmp_path / "store"
    run_id = run_agtrace(["new", "--agent", "bot"], store, check=True).stdout.decode().strip()
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([*CLI, "append", run_id], stdin=secondary, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "AGTRACE_HOME": str(store)})
        os.close(secondary)
        line = json.dumps({"kind": "message_added", "role": "user", "text": "typed by hand"}).encode()
        os.write(primary, line + b"\n")
        os.write(primary, b"\x04")  # Ctrl-D at the start of a line: the end of the input
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
    assert proc.returncode == 0, err
    assert b"reading events as JSON lines from the terminal; end with Ctrl-D" in err
    assert b"appended 1 events" in err and out == b""
    logged = [json.loads(x) for x in run_agtrace(["log", run_id, "--json"], store, check=True).stdout.splitlines()]
    assert [r["kind"] for r in logged] == ["run_started", "message_added"] and logged[1]["text"] == "typed by hand"


def test_a_long_append_draws_its_progress_on_a_terminal_and_stores_every_event(tmp_path):
    """Standard error a terminal, the events a file of several blocks: a bar named after the run
    is drawn there (it reaches 100%), standard output stays clean, and every event is stored,
    appended through the forked fold child as without a bar (the bar's thread starts after it)."""
    store = tmp_path / "store"
    events = tmp_path / "events.jsonl"
    events.write_bytes(_events(40_000))  # ~8 MB: two blocks of 4 MiB and a bit
    run_id = run_agtrace(["new", "--agent", "bot"], store, check=True).stdout.decode().strip()
    with open(events, "rb") as stdin:
        code, drawn, out = run_on_a_terminal([*CLI, "append", run_id], stdin=stdin,
                                             env={**os.environ, "AGTRACE_HOME": str(store), "COLUMNS": "120"})
    assert code == 0, drawn
    assert f"appending to {run_id[:10]}".encode() in drawn and b"100%" in drawn, drawn[-400:]
    assert b"appended 40000 events" in drawn and out == b""
    shown = json.loads(run_agtrace(["show", run_id, "--json"], store, check=True).stdout)
    assert shown["events"] == 40_001


def test_append_json_lines_reports_the_bytes_read_after_each_block(tmp_path):
    """The library's ``progress(bytes read, events appended)``: once per block, growing, ending
    at the input's size whether or not its last line ends with a newline."""
    payload = _events(3_000)
    for data in (payload, payload.rstrip(b"\n")):
        store = Store(tmp_path / f"s{len(data)}")
        writer = store.create_run()
        seen: list[tuple[int, int]] = []
        try:
            append_json_lines(writer, io.BytesIO(data), block_bytes=64 << 10,
                              progress=lambda read, appended, seen=seen: seen.append((read, appended)))
        finally:
            store.close_writer(writer)
        assert len(seen) > 5 and seen == sorted(seen)
        assert seen[-1] == (len(data), 3_000)
        store.close()
