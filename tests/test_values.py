"""Values at the door: one record out of bounds is a located error for that record, never a
stored event that breaks other commands (issue 12, "One value poisons the whole store" and
"Integers beyond 64 bits lose events silently"). Through the real CLI: ``append`` and ``run``.
"""

from __future__ import annotations

import json
import sys

import pytest

from agtrace.eventlog import (
    INT_MAX,
    MAX_DEPTH,
    InvalidEvent,
    LineLogged,
    RawRecorded,
    RunStarted,
    Store,
    ToolCalled,
    Usage,
    UsageReported,
    check_record,
    codec,
    event_from_json,
)

from .conftest import run_agtrace


def _line(**fields) -> str:
    return json.dumps(fields)


GOOD = [_line(kind="line_logged", stream="stdout", text=f"good {i}") for i in range(3)]
TAIL = _line(kind="line_logged", stream="stdout", text="never read")


def _new(store_path, agent="t") -> str:
    return run_agtrace(["new", "--agent", agent], store_path, check=True).stdout.decode().strip()


def _kinds(store_path, run_id) -> list[str]:
    out = run_agtrace(["log", run_id, "--json"], store_path, check=True).stdout.decode().splitlines()
    return [json.loads(line)["kind"] for line in out]


def _deep(levels: int) -> str:
    """A tool_called line whose arguments nest ``levels`` arrays (the line's object is level 1)."""
    return '{"kind":"tool_called","call_id":"c","tool":"t","arguments":' + "[" * levels + "]" * levels + "}"


BAD_LINES = {
    "ts 2**63": _line(kind="line_logged", stream="stdout", text="late", ts=2**63),
    "negative ts": _line(kind="line_logged", stream="stdout", text="early", ts=-1),
    "part 2**64": _line(kind="line_logged", stream="stdout", text="p", part=2**64),
    "usage beyond 64 bits": _line(kind="usage_reported", usage={"input": 10**23}),
    "exit code 2**63": _line(kind="tool_returned", call_id="c", exit_code=2**63),
    "argument beyond 64 bits": _line(kind="tool_called", call_id="c", tool="t", arguments={"n": [1, 2**64]}),
    "2,000 levels deep": _deep(2000),
    f"{MAX_DEPTH} levels deep": _deep(MAX_DEPTH),
    "lone surrogate": '{"kind":"line_logged","stream":"stdout","text":"a\\ud800b"}',
    "not UTF-8": b'{"kind":"line_logged","stream":"stdout","text":"\xff"}'.decode("latin-1"),
}


def _encoded(case: str, body: str) -> bytes:
    return body.encode("latin-1") if case == "not UTF-8" else body.encode("utf-8", "surrogateescape")


@pytest.mark.slow
def test_append_refuses_a_value_out_of_bounds_with_its_line_and_keeps_the_lines_before(tmp_path):
    store_path = tmp_path / "store"
    other = _new(store_path, "other")
    runs = []
    for case, bad in BAD_LINES.items():
        run_id = _new(store_path)
        runs.append(run_id)
        proc = run_agtrace(["append", run_id], store_path, input=_encoded(case, "\n".join([*GOOD, bad, TAIL]) + "\n"))
        err = proc.stderr.decode()
        assert proc.returncode == 2, (case, err)
        assert err.startswith("error: line 4:") and "the 3 event(s) before line 4 are stored" in err, (case, err)
        assert "Traceback" not in err
        if case == "lone surrogate":  # msgspec's own words were "Input data was truncated"
            assert "not valid Unicode" in err and "(a lone surrogate)" in err, err
        assert _kinds(store_path, run_id) == ["run_started", "line_logged", "line_logged", "line_logged"], case
    # nothing stored breaks any other command, on these runs or another
    for args in (["ls"], ["show", other], ["show", runs[0]], ["metrics", runs[0]], ["reindex"], ["verify"]):
        done = run_agtrace(args, store_path)
        assert done.returncode == 0 and b"failed on seq" not in done.stderr, (args, done.stderr)
    listed = json.loads(run_agtrace(["ls", "--json"], store_path, check=True).stdout)
    assert {r["id"] for r in listed} == {other, *runs} and not any(r["projection_errors"] for r in listed)


def test_the_nesting_limit_is_inclusive():
    event, _ts, _part = event_from_json(_deep(MAX_DEPTH - 1))
    check_record(event, None, None)
    with pytest.raises(InvalidEvent, match=f"deeper than {MAX_DEPTH} levels"):
        check_record(event_from_json(_deep(MAX_DEPTH))[0], None, None)


def test_a_line_over_the_length_limit_is_refused_before_it_is_decoded(monkeypatch):
    monkeypatch.setattr(codec, "MAX_LINE_BYTES", 100)
    with pytest.raises(InvalidEvent, match=r"line 7: the line is 1\d\d bytes long, over the limit of 100"):
        event_from_json(_line(kind="line_logged", stream="stdout", text="x" * 100), 7)


def test_a_lone_surrogate_escape_is_named_not_called_truncated():
    for text in ("a\\ud800b", "a\\uDBFF"):
        with pytest.raises(InvalidEvent, match=r"line 4: not valid Unicode: .*\(a lone surrogate\)"):
            event_from_json('{"kind":"line_logged","stream":"stdout","text":"' + text + '"}', 4)
    event, _ts, _part = event_from_json('{"kind":"line_logged","stream":"stdout","text":"a\\ud83d\\ude00"}')
    assert event.text == "a\U0001F600"
    with pytest.raises(InvalidEvent, match="Input data was truncated"):  # a line that is cut stays so
        event_from_json('{"kind":"line_logged","stream":"std')


