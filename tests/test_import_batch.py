"""Batches per source (issue 12, "Batches" and "Silent corruption on import"), through the CLI:
each source of ``import DIR`` succeeds or fails alone, every file met is accounted for
(imported / skipped / failed), the exit code says whether anything failed, and a container whose
member does not match its CRC-32 is refused before anything from it is stored."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

from agtrace.capture import IMPORTERS
from agtrace.capture.importers import import_source
from agtrace.eventlog import Store

from .conftest import FIXTURES, run_agtrace

ISO = FIXTURES / "isobench" / "claude_code_sonnet_sglang_core-0000"
EVAL = FIXTURES / "inspect" / "demo_mockllm_local_sandbox.eval"
ROLLOUT = sorted((FIXTURES / "codex-rollout").glob("*.jsonl"))[0]


def test_one_bad_source_fails_alone_and_every_file_is_accounted_for(tmp_path):
    batch = tmp_path / "batch"
    shutil.copytree(ISO, batch / "a-good-item")
    shutil.copytree(ISO, batch / "b-bad-item")
    journal = json.loads((batch / "b-bad-item" / "journal.json").read_text())
    journal["timestamps"] = "2025-01-01"  # a field of the wrong type: its reader calls .get on it
    (batch / "b-bad-item" / "journal.json").write_text(json.dumps(journal))
    shutil.copytree(ISO, batch / "c-good-item")
    journal = json.loads((batch / "c-good-item" / "journal.json").read_text())
    journal["task_id"] = "another task"
    (batch / "c-good-item" / "journal.json").write_text(json.dumps(journal))
    (batch / "README.md").write_text("# what these are\n")
    (batch / "garbage.jsonl").write_bytes(b"\x00\x9f\x92\x96 not a trace at all\n" * 50)
    (batch / "dangling.jsonl").symlink_to(tmp_path / "gone")
    store = tmp_path / "store"

    proc = run_agtrace(["import", str(batch)], store)

    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "failed    " in err and "b-bad-item: could not be imported as isobench: a field is missing or has a value of another type" in err
    assert "(AttributeError: 'str' object has no attribute 'get')" in err, err
    assert f"skipped   {batch / 'README.md'}: not a trace of a known format" in err, err
    assert f"{batch / 'garbage.jsonl'}: named like a trace, but no format recognises" in err, err
    assert f"{batch / 'dangling.jsonl'}: cannot be read" in err, err
    assert "2 imported, 1 skipped (not sources), 3 failed" in err, err
    assert "3 of 5 sources failed" in err and err.rstrip().endswith("the rest was imported"), err
    with Store(store) as s:
        assert len(s.run_ids()) == 2  # the sources after the bad one were imported too
        assert s.verify().ok

    again = run_agtrace(["import", "--json", str(batch)], store)
    results = {r["source"].rsplit("/", 1)[1]: r for r in json.loads(again.stdout)}
    assert again.returncode == 1
    assert {k: r["outcome"] for k, r in results.items()} == {
        "a-good-item": "imported", "b-bad-item": "failed", "c-good-item": "imported", "README.md": "skipped",
        "garbage.jsonl": "failed", "dangling.jsonl": "failed"}
    assert results["a-good-item"]["existing"] and results["README.md"]["skipped"]


def test_a_directory_of_sources_only_imports_with_exit_0(tmp_path):
    batch = tmp_path / "batch"
    shutil.copytree(ISO, batch / "item")
    (batch / "notes.txt").write_text("nothing\n")
    proc = run_agtrace(["import", str(batch)], tmp_path / "store")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "1 imported, 1 skipped (not sources), 0 failed" in proc.stderr.decode()


def _stored_eval(dest) -> None:
    """A real .eval: the fixture's members (zstd in the fixture) written again as stored members."""
    from agtrace.capture.importers.inspect_log import read_eval_members

    members = read_eval_members(EVAL, lambda name: True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)


