"""Diffs between parts' trees and transcripts up to a part, on a real demo capture and on runs
recorded with the Recorder (binary files, blobbed outputs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import Store, record_to_json
from agtrace.replay import PartNotFound
from agtrace.replay.diff import diff_parts, unified
from agtrace.replay.transcript import (
    TRANSCRIPT_KINDS,
    render_text,
    transcript_entries,
    transcript_records,
)
from agtrace.replay.workspace import materialize

from .conftest import run_agtrace


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from agtrace.capture.demo import run_demo

    root = tmp_path_factory.mktemp("diff-demo")
    store = Store(root / "store")
    summary, _ = run_demo(store, workdir=root / "work", fast=False)
    yield store, summary.run_id
    store.close()


def test_diff_base_to_last_stat_and_names(demo):
    store, run_id = demo
    d = diff_parts(store, run_id, 0, "last")
    assert (d.part_a, d.part_b) == (0, 26)
    assert [(f.path, f.status, f.lines_added, f.lines_removed) for f in d.files] == [
        ("README.md", "modified", 5, 0),
        ("tests/test_top_words.py", "added", 20, 0),
        ("textstats/core.py", "modified", 6, 1),
    ]
    stat = d.stat()
    assert stat.endswith(" 3 files changed, 31 insertions(+), 1 deletion(-)\n")
    assert " tests/test_top_words.py | 20 ++++++++++++++++++++\n" in stat
    assert diff_parts(store, run_id, 0, "last", ["textstats/"]).name_only() == "textstats/core.py\n"


def test_diff_patch_applies_with_git(demo, tmp_path):
    store, run_id = demo
    materialize(store, run_id, 0, tmp_path / "a")
    materialize(store, run_id, 26, tmp_path / "b")
    patch = tmp_path / "p.patch"
    patch.write_text(diff_parts(store, run_id, 0, "last").patch())
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path / "a", check=True, capture_output=True)
    for path in ("README.md", "tests/test_top_words.py", "textstats/core.py"):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def test_diff_of_a_revert_and_between_equal_trees(demo):
    store, run_id = demo
    added = diff_parts(store, run_id, 19, 20)
    assert [(f.path, f.lines_added, f.lines_removed) for f in added.files] == [("textstats/core.py", 3, 0)]
    assert "+words = functools.lru_cache(maxsize=None)(words)\n" in added.patch()
    reverted = diff_parts(store, run_id, 20, 22)
    assert [(f.lines_added, f.lines_removed) for f in reverted.files] == [(0, 3)]
    assert diff_parts(store, run_id, 19, 22).files == []
    with pytest.raises(PartNotFound):
        diff_parts(store, run_id, 1, 99)


def test_diff_cli(demo):
    store, run_id = demo
    out = run_agtrace(["diff", run_id, "0", "last", "--stat"], store.root, check=True).stdout.decode()
    assert "3 files changed, 31 insertions(+), 1 deletion(-)" in out
    data = json.loads(run_agtrace(["diff", run_id, "8", "9", "--json"], store.root, check=True).stdout)
    assert data["files"] == []
    data = json.loads(run_agtrace(["diff", run_id, "13", "14", "--json"], store.root, check=True).stdout)
    assert data["files"][0]["patch"].count("\n-") == 1 and "text.lower()" in data["files"][0]["patch"]
    assert run_agtrace(["diff", run_id, "0", "200"], store.root).returncode == 2  # no such part: bad input


def test_unified_marks_a_missing_final_newline():
    text = unified(b"a\nb", b"a\nc\n", "f.txt")
    assert text.splitlines() == ["--- a/f.txt", "+++ b/f.txt", "@@ -1,2 +1,2 @@", " a", "-b",
                                 "\\ No newline at end of file", "+c"]


def test_binary_files_are_noted_not_patched(store, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "img.bin").write_bytes(b"\x89PNG\0\0\x01")
    (work / "t.txt").write_text("one\n")
    with Recorder(store, workdir=work, agent="t") as rec:
        (work / "img.bin").write_bytes(b"\x89PNG\0\0\x02\x03")
        (work / "t.txt").write_text("one\ntwo\n")
        call = rec.tool_call("shell", command="make")
        rec.tool_result(call, output="ok", exit_code=0)
    d = diff_parts(store, rec.run_id, 0, 1)
    binary = d.files[0]
    assert (binary.path, binary.binary, binary.patch, binary.size_a, binary.size_b) == ("img.bin", True, "", 7, 8)
    assert "Binary files a/img.bin and b/img.bin differ" in d.patch()
    assert " img.bin | Bin 7 -> 8 bytes" in d.stat()
    assert "+two\n" in d.files[1].patch


def test_transcript_up_to_a_part(demo):
    store, run_id = demo
    records = list(transcript_records(store, run_id, 9))
    assert records[0].kind == "run_started"
    assert records[-1].kind == "part_ended" and records[-1].part == 9
    assert {r.kind for r in records} <= TRANSCRIPT_KINDS
    assert not any(r.kind in ("raw_recorded", "snapshot_taken", "line_logged") for r in records)
    assert max(r.part or 0 for r in records) == 9
    text = render_text(transcript_entries(records, run_id, max_lines=3))
    assert "tests unittest: 2 passed, 0 failed, 1 errors of 3" in text
    assert "← shell error, exit 1" in text
    assert "more lines) not shown" in text  # the unittest output is cut to 3 lines
    assert "tokens: 2,268 in, 391 out, 6,144 cache read" in text
    assert [r.kind for r in transcript_records(store, run_id, 0)] == ["run_started", "turn_started"]


def test_replay_refuses_options_that_do_not_go_together(demo, tmp_path):
    """`replay --part 3 --at-seq 5` took --part and ignored --at-seq, and `--transcript --out D`
    ignored --out (nothing written, nothing said); both are bad usage now, exit 2, and nothing
    is written."""
    store, run_id = demo
    out = tmp_path / "o"
    for args, says in (
        (["--part", "3", "--at-seq", "5", "--out", str(out)], "--part and --at-seq each name a part: give one"),
        (["--at-seq", "5", "--at-time", "2026-01-01T00:00:00", "--part", "2"],
         "--part, --at-seq and --at-time each name a part: give one"),
        (["--part", "2", "--transcript", "--out", str(out)], "--transcript prints the conversation and writes no "
                                                              "tree, so --out does not apply"),
        (["--transcript", "--force"], "so --force does not apply"),
    ):
        proc = run_agtrace(["replay", run_id, *args], store.root)
        assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
        assert proc.stderr.decode().startswith("error: ") and says in proc.stderr.decode(), proc.stderr
    assert not out.exists()
    one = run_agtrace(["replay", run_id, "--at-seq", "5", "--out", str(out), "--json"], store.root, check=True)
    assert json.loads(one.stdout)["part"] == 0 and out.is_dir()  # one of them alone still works


def test_transcript_cli_json_is_log_json_lines(demo):
    store, run_id = demo
    out = run_agtrace(["replay", run_id, "--part", "2", "--transcript", "--json"], store.root, check=True)
    log = run_agtrace(["log", run_id, "--json"], store.root, check=True).stdout.decode().splitlines()
    lines = out.stdout.decode().splitlines()
    assert lines and set(lines) <= set(log)
    assert [json.loads(x)["kind"] for x in lines][-3:] == ["tool_called", "tool_returned", "part_ended"]
    text = run_agtrace(["replay", run_id, "--part", "last", "--transcript"], store.root, check=True).stdout.decode()
    assert "run ended" not in text and "── end of part 26 (message) ──" in text
    assert not (Path.cwd() / f"{run_id[:10]}-part-26").exists()  # no tree was written
    text = run_agtrace(["replay", run_id, "--transcript"], store.root, check=True).stdout.decode()
    assert text.rstrip().endswith("run ended: completed")


def test_blobbed_output_is_shown_truncated_with_a_note(store, tmp_path):
    with Recorder(store, agent="t") as rec:
        call = rec.tool_call("shell", command="cat big")
        rec.tool_result(call, output="x" * 100 + "\n" + "y" * 200_000, exit_code=0)
    records = list(transcript_records(store, rec.run_id))
    returned = next(r for r in records if r.kind == "tool_returned")
    assert returned.event.output_blob  # really blobbed
    assert record_to_json(returned).decode() in run_agtrace(
        ["replay", rec.run_id, "--transcript", "--json"], store.root, check=True).stdout.decode()
    text = render_text(transcript_entries(records, rec.run_id))
    assert "output truncated: showing the start of 200,101 bytes" in text
    assert returned.event.output_blob[:12] in text
    assert len(text) < 10_000


def test_replaying_into_the_same_directory_switches_and_repairs_edits(tmp_path):
    from agtrace.replay.workspace import materialize

    work = tmp_path / "work"
    work.mkdir()
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work) as rec:
        for i in range(3):
            (work / f"f{i}.txt").write_text(f"{i}\n")
            rec.message("assistant", f"wrote f{i}")
    out = tmp_path / "out"
    first = materialize(store, rec.run_id, 1, out)
    assert first.how == "checkout" and sorted(p.name for p in out.iterdir()) == ["f0.txt"]
    third = materialize(store, rec.run_id, 3, out, force=True)
    assert third.how == "switch" and sorted(p.name for p in out.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    (out / "f1.txt").write_text("edited by hand\n")
    (out / "stray.txt").write_text("x\n")
    again = materialize(store, rec.run_id, 3, out, force=True)
    assert again.how == "switch" and (out / "f1.txt").read_text() == "1\n" and not (out / "stray.txt").exists()
