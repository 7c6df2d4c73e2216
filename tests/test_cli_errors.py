"""The CLI's one error boundary (``cli/errors.py``): the real ``agtrace`` driven into each failure
it can reach for real must exit non-zero, print no traceback and name the cause.

Tests run as root, so "permission denied" cannot be provoked with file modes; the situations a
test cannot make for real (a full disk, an I/O error) are checked on the mapping function with
the exceptions Python itself raises for them.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest

from .conftest import FIXTURES, run_agtrace

AGTRACE = [sys.executable, "-c", "from agtrace.cli.main import main; main()"]
"""The real console entry point, as ``run_agtrace`` runs it, for a test that wires its streams."""


def _fails_cleanly(proc: subprocess.CompletedProcess, *causes: str, exit_code: int | None = None) -> str:
    err = proc.stderr.decode()
    assert proc.returncode != 0, (proc.returncode, err)
    if exit_code is not None:
        assert proc.returncode == exit_code, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.startswith("error: "), err
    for cause in causes:
        assert cause in err, (cause, err)
    return err


def _new_run(store) -> str:
    return run_agtrace(["new", "--agent", "t"], store, check=True).stdout.decode().strip()


def test_a_catalog_replaced_by_garbage(tmp_path):
    store = tmp_path / "s"
    run = _new_run(store)
    for args in (["ls"], ["ls", "--json"], ["show", run]):
        # derived data: set aside (kept for inspection) and rebuilt from the events, with a warning
        (store / "catalog.db").write_bytes(b"this is not sqlite\n" * 100)
        proc = run_agtrace(args, store, check=True)
        err = proc.stderr.decode()
        assert "the catalog was damaged; it was moved to" in err and str(store / "catalog.db.damaged-") in err
        assert "Traceback" not in err and run in proc.stdout.decode()
    run_agtrace(["reindex"], store, check=True)
    assert run in run_agtrace(["ls"], store, check=True).stdout.decode()


def test_a_directory_where_the_catalog_file_belongs(tmp_path):
    store = tmp_path / "s"
    (store / "catalog.db").mkdir(parents=True)
    _fails_cleanly(run_agtrace(["ls"], store), "cannot open the catalog", str(store / "catalog.db"))


def test_a_file_where_the_store_directory_belongs(tmp_path):
    """A --store that is a file is "a --store where there is no store": bad usage, exit 2, as a
    missing store or a directory that is none (it was exit 1), whether or not the command
    creates a store."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["ls"], ["verify"], ["new"]):
        _fails_cleanly(run_agtrace(args, blocker), f"{blocker} is not a directory, so not a store", exit_code=2)
    assert blocker.read_text() == "x"
    _fails_cleanly(run_agtrace(["ls"], tmp_path / "missing"), "no store at", exit_code=2)
    err = _fails_cleanly(run_agtrace(["new"], blocker / "sub" / "store"), "Not a directory")
    assert f"{blocker} is a file where a directory should be" in err


