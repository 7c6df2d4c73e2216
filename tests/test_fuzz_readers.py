"""Property-based mutation tests over every reader (issue 12, item 7): append lines, import
formats (the checked-in fixtures as seeds), segment frames, remote manifests, bundles, and
frames whose payload is a zstd bomb (checksum fixed) met by `verify`, `log`, `show`, `replay`,
`push` (the remote check) and `append` (recovery), each under an address-space limit.

Each mutated input is either accepted with its meaning intact or refused with its location
(file, byte offset or line), and the store verifies after each case; anything else (a foreign
exception, a store that no longer verifies) fails with the case. Bounded for CI
(``AGTRACE_FUZZ_EXAMPLES``, default 40 per reader); ``bench/soak_fuzz.py`` runs more. Each test
prints its counts (cases tried, handled).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agtrace.eventlog import (
    CorruptLog,
    EventlogError,
    InvalidEvent,
    MessageAdded,
    Record,
    RemoteError,
    RunEnded,
    RunStarted,
    RunWriter,
    Store,
    event_from_json,
    pull,
    push,
    record_to_json,
    remote_for,
)
from agtrace.eventlog.reader import list_segments

from .conftest import FIXTURES, one_of_each
from .fuzzing import (
    EXAMPLES,
    FUZZ,
    Tally,
    byte_mutation,
    counted,
    dump_json,
    frame_bomb,
    json_mutation,
)

pytestmark = pytest.mark.slow

TALLIES: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally(name))


@pytest.fixture
def report_counts(capsys):
    """Print each test's counts in the test output (past pytest's capture)."""
    before = set(TALLIES)
    yield
    with capsys.disabled():
        for name in sorted(set(TALLIES) - before):
            print(f"\n{TALLIES[name].line()}")


class Base(tuple):
    """A fixture's values, with a short repr (hypothesis prints the arguments of a failing case)."""

    def __repr__(self) -> str:
        return "<base>"


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="agtrace-fuzz-"))


# -- append lines ------------------------------------------------------------------------------

SEED_LINES = [record_to_json(Record(i + 1, 1_700_000_000_000_000_000 + i, 1, ev))
              for i, ev in enumerate(one_of_each())]


@given(data=st.data())
@FUZZ
@counted(lambda: tally("append lines"))
def _fuzz_append_lines(data):
    import json

    t = tally("append lines")
    seed = data.draw(st.sampled_from(SEED_LINES))
    if data.draw(st.booleans()):
        line = data.draw(byte_mutation(seed))
    else:
        line = dump_json(data.draw(json_mutation(json.loads(seed))))
    try:
        event, ts, part = event_from_json(line, 7)
    except InvalidEvent as exc:
        assert exc.line == 7 and "line 7" in str(exc), exc
        t.refuse(str(exc))
        return
    again = event_from_json(record_to_json(Record(1, ts or 0, part, event)))[0]
    assert again == event, (line, event)  # accepted: it means what it says, and says it again
    root = _scratch()
    try:
        store = Store(root)
        writer = store.create_run(RunStarted(agent="fuzz"), durability="off")
        try:
            writer.append(event, part=part, ts=ts)
        except EventlogError as exc:  # the store refused a value it cannot keep
            writer.abandon()
            t.refuse(str(exc))
            return
        store.close_writer(writer)
        report = store.verify(writer.run_id)
        assert report.ok, (line, report.problems)
        assert [r.event for r in store.read(writer.run_id)][1] == event
        store.runs()  # the catalog folds it
        t.accept()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_fuzz_append_lines(report_counts):
    _fuzz_append_lines()
    assert tally("append lines").handled == tally("append lines").tried > 0


