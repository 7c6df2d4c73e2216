"""The import tolerance contract (docs/import.md "Tolerance"): record types known per format
version, unknown records kept raw and counted (a warning, exit 0), malformed records an error
with their location, detection that reads until a decisive record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agtrace.capture import IMPORTERS
from agtrace.capture.adapter import unknown_warning
from agtrace.capture.adapters.base import JsonLineAdapter
from agtrace.capture.importers import (
    DETECT_RECORDS,
    ImportContext,
    import_source,
    known_types,
    sniff_json_lines,
    version_key,
)
from agtrace.capture.importers.transcript import Transcript, json_lines
from agtrace.eventlog import ErrorOccurred, RawRecorded, RunEnded, RunStarted, Store

from .conftest import FIXTURES, run_agtrace

KNOWN = {
    "*": frozenset({"a"}),
    "1.2": frozenset({"a", "b"}),
    "1.10": frozenset({"a", "b", "c"}),
}


def test_version_key_orders_numerically_and_ignores_prereleases():
    assert version_key("0.104.0-alpha.1") == (0, 104, 0)
    assert version_key("v1") == (1,)
    assert version_key("2.1.329") < version_key("2.1.1000")
    assert version_key("latest") is None


def test_known_types_take_the_newest_listed_version_not_newer_than_the_source():
    assert known_types(KNOWN, "1.2.0") == {"a", "b"}
    assert known_types(KNOWN, "1.9.7") == {"a", "b"}
    assert known_types(KNOWN, "1.10") == {"a", "b", "c"}
    assert known_types(KNOWN, "7.0") == {"a", "b", "c"}  # a newer tool keeps the newest set
    assert known_types(KNOWN, "1.1") == {"a"}  # older than every listed version
    assert known_types(KNOWN, "") == {"a"}  # the source does not say
    assert known_types(KNOWN, "nightly") == {"a"}
    assert known_types({"*": frozenset({"x"})}, "3.0") == {"x"}


def test_sniff_reads_past_bookkeeping_until_a_decisive_record(tmp_path):
    path = tmp_path / "s.jsonl"
    lines = [json.dumps({"type": "queue-operation"})] * 40 + ["{torn", json.dumps({"type": "user"})]
    path.write_text("\n".join(lines) + "\n")

    def decide(rec):
        return True if rec.get("type") == "user" else None

    assert sniff_json_lines(path, decide)
    assert not sniff_json_lines(path, decide, max_records=10)  # undecided within the bound
    assert not sniff_json_lines(tmp_path, decide)  # a directory is not a JSON-lines source
    assert DETECT_RECORDS >= 200


class _Demo:
    """A tiny JSON-lines format for the test: ``{"type": ..., "text": ...}`` per line."""

    name = "demo-lines"
    known = {"*": frozenset({"say"}), "2": frozenset({"say", "shout"})}

    def detect(self, path: Path) -> bool:
        return sniff_json_lines(path, lambda rec: "type" in rec or None)

    def read(self, path: Path, ctx: ImportContext) -> None:
        records = list(json_lines(path))
        version = next((str(r["version"]) for _, _, r, _ in records if r and "version" in r), "")
        started = RunStarted(agent="demo", source=f"import:{self.name}", source_version=version)
        sink = ctx.new_run(f"demo:{path.name}", started, 1)
        t = Transcript(sink, self.name, 1, types=known_types(self.known, version))
        for n, text, rec, err in records:
            t.raw(text, f"{path.name}:{n}", err)
            if err:
                continue
            if not isinstance(rec.get("type"), str):
                t.bad("a record without a type")
                continue
            if t.knows(rec["type"]):
                t.message_part("assistant", str(rec.get("text") or ""))
        t.end("completed")


def _lines(path: Path, *records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_unknown_records_are_kept_raw_counted_and_not_errors(store, tmp_path):
    path = _lines(tmp_path / "v1.jsonl", {"type": "say", "text": "hi", "version": "1.0"},
                  {"type": "shout", "text": "HI"}, {"type": "whisper"}, {"type": "shout"})
    result = import_source(store, path, _Demo())
    assert result.error == "" and result.bad_records == []
    assert result.unknown == {"shout": 2, "whisper": 1}
    assert result.unknown_at == {"shout": "v1.jsonl:2", "whisper": "v1.jsonl:3"}
    assert "3 records of types unknown to the demo-lines importer" in result.warning()
    records = list(store.read(result.runs[0]))
    assert records[0].event.source_version == "1.0"
    assert [r.event.location for r in records if isinstance(r.event, RawRecorded)] == [
        f"v1.jsonl:{n}" for n in range(1, 5)]
    assert not [r for r in records if isinstance(r.event, ErrorOccurred)]
    assert isinstance(records[-1].event, RunEnded)


def test_the_source_version_picks_the_known_set(store, tmp_path):
    path = _lines(tmp_path / "v2.jsonl", {"type": "say", "version": "2.3"}, {"type": "shout"})
    result = import_source(store, path, _Demo())
    assert result.unknown == {}


def test_malformed_records_stay_errors_with_their_location(store, tmp_path):
    path = _lines(tmp_path / "bad.jsonl", {"type": "say"}, "{not json", {"type": 3}, {"type": "x"})
    result = import_source(store, path, _Demo())
    assert [(b.location, b.message.split(":")[0]) for b in result.bad_records] == [
        ("bad.jsonl:2", "invalid JSON"), ("bad.jsonl:3", "a record without a type")]
    assert result.unknown == {"x": 1}


def test_adapters_count_unknown_record_types_for_the_end_of_run_warning():
    class Demo(JsonLineAdapter):
        name = "demo.json"
        known = {"*": frozenset({"ok"})}

        def handle(self, rec):
            return [] if self.knows(rec["type"]) else self.unknown(rec["type"])

    adapter = Demo(clock=lambda: 0)
    emits = [e for line in ('{"type": "ok"}', '{"type": "new"}', '{"type": "new"}')
             for e in adapter.feed(line, "stdout")]
    assert emits == []  # no parse error, no event: the recorder keeps the lines raw
    assert adapter.state.unknown == {"new": 2}
    assert adapter.take_unknown() == ["new", "new"] and adapter.take_unknown() == []
    assert unknown_warning(adapter.state.unknown, "demo.json adapter").startswith(
        "2 records of types unknown to the demo.json adapter kept raw")


def test_agtrace_run_keeps_an_unknown_live_record_raw_and_warns_at_the_end(tmp_path):
    """A live Codex stream with a record type no Codex wrote yet: the run completes (exit 0),
    the line is stored raw without a parse error, and the end of the run warns about it."""
    import subprocess
    import sys

    from agtrace.eventlog import Store

    from .conftest import run_agtrace

    lines = [{"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"},
             {"type": "brand.new_record", "what": "a newer codex"},
             {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "hi"}},
             {"type": "item.completed", "item": {"id": "i2", "type": "hologram", "x": 1}},
             {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}}]
    agent = tmp_path / "agent.py"
    agent.write_text("import json\n" + "".join(f"print(json.dumps({r!r}), flush=True)\n"
                                                for r in lines))
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    proc = run_agtrace(["run", "--agent", "codex", "--workdir", str(work), "--json", "-q", "--",
                        sys.executable, str(agent)], tmp_path / "store",
                       env={"CODEX_HOME": str(tmp_path / "codex-home")})
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().splitlines()[-1])
    assert summary["status"] == "completed"
    rollout, warning = summary["warnings"]  # this fake Codex writes no rollout either
    assert "the rollout of Codex thread t1 was not found" in rollout
    assert "2 records of types unknown to the codex.exec_json adapter" in warning
    assert "brand.new_record ×1" in warning and "item/hologram ×1" in warning
    assert "warning:" in proc.stderr.decode()
    with Store(tmp_path / "store") as store:
        raws = [r.event for r in store.read(summary["run_id"]) if isinstance(r.event, RawRecorded)]
    assert len(raws) == len(lines) and not any(r.parse_error for r in raws)


# -- values no event can carry (NaN, infinities, times past 2262) -------------------------------
# Golden fixtures with one value mutated; the rest of the source must import as before.

_MARK = "@@hostile@@"
_TIME_CASES = {"nan": "NaN", "1e400": "1e400", "year3000": '"3000-01-01T00:00:00Z"',
               "huge": "1" + "0" * 30}
_SOURCES = {  # format: (fixture, record index to mutate: a JSON line, or the n-th timestamp found)
    "claude-session": ("claude-code/daaain_representative_messages.jsonl", 2),
    "codex-rollout": ("codex-rollout/localpush_rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl", 5),
    "opencode-run": ("opencode/noldor_run-format-json_opencode-1.17.20.ndjson", 1),
    "openhands": ("openhands/trajs_basic.json", 1),
    "inspect": ("inspect/demo_mockllm_local_sandbox.json", 3),
}


def _set_nth(obj, keys: tuple[str, ...], n: int, seen: list) -> bool:
    """Set the ``n``-th value (depth first) of a key in ``keys`` to the marker."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        if k in keys and not isinstance(v, dict | list):
            seen.append(k)
            if len(seen) > n:
                obj[k] = _MARK
                return True
        elif _set_nth(v, keys, n, seen):
            return True
    return False