def _flip_a_member_byte(path) -> str:
    """Flip the case of one letter inside a text of a sample member's data (still valid JSON);
    the zip's directory, its CRC-32 included, is left as it was. Returns the member's name."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("samples/"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    at = data.index(b'"content":"', start) + len(b'"content":"')
    while not chr(data[at]).isalpha():
        at += 1
    assert at < start + info.compress_size
    data[at] ^= 0x20
    path.write_bytes(bytes(data))
    return info.filename


def test_an_eval_member_that_no_longer_matches_its_crc_is_refused_before_anything_is_stored(tmp_path):
    bad = tmp_path / "damaged.eval"
    _stored_eval(bad)
    assert run_agtrace(["import", str(bad)], tmp_path / "control").returncode == 0  # it imports as it is
    member = _flip_a_member_byte(bad)
    store = tmp_path / "store"

    proc = run_agtrace(["import", str(bad)], store)

    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert f"{bad}#{member}: the member does not match its CRC-32" in err, err
    with Store(store) as s:
        assert s.run_ids() == []


def test_a_named_pipe_socket_or_device_in_a_searched_directory_is_skipped_never_opened(tmp_path):
    """A named pipe in an imported directory hung `import DIR` forever (opening it waits for a
    writer), and a link to /dev/zero would be read without end: they are reported, not opened."""
    import os
    import socket

    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(ROLLOUT, batch / ROLLOUT.name)
    os.mkfifo(batch / "pipe.jsonl")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(batch / "agent.sock"))
        (batch / "zero.jsonl").symlink_to("/dev/zero")
        proc = run_agtrace(["import", "--json", str(batch)], tmp_path / "store", timeout=60)
    finally:
        sock.close()
    assert proc.returncode == 0, proc.stderr.decode()
    results = {r["source"].rsplit("/", 1)[1]: r for r in json.loads(proc.stdout)}
    assert results[ROLLOUT.name]["outcome"] == "imported"
    assert results["pipe.jsonl"]["skipped"] == "not a regular file (a named pipe; never opened)"
    assert results["agent.sock"]["skipped"] == "not a regular file (a socket; never opened)"
    assert results["zero.jsonl"]["skipped"] == "not a regular file (a device; never opened)"


def test_a_named_pipe_given_to_import_says_so(tmp_path):
    """`agtrace import <(zcat trace.jsonl.gz)` failed with "format not recognised"."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = run_agtrace(["import", str(fifo)], tmp_path / "store", timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and f"{fifo}: a named pipe, not a file" in err and "save it to a file" in err, err
    assert "format not recognised" not in err


def test_an_empty_or_blank_source_says_it_is_empty(tmp_path):
    """An empty (or whitespace-only) `.jsonl` was "format not recognised; pass --format", which
    sent people looking for a format; it says it is empty. A file with content still gets the
    format hint."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n\t\n")
    (tmp_path / "notes.jsonl").write_text("just some notes\n")
    proc = run_agtrace(["import", "--json", *(str(tmp_path / n) for n in ("empty.jsonl", "blank.jsonl",
                                                                         "notes.jsonl"))], tmp_path / "store")
    assert proc.returncode == 1
    errors = {Path(r["source"]).name: r["error"] for r in json.loads(proc.stdout)}
    assert "the file is empty (or only blank); nothing to import" in errors["empty.jsonl"]
    assert "the file is empty" in errors["blank.jsonl"]
    assert "format not recognised; pass --format" in errors["notes.jsonl"]


class _RacedImporter:
    """The inspect importer, while another import of the same log finishes first: between this
    import's ``has_run`` check and its adopt, a second ``import_source`` (its own Store on the
    same directory, as another process has) stores the same run."""

    def __init__(self):
        self.inner = IMPORTERS["inspect"]
        self.name, self.known, self.detect = self.inner.name, self.inner.known, self.inner.detect
        self.other = None

    def read(self, path, ctx):
        self.inner.read(path, ctx)
        with Store(ctx.store.root) as other:
            self.other = import_source(other, path, self.inner)


def test_an_import_that_loses_the_race_for_its_run_reports_it_already_imported(tmp_path):
    path = tmp_path / "log.json"
    shutil.copy(FIXTURES / "inspect" / "demo_mockllm_local_sandbox.json", path)
    raced = _RacedImporter()
    with Store(tmp_path / "store") as store:
        result = import_source(store, path, raced)
        assert raced.other.error == "" and len(raced.other.runs) == 2
        assert result.error == "", result.error
        assert result.runs == [] and result.existing == raced.other.runs
        assert store.run_ids() == sorted(raced.other.runs)
        assert not [p for p in (store.root / "staging").rglob("*") if p.is_dir() and p.name in result.existing]
        assert store.verify().ok


def test_two_imports_of_one_file_at_once_both_exit_0_with_one_run(tmp_path):
    env = {**os.environ, "AGTRACE_HOME": str(tmp_path / "store")}
    cmd = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "import"]
    for i in range(4):
        path = tmp_path / f"v{i}.json"
        # another log each time (other bytes, so other run ids)
        path.write_text((FIXTURES / "inspect" / "demo_mockllm_local_sandbox.json").read_text() + "\n" * (i + 1))
        procs = [subprocess.Popen([*cmd, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        outs = [(p.communicate(timeout=120), p.returncode) for p in procs]
        for (out, err), rc in outs:
            assert rc == 0, err.decode()
            assert out.decode().startswith(f"imported  {path} [inspect] -> "), out.decode()
        texts = [out.decode() for (out, _), _ in outs]
        assert sum("(already imported: " in t for t in texts) >= 1, texts  # the loser says so
    with Store(tmp_path / "store") as store:
        assert len(store.run_ids()) == 8  # 2 samples per log, each stored once
        assert store.verify().ok
        assert not [p for p in (store.root / "staging").rglob("*") if (p / "events").is_dir()]
