"""Annotations after the fact: `agtrace tag` and `agtrace note` append events, never edit; tags
from `tag` and from `run_started` are one field, so one filter serves both."""

from __future__ import annotations

import json

from agtrace.eventlog import (
    MessageAdded,
    PartEnded,
    RunEnded,
    RunStarted,
    Store,
    add_note,
    run_notes,
    tag_run,
)

from .conftest import run_agtrace


def _run(store: Store, tags: dict[str, str], ts: int) -> str:
    w = store.create_run(RunStarted(agent="a", tags=tags), durability="off", ts=ts)
    w.append(MessageAdded(role="assistant", text="hi"), part=1)
    w.append(PartEnded(part_kind="message"), part=1)
    w.append(RunEnded(status="completed"))
    store.close_writer(w)
    return w.run_id


def _event_bytes(store: Store, run_id: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((store.run_dir(run_id) / "events").iterdir()))


def test_tags_and_notes_are_new_events_laid_over_run_started(tmp_path):
    store = Store(tmp_path)
    a = _run(store, {"campaign": "c1", "stage": "draft"}, 10**18)
    b = _run(store, {"campaign": "c2"}, 10**18 + 10**9)
    events_before = _event_bytes(store, a)
    tag_run(store, a, {"verdict": "good", "campaign": "c9"}, ["stage"], author="ann")
    add_note(store, a, "reward hacking here", 1, author="ann")
    add_note(store, a, "whole run looks fine")
    assert _event_bytes(store, a) == events_before  # never an edit of the events
    assert store.info(a).tags == {"campaign": "c9", "verdict": "good"}
    assert {r.id: r.tags for r in store.runs()}[b] == {"campaign": "c2"}
    kinds = [r.kind for r in store.read(a, stream="scores")]
    assert kinds == ["run_tagged", "note_added", "note_added"]
    notes = run_notes(store, a)
    assert [(n["part"], n["text"], n["author"]) for n in notes][0] == (1, "reward hacking here", "ann")
    assert notes[1]["part"] is None
    # a projection like any other: reindex gives the same rows
    before = store.catalog.dump()
    store.reindex()
    assert store.catalog.dump() == before and store.info(a).tags["verdict"] == "good"
    store.close()


def test_cli_tag_note_show_and_ls_filter(tmp_path):
    store = Store(tmp_path)
    a = _run(store, {"campaign": "c1"}, 10**18)
    b = _run(store, {}, 10**18 + 10**9)
    store.close()
    proc = run_agtrace(["tag", b[:10], "campaign=c1", "verdict=bad", "--json"], tmp_path, check=True)
    assert json.loads(proc.stdout)["tags"] == {"campaign": "c1", "verdict": "bad"}
    listed = json.loads(run_agtrace(["ls", "--tag", "campaign=c1", "--json"], tmp_path, check=True).stdout)
    assert sorted(r["id"] for r in listed) == [a, b]  # one filter for both kinds of tag
    listed = json.loads(run_agtrace(["ls", "--tag", "verdict=bad", "--json"], tmp_path, check=True).stdout)
    assert [r["id"] for r in listed] == [b]
    run_agtrace(["note", b, "--part", "1", "flaky test at this part", "--author", "me"], tmp_path, check=True)
    shown = run_agtrace(["show", b], tmp_path, check=True).stdout.decode()
    assert "[part 1] flaky test at this part (me," in shown and "verdict=bad" in shown
    data = json.loads(run_agtrace(["show", b, "--json"], tmp_path, check=True).stdout)
    assert [(n["part"], n["text"]) for n in data["notes"]] == [(1, "flaky test at this part")]
    bad = run_agtrace(["note", b, "--part", "7", "x"], tmp_path)
    assert bad.returncode == 2 and f"run {b} has no part 7; it has parts 1..1".encode() in bad.stderr
    run_agtrace(["note", b, "--part", "last", "at the last part"], tmp_path, check=True)  # the part words
    data = json.loads(run_agtrace(["show", b, "--json"], tmp_path, check=True).stdout)
    assert [n["part"] for n in data["notes"]] == [1, 1]
    bad = run_agtrace(["tag", b], tmp_path)
    assert bad.returncode == 2 and b"KEY=VALUE" in bad.stderr
    bad = run_agtrace(["tag", b, "novalue"], tmp_path)
    assert bad.returncode == 2 and b"is not KEY=VALUE" in bad.stderr
    run_agtrace(["tag", b, "--remove", "verdict"], tmp_path, check=True)
    listed = json.loads(run_agtrace(["ls", "--tag", "verdict=bad", "--json"], tmp_path, check=True).stdout)
    assert listed == []
