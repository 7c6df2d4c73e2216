"""The event-log commands, driven through the real console entry point in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import click

from agtrace.cli.main import cli
from agtrace.eventlog import Store
from agtrace.eventlog import segment as seg
from agtrace.eventlog.reader import list_segments

from .conftest import run_agtrace


def _lines(proc) -> list[str]:
    return proc.stdout.decode().splitlines()


def test_new_append_log_copy_close_round_trip(tmp_path):
    s = tmp_path / "store"
    a = run_agtrace(["new", "--agent", "bot", "--model", "m1", "--task", "do it", "--tag", "exp=1"], s, check=True)
    run_a = a.stdout.decode().strip()
    events = [
        {"kind": "message_added", "role": "assistant", "text": "hello", "part": 1},
        {"kind": "tool_called", "call_id": "c1", "tool": "shell", "command": "ls", "part": 2},
        {"kind": "tool_returned", "call_id": "c1", "output": "a\n", "exit_code": 0, "part": 2},
        {"kind": "part_ended", "part_kind": "tool", "title": "shell ls", "part": 2},
    ]
    payload = "".join(json.dumps(e) + "\n" for e in events).encode()
    run_agtrace(["append", run_a[:10]], s, input=payload, check=True)
    run_agtrace(["close", run_a, "--status", "completed", "--reason", "ok"], s, check=True)

    log_a = run_agtrace(["log", run_a, "--json"], s, check=True)
    b = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    appended = run_agtrace(["append", b], s, input=log_a.stdout, check=True)
    assert "skipped the run_started event of line 1" in appended.stderr.decode()  # b keeps one identity
    rec_a = [json.loads(x) for x in _lines(log_a)]
    rec_b = [json.loads(x) for x in _lines(run_agtrace(["log", b, "--json"], s, check=True))]
    strip = lambda r: {k: v for k, v in r.items() if k != "seq"}  # noqa: E731
    assert [strip(r) for r in rec_b[1:]] == [strip(r) for r in rec_a[1:]]  # b's own run_started first
    assert [r["kind"] for r in rec_b].count("run_started") == 1
    assert [r["seq"] for r in rec_b] == list(range(1, len(rec_a) + 1))
    shown = run_agtrace(["show", b], s, check=True).stdout.decode()  # b ended (a's run_ended) before it started
    assert "(before it started: its events were appended with the times of another run" in shown
    assert "duration:      -" in shown
    assert "before it started" not in run_agtrace(["show", run_a], s, check=True).stdout.decode()

    show = json.loads(run_agtrace(["show", run_a, "--json"], s, check=True).stdout)
    for key in ("id", "agent", "model", "status", "parts", "events", "started_at", "ended_at"):
        assert key in show
    assert (show["agent"], show["model"], show["status"], show["parts"], show["events"]) == ("bot", "m1", "completed", 2, 6)
    part2 = [json.loads(x) for x in _lines(run_agtrace(["log", run_a, "--part", "2", "--json"], s, check=True))]
    assert [r["kind"] for r in part2] == ["tool_called", "tool_returned", "part_ended"]
    tools = _lines(run_agtrace(["log", run_a, "--kind", "tool_called"], s, check=True))
    assert len(tools) == 1 and "command=ls" in tools[0]
    listing = json.loads(run_agtrace(["ls", "--json"], s, check=True).stdout)
    assert {r["id"]: r["status"] for r in listing}[run_a] == "completed"


def test_bad_line_stops_with_its_number_and_keeps_what_came_before(tmp_path):
    s = tmp_path / "store"
    run = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    good = json.dumps({"kind": "message_added", "role": "user", "text": "one"})
    payload = f"{good}\n{good}\n{{\"kind\": \"message_added\", \"role\": 5}}\n{good}\n".encode()
    proc = run_agtrace(["append", run], s, input=payload)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "line 3" in err and "2 event(s) before line 3 are stored" in err
    kinds = [json.loads(x)["kind"] for x in _lines(run_agtrace(["log", run, "--json"], s, check=True))]
    assert kinds == ["run_started", "message_added", "message_added"]
    unknown = run_agtrace(["append", run], s, input=b'{"kind": "no_such_kind"}\n')
    assert unknown.returncode == 2 and "unknown event kind" in unknown.stderr.decode()



def test_counts_no_tool_reports_are_refused_with_their_line_and_field(tmp_path):
    """`{"kind": "usage_reported", "usage": {"input": -5}}` was appended and the run showed
    `tokens: -5`; a usage is a delta of tokens spent, so a negative count is bad input, as are
    negative test counts and tests adding up to more than their total."""
    s = tmp_path / "store"
    run = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    lines = [{"kind": "usage_reported", "usage": {"input": 100, "output": 20}},
             {"kind": "usage_reported", "usage": {"input": 10, "cache_read": -3}}]
    proc = run_agtrace(["append", run], s, input="".join(json.dumps(x) + "\n" for x in lines).encode())
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "line 2: usage_reported: usage.cache_read is -3" in err, err
    assert "the 1 event(s) before line 2 are stored" in err
    metrics = json.loads(run_agtrace(["metrics", run, "--json"], s, check=True).stdout)
    assert metrics["tokens"] == 120
    for line, says in (({"kind": "tests_ran", "passed": 5, "failed": 0, "total": 2},  # a pass rate of 250%
                        "tests_ran: passed + failed + errors + skipped is 5, more than total 2"),
                       ({"kind": "tests_ran", "passed": 3, "failed": -1}, "tests_ran: failed is -1")):
        proc = run_agtrace(["append", run], s, input=(json.dumps(line) + "\n").encode())
        assert proc.returncode == 2 and f"line 1: {says}" in proc.stderr.decode(), proc.stderr.decode()
    run_agtrace(["append", run], s, check=True,  # a total of 0 (not known) or above the counts is kept
                input=b'{"kind": "tests_ran", "passed": 3}\n{"kind": "tests_ran", "passed": 3, "total": 9}\n')
    assert json.loads(run_agtrace(["metrics", run, "--json"], s, check=True).stdout)["tests_ran"] == 2


def test_an_end_status_close_does_not_take_is_refused(tmp_path):
    """`{"kind": "run_ended", "status": "weird"}` was stored: `show` said `status: weird` and no
    `ls --status` could select the run; append takes the statuses `close --status` takes."""
    s = tmp_path / "store"
    run = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    proc = run_agtrace(["append", run], s, input=b'{"kind": "run_ended", "status": "weird", "exit_code": 0}\n')
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "line 1: run_ended: status is 'weird', not one of completed, failed" in err, err
    assert json.loads(run_agtrace(["show", run, "--json"], s, check=True).stdout)["status"] == "open"
    run_agtrace(["append", run], s, check=True, input=b'{"kind": "run_ended", "status": "timeout"}\n')
    assert [r["id"] for r in json.loads(run_agtrace(["ls", "--status", "timeout", "--json"], s, check=True).stdout)] == [run]


def test_appending_no_events_names_no_seqs(tmp_path):
    """Zero events stored used to be reported as the range "seq 2..1" (`first_seq` 2, `last_seq`
    1 in --json); now it says no events were stored, and --json has null seqs."""
    s = tmp_path / "store"
    run = run_agtrace(["new", "--agent", "m"], s, check=True).stdout.decode().strip()
    bad = run_agtrace(["append", run], s, input=b"x\n")
    err = bad.stderr.decode()
    assert bad.returncode == 2 and err.startswith("error: line 1: ") and err.endswith("; no events were stored\n"), err
    assert "seq" not in err and "0 event(s)" not in err
    empty = json.loads(run_agtrace(["append", run, "--json"], s, input=b"", check=True).stdout)
    assert (empty["appended"], empty["first_seq"], empty["last_seq"]) == (0, None, None)
    said = run_agtrace(["append", run], s, input=b"", check=True).stderr.decode()
    assert said == f"no events were stored in {run}: standard input held no events\n"
    one = json.dumps({"kind": "message_added", "role": "user", "text": "one"}).encode() + b"\n"
    stored = json.loads(run_agtrace(["append", run, "--json"], s, input=one, check=True).stdout)
    assert (stored["appended"], stored["first_seq"], stored["last_seq"]) == (1, 2, 2)


def test_second_writer_process_is_refused_naming_the_holder(tmp_path):
    s = tmp_path / "store"
    run = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    holder = subprocess.Popen(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store", str(s), "append", run],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        lock = s / "runs" / run / "lock"
        while str(holder.pid) not in (lock.read_text() if lock.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        proc = run_agtrace(["append", run], s, input=b"")
        assert proc.returncode == 1
        assert f"locked by pid {holder.pid}" in proc.stderr.decode()
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)


def test_verify_exit_1_names_the_first_bad_frame(tmp_path):
    s = tmp_path / "store"
    run = run_agtrace(["new"], s, check=True).stdout.decode().strip()
    ok = run_agtrace(["verify", "--json"], s, check=True)
    assert json.loads(ok.stdout)["ok"] is True
    ((_, _, path),) = list_segments(s / "runs" / run / "events")
    frames, _, _ = seg.scan(path)
    data = bytearray(path.read_bytes())
    data[frames[0].offset + seg.HEADER_SIZE + 2] ^= 4
    path.write_bytes(bytes(data))
    bad = run_agtrace(["verify", run], s)
    assert bad.returncode == 1
    assert f"{path}: frame at byte {frames[0].offset}" in bad.stderr.decode()


def test_reindex_and_ls_agree(tmp_path):
    s = tmp_path / "store"
    for _ in range(2):
        run_agtrace(["new", "--agent", "x"], s, check=True)
    before = Store(s).catalog.dump()
    proc = run_agtrace(["reindex", "--json"], s, check=True)
    assert json.loads(proc.stdout) == {"runs": 2, "projections": ["catalog", "metrics", "part_index", "scores", "annotations", "costs", "search"], "projection_errors": []}
    assert Store(s).catalog.dump() == before


def test_unknown_run_is_a_clear_usage_error(tmp_path):
    run_agtrace(["new"], tmp_path / "store", check=True)  # a store (a missing one is its own error)
    proc = run_agtrace(["show", "0000"], tmp_path / "store")
    assert proc.returncode == 2
    assert "no run matches '0000'" in proc.stderr.decode() and "agtrace ls" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def _all_commands() -> dict[str, click.Command]:
    """Every command of the (lazy) group, loaded."""
    ctx = click.Context(cli, info_name="agtrace")
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    assert len(commands) > 10 and all(commands.values()), commands
    return commands


def test_every_command_that_prints_data_has_json():
    no_data = {"demo-agent"}
    for name, command in _all_commands().items():
        if name in no_data:
            continue
        params = {p.name for p in command.params if isinstance(p, click.Option)}
        assert "as_json" in params, f"`agtrace {name}` has no --json"


def test_cli_reference_documents_every_command_and_is_fresh():
    from agtrace.cli.docs import ROOT, main

    assert main(["--check"]) == 0, "docs/cli.md or schemas/ is stale: run python -m agtrace.cli.docs"
    reference = (ROOT / "docs" / "cli.md").read_text()
    for name in _all_commands():
        assert f"## agtrace {name}\n" in reference


def test_cli_reference_shows_the_help_options_the_commands_take(tmp_path):
    """docs/cli.md is the commands' --help: every command also takes -h (the group's
    help_option_names), so the reference must say `-h, --help` as `agtrace ls -h` prints it."""
    from agtrace.cli.docs import ROOT

    reference = (ROOT / "docs" / "cli.md").read_text()
    printed = run_agtrace(["ls", "-h"], tmp_path / "none", check=True).stdout.decode()
    help_line = next(line for line in printed.splitlines() if line.strip().endswith("Show this message and exit."))
    assert help_line.split()[0] == "-h,", printed
    section = reference.split("## agtrace ls\n", 1)[1].split("\n## ", 1)[0]
    assert help_line.strip() in {line.strip() for line in section.splitlines()}, section
    assert reference.count("-h, --help") == len(_all_commands()) + 1


def test_close_again_with_the_same_status_succeeds_and_another_status_is_refused(tmp_path):
    """A `close` whose first try ended the run but did not get to say so (killed, a lost
    connection) can be run again: the same status is a success that says the run was already
    closed so, and adds nothing; another status is still refused."""
    s = tmp_path / "s"
    run_id = run_agtrace(["new", "--agent", "t"], s, check=True).stdout.decode().strip()
    run_agtrace(["close", run_id, "--status", "completed", "--reason", "ok"], s, check=True)
    events = len(run_agtrace(["log", run_id, "--json"], s, check=True).stdout.splitlines())
    again = run_agtrace(["close", run_id, "--status", "completed"], s)
    assert again.returncode == 0, again.stderr.decode()
    assert "already closed with status completed" in again.stdout.decode()
    as_json = json.loads(run_agtrace(["close", run_id, "--status", "completed", "--json"], s, check=True).stdout)
    assert as_json["status"] == "completed" and as_json["already_closed"] is True
    assert len(run_agtrace(["log", run_id, "--json"], s, check=True).stdout.splitlines()) == events
    other = run_agtrace(["close", run_id, "--status", "failed"], s)
    err = other.stderr.decode()
    assert other.returncode == 1 and "Traceback" not in err, err
    assert "already ended with status completed" in err and f"agtrace new --parent {run_id}" in err, err


def test_control_characters_of_run_data_are_shown_not_handed_to_the_terminal(tmp_path):
    """Issue: `log`, `scores` and the transcript printed stored escape sequences as they were, so
    an agent's output could retitle the terminal, clear it, or write the clipboard (OSC 52). Now
    what a command prints shows them as ``\\x1b``; colours (SGR) stay; JSON is unchanged; `cat`
    prints a file as it is."""
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    hostile = "pwn\x1b]52;c;SGVsbG8=\x07 \x1b]0;title\x07 \x1b[2J \x9b6n \x00 \x1b[31mred\x1b[0m"
    payload = tmp_path / "payload.txt"
    payload.write_text(hostile + "\n")
    script = f"echo S1; cat {payload}; tr -d '\\000' < {payload} > f.txt"  # a NUL makes a file binary for cat
    done = run_agtrace(["run", "--workdir", str(work), "--marker", "^S", "--json", "--", "bash", "-c", script],
                       store, check=True)
    run_id = json.loads(done.stdout.decode().splitlines()[-1])["run_id"]
    shown = run_agtrace(["log", run_id], store, check=True).stdout
    assert b"pwn\\x1b]52;c;SGVsbG8=\\x07" in shown and b"\\x1b[2J" in shown and b"\\x9b6n" in shown
    assert b"\x07" not in shown and b"\x1b]" not in shown and b"\x1b[2J" not in shown and b"\x00" not in shown
    assert b"\xc2\x9b" not in shown and b"\x1b[31mred\x1b[0m" in shown  # C1 CSI shown; a colour kept
    lines = [json.loads(x) for x in run_agtrace(["log", run_id, "--json"], store, check=True).stdout.splitlines()]
    assert hostile in [e.get("text") for e in lines]  # JSON: the data, exactly
    assert run_agtrace(["cat", run_id, "--part", "1", "f.txt"], store, check=True).stdout == (hostile.replace("\x00", "") + "\n").encode()