def test_a_command_that_creates_a_store_never_makes_one_inside_someones_directory(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("mine")
    for args in (["new"], ["demo", "--fast", "--workdir", str(tmp_path / "work")], ["import", str(FIXTURES / "inspect")]):
        proc = run_agtrace(args, project)
        assert proc.returncode == 2, (args, proc.stderr)
        err = _fails_cleanly(proc, str(project), "is not an agtrace store and is not empty", "README.md")
        assert "nothing was created" in err
    assert sorted(p.name for p in project.iterdir()) == ["README.md"]
    store = tmp_path / "store"
    source = run_agtrace(["new", "--agent", "a"], store, check=True).stdout.decode().strip()
    _fails_cleanly(run_agtrace(["cp", source, "--to", str(project)], store), str(project), "README.md")
    assert sorted(p.name for p in project.iterdir()) == ["README.md"]
    empty = tmp_path / "empty"  # `mktemp -d` gives one: it becomes a store
    empty.mkdir()
    run_agtrace(["cp", source, "--to", str(empty)], store, check=True)
    run_agtrace(["new"], empty, check=True)


def test_a_file_where_the_runs_directory_belongs(tmp_path):
    store = tmp_path / "s"
    _new_run(store)
    runs = store / "runs"
    for child in runs.iterdir():
        subprocess.run(["rm", "-rf", str(child)], check=True)
    runs.rmdir()
    runs.write_text("in the way")
    err = _fails_cleanly(run_agtrace(["new"], store), str(runs))
    assert "is a file where a directory should be" in err


def test_a_bad_json_line_names_its_line(tmp_path):
    store = tmp_path / "s"
    run = _new_run(store)
    payload = b'{"kind":"message_added","role":"user","text":"ok"}\n{"kind": "message_added", "role": \n'
    _fails_cleanly(run_agtrace(["append", run], store, input=payload), "line 2", exit_code=2)


def test_a_deeply_nested_json_line(tmp_path):
    store = tmp_path / "s"
    run = _new_run(store)
    depth = 200_000
    line = b'{"kind":"message_added","role":"user","x":' + b"[" * depth + b"]" * depth + b"}\n"
    _fails_cleanly(run_agtrace(["append", run], store, input=line), "line 1:", "deeper than the limit",
                   exit_code=2)


@pytest.mark.parametrize("field", ['"ts": 100000000000000000000000000000',
                                   '"part": 100000000000000000000000000000',
                                   '"exit_code": -100000000000000000000000000000'])
def test_a_huge_integer(tmp_path, field):
    store = tmp_path / "s"
    run = _new_run(store)
    line = b'{"kind":"tool_returned","call_id":"c1",' + field.encode() + b"}\n"
    err = _fails_cleanly(run_agtrace(["append", run], store, input=line), exit_code=2)
    assert "too large" in err or "out of range" in err or "line 1" in err, err
    # the run is still usable afterwards: its lock was released
    ok = b'{"kind":"message_added","role":"user","text":"after"}\n'
    run_agtrace(["append", run], store, input=ok, check=True)


def test_input_that_is_not_utf8(tmp_path):
    store = tmp_path / "s"
    run = _new_run(store)
    line = b'{"kind":"message_added","role":"user","text":"\xff\xfe"}\n'
    _fails_cleanly(run_agtrace(["append", run], store, input=line), "line 1", "UTF-8", exit_code=2)


def test_an_unknown_run_and_a_bad_option(tmp_path):
    store = tmp_path / "s"
    _new_run(store)
    _fails_cleanly(run_agtrace(["show", "ZZZZZZ"], store), "ZZZZZZ", exit_code=2)
    proc = run_agtrace(["ls", "--no-such-option"], store)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr and b"no-such-option" in proc.stderr


def test_an_empty_run_id_is_refused_by_verify_too(tmp_path):
    """`agtrace verify "$ID"` with an empty variable verified the whole store (exit 0); it now
    refuses the id as `show ''` does. `verify` with no argument still checks every run."""
    store = tmp_path / "s"
    _new_run(store)
    for args in (["verify", ""], ["verify", "", "--json"], ["show", ""]):
        err = _fails_cleanly(run_agtrace(args, store), "'' is not a run id; `agtrace ls` lists the runs", exit_code=2)
        assert err.count("\n") == 1, err
    assert run_agtrace(["verify"], store, check=True).stdout.startswith(b"1 run, ")


@pytest.mark.slow
def test_a_catalog_locked_by_another_process(tmp_path):
    """Waits out the catalog's busy timeout, cut to 3 s by AGTRACE_LOCK_WAIT (the default is
    30 s); it says it waits after a second, and how to change how long."""
    store = tmp_path / "s"
    _new_run(store)
    holder = sqlite3.connect(store / "catalog.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS held (x)")
    try:
        proc = run_agtrace(["new"], store, env={"AGTRACE_LOCK_WAIT": "3"}, timeout=180)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    notice, _, rest = proc.stderr.partition(b"\n")
    assert b"catalog.db is held by another process" in notice and b"waiting up to 3 s" in notice, proc.stderr
    assert b"--lock-wait or AGTRACE_LOCK_WAIT sets how long" in notice
    _fails_cleanly(subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, rest),
                   "locked by another agtrace process", exit_code=1)