def _mutated(tmp_path: Path, fmt: str, keys: tuple[str, ...], literal: str, n: int | None = None) -> Path:
    """A copy of ``fmt``'s fixture with one value of a key in ``keys`` replaced by ``literal``
    (JSON text as a newer or broken writer could produce it: ``NaN``, ``1e400``, …)."""
    name, at = _SOURCES[fmt]
    n = at if n is None else n
    src = FIXTURES / name
    text = src.read_text()
    if src.suffix == ".json":
        doc = json.loads(text)
        assert _set_nth(doc, keys, n, [])
        out = json.dumps(doc)
    else:
        lines = text.split("\n")
        i = next(i for i, line in enumerate(lines) if i >= n and line.strip()
                 and _set_nth(rec := json.loads(line), keys, 0, []))
        lines[i] = json.dumps(rec)
        out = "\n".join(lines)
    path = tmp_path / f"{fmt}-{literal[:8].strip(chr(34))}{src.suffix}"
    path.write_text(out.replace(json.dumps(_MARK), literal))
    return path


def _kinds(store, run_id: str) -> list[str]:
    return [type(r.event).__name__ for r in store.read(run_id)]


@pytest.mark.parametrize("fmt", sorted(_SOURCES))
@pytest.mark.parametrize("case", sorted(_TIME_CASES))
def test_a_time_no_event_can_carry_is_ignored_for_its_record_only(store, tmp_path, fmt, case):
    with Store(tmp_path / "good") as s:
        good = import_source(s, FIXTURES / _SOURCES[fmt][0], IMPORTERS[fmt])
        expected = [_kinds(s, r) for r in good.runs]
    path = _mutated(tmp_path, fmt, ("timestamp",), _TIME_CASES[case])
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "", result.error
    assert result.bad_records == []
    assert result.ignored_times == 1 and path.name in result.ignored_time_at, result.ignored_time_at
    assert "a time no event can carry" in result.warning()
    got = [_kinds(store, r) for r in result.runs]
    assert got == expected  # every raw record and parsed event, run_ended too, as without it
    assert all(0 <= r.ts < 4_102_444_800 * 10**9 for run in result.runs for r in store.read(run))