def test_the_checks_name_the_field():
    with pytest.raises(InvalidEvent, match=r"usage_reported: usage\.cache_read = 9223372036854775808 is out"):
        check_record(UsageReported(usage=Usage(cache_read=INT_MAX + 1)), None, None)
    with pytest.raises(InvalidEvent, match=r"tool_called: arguments\.a\[1\]\.b = -9223372036854775809"):
        check_record(ToolCalled(call_id="c", tool="t", arguments={"a": [0, {"b": -(2**63) - 1}]}), None, None)
    with pytest.raises(InvalidEvent, match="not valid Unicode"):
        check_record(LineLogged(stream="stdout", text="\ud800"), None, None, text=True)
    check_record(LineLogged(stream="stdout", text="\ud800"), None, None)  # left to the encoder
    check_record(UsageReported(usage=Usage(input=INT_MAX)), INT_MAX, INT_MAX)


def test_an_event_the_encoder_cannot_store_becomes_an_error_at_its_seq(store):
    """A text the limits let through to the writer (a lone surrogate) never kills a batch: the
    event is stored as an error saying what was lost, the other events and the seqs are kept."""
    writer = store.create_run(RunStarted(agent="t"))
    for text in ("one", "a\ud800b", "three"):
        writer.append(LineLogged(stream="stdout", text=text))
    store.close_writer(writer)
    recs = list(store.read(writer.run_id))
    assert [r.seq for r in recs] == [1, 2, 3, 4]
    assert [getattr(r.event, "text", None) for r in recs[1:]] == ["one", None, "three"]
    assert recs[2].kind == "error_occurred" and "could not be stored (UnicodeEncodeError" in recs[2].event.message
    assert store.verify().ok


CODEX_HEAD = ['{"type":"thread.started","thread_id":"t"}', '{"type":"turn.started"}',
              '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"hi"}}']


@pytest.mark.parametrize("bad, why", [
    ('{"type":"turn.completed","usage":{"input_tokens":100000000000000000000000,"output_tokens":2}}',
     "out of range"),
    ('{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"a\\ud800"}}', "not valid Unicode"),
    ('{"type":"item.completed","item":' + "[" * 2000 + "]" * 2000 + "}", "nested deeper"),
])
def test_capture_keeps_an_out_of_bounds_record_raw_with_its_error_and_goes_on(tmp_path, bad, why):
    work = tmp_path / "work"
    work.mkdir()
    lines = [*CODEX_HEAD, bad, '{"type":"item.completed","item":{"id":"i3","type":"agent_message","text":"after"}}',
             '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":2}}']
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, flush=True)\n"
    proc = run_agtrace(["run", "--agent", "codex", "--workdir", str(work), "--json", "--",
                        sys.executable, "-c", script, *lines], tmp_path / "store")
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert summary["status"] == "completed"
    with Store(tmp_path / "store") as store:
        recs = list(store.read(summary["run_id"]))
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        raws = [r.event for r in recs if isinstance(r.event, RawRecorded) and r.event.parse_error]
        assert len(raws) == 1 and why in raws[0].parse_error and raws[0].location == "stdout:4", raws
        texts = [r.event.text for r in recs if r.kind == "message_added"]
        assert texts == ["hi", "after"]
        assert store.verify().ok
    assert run_agtrace(["metrics", summary["run_id"]], tmp_path / "store").returncode == 0


def test_import_reports_a_record_out_of_bounds_at_its_location_and_imports_the_rest(tmp_path):
    from .conftest import FIXTURES

    src = sorted((FIXTURES / "codex-rollout").glob("*.jsonl"))[0]
    lines = src.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if '"last_token_usage"' in line)
    record = json.loads(lines[at])
    record["payload"]["info"]["last_token_usage"]["input_tokens"] = 10**23
    record["payload"]["info"]["total_token_usage"]["input_tokens"] = 10**23
    lines[at] = json.dumps(record)
    (tmp_path / "in").mkdir()
    bad = tmp_path / "in" / src.name
    bad.write_text("\n".join(lines) + "\n")
    store_path = tmp_path / "store"

    proc = run_agtrace(["import", str(bad)], store_path)

    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert f"skipped {bad.name}:{at + 1}: usage_reported: usage.input = " in err and "out of range" in err, err
    with Store(store_path) as store:
        (run_id,) = store.run_ids()
        assert store.verify().ok
        assert store.info(run_id).parts > 0
    for args in (["ls"], ["metrics", run_id], ["reindex"]):
        done = run_agtrace(args, store_path)
        assert done.returncode == 0 and b"failed on seq" not in done.stderr, (args, done.stderr)


def test_import_reports_a_line_nested_2000_deep_as_a_bad_record(tmp_path):
    from .conftest import FIXTURES

    src = sorted((FIXTURES / "codex-rollout").glob("*.jsonl"))[0]
    lines = src.read_text().splitlines()
    lines.insert(3, '{"type":"event_msg","payload":' + "[" * 2000 + "]" * 2000 + "}")
    (tmp_path / "in").mkdir()
    bad = tmp_path / "in" / src.name
    bad.write_text("\n".join(lines) + "\n")

    proc = run_agtrace(["import", str(bad)], tmp_path / "store")

    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert f"skipped {bad.name}:4: invalid JSON: nested deeper" in err, err
    with Store(tmp_path / "store") as store:
        (run_id,) = store.run_ids()
        assert store.info(run_id).parts > 0 and store.verify().ok