def test_lock_wait_0_fails_at_once_and_a_negative_one_is_bad_usage(tmp_path):
    """`--lock-wait 0` (a CI job that would rather fail than wait): a held catalog fails the
    command at once, without the waiting notice; nothing was created."""
    store = tmp_path / "s"
    _new_run(store)
    holder = sqlite3.connect(store / "catalog.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = run_agtrace(["--lock-wait", "0", "new"], store)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = _fails_cleanly(proc, "locked by another agtrace process", exit_code=1)
    assert "waiting up to" not in err, err
    assert len(run_agtrace(["ls", "--json"], store, check=True).stdout.decode().split('"id"')) == 2
    bad = run_agtrace(["--lock-wait", "-1", "ls"], store)
    assert bad.returncode == 2 and b"Invalid value for '--lock-wait'" in bad.stderr and b"Traceback" not in bad.stderr


def test_a_command_waiting_for_the_catalog_says_so_and_goes_on(tmp_path):
    """Another process holds the catalog's write lock for 2.5 s: `agtrace new` says after a
    second that it waits (it may wait 30 s), then creates its run once the lock is let go."""
    import threading

    store = tmp_path / "s"
    _new_run(store)
    holder = sqlite3.connect(store / "catalog.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    let_go = threading.Timer(2.5, holder.execute, ["ROLLBACK"])
    let_go.start()
    try:
        proc = run_agtrace(["new", "--agent", "t"], store, timeout=120)
    finally:
        let_go.join()
        holder.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().count("\n") == 1, proc.stderr  # said once
    assert b"catalog.db is held by another process" in proc.stderr and b"waiting up to 30 s" in proc.stderr
    assert len(run_agtrace(["ls", "--json"], store, check=True).stdout.decode().split('"id"')) == 3


# -- what a test cannot provoke for real: the mapping itself --------------------------------------


def _mapped(exc: BaseException):
    from agtrace.cli.errors import map_error

    error = map_error(exc, "/store")
    return error.exit_code, error.format_message()


@pytest.mark.parametrize("exc, expect", [
    (OSError(errno.ENOSPC, "No space left on device", "/store/runs/x/events"), "free some space"),
    (OSError(errno.EACCES, "Permission denied", "/store/catalog.db"), "check the permissions of /store/catalog.db"),
    (OSError(errno.EROFS, "Read-only file system", "/store"), "read-only"),
    (OSError(errno.EIO, "Input/output error", "/store/runs/x"), "check the disk"),
    (OSError(errno.EMFILE, "Too many open files"), "ulimit -n"),
    (sqlite3.OperationalError("disk I/O error"), "check the disk"),
    (sqlite3.OperationalError("database is locked"), "locked by another agtrace process"),
    (sqlite3.DatabaseError("database disk image is malformed"), "agtrace reindex"),
    (MemoryError(), "out of memory"),
    (ValueError("boom"), "internal error (ValueError: boom)"),
])
def test_the_mapping_of_failures_tests_cannot_provoke(exc, expect):
    exit_code, message = _mapped(exc)
    assert exit_code == 1 and expect in message, message


def test_debug_shows_the_traceback_of_a_bug(tmp_path):
    store = tmp_path / "s"
    (store / "catalog.db").mkdir(parents=True)
    proc = run_agtrace(["ls"], store, env={"AGTRACE_DEBUG": "1"})
    assert proc.returncode != 0 and b"Traceback" in proc.stderr


def test_json_errors_keep_stdout_clean(tmp_path):
    store = tmp_path / "s"
    _new_run(store)
    (store / "catalog.db").unlink()
    (store / "catalog.db").mkdir()  # (a damaged catalog file is rebuilt instead: no error)
    proc = run_agtrace(["ls", "--json"], store)
    assert proc.returncode == 1 and proc.stdout == b"" and proc.stderr.startswith(b"error: ")


@pytest.mark.slow
def test_a_part_the_run_does_not_have_is_bad_input_in_every_command(tmp_path):
    """The same bad part gives the same words and the same exit code (2, bad input) whichever
    command reads it: replay, cat, diff and report used to exit 1 where log, metrics and note
    exit 2 (note with words of its own, and only for a number). A part that exists but has no
    tree stays an exit 1 (the run lacks it)."""
    from agtrace.capture.recorder import Recorder
    from agtrace.eventlog import Store
    from agtrace.replay import NoSuchPart, PartNotFound
    from agtrace.replay.workspace import resolve_part

    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("one\n")
    store = Store(tmp_path / "s")
    with Recorder(store, workdir=work, agent="t") as rec:
        for n in (1, 2):
            call = rec.tool_call("shell", command=f"edit {n}")
            (work / "a.txt").write_text(f"{n}\n")
            rec.tool_result(call, output="", exit_code=0)
    with Recorder(store, agent="t") as bare:  # no workdir: parts without trees
        bare.message("assistant", "no repository here")
    with pytest.raises(NoSuchPart, match="has no part 9"):
        resolve_part(store, rec.run_id, part="9")
    assert issubclass(NoSuchPart, PartNotFound)
    store.close()

    run, out = rec.run_id, tmp_path / "out"
    commands = {
        "replay": lambda p: ["replay", run, "--part", p, "--out", str(out)],
        "replay --transcript": lambda p: ["replay", run, "--part", p, "--transcript"],
        "cat": lambda p: ["cat", run, "a.txt", "--part", p],
        "diff": lambda p: ["diff", run, "1", p],
        "report": lambda p: ["report", run, "--part", p, "-o", str(tmp_path / "r.html")],
        "log": lambda p: ["log", run, "--part", p],
        "metrics": lambda p: ["metrics", run, "--per-part", "--part", p],
        "note": lambda p: ["note", run, "--part", p, "a note"],
        "rescore": lambda p: ["rescore", run, "--name", "n", "--cmd", "true", "--parts", p],
    }
    for bad, says in {"9": f"run {run} has no part 9; it has parts 1..2", "x": "cannot read 'x' as parts"}.items():
        for name, argv in commands.items():
            err = _fails_cleanly(run_agtrace(argv(bad), tmp_path / "s"), says, exit_code=2)
            assert err.count("\n") == 1, (name, err)
    assert not out.exists()  # nothing was written for a part that is not there
    _fails_cleanly(run_agtrace(["replay", run, "--out", str(out)], tmp_path / "s"), "name a part", exit_code=2)
    negative = run_agtrace(["replay", run, "--at-seq", "-5", "--out", str(out)], tmp_path / "s")
    assert negative.returncode == 2 and b"-5 is not in the range" in negative.stderr  # was the base tree
    assert not out.exists()
    _fails_cleanly(run_agtrace(["replay", bare.run_id, "--part", "1", "--out", str(out)], tmp_path / "s"),
                   bare.run_id, exit_code=1)


def test_output_that_cannot_be_written_is_named_as_the_output(tmp_path):
    """`> /dev/full` (a full disk behind the redirection) is the output's failure, not the
    store's: the message says standard output, and no second error follows at exit."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    store = tmp_path / "s"
    run = _new_run(store)
    for args in (["show", run], ["log", run, "--json"], ["ls", "--json"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run([*AGTRACE, "--store", str(store), *args], stdout=full, stderr=subprocess.PIPE,
                                  timeout=120)
        err = _fails_cleanly(proc, "cannot write the output: No space left on device (standard output)",
                             exit_code=1)
        assert str(store) not in err and "Exception ignored" not in err, err


def test_a_page_written_to_what_is_no_regular_file_goes_into_it(tmp_path):
    """`report -o PATH` wrote a temp file beside PATH and renamed it over: `-o /dev/null` (as
    root) replaced the device with a regular file. A FIFO (safe to lose) shows it: it stays a
    FIFO and its reader gets the page. A symlink keeps pointing where it did. Only then (the
    fix holds) `-o /dev/full`: the device stays and the error names it and the full disk."""
    import stat
    import threading

    store = tmp_path / "s"
    run = _new_run(store)
    fifo = tmp_path / "page.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = run_agtrace(["report", run, "-o", str(fifo)], store, timeout=120)
    if proc.returncode != 0:  # the old code never opened the FIFO: let the reader go
        with open(fifo, "wb"):
            pass
    reader.join(30)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got and b"<html" in got[0][:500].lower(), got[:1]
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "real.html").write_text("old")
    (tmp_path / "link.html").symlink_to("real.html")
    run_agtrace(["report", run, "-o", str(tmp_path / "link.html")], store, check=True)
    assert os.readlink(tmp_path / "link.html") == "real.html"
    assert (tmp_path / "real.html").read_bytes() == got[0]
    if os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode):
        full = _fails_cleanly(run_agtrace(["report", run, "-o", "/dev/full"], store, timeout=120),
                              "cannot write the page to /dev/full: No space left on device", exit_code=1)
        assert str(store) not in full, full
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "/dev/full was replaced"


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """`agtrace log RUN | head -1`: the reader closes the pipe; agtrace exits 0 and says nothing."""
    store = tmp_path / "s"
    run = _new_run(store)
    lines = b"".join(b'{"kind": "message_added", "role": "assistant", "text": "%d %s"}\n' % (i, b"x" * 200)
                     for i in range(2000))
    run_agtrace(["append", run], store, input=lines, check=True)
    proc = subprocess.Popen([*AGTRACE, "--store", str(store), "log", run], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()  # well before the 2,000 events' ~500 KB are written
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (0, b"")


TEXT = "café → 中文 … 😀"
"""Characters a Latin-1 (or ASCII) terminal cannot show all of: agtrace's own `…`, `→` and data."""


def _run_with_parts(store, parts: int = 3, pad: int = 0) -> str:
    """A run of ``parts`` parts, each a message holding :data:`TEXT` (``pad`` more characters)."""
    run = run_agtrace(["new", "--agent", "t", "--task", f"{TEXT} " + "x" * 120], store, check=True).stdout.decode()
    run = run.strip()
    import json

    lines = "".join(json.dumps({"kind": "message_added", "role": "assistant", "text": f"{i} needle {TEXT} " + "y" * pad,
                                "part": i}) + "\n" + json.dumps({"kind": "part_ended", "part": i, "part_kind": "turn",
                                                                  "title": f"step {i} {TEXT}"}) + "\n"
                    for i in range(1, parts + 1))
    run_agtrace(["append", run], store, input=lines.encode(), check=True)
    return run


def _latin1_locale(tmp_path) -> dict | None:
    """The environment of a real ISO-8859-1 locale compiled into ``tmp_path`` (None: no localedef)."""
    import shutil

    if shutil.which("localedef") is None:
        return None
    loc = tmp_path / "loc"
    loc.mkdir()
    made = subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / "en_US.ISO-8859-1")],
                          capture_output=True, timeout=120)
    if made.returncode not in (0, 1) or not (loc / "en_US.ISO-8859-1").exists():  # 1: warnings only
        return None
    env = {"LOCPATH": str(loc), "LC_ALL": "en_US.ISO-8859-1", "PYTHONIOENCODING": ""}
    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdout.encoding)"], capture_output=True,
                           env={**os.environ, **env}, timeout=60)
    return env if probe.stdout.decode().strip().lower().replace("_", "-") in ("iso8859-1", "iso-8859-1", "latin-1") \
        else None