@pytest.mark.parametrize("fmt", ["claude-session", "codex-rollout", "opencode-run", "openhands", "inspect"])
@pytest.mark.parametrize("literal", ["NaN", "1e400", "-Infinity"])
def test_a_token_count_that_is_no_finite_number_counts_0(store, tmp_path, fmt, literal):
    keys = ("output_tokens", "completion_tokens", "output")
    path = _mutated(tmp_path, fmt, keys, literal, {"openhands": 0, "inspect": 7}.get(fmt))
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == [], result.error or result.bad_records
    assert result.runs and "RunEnded" in _kinds(store, result.runs[0])


def test_an_integer_beyond_64_bits_in_an_inspect_config_is_kept_as_text(store, tmp_path):
    doc = json.loads((FIXTURES / _SOURCES["inspect"][0]).read_text())
    doc["eval"]["model_args"] = {"seed": 10**30, "custom_outputs": [1, 2]}
    path = tmp_path / "bigseed.json"
    path.write_text(json.dumps(doc))
    result = import_source(store, path, IMPORTERS["inspect"])
    assert result.error == "" and result.runs, result.error
    started = next(iter(store.read(result.runs[0]))).event
    assert started.config["model_args"] == {"seed": str(10**30), "custom_outputs": [1, 2]}


def test_import_of_a_far_future_time_reports_its_line_and_exits_0(tmp_path):
    path = _mutated(tmp_path, "codex-rollout", ("timestamp",), '"3000-01-01T00:00:00.000Z"')
    proc = run_agtrace(["import", str(path)], tmp_path / "store")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "skipped" not in err and "Traceback" not in err
    assert (f"1 record had a time no event can carry, ignored (imported at the time of the record "
            f"before): first {path.name}:6: timestamp '3000-01-01T00:00:00.000Z' is after the year 2262") in err, err


