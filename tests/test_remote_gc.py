"""`agtrace gc --remote URL`: the blobs `rm --remote` leaves are collected, and never one that a
run on the remote references, whether a manifest lists it or only a segment names it; young
blobs are kept, and a run whose references cannot be read stops the collection before anything
is deleted. Against a file remote and a real S3 server (moto, authentication on), through the CLI."""

from __future__ import annotations

import json

import pytest

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import Store
from tests import test_remote
from tests.conftest import run_agtrace
from tests.test_remote import moto_server  # noqa: F401 - the fixture

backend = test_remote.backend  # the file and S3 remotes, as a fixture

SHARED = "the same long output, a blob both runs reference " * 4000
OWN = "an output only the removed run had " * 4000


def _run(store: Store, work, outputs: list[str]) -> str:
    with Recorder(store, workdir=work, agent="t", model="m", task="gc") as rec:
        for out in outputs:
            call = rec.tool_call("shell", {"cmd": "cat big"}, command="cat big")
            (work / "a.txt").write_text(out[:20])
            rec.tool_result(call, output=out, exit_code=0)
        return rec.run_id


@pytest.fixture
def pushed(backend, tmp_path):
    """Runs A (SHARED + OWN), B (SHARED) and C (a third blob) pushed to ``backend``."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    store = Store(home)
    a = _run(store, work, [SHARED, OWN])
    b = _run(store, work, [SHARED])
    c = _run(store, work, ["a third output, only run C's " * 4000])
    store.close()
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    run_agtrace(["push", "--all"], home, env=env, check=True)
    return {"home": home, "env": env, "ids": (a, b, c), "backend": backend}


def _gc(p, *args):
    proc = run_agtrace(["gc", "--remote", p["backend"].url, *args, "--yes", "--json"], p["home"], env=p["env"])
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def _blobs(backend) -> set[str]:
    return {k for k in backend.objects() if k.startswith("blobs/")}


def test_gc_remote_removes_only_the_blobs_no_remaining_run_references(pushed, tmp_path):
    backend, (a, b, c) = pushed["backend"], pushed["ids"]
    before = _blobs(backend)
    assert len(before) == 3
    nothing = _gc(pushed, "--min-age", "0s")
    assert nothing["removed"] == [] and nothing["referenced"] == 3 and nothing["runs"] == 3
    run_agtrace(["rm", a, "--remote", backend.url, "--yes"], pushed["home"], env=pushed["env"], check=True)
    assert _blobs(backend) == before  # rm leaves them
    young = _gc(pushed)  # the default --min-age keeps a blob written a moment ago
    assert young["removed"] == [] and young["kept_recent"] == 1
    dry = _gc(pushed, "--min-age", "0s", "--dry-run")
    assert len(dry["removed"]) == 1 and dry["dry_run"] and _blobs(backend) == before
    # as `rm`: not without --yes when stdin is not a terminal (before: it deleted, asking nothing)
    asked = run_agtrace(["gc", "--remote", backend.url, "--min-age", "0s"], pushed["home"], env=pushed["env"])
    err = asked.stderr.decode()
    assert asked.returncode == 2 and "without --yes" in err and dry["removed"][0] in err, err
    assert _blobs(backend) == before
    done = _gc(pushed, "--min-age", "0s")
    assert done["removed"] == dry["removed"] and done["bytes"] > 0
    assert _blobs(backend) == before - set(done["removed"])
    # what stays is whole: B and C pull into an empty store, verify and show their outputs
    fresh = tmp_path / "fresh"
    run_agtrace(["pull", b, c, "--remote", backend.url], fresh, env=pushed["env"], check=True)
    proc = run_agtrace(["verify"], fresh, env=pushed["env"])
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    log = run_agtrace(["log", b, "--json"], fresh, env=pushed["env"], check=True).stdout.decode()
    assert "the same long output" in log


def test_gc_remote_reads_segments_that_no_manifest_lists(pushed):
    backend, (a, b, _c) = pushed["backend"], pushed["ids"]
    for key in [k for k in backend.objects() if k.startswith(f"runs/{b}/manifests/")]:
        backend.delete_raw(key)  # as if B's push was killed before its manifest
    run_agtrace(["rm", a, "--remote", backend.url, "--yes"], pushed["home"], env=pushed["env"], check=True)
    done = _gc(pushed, "--min-age", "0s")
    assert len(done["removed"]) == 1 and done["segments_read"] >= 1
    left = _blobs(backend)
    assert len(left) == 2  # SHARED (named by B's segment only) and C's stay


def test_gc_remote_deletes_nothing_when_a_runs_references_cannot_be_read(pushed):
    backend, (a, b, _c) = pushed["backend"], pushed["ids"]
    for key in [k for k in backend.objects() if k.startswith(f"runs/{b}/manifests/")]:
        backend.delete_raw(key)
    segment = next(k for k in backend.objects() if k.startswith(f"runs/{b}/events/") and k.endswith(".seg"))
    backend.delete_raw(segment)
    backend.put_raw(segment, b"not a segment at all")
    run_agtrace(["rm", a, "--remote", backend.url, "--yes"], pushed["home"], env=pushed["env"], check=True)
    before = _blobs(backend)
    proc = run_agtrace(["gc", "--remote", backend.url, "--min-age", "0s"], pushed["home"], env=pushed["env"])
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert segment.rsplit("/", 1)[1] in err and "nothing was deleted" in err
    assert _blobs(backend) == before


def test_gc_min_age_without_remote_is_refused(tmp_path):
    """`gc --min-age 1d` ran the store's own gc (which keeps blobs younger than an hour, not
    AGE), saying nothing of --min-age; it is refused now, exit 2, and nothing is collected."""
    home = tmp_path / "home"
    run_agtrace(["new", "--agent", "t"], home, check=True)
    proc = run_agtrace(["gc", "--min-age", "1d"], home)
    assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
    assert proc.stderr.decode().startswith("error: --min-age applies with --remote only"), proc.stderr
    assert run_agtrace(["gc", "--dry-run"], home, check=True).returncode == 0  # the default is no --min-age


def test_gc_min_age_must_be_an_age(pushed):
    proc = run_agtrace(["gc", "--remote", pushed["backend"].url, "--min-age", "soon"], pushed["home"],
                       env=pushed["env"])
    assert proc.returncode == 2 and "--min-age" in proc.stderr.decode()


def test_a_blob_gc_deletes_while_a_push_counts_on_it_is_uploaded_again(pushed, tmp_path):
    """The race: `gc --remote` read the runs while nothing referenced SHARED, then a push found
    SHARED on the remote and did not send it, then gc deleted it: the pushed manifest named a
    missing blob. The delete is made at a fixed point of the push (after it counted the blob as
    there), on a real server; the push now checks after its manifest and uploads it again."""
    from agtrace.eventlog import push

    backend, (a, b, _c) = pushed["backend"], pushed["ids"]
    for rid in (a, b):
        run_agtrace(["rm", rid, "--remote", backend.url, "--yes"], pushed["home"], env=pushed["env"], check=True)
    store = Store(pushed["home"])
    held_by_b = {k for k in _blobs(backend) if k.rsplit("/", 1)[1][:-4] in _refs(store, b)}
    assert len(held_by_b) == 1
    gone = []

    def gc_deletes(done, _total):
        if done == 1 and not gone:
            for key in held_by_b:
                backend.delete_raw(key)
            gone.append(True)

    with backend.remote() as remote:
        report = push(store, remote, [b], progress=gc_deletes)
    store.close()
    assert gone and report.ok and held_by_b <= _blobs(backend)
    fresh = tmp_path / "fresh"
    run_agtrace(["pull", b, "--remote", backend.url], fresh, env=pushed["env"], check=True)
    assert run_agtrace(["verify", b], fresh, env=pushed["env"]).returncode == 0


def _refs(store: Store, run_id: str) -> set[str]:
    from agtrace.eventlog.sync.keys import segment_blob_refs

    return set().union(*(segment_blob_refs(p) for p in (store.run_dir(run_id) / "events").glob("*.seg")))