def _env_cases(tmp_path) -> list[tuple[str, dict, str]]:
    """(name, environment, the encoding stdout is written in) of terminals that are not UTF-8."""
    cases = [("PYTHONIOENCODING=latin-1", {"PYTHONIOENCODING": "latin-1"}, "latin-1"),
             ("PYTHONIOENCODING=ascii", {"PYTHONIOENCODING": "ascii"}, "utf-8")]  # ASCII: taken for UTF-8 (click)
    locale = _latin1_locale(tmp_path)
    if locale is not None:
        cases.insert(0, ("LC_ALL=en_US.ISO-8859-1", locale, "latin-1"))
    return cases


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_a_terminal_that_is_not_utf8_gets_the_output_not_an_internal_error(tmp_path):
    """An ISO-8859-1 locale (compiled for real with localedef), PYTHONIOENCODING=latin-1 or ascii:
    show, log, log --json, replay --transcript, metrics --per-part, search and ls (more than 20
    runs: its "… N more" line) printed part of the output, then "internal error
    (UnicodeEncodeError …)", exit 1. Now: exit 0, what the terminal cannot show as an ASCII
    fallback (`...`, `->`) or a backslash escape, and JSON that stays valid and the same data."""
    import json

    store = tmp_path / "s"
    run = _run_with_parts(store)
    for _ in range(20):
        _new_run(store)
    cases = _env_cases(tmp_path)
    assert len(cases) >= 2
    if not any(name.startswith("LC_ALL") for name, _, _ in cases):
        print("no ISO-8859-1 locale could be compiled (localedef missing): PYTHONIOENCODING only")
    commands = [["show", run], ["log", run], ["log", run, "--part", "2"], ["replay", run, "--part", "2", "--transcript"],
                ["replay", run, "--transcript"], ["metrics", run, "--per-part"], ["metrics", run, "--per-part", "--csv"],
                ["search", "needle"], ["ls"], ["show", run, "--parts"]]
    for name, env, encoding in cases:
        for args in commands:
            proc = run_agtrace(args, store, env=env)
            assert proc.returncode == 0 and proc.stderr == b"", (name, args, proc.stderr.decode())
            text = proc.stdout.decode(encoding)
            assert text.strip(), (name, args)
            if encoding == "latin-1" and args[0] != "ls":  # what Latin-1 can show stays; the rest: a fallback
                assert "\ufffd" not in text and ("café" in text or "caf\\xe9" in text), (name, args, text[:300])
        more = run_agtrace(["ls"], store, env=env).stdout.decode(encoding)
        assert ("... 1 more (of 21)" if encoding == "latin-1" else "… 1 more (of 21)") in more, (name, more)
        for args in (["log", run, "--json"], ["replay", run, "--transcript", "--json"], ["show", run, "--json"],
                     ["ls", "--json"], ["search", "needle", "--json"]):
            proc = run_agtrace(args, store, env=env)
            assert proc.returncode == 0 and proc.stderr == b"", (name, args, proc.stderr.decode())
            if encoding == "latin-1":
                assert proc.stdout.isascii(), (name, args)  # \u escapes: valid JSON in any encoding
            lines = [json.loads(line) for line in proc.stdout.decode(encoding).splitlines()]
            assert args[0] == "ls" or TEXT in json.dumps(lines, ensure_ascii=False), (name, args)
        events = [json.loads(line) for line in run_agtrace(["log", run, "--json"], store, env=env).stdout.splitlines()]
        assert [e["text"] for e in events if e["kind"] == "message_added"] == [f"{i} needle {TEXT} " for i in (1, 2, 3)]