def test_a_new_codex_record_type_whose_payload_is_no_object_is_unknown_not_bad(tmp_path):
    src = FIXTURES / _SOURCES["codex-rollout"][0]
    lines = src.read_text().split("\n")
    new = []
    for kind, payload in (("new_kind", "a string payload"), ("new_list", [1, 2]), ("new_bare", None)):
        rec = json.loads(lines[2])
        rec["type"] = kind
        if payload is None:
            del rec["payload"]
        else:
            rec["payload"] = payload
        new.append(json.dumps(rec))
    path = tmp_path / "rollout-newer.jsonl"
    path.write_text("\n".join(lines[:3] + new + lines[3:]))
    store = tmp_path / "store"

    proc = run_agtrace(["import", "--json", str(path)], store)

    assert proc.returncode == 0, proc.stderr.decode()
    [result] = json.loads(proc.stdout)
    assert result["bad_records"] == []
    assert result["unknown"] == {"new_bare": 1, "new_kind": 1, "new_list": 1}
    assert result["unknown_at"]["new_kind"] == f"{path.name}:4"
    with Store(store) as s:
        kinds = _kinds(s, result["runs"][0])
    assert kinds.count("RawRecorded") == len([line for line in lines if line.strip()]) + 3
    assert kinds[-1] == "RunEnded"

    known = json.loads(lines[2])  # a type the importer reads still needs an object payload
    known["payload"] = "a string"
    bad = tmp_path / "rollout-bad.jsonl"
    bad.write_text("\n".join(lines[:3] + [json.dumps(known)] + lines[3:]))
    proc = run_agtrace(["import", str(bad)], store)
    assert proc.returncode == 1
    assert f"skipped {bad.name}:4: not a rollout line (type {known['type']!r}, payload str)" in proc.stderr.decode()


# -- counters that are no number (retries, tests passed/total, tokens sent) ----------------------
# Each sample is a golden fixture with one counter set to what a newer or broken writer could
# write; the counter counts 0 and the import warns with the record's location (docs/import.md).

_COUNTER_LITERALS = ["Infinity", "NaN", "1e400", '"three"']


def _claude_api_error(tmp_path: Path, literal: str) -> Path:
    """claude-code/daaain_dag_compact_after_rewind.jsonl (daaain/claude-code-log
    test/test_data/dag_compact_after_rewind.jsonl, see fixtures/SOURCES.md) with a
    ``system/api_error`` record after line 2, built from that file's own system record (line
    with ``compact_boundary``), its ``retryAttempt`` set to ``literal``."""
    src = FIXTURES / "claude-code/daaain_dag_compact_after_rewind.jsonl"
    lines = src.read_text().split("\n")
    system = json.loads(next(line for line in lines if '"compact_boundary"' in line))
    system.update(subtype="api_error", uuid="api-err-1", error={"message": "overloaded"}, retryAttempt=_MARK)
    for key in ("content", "compactMetadata", "logicalParentUuid"):
        system.pop(key, None)
    lines.insert(2, json.dumps(system).replace(json.dumps(_MARK), literal))
    path = tmp_path / "claude-api-error.jsonl"
    path.write_text("\n".join(lines))
    return path


