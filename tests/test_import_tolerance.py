"""The import tolerance contract (docs/import.md "Tolerance"): record types known per format
version, unknown records kept raw and counted (a warning, exit 0), malformed records an error
with their location, detection that reads until a decisive record."""

from __future__ import annotations

import json
from pathlib import Path

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
from agtrace.eventlog import ErrorOccurred, RawRecorded, RunEnded, RunStarted

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
                        sys.executable, str(agent)], tmp_path / "store")
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout.decode().splitlines()[-1])
    assert summary["status"] == "completed"
    (warning,) = summary["warnings"]
    assert "2 records of types unknown to the codex.exec_json adapter" in warning
    assert "brand.new_record ×1" in warning and "item/hologram ×1" in warning
    assert "warning:" in proc.stderr.decode()
    with Store(tmp_path / "store") as store:
        raws = [r.event for r in store.read(summary["run_id"]) if isinstance(r.event, RawRecorded)]
    assert len(raws) == len(lines) and not any(r.parse_error for r in raws)