def _pipe_closed_early(args: list[str], store) -> tuple[int, bytes]:
    proc = subprocess.Popen([*AGTRACE, "--store", str(store), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()  # well before the output (> 64 KB, a pipe's buffer) is written
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_transcript_and_csv_output_failures_are_the_outputs_not_the_stores(tmp_path):
    """`replay --transcript | head -1` and `metrics --per-part --csv | head -1` said "Broken pipe:
    <store> … check the path", exit 1; `> /dev/full` said the store's disk is full. Their
    writers (``sys.stdout.write``, ``csv``) hold no stream in the frame that raised, which was how
    stdout was told apart. Now: a reader that stops early is exit 0 and silence, a full output
    is "cannot write the output: … (standard output)", for these as for `log`."""
    store = tmp_path / "s"
    run = _run_with_parts(store, parts=1000, pad=150)
    commands = [["replay", run, "--transcript"], ["replay", run, "--transcript", "--json"],
                ["metrics", run, "--per-part", "--csv"], ["log", run]]
    for args in commands:
        assert _pipe_closed_early(args, store) == (0, b""), args
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    for args in commands:
        with open("/dev/full", "wb") as full:
            proc = subprocess.run([*AGTRACE, "--store", str(store), *args], stdout=full, stderr=subprocess.PIPE,
                                  timeout=120)
        err = _fails_cleanly(proc, "cannot write the output: No space left on device (standard output)",
                             exit_code=1)
        assert str(store) not in err and "Exception ignored" not in err, (args, err)




@pytest.mark.slow  # seconds of real processes; CI runs it
def test_closed_standard_streams_are_named_not_internal_errors(tmp_path):
    """`append ID <&-`, `rm ID <&-`, `log ID >&-` ended in "internal error (AttributeError …)";
    `ls >&-` dropped its output and exited 0. Now a closed stdout is "cannot write the output:
    standard output is closed" (exit 1) for every command that prints, a closed stdin is
    named to append (exit 2) and is not a terminal to rm (its refusal without --yes)."""
    store = tmp_path / "s"
    run = _run_with_parts(store)
    for args in (["log", run], ["ls"], ["ls", "--json"], ["show", run], ["metrics", run, "--per-part", "--csv"],
                 ["replay", run, "--transcript"], ["new", "--agent", "t"]):
        proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *AGTRACE, "--store", str(store), *args],
                              stderr=subprocess.PIPE, timeout=120)
        _fails_cleanly(proc, "cannot write the output: standard output is closed", exit_code=1)
    before = run_agtrace(["log", run, "--json"], store, check=True).stdout
    proc = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *AGTRACE, "--store", str(store), "append", run],
                          capture_output=True, timeout=120)
    _fails_cleanly(proc, "standard input is closed: pipe the events in", exit_code=2)
    proc = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *AGTRACE, "--store", str(store), "rm", run],
                          capture_output=True, timeout=120)
    _fails_cleanly(proc, "without --yes", exit_code=2)
    assert run_agtrace(["log", run, "--json"], store, check=True).stdout == before
    # a command that prints nothing on stdout works with it closed; its file never takes descriptor 1
    proc = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *AGTRACE, "--store", str(store), "append", run],
                          input=b'{"kind": "message_added", "role": "user", "text": "more"}\n', stderr=subprocess.PIPE,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b'"text":"more"' in run_agtrace(["log", run, "--json"], store, check=True).stdout
    assert run_agtrace(["verify", run], store).returncode == 0