def _inspect_retries(tmp_path: Path, literal: str) -> Path:
    """inspect/demo_mockllm_local_sandbox.json (an Inspect log of agtrace's own demo task, see
    fixtures/SOURCES.md) with ``retries`` set to ``literal`` on the first model event."""
    doc = json.loads((FIXTURES / "inspect/demo_mockllm_local_sandbox.json").read_text())
    event = next(e for s in doc["samples"] for e in s["events"] if e.get("event") == "model")
    event["retries"] = _MARK
    path = tmp_path / "inspect-retries.json"
    path.write_text(json.dumps(doc).replace(json.dumps(_MARK), literal))
    return path


def _swe_tokens_sent(tmp_path: Path, literal: str) -> Path:
    """swe-agent/swe-agent__test-repo-i1.traj (SWE-agent/SWE-agent tests/test_data/trajectories/…,
    see fixtures/SOURCES.md) with ``info.model_stats.tokens_sent`` (52861) set to ``literal``."""
    doc = json.loads((FIXTURES / "swe-agent/swe-agent__test-repo-i1.traj").read_text())
    doc["info"]["model_stats"]["tokens_sent"] = _MARK
    path = tmp_path / "swe-tokens-sent.traj"
    path.write_text(json.dumps(doc).replace(json.dumps(_MARK), literal))
    return path


_COUNTER_SAMPLES = {  # format: (build the sample, where the warning must point)
    "claude-session": (_claude_api_error, "claude-api-error.jsonl:3"),
    "inspect": (_inspect_retries, "inspect-retries.json"),
    "swe-agent": (_swe_tokens_sent, "swe-tokens-sent.traj"),
}


@pytest.mark.parametrize("fmt", sorted(_COUNTER_SAMPLES))
@pytest.mark.parametrize("literal", _COUNTER_LITERALS)
def test_a_counter_that_is_no_number_counts_0_with_a_warning(store, tmp_path, fmt, literal):
    build, where = _COUNTER_SAMPLES[fmt]
    path = build(tmp_path, literal)
    result = import_source(store, path, IMPORTERS[fmt])
    assert result.error == "" and result.bad_records == [], result.error or result.bad_records
    assert result.runs and "RunEnded" in _kinds(store, result.runs[0])
    assert result.ignored_counts == 1, result.warning()
    assert result.ignored_count_at.startswith(where), result.ignored_count_at
    assert "a count that is no number, counted 0" in result.warning()


def test_a_null_counter_is_absent_and_no_warning(store, tmp_path):
    path = _swe_tokens_sent(tmp_path, "null")
    result = import_source(store, path, IMPORTERS["swe-agent"])
    assert result.error == "" and result.runs and result.ignored_counts == 0 and result.warning() == ""


def test_import_of_a_counter_that_is_no_number_names_its_record_and_exits_0(tmp_path):
    path = _swe_tokens_sent(tmp_path, "Infinity")
    proc = run_agtrace(["import", str(path)], tmp_path / "store")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "could not be imported" not in err
    assert (f"1 record had a count that is no number, counted 0: first {path.name} info.model_stats: "
            "tokens_sent inf") in err, err
    proc = run_agtrace(["import", "--json", str(path)], tmp_path / "store2")
    assert proc.returncode == 0
    (row,) = json.loads(proc.stdout)["sources"] if "sources" in json.loads(proc.stdout) else json.loads(proc.stdout)
    assert row["ignored_counts"] == 1 and row["ignored_count_at"].startswith(path.name)
