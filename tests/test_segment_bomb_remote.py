"""A remote whose segment is a zstd bomb (a frame of a few kilobytes, checksum and manifest
entry fixed, that decompresses past ``segment.MAX_FRAME_BYTES``): `agtrace pull` refuses that
segment naming it, exits non-zero, leaves nothing of the run in the store and the store's other
runs readable; `agtrace gc --remote` stops before deleting anything. Against a file remote and a
real S3 server (moto, authentication on), through the CLI, each under an address-space limit of
the frame limit: a reader that held the frame would fail there."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from agtrace.eventlog import MessageAdded, RunStarted, Store, segment
from agtrace.eventlog.remotes.transfer import digest_file
from tests import test_remote
from tests.test_remote import moto_server  # noqa: F401 - the fixture
from tests.test_segment_bomb import _bomb

backend = test_remote.backend  # the file and S3 remotes, as a fixture

pytestmark = pytest.mark.slow  # a 1 GiB bomb made, and expanded by every command


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (segment.MAX_FRAME_BYTES, segment.MAX_FRAME_BYTES))


def _agtrace(args: list[str], home: Path, backend) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                          env={**os.environ, "AGTRACE_HOME": str(home), **getattr(backend, "env", {})},
                          capture_output=True, text=True, preexec_fn=_limited, timeout=300)


def _run(store: Store, agent: str) -> str:
    writer = store.create_run(RunStarted(agent=agent), durability="off")
    for i in range(50):
        writer.append(MessageAdded(role="user", text=f"{agent} {i}"))
    store.close_writer(writer)
    return writer.run_id


def _bomb_segment(path: Path, say_size: bool) -> bytes:
    frames, problem, _ = segment.scan(path)
    assert problem is None and frames
    first = frames[0]
    payload = _bomb(segment.MAX_FRAME_BYTES + 1, say_size=say_size)
    tail = struct.pack("<QI", first.first_seq, first.count) + payload
    frame = segment.FRAME_MAGIC + struct.pack("<II", len(payload), zlib.crc32(tail)) + tail
    data = path.read_bytes()
    return data[: first.offset] + frame + data[first.end :]


@pytest.mark.parametrize("say_size", [True, False], ids=["size-in-header", "no-size"])
def test_pull_and_gc_of_a_remote_whose_segment_is_a_bomb(backend, tmp_path, say_size):
    src = Store(tmp_path / "src")
    good, bad = _run(src, "good"), _run(src, "bad")
    (seg_path,) = (src.run_dir(bad) / "events").glob("*.seg")
    src.close()
    pushed = _agtrace(["push", "--all", "--remote", backend.url], tmp_path / "src", backend)
    assert pushed.returncode == 0, pushed.stderr
    key = f"runs/{bad}/events/{seg_path.name}"
    bomb = _bomb_segment(seg_path, say_size)
    assert len(bomb) < 1 << 20
    backend.put_raw(key, bomb)  # a hostile remote: the manifest's entry says the bomb's sha256
    (manifest_key,) = [k for k in backend.key_names() if k.startswith(f"runs/{bad}/manifests/")]
    manifest = json.loads(backend.objects()[manifest_key])
    bomb_file = tmp_path / "bomb.seg"
    bomb_file.write_bytes(bomb)
    for entry in manifest["objects"]:
        if entry["key"] == key.split("/", 2)[2]:
            entry.update(sha256=digest_file(bomb_file, md5=False).sha256, size=len(bomb))
    backend.put_raw(manifest_key, json.dumps(manifest).encode())

    home = tmp_path / "home"
    mine = _run(Store(home), "mine")  # a run the store had before the pull
    pulled = _agtrace(["pull", "--all", "--remote", backend.url], home, backend)
    err = pulled.stderr
    assert pulled.returncode == 1 and "Traceback" not in err and "MemoryError" not in err, err
    assert seg_path.name in err and "over the limit" in err and "frame at byte 8:" in err, err
    assert err.count("frame at byte 8") == 1, err
    store = Store(home)
    assert not store.has_run(bad) and not store.run_dir(bad).exists()  # nothing of it half-written
    assert not [p for p in home.rglob(".*") if p.is_file()], "temp files left behind"
    assert sorted(store.run_ids()) == sorted([good, mine]) and store.verify().ok
    for run_id, agent in ((good, "good"), (mine, "mine")):
        texts = [getattr(r.event, "text", None) for r in store.read(run_id)]
        assert texts[1:51] == [f"{agent} {i}" for i in range(50)], (agent, texts)
    store.close()

    backend.delete_raw(manifest_key)  # gc then reads the segment itself for the blobs it references
    before = sorted(backend.key_names())
    collected = _agtrace(["gc", "--remote", backend.url, "--min-age", "0s"], tmp_path / "gc", backend)
    err = collected.stderr
    assert collected.returncode != 0 and "Traceback" not in err and "MemoryError" not in err, err
    assert seg_path.name in err and "over the limit" in err and "nothing was deleted" in err, err
    assert sorted(backend.key_names()) == before