@pytest.mark.parametrize("option,value", [
    ("--max-parts", "0"), ("--max-parts", "-3"), ("--timeout", "-1"), ("--timeout", "0"),
    ("--timeout", "nan"), ("--quiet-s", "-1"), ("--quiet-s", "nan"), ("--ship-interval", "0"),
    ("--max-file-bytes", "-1"),
])
def test_run_refuses_limits_that_are_not_positive(tmp_path, option, value):
    """`run --max-parts 0` (or -3) ran the agent and ended it at once as `limit`, "stopped after
    -3 parts"; `--timeout -1` as `timeout`; `--timeout nan` never timed out. Bad usage now: exit
    2, the option named, nothing run, no store made."""
    store = tmp_path / "store"
    marker = tmp_path / "ran"
    proc = run_agtrace(["run", "--workdir", str(tmp_path), option, value, "--", "touch", str(marker)], store)
    assert proc.returncode == 2, proc.stderr.decode()
    assert option in proc.stderr.decode() and b"Traceback" not in proc.stderr
    assert not marker.exists() and not store.exists()


@pytest.mark.parametrize("args,named", [
    (["--marker", ""], "--marker is empty"),
    (["--agent", "codex", "--marker", "^STEP"], "--marker only applies to --agent raw"),
    (["--agent", "claude-code", "--quiet-s", "2"], "--quiet-s only applies to --agent raw"),
    (["--agent", "opencode", "--marker", "^S", "--quiet-s", "2"], "--marker and --quiet-s only apply"),
])
def test_run_refuses_marker_options_that_would_do_nothing(tmp_path, args, named):
    """`run --marker ''` silently meant no marker, and `--marker`/`--quiet-s` with a structured
    `--agent` were silently ignored (its parts come from its records). Bad usage now: exit 2,
    the option named, nothing run, no store made."""
    store = tmp_path / "store"
    marker = tmp_path / "ran"
    proc = run_agtrace(["run", "--workdir", str(tmp_path), *args, "--", "touch", str(marker)], store)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert named in err and "Traceback" not in err
    assert not marker.exists() and not store.exists()


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_rescore_refuses_a_timeout_that_is_no_number_of_seconds(tmp_path, value):
    """`rescore --timeout nan` (or -1) was taken: a scorer never timed out, or at once. Bad usage
    now (exit 2, the option named), before any run is looked up or scored."""
    store = tmp_path / "store"
    proc = run_agtrace(["rescore", "--all", "--name", "t", "--cmd", "true", "--timeout", value], store)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "--timeout" in err and "Traceback" not in err and not store.exists()