# -- segment frames ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> tuple[Path, str, list]:
    """A run with a sealed segment of two big frames and an open segment of 20 small ones."""
    root = tmp_path_factory.mktemp("base")
    store = Store(root)
    writer = store.create_run(RunStarted(agent="fuzz"), durability="strict")
    run_id = writer.run_id
    store.close_writer(writer)
    writer = store.open_writer(run_id, durability="off")
    for i in range(1300):
        writer.append(MessageAdded(role="user", text=f"message {i} " * (i % 7)), part=1 + i // 100)
    store.close_writer(writer)
    writer = RunWriter(store.run_dir(run_id), run_id, durability="strict")
    for i in range(20):
        writer.append(MessageAdded(role="assistant", text=f"open {i}"), part=14)
    writer.close(seal=False)
    store.sync(run_id)
    records = list(store.read(run_id))
    store.close()
    return Base((root, run_id, records))


@given(data=st.data())
@FUZZ
@counted(lambda: tally("segment frames"))
def _fuzz_segments(data, base):
    root, run_id, original = base
    t = tally("segment frames")
    work = _scratch()
    try:
        shutil.copytree(root, work / "s")
        store = Store(work / "s")
        segs = [p for _f, _l, p in list_segments(store.run_dir(run_id) / "events")]
        target = data.draw(st.sampled_from(segs[1:]))
        target.write_bytes(data.draw(byte_mutation(target.read_bytes())))
        report = store.verify(run_id, snapshots=False)
        try:
            got = list(store.read(run_id))
        except CorruptLog as exc:
            assert exc.path and exc.offset >= 0 and exc.path in str(exc), exc
            assert not report.ok, "read refused what verify passed"
            got = None
        if got is not None:  # accepted: a prefix of the original, event for event
            assert got == original[: len(got)], "a mutated segment read as other events"
            if len(got) < len(original):
                assert not report.ok, "verify passed a log that lost events"
        try:
            writer = RunWriter(store.run_dir(run_id), run_id)
        except CorruptLog as exc:
            assert exc.path and exc.offset >= 0, exc
            t.refuse(str(exc))
        else:
            first_new = writer.next_seq
            writer.append(RunEnded(status="completed"))
            writer.close()
            assert first_new <= len(original) + 1
            readable = list(store.read(run_id)) if store.verify(run_id, snapshots=False).ok else None
            if readable is not None:
                assert readable[: first_new - 1] == original[: first_new - 1]
            if report.ok:
                t.accept()
            else:
                t.refuse(report.problems[0])
        store.runs()  # a damaged run never stops the listing
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_segment_frames(base_store, report_counts):
    _fuzz_segments(base=base_store)
    assert tally("segment frames").handled == tally("segment frames").tried > 0


# -- import formats ----------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden" / "import"
SEEDS = [FIXTURES / name for name in (
    "claude-code/daaain_edge_cases.jsonl",
    "codex-exec-json/agentcmd_stream-output-2.jsonl",
    "codex-rollout/localpush_rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl",
    "opencode/noldor_run-format-json_opencode-1.17.20.ndjson",
    "trae/trajectory_20260118_211615.json",
    "swe-agent/swe-agent__test-repo-i1.traj",
    "openhands/trajs_basic.json",
    "inspect/demo_mockllm_local_sandbox.eval",
    "inspect/demo_mockllm_local_sandbox.json",
)] + [GOLDEN / name for name in (
    "envoi_sample.json",
    "opencode-export_handwritten.input.json",
    "atif/harbor-0.26.0_mini-swe-agent_calc.trajectory.json",
    "trae-rs/demo_trajectory.json",
    "tools/gemini-cli/session-2026-12-01T22-23-5485310c.jsonl",
    "tools/gemini-cli-0.30/session-2026-12-01T22-34-0306aef3.json",
    "tools/mini-swe-agent/calc.traj.json",
    "tools/aider/aider.chat.history.md",
)]
"""One file of each import format that is a single file (the fixtures and goldens)."""


def _mutate_source(data, raw: bytes, name: str) -> bytes:
    import json

    if name.endswith((".jsonl", ".ndjson")) and data.draw(st.booleans()):
        lines = raw.split(b"\n")
        i = data.draw(st.integers(0, max(0, len(lines) - 2)))
        try:
            lines[i] = dump_json(data.draw(json_mutation(json.loads(lines[i]))))
        except ValueError:
            lines[i] = data.draw(byte_mutation(lines[i]))
        return b"\n".join(lines)
    if name.endswith((".json", ".traj")) and data.draw(st.booleans()):
        return dump_json(data.draw(json_mutation(json.loads(raw))))
    return data.draw(byte_mutation(raw))


@given(data=st.data())
@FUZZ
@counted(lambda: tally("import formats"))
def _fuzz_imports(data):
    from agtrace.capture import import_paths

    t = tally("import formats")
    seed = data.draw(st.sampled_from(SEEDS))
    name = seed.name
    raw = seed.read_bytes()
    work = _scratch()
    try:
        source = work / name
        source.write_bytes(_mutate_source(data, raw, name))
        store = Store(work / "s")
        results = import_paths(store, [source])
        assert results, "no result for a source"
        for result in results:
            if result.error:
                assert source.name in result.error or str(source) in result.error, result.error
            for bad in result.bad_records:
                assert source.name in str(bad.__dict__), bad
            for run_id in result.runs:
                assert len(list(store.read(run_id))) >= 1
        report = store.verify()
        assert report.ok, (name, report.problems)
        store.runs()
        if any(r.error or r.bad_records for r in results) or not any(r.runs for r in results):
            t.refuse(results[0].error or "bad records")
        else:
            t.accept()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_import_formats(report_counts):
    _fuzz_imports()
    assert tally("import formats").handled == tally("import formats").tried > 0


# -- remote manifests --------------------------------------------------------------------------


@given(data=st.data())
@FUZZ
@counted(lambda: tally("remote manifests"))
def _fuzz_manifests(data, base):
    import json

    root, run_id, original = base
    t = tally("remote manifests")
    work = _scratch()
    try:
        shutil.copytree(root, work / "s")
        store = Store(work / "s")
        (work / "remote").mkdir()
        remote = remote_for(f"file://{work / 'remote'}")
        push(store, remote, [run_id])
        sealed = [r for r in list(store.read(run_id))]
        (manifest,) = (work / "remote" / "runs" / run_id / "manifests").iterdir()
        raw = manifest.read_bytes()
        if data.draw(st.booleans()):
            mutated = dump_json(data.draw(json_mutation(json.loads(raw))))
        else:
            mutated = data.draw(byte_mutation(raw))
        manifest.chmod(0o644)
        manifest.write_bytes(mutated)
        fresh = Store(work / "fresh")
        try:
            report = pull(fresh, remote, [run_id])
        except RemoteError as exc:
            assert "manifest" in str(exc) or run_id in str(exc), exc
            t.refuse(str(exc))
            return
        got = list(fresh.read(run_id)) if fresh.has_run(run_id) else []
        assert got == sealed[: len(got)]  # whatever was pulled is the events, unaltered
        assert fresh.verify().ok
        if report.ok:
            assert got == sealed  # accepted: the same events
            t.accept()
        else:  # each object that was not pulled is named with why
            assert all(run_id in p or "blobs/" in p for p in report.problems), report.problems
            t.refuse(report.problems[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_remote_manifests(base_store, report_counts):
    _fuzz_manifests(base=base_store)
    assert tally("remote manifests").handled == tally("remote manifests").tried > 0


# -- bundles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> tuple[Path, str, dict]:
    from agtrace.capture import Recorder

    root = tmp_path_factory.mktemp("captured")
    work = root / "w"
    work.mkdir()
    store = Store(root / "s")
    with Recorder(store, workdir=work, agent="fuzz") as rec:
        for i in range(3):
            (work / "a.txt").write_text(f"part {i + 1}\n" * 40)
            call = rec.tool_call("shell", command=f"step {i}")
            rec.tool_result(call, output="ok", exit_code=0)
    shutil.rmtree(store.run_dir(rec.run_id) / "repo.git")  # as pulled: bundles only
    trees = {r["part"]: r["tree_id"] for r in store.catalog.part_rows(rec.run_id)}
    store.close()
    return Base((root / "s", rec.run_id, trees))


@given(data=st.data())
@FUZZ
@counted(lambda: tally("bundles"))
def _fuzz_bundles(data, base):
    from agtrace.replay import ReplayError, materialize

    root, run_id, trees = base
    t = tally("bundles")
    work = _scratch()
    try:
        shutil.copytree(root, work / "s")
        store = Store(work / "s")
        (bundle,) = (store.run_dir(run_id) / "bundles").glob("*.bundle")
        bundle.write_bytes(data.draw(byte_mutation(bundle.read_bytes())))
        (check,) = store.verify(run_id).checks
        part = data.draw(st.sampled_from(sorted(trees)))
        try:
            view = materialize(store, run_id, part, work / "out")
        except (EventlogError, ReplayError) as exc:
            assert part not in check.replayable, f"verify said part {part} replays: {exc}"
            assert "bundle" in str(exc) or run_id in str(exc), exc
            t.refuse(str(exc))
            return
        assert view.tree_id == trees[part]  # materialize re-hashed what it wrote
        assert part in check.replayable, check.not_replayable
        t.accept()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_bundles(captured, report_counts):
    _fuzz_bundles(base=captured)
    assert tally("bundles").handled == tally("bundles").tried > 0


# -- frame bombs -------------------------------------------------------------------------------

BOMBS = settings(FUZZ, max_examples=max(4, EXAMPLES // 5))
"""Fewer cases: each runs six commands, and each command expands a 1 GiB bomb."""


def _limited_memory() -> None:
    """The commands run under an address-space limit of the frame limit: one that held a bomb's
    expansion would fail with MemoryError (or be killed), never take the machine's memory."""
    import resource

    from agtrace.eventlog import segment

    resource.setrlimit(resource.RLIMIT_AS, (segment.MAX_FRAME_BYTES, segment.MAX_FRAME_BYTES))


@given(data=st.data())
@BOMBS
@counted(lambda: tally("frame bombs"))
def _fuzz_bombs(data, bases):
    import subprocess
    import sys

    t = tally("frame bombs")
    root, run_id = data.draw(st.sampled_from(bases))[:2]
    work = _scratch()
    try:
        shutil.copytree(root, work / "s")
        segs = [p for _f, _l, p in list_segments(work / "s" / "runs" / run_id / "events")]
        target = data.draw(st.sampled_from(segs))
        bombed, off = data.draw(frame_bomb(target.read_bytes()))
        target.write_bytes(bombed)
        for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):  # rebuilt: from the bomb too
            (work / "s" / name).unlink(missing_ok=True)
        (work / "remote").mkdir()
        where = f"{target}: frame at byte {off}: "
        commands = [["verify", run_id], ["log", run_id], ["show", run_id],
                    ["replay", run_id, "--part", "last", "--out", str(work / "out")],
                    ["push", run_id, "--remote", f"file://{work / 'remote'}"], ["append", run_id], ["verify", run_id]]
        refusals = []
        for args in commands:
            proc = subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                                  env={**os.environ, "AGTRACE_HOME": str(work / "s")}, capture_output=True,
                                  text=True, input='{"kind": "message_added", "role": "user", "text": "after"}\n',
                                  preexec_fn=_limited_memory, timeout=300)
            err = proc.stderr
            assert proc.returncode in (0, 1) and "Traceback" not in err and "MemoryError" not in err, (args, err)
            named = where in err and "over the limit" in err
            if args[0] in ("verify", "log", "show") or (args[0] == "push" and target.suffix == ".seg"):
                assert named, (args, proc.returncode, err)  # they read every frame: they meet the bomb
            if proc.returncode:
                assert named or target.name in err, (args, err)
                refusals.append(err.strip().splitlines()[-1])
        # an append may succeed: recovery checks the open segment's checksums and decodes its last
        # record only, so a bomb in another frame is not met; it appends after it, cuts nothing,
        # and the verify after it still names the bomb
        assert target.read_bytes()[: len(bombed)] == bombed, "a reader cut or rewrote the damaged segment"
        t.refuse(refusals[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fuzz_frame_bombs(base_store, captured, report_counts):
    _fuzz_bombs(bases=[base_store, captured])
    assert tally("frame bombs").handled == tally("frame bombs").tried > 0
