"""One contract suite for every remote: ``file://`` and S3 (a moto server on 127.0.0.1).

The S3 server is started by the tests (``python -m moto.server``) with IAM authentication on,
so wrong credentials and missing permissions are refused as they are on AWS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest

from agtrace.eventlog import (
    PartEnded,
    RawRecorded,
    RemoteAuthError,
    RemoteConflict,
    RemoteError,
    RemoteNotFound,
    RemoteUnreachable,
    RunStarted,
    Store,
    collect_remote_garbage,
    new_run_id,
    pull,
    push,
    remote_for,
    remove_remote_runs,
)
from agtrace.eventlog.reader import list_segments
from agtrace.eventlog.writer import RunWriter

from .conftest import run_agtrace
from .procs import descendants, end

HOST = "127.0.0.1"
REGION = "us-east-1"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
READ_ONLY = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A moto S3+IAM server on 127.0.0.1 that authenticates every request after the first three,
    which create the admin identity; also a read-only identity."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}, stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.05)
    endpoint = f"http://{HOST}:{port}"
    boot = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    boot.create_user(UserName="admin")
    admin = boot.create_access_key(UserName="admin")["AccessKey"]
    boot.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
    creds = {"aws_access_key_id": admin["AccessKeyId"], "aws_secret_access_key": admin["SecretAccessKey"]}
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **creds)
    iam.create_user(UserName="reader")
    reader = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="ro", PolicyDocument=json.dumps(READ_ONLY))
    yield {
        "endpoint": endpoint,
        "admin": (admin["AccessKeyId"], admin["SecretAccessKey"]),
        "reader": (reader["AccessKeyId"], reader["SecretAccessKey"]),
        "client": boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **creds),
    }
    proc.terminate()
    proc.wait(10)
    log.close()


class Backend:
    """One remote under test, plus raw access to its objects that bypasses agtrace."""

    name = ""

    def remote(self, **opts):
        return remote_for(self.url, **{**self.options, **opts})

    def objects(self) -> dict[str, bytes]:
        raise NotImplementedError

    def key_names(self) -> list[str]:
        """The keys only (no bodies are read: cheap enough to poll)."""
        raise NotImplementedError

    def put_raw(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete_raw(self, key: str) -> None:
        raise NotImplementedError


class FileBackend(Backend):
    name = "file"

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.url = f"file://{root}"
        self.options: dict = {}
        self.env: dict = {}

    def objects(self):
        return {p.relative_to(self.root).as_posix(): p.read_bytes()
                for p in sorted(self.root.rglob("*")) if p.is_file() and not p.name.startswith(".")}

    def key_names(self):
        return [p.relative_to(self.root).as_posix()
                for p in sorted(self.root.rglob("*")) if p.is_file() and not p.name.startswith(".")]

    def put_raw(self, key, data):
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete_raw(self, key):
        (self.root / key).unlink()


class S3Backend(Backend):
    name = "s3"

    def __init__(self, server: dict, bucket: str, prefix: str = "team/agtrace"):
        self.server = server
        self.bucket, self.prefix = bucket, prefix
        self.client = server["client"]
        self.client.create_bucket(Bucket=bucket)
        self.url = f"s3://{bucket}/{prefix}"
        key, secret = server["admin"]
        self.options = {"endpoint_url": server["endpoint"], "access_key": key, "secret_key": secret}
        self.env = {"AGTRACE_S3_ENDPOINT": server["endpoint"], "AWS_ACCESS_KEY_ID": key,
                    "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
                    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def objects(self):
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", ()):
                body = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"][len(self.prefix) + 1:]] = body
        return out

    def key_names(self):
        return [obj["Key"][len(self.prefix) + 1:]
                for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for obj in page.get("Contents", ())]

    def put_raw(self, key, data):
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def delete_raw(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")

    def uploads(self) -> list[dict]:
        return self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def parts(self, upload: dict) -> list[dict]:
        return self.client.list_parts(Bucket=self.bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"]).get("Parts", [])


class HoldingProxy:
    """A TCP relay on 127.0.0.1 in front of the moto server that forwards every byte both ways
    until a request uploads part ``hold_part`` (or a later one) of a multipart upload, and from
    then on forwards nothing from the client: its push hangs there, with parts 1..hold_part-1
    stored (each was answered before the next was sent). What the kill-and-resume test kills at,
    with no race against the upload (polling the server for parts could see the push finish
    first on a loaded machine)."""

    _PART = re.compile(rb"PUT [^ \r\n]*[?&]partNumber=(\d+)")

    def __init__(self, endpoint: str, hold_part: int):
        self.upstream = endpoint.removeprefix("http://").split(":")
        self.hold_part = hold_part
        self.held = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self.endpoint = f"http://{HOST}:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        tail = b""
        try:
            while data := src.recv(1 << 16):
                if from_client:
                    seen = tail + data
                    hit = next((m for m in self._PART.finditer(seen) if int(m[1]) >= self.hold_part), None)
                    if hit is not None or self.held.is_set():
                        if hit is not None and hit.start() > len(tail):
                            dst.sendall(data[: hit.start() - len(tail)])
                        self.held.set()
                        return  # forward nothing more: the request waits for ever
                    tail = seen[-256:]
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for s in self._sockets:
            s.close()


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path):
    if request.param == "file":
        return FileBackend(tmp_path / "remote")
    server = request.getfixturevalue("moto_server")
    return S3Backend(server, f"agtrace-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    """A store with a real captured run (the demo agent) and a Recorder run with a blob."""
    from agtrace.capture.demo import run_demo
    from agtrace.capture.recorder import Recorder

    root = tmp_path_factory.mktemp("source")
    store = Store(root / "store")
    demo, _workdir = run_demo(store, fast=False, workdir=root / "demo")
    work = root / "work"
    work.mkdir()
    (work / "a.txt").write_text("one\n")
    with Recorder(store, workdir=work, agent="t", model="m", task="blob") as rec:
        call = rec.tool_call("shell", {"cmd": "cat big"}, command="cat big")
        (work / "a.txt").write_text("two\n")
        rec.tool_result(call, output="x" * 200_000, exit_code=0)
        blob_run = rec.run_id
    store.close()
    return {"path": root / "store", "demo": demo.run_id, "blob_run": blob_run, "parts": demo.parts}


def _copy_store(src: Path, dest: Path) -> Store:
    shutil.copytree(src, dest)
    return Store(dest)


def _records(store: Store, run_id: str) -> list:
    return [(r.seq, r.ts, r.part, r.event) for r in store.read(run_id)]


# -- the contract ------------------------------------------------------------------------------


def test_push_pull_verify_replay_and_second_push_uploads_nothing(backend, source, tmp_path):
    src = Store(source["path"])
    with backend.remote() as remote:
        first = push(src, remote)
        assert first.uploaded >= 5 and first.existed == 0
        keys = backend.objects()
        demo = source["demo"]
        assert any(k.startswith(f"runs/{demo}/events/") and k.endswith(".seg") for k in keys)
        assert any(k.startswith(f"runs/{demo}/bundles/") for k in keys)
        assert any(k.startswith("blobs/") and k.endswith(".zst") for k in keys)
        assert not any(k.endswith((".open", "lock", "catalog.db")) or "repo.git" in k for k in keys)

        again = push(src, remote)
        assert again.uploaded == 0 and again.bytes_uploaded == 0 and again.existed == first.uploaded
        assert backend.objects() == keys

        fresh = Store(tmp_path / "fresh")
        report = pull(fresh, remote)
        assert report.ok, report.problems
        assert sorted(report.runs) == sorted([demo, source["blob_run"]])
        assert fresh.verify().ok
        for rid in report.runs:
            assert _records(fresh, rid) == _records(src, rid)
        assert [r.id for r in fresh.runs()] == [r.id for r in src.runs()]
        assert fresh.info(demo).status == "completed" and fresh.info(demo).parts == source["parts"]
        assert not (fresh.run_dir(demo) / "repo.git").exists()

        from agtrace.replay.workspace import materialize

        view = materialize(fresh, demo, source["parts"], tmp_path / "out")  # verifies the tree id
        assert view.tree_id and (tmp_path / "out").is_dir()
        blob_run = source["blob_run"]
        out = [r.event for r in fresh.read(blob_run) if r.kind == "tool_returned"][0]
        assert fresh.text(out.output, out.output_blob) == "x" * 200_000

        assert pull(fresh, remote).downloaded == 0  # pulling again fetches nothing
    src.close()
    fresh.close()


def test_put_never_overwrites(backend, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(b"first version")
    two.write_bytes(b"other bytes!!")
    with backend.remote() as remote:
        assert remote.put_file("runs/X/events/a.seg", one).status == "uploaded"
        assert remote.put_file("runs/X/events/a.seg", one).status == "existed"
        with pytest.raises(RemoteConflict, match="never overwrites"):
            remote.put_file("runs/X/events/a.seg", two)
        assert backend.objects()["runs/X/events/a.seg"] == b"first version"
        info = remote.head("runs/X/events/a.seg")
        assert info is not None and info.size == len(b"first version")
        assert remote.head("runs/X/events/none.seg") is None
        got = remote.get_file("runs/X/events/a.seg", tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == b"first version" and got.size == 13


def test_check_then_write_mode_never_overwrites(moto_server, tmp_path):
    backend = S3Backend(moto_server, f"agtrace-{uuid.uuid4().hex[:12]}")
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(b"first")
    two.write_bytes(b"second")
    with backend.remote(conditional=False) as remote:
        assert remote.put_file("k", one).status == "uploaded"
        assert remote.put_file("k", one).status == "existed"
        with pytest.raises(RemoteConflict):
            remote.put_file("k", two)
    assert backend.objects()["k"] == b"first"


def test_push_refuses_to_overwrite_a_different_object(backend, source):
    src = Store(source["path"])
    demo = source["demo"]
    seg = next(p for p in (src.run_dir(demo) / "events").iterdir() if p.suffix == ".seg")
    key = f"runs/{demo}/events/{seg.name}"
    backend.put_raw(key, b"not this run's segment")
    with backend.remote() as remote, pytest.raises(RemoteConflict, match="never overwrites"):
        push(src, remote, [demo])
    keys = backend.objects()
    assert keys[key] == b"not this run's segment"
    assert not any(k.startswith(f"runs/{demo}/manifests/") for k in keys)  # the manifest comes last
    src.close()


def test_pull_rejects_a_damaged_remote_segment(backend, source, tmp_path):
    src = Store(source["path"])
    demo = source["demo"]
    with backend.remote() as remote:
        push(src, remote, [demo])
        key = next(k for k in backend.objects() if k.startswith(f"runs/{demo}/events/"))
        data = bytearray(backend.objects()[key])
        data[100] ^= 0xFF
        backend.put_raw(key, bytes(data))  # damage behind agtrace's back
        fresh = Store(tmp_path / "fresh")
        report = pull(fresh, remote, [demo])
    assert not report.ok and key.rsplit("/", 1)[1] in report.problems[0]
    assert not list((fresh.run_dir(demo) / "events").glob("*.seg"))
    assert not list((fresh.run_dir(demo) / "events").glob(".*"))  # no temp file left behind
    assert not fresh.run_dir(demo).exists()  # nor a run dir holding only its bundles (verify passed it)
    assert fresh.verify().runs == 0
    src.close()
    fresh.close()


# -- damaged stores and remotes: nothing damaged goes up, a damaged local copy is repaired -----


def _demo_files(store: Store, run_id: str) -> tuple[Path, Path]:
    """The run's first sealed events segment and its first bundle."""
    run_dir = store.run_dir(run_id)
    seg = next(p for _f, last, p in list_segments(run_dir / "events") if last is not None)
    return seg, sorted((run_dir / "bundles").glob("*.bundle"))[0]


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["segment", "bundle"])
def test_push_refuses_a_damaged_segment_or_truncated_bundle(backend, source, tmp_path, damage):
    home = tmp_path / "home"
    store = _copy_store(source["path"], home)
    demo, other = source["demo"], source["blob_run"]
    seg, bundle = _demo_files(store, demo)
    bad = seg if damage == "segment" else bundle
    if damage == "segment":
        _flip(seg, seg.stat().st_size // 2)
    else:
        _truncate(bundle)
    with backend.remote() as remote:
        report = push(store, remote)
    assert not report.ok and len(report.problems) == 1
    assert str(bad) in report.problems[0] and "not pushed" in report.problems[0]
    keys = backend.key_names()
    assert f"runs/{demo}/{bad.parent.name}/{bad.name}" not in keys  # the damaged bytes stayed home
    assert not any(k.startswith(f"runs/{demo}/manifests/") for k in keys)  # the push did not complete
    assert any(k.startswith(f"runs/{other}/manifests/") for k in keys)  # the other run still went up
    if damage == "bundle":  # the healthy segment of the same run still goes up
        assert f"runs/{demo}/events/{seg.name}" in keys
    # the CLI: exit 1, the file named, what to do next
    proc = run_agtrace(["push", demo[:10], "--remote", backend.url], home, env=backend.env)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode()
    assert str(bad) in err and "repair the store first" in err and f"agtrace verify {demo}" in err
    assert "Traceback" not in err
    store.close()


def test_pull_replaces_a_damaged_local_segment_and_bundle_with_the_whole_remote_copy(backend, source, tmp_path):
    src = Store(source["path"])
    demo = source["demo"]
    home = tmp_path / "home"
    store = _copy_store(source["path"], home)
    seg, bundle = _demo_files(store, demo)
    good_seg, good_bundle = seg.read_bytes(), bundle.read_bytes()
    _flip(seg, seg.stat().st_size // 2)
    _truncate(bundle)
    assert not store.verify(demo).ok
    assert {r.id: r.status for r in store.runs()}[demo] == "damaged"  # as `ls` finds it: the catalog marks it
    with backend.remote() as remote:
        assert push(src, remote, [demo]).ok
        report = pull(store, remote, [demo])
    assert report.ok, report.problems
    assert len(report.replaced) == 2 and all("kept as" in r for r in report.replaced)
    assert seg.read_bytes() == good_seg and bundle.read_bytes() == good_bundle
    kept = sorted(p.name for p in (*seg.parent.iterdir(), *bundle.parent.iterdir()) if ".damaged-" in p.name)
    assert [k.split(".damaged-")[0] for k in kept] == sorted([bundle.name, seg.name])  # kept aside, not lost
    assert store.verify(demo).ok
    assert _records(store, demo) == _records(src, demo)
    # the mark goes with the damage (it stayed: ls said damaged after a pull that repaired the run)
    assert store.damage(demo) is None and store.info(demo).status == src.info(demo).status == "completed"
    assert store.info(demo).events == src.info(demo).events
    store.close()
    again = Store(home)
    assert again.info(demo).status == "completed" and not again.catalog.errors(demo)
    again.close()
    src.close()


def test_pull_keeps_a_damaged_local_file_when_the_remote_copy_is_damaged_too(backend, source, tmp_path):
    """Then the messages say where to look instead: no "pull again" loop."""
    demo = source["demo"]
    home = tmp_path / "home"
    store = _copy_store(source["path"], home)
    seg, _bundle = _demo_files(store, demo)
    with backend.remote() as remote:
        assert push(store, remote, [demo]).ok
    key = f"runs/{demo}/events/{seg.name}"
    _flip(seg, seg.stat().st_size // 2)
    damaged_here = seg.read_bytes()
    remote_copy = bytearray(backend.objects()[key])
    remote_copy[100] ^= 0xFF
    backend.put_raw(key, bytes(remote_copy))  # damaged there too, behind agtrace's back
    proc = run_agtrace(["pull", demo, "--remote", backend.url], home, env=backend.env)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "fails its checks too" in err and "restore the file from another copy" in err
    assert "pulling again will not help" in err and "retries them" not in err
    assert seg.read_bytes() == damaged_here
    assert not [p for p in seg.parent.iterdir() if ".damaged-" in p.name]
    store.close()


def test_pull_refuses_a_bundle_whose_tip_is_not_its_name_or_that_is_truncated(backend, source, tmp_path):
    """A remote built by hand (no manifest, no stored sha256): only the bundle's own checks can tell."""
    src = Store(source["path"])
    demo = source["demo"]
    seg, bundle = _demo_files(src, demo)
    other = sorted(p for p in (src.run_dir(source["blob_run"]) / "bundles").glob("*.bundle"))[0]
    assert other.name != bundle.name
    key = f"runs/{demo}/bundles/{bundle.name}"
    backend.put_raw(f"runs/{demo}/events/{seg.name}", seg.read_bytes())
    for body, says in ((other.read_bytes(), f"as its name {bundle.name} says"),
                       (bundle.read_bytes()[:bundle.stat().st_size // 2], "does not match its checksum")):
        backend.put_raw(key, body)
        fresh = Store(tmp_path / f"fresh-{len(says)}")
        with backend.remote() as remote:
            report = pull(fresh, remote, [demo])
        assert not report.ok and len(report.problems) == 1, report.problems
        assert bundle.name in report.problems[0] and says in report.problems[0]
        assert "Nothing was written locally" in report.problems[0]
        assert not (fresh.run_dir(demo) / "bundles").exists() or \
            not list((fresh.run_dir(demo) / "bundles").iterdir())
        fresh.close()
    src.close()


def test_pull_names_keys_off_the_layout(backend, source, tmp_path):
    src = Store(source["path"])
    demo = source["demo"]
    with backend.remote() as remote:
        push(src, remote, [demo])
    odd = [f"runs/{demo}/repo.git/hooks/post-checkout", f"runs/{demo}/lock",
           f"runs/{demo}/events/0000000000000001.open", f"runs/{demo}/events/notes.txt"]
    if backend.name == "s3":  # keys a directory cannot hold
        odd += [f"runs/{demo}/events/../../../../escape1.seg", f"runs/{demo}/bundles/../../escape2.bundle"]
    home = tmp_path / "home"
    before = json.loads(run_agtrace(["ls", "--remote", backend.url, "--json"], home, env=backend.env,
                                    check=True).stdout)
    for key in odd:
        backend.put_raw(key, b"stray")
    # ls --remote counts in SIZE only what pull takes; the keys off the layout are counted apart
    (listed,) = json.loads(run_agtrace(["ls", "--remote", backend.url, "--json"], home, env=backend.env,
                                       check=True).stdout)
    assert (listed["bytes"], listed["objects"]) == (before[0]["bytes"], before[0]["objects"]), listed
    assert (listed["off_layout"], listed["off_layout_bytes"]) == (len(odd), len(odd) * len(b"stray"))
    assert before[0]["off_layout"] == 0
    human = run_agtrace(["ls", "--remote", backend.url], home, env=backend.env, check=True).stdout.decode()
    assert f"{len(odd)} key(s) off the key layout under runs/{demo}/ not counted" in human, human
    proc = run_agtrace(["pull", demo, "--remote", backend.url, "--json"], home, env=backend.env)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    named = [k for k in odd if any(repr(k) in p for p in report["problems"])]
    if len(odd) <= 5:
        assert named == odd, report["problems"]
    else:
        assert len(named) == 5 and any(f"{len(odd) - 5} more key(s)" in p for p in report["problems"])
    assert report["retryable"] == 0
    proc = run_agtrace(["pull", demo, "--remote", backend.url], home, env=backend.env)
    assert proc.returncode == 1 and b"pulling again will not help" in proc.stderr
    fresh = Store(home)
    assert fresh.verify(demo).ok and _records(fresh, demo) == _records(src, demo)  # the rest was pulled
    assert not (fresh.run_dir(demo) / "lock").exists() and not (fresh.run_dir(demo) / "repo.git").exists()
    assert not list(tmp_path.rglob("escape*"))
    fresh.close()
    src.close()


def _bomb(size: int) -> tuple[str, bytes]:
    """The address and zstd bytes of ``size`` zero bytes: a small object that decompresses huge."""
    import zstandard

    sha, out = hashlib.sha256(), bytearray()
    compressor = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    zeros = bytes(1 << 22)
    for _ in range(size // len(zeros)):
        sha.update(zeros)
        out += compressor.compress(zeros)
    out += compressor.flush()
    return sha.hexdigest(), bytes(out)


def _limited_memory(limit: int):
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.slow  # 2 GiB of zeros hashed
def test_pull_checks_a_blob_that_decompresses_to_gigabytes_in_bounded_memory(backend, source, tmp_path):
    """A hostile remote's blob of ~64 kB whose content (2 GiB of zeros) hashes to the address a
    manifest lists: the pull held the whole content in memory to hash it (3 GiB of zeros took
    3.1 GB of RSS; a 1 MB object could take 30 GB). Now it is checked streaming, under a 1.5 GiB
    address-space limit here."""
    src = Store(source["path"])
    demo = source["demo"]
    with backend.remote() as remote:
        push(src, remote, [demo])
    src.close()
    digest, data = _bomb(2 << 30)
    assert len(data) < 1 << 20
    backend.put_raw(f"blobs/{digest[:2]}/{digest}.zst", data)
    manifest = {"format": 1, "run_id": demo, "last_seq": 1 << 40, "objects": [], "blobs": [digest]}
    backend.put_raw(f"runs/{demo}/manifests/{'f' * 16}-{'0' * 16}.json", json.dumps(manifest).encode())
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", "pull", demo, "--remote", backend.url,
         "--json"], env={**os.environ, "AGTRACE_HOME": str(home), **backend.env}, capture_output=True,
        preexec_fn=_limited_memory(3 << 29), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert json.loads(proc.stdout)["ok"]
    fresh = Store(home)
    assert fresh.blobs.has(digest) and fresh.verify(demo).ok
    fresh.blobs.check(digest)  # streaming here too: this process holds no 2 GiB either
    fresh.close()


def test_a_run_or_download_another_pull_holds_is_left_to_it(backend, source, tmp_path):
    """Two pulls into one store: the run the other pull holds (its lock), and the download the
    other pull is writing (its ``.part`` file), are retryable problems; nothing of the other's is
    touched. Before, the second pull truncated the first's download, or its clean-up removed the
    run directory under it (`No such file or directory: ….seg.part`, exit 1)."""
    import fcntl

    from agtrace.eventlog.lock import RunLock

    src = Store(source["path"])
    demo, blob_run = source["demo"], source["blob_run"]
    with backend.remote() as remote:
        push(src, remote, [demo, blob_run])
    home = tmp_path / "home"
    held = RunLock.acquire(_mkdir(home / "runs" / demo) / "lock", demo)  # "another pull" of demo
    (digest,) = {d for p, _f in _seg_paths(src, blob_run) for d in _blob_refs(p)}
    partial = _mkdir(home / "blobs" / digest[:2]) / f".{digest}.zst.part"
    partial.write_bytes(b"half of it")
    with open(partial, "rb") as claim:
        fcntl.flock(claim, fcntl.LOCK_EX)  # "another pull" writing the blob
        proc = run_agtrace(["pull", "--all", "--remote", backend.url, "--json"], home, env=backend.env)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["retryable"] == len(report["problems"]) == 2, report["problems"]
    assert any(f"run {demo} is being written or pulled" in p and f"pid {os.getpid()}" in p
               for p in report["problems"])
    assert any("another process is downloading" in p and digest in p for p in report["problems"])
    assert partial.read_bytes() == b"half of it" and (home / "runs" / demo / "lock").exists()
    assert b"pulling again retries them" in run_agtrace(["pull", "--all", "--remote", backend.url], home,
                                                        env=backend.env).stderr
    held.release()
    again = run_agtrace(["pull", "--all", "--remote", backend.url, "--json"], home, env=backend.env, check=True)
    assert json.loads(again.stdout)["ok"]
    fresh = Store(home)
    assert fresh.verify().ok
    assert _records(fresh, demo) == _records(src, demo) and _records(fresh, blob_run) == _records(src, blob_run)
    fresh.close()
    src.close()


@pytest.mark.slow  # pulls at once, several rounds
def test_two_pulls_at_once_into_a_new_store(backend, source, tmp_path):
    """Real processes racing: each ends 0, or 1 naming what the other holds (never a raw file
    error), and a later pull completes the store."""
    with backend.remote() as remote:
        push(Store(source["path"]), remote)
    env = {**os.environ, **backend.env}
    for round_ in range(3):
        home = tmp_path / f"home{round_}"
        cmd = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store", str(home), "pull",
               "--all", "--remote", backend.url]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        for proc in procs:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode in (0, 1), err
            assert b"Traceback" not in err and b"No such file" not in err and b"already exists" not in err, err
            assert proc.returncode == 0 or b"pulling again retries them" in err, err
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        store = Store(home)
        assert store.verify().ok and sorted(r.id for r in store.runs()) == sorted([source["demo"], source["blob_run"]])
        store.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _seg_paths(store: Store, run_id: str) -> list:
    return [(p, f) for f, _last, p in list_segments(store.run_dir(run_id) / "events")]


def _blob_refs(path: Path) -> set:
    from agtrace.eventlog.sync.keys import segment_blob_refs

    return segment_blob_refs(path)


def test_folders_under_runs_that_are_no_run_id_are_no_run_for_ls_pull_and_gc(backend, source, tmp_path):
    """`runs/<x>/` where x is no run id (lower case, a prefix): pull names it and takes nothing,
    so ls --remote does not list it as a run (before: listed, with its events, and counted in
    "N run(s)"), and gc --remote does not read it (before: its junk segment stopped every gc,
    and `rm --remote` could not name it to clear the way)."""
    src = Store(source["path"])
    demo, blob_run = source["demo"], source["blob_run"]
    with backend.remote() as remote:
        push(src, remote, [demo, blob_run])
    src.close()
    seg = "events/0000000000000001-0000000000000001.seg"
    strays = [f"runs/{demo.lower()}/{seg}", f"runs/{demo[:8]}/{seg}"]
    for key in strays:
        backend.put_raw(key, b"not a segment")
    home = tmp_path / "home"
    listed = run_agtrace(["ls", "--remote", backend.url, "--json"], home, env=backend.env, check=True)
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == sorted([demo, blob_run])
    human = run_agtrace(["ls", "--remote", backend.url], home, env=backend.env, check=True)
    assert b"2 run(s)" in human.stdout
    assert b"2 key(s) under 2 folder(s) of runs/ that name no run" in human.stderr, human.stderr
    pulled = run_agtrace(["pull", "--all", "--remote", backend.url, "--json"], home, env=backend.env)
    report = json.loads(pulled.stdout)
    assert pulled.returncode == 1 and sorted(report["runs"]) == sorted([demo, blob_run])
    assert len(report["problems"]) == 2 and all("is not a run id; not pulled" in p for p in report["problems"])
    with backend.remote() as remote:
        remove_remote_runs(remote, [blob_run])
        garbage = collect_remote_garbage(remote, min_age_s=0)
    assert len(garbage.removed) == 1 and garbage.removed[0].startswith("blobs/"), garbage
    assert sum("is not a run id, so no run" in p for p in garbage.problems) == 2, garbage.problems
    assert not any(k.startswith("blobs/") for k in backend.key_names())
    assert set(strays) <= set(backend.key_names())  # gc takes nothing but blobs


def test_an_object_far_larger_than_any_manifest_is_not_read(backend, source, tmp_path, monkeypatch):
    """A remote "manifest" of 200 MB (3 million listed blobs) took 624 MB of RSS to parse and a
    request per blob; one over MAX_MANIFEST_BYTES is now named and not downloaded. The pull
    takes the run from the listing; gc reads the run's segments instead, so it keeps the run's
    blobs. (The limit is lowered here so that the object stays small.)"""
    from agtrace.eventlog.sync import manifests

    monkeypatch.setattr(manifests, "MAX_MANIFEST_BYTES", 4096)
    src = Store(source["path"])
    run = source["blob_run"]
    with backend.remote() as remote:
        push(src, remote, [run])
    big = {"format": 1, "run_id": run, "objects": [], "blobs": [f"{i:064x}" for i in range(100)]}
    backend.put_raw(f"runs/{run}/manifests/{'f' * 16}-{'0' * 16}.json", json.dumps(big).encode())
    fresh = Store(tmp_path / "fresh")
    with backend.remote() as remote:
        report = pull(fresh, remote, [run])
        garbage = collect_remote_garbage(remote, min_age_s=0)
    assert len(report.problems) == 1 and "more than any manifest holds (4096)" in report.problems[0], report.problems
    assert fresh.verify(run).ok and _records(fresh, run) == _records(src, run)
    assert garbage.removed == [] and garbage.referenced == 1 and garbage.segments_read == 1, garbage
    fresh.close()
    src.close()


def test_missing_bucket_or_directory_is_a_clear_error(backend, source, tmp_path):
    src = Store(source["path"])
    if backend.name == "file":
        url, opts = f"file://{tmp_path / 'nowhere'}", {}
    else:
        url, opts = f"s3://agtrace-missing-{uuid.uuid4().hex[:8]}/p", backend.options
    with remote_for(url, **opts) as remote, pytest.raises(RemoteNotFound, match="does not exist"):
        push(src, remote)
    with remote_for(url, **opts) as remote, pytest.raises(RemoteNotFound, match="does not exist"):
        pull(Store(tmp_path / "fresh"), remote)
    assert not (tmp_path / "nowhere").exists()
    src.close()


def test_wrong_credentials_and_no_permission_change_nothing(moto_server, source, tmp_path):
    backend = S3Backend(moto_server, f"agtrace-{uuid.uuid4().hex[:12]}")
    src = Store(source["path"])
    key, _secret = moto_server["admin"]
    with backend.remote(secret_key="wrong-secret") as remote, pytest.raises(RemoteAuthError, match="AWS_ACCESS_KEY_ID"):
        push(src, remote)
    with backend.remote(access_key="AKIANOSUCHKEY", secret_key="x") as remote, pytest.raises(RemoteAuthError):
        pull(Store(tmp_path / "fresh"), remote)
    reader_key, reader_secret = moto_server["reader"]
    with backend.remote(access_key=reader_key, secret_key=reader_secret) as remote, \
            pytest.raises(RemoteAuthError, match="access denied"):
        push(src, remote)
    assert backend.objects() == {}
    assert backend.uploads() == []
    # the CLI: the same error on stderr, exit code 1, no traceback
    proc = run_agtrace(["push", "--all", "--remote", backend.url], source["path"],
                       env={**backend.env, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert proc.returncode == 1, proc.stderr
    assert b"AWS_ACCESS_KEY_ID" in proc.stderr and b"Traceback" not in proc.stderr
    src.close()


def test_unreachable_endpoint_is_a_clear_error(source):
    src = Store(source["path"])
    endpoint = f"http://{HOST}:{_free_port()}"
    with remote_for("s3://agtrace-x/p", endpoint_url=endpoint, access_key="a", secret_key="b",
                    max_attempts=1, connect_timeout=1) as remote, pytest.raises(RemoteUnreachable, match="cannot reach"):
        push(src, remote)
    src.close()


@pytest.mark.slow  # three attempts of a 1 s read timeout per command
def test_a_server_that_never_answers_fails_push_pull_and_ls_with_a_clear_error(source, tmp_path, monkeypatch):
    """A socket that accepts connections and never answers (a stalled proxy, a wrong port):
    before, each call waited 60 s four times over (4 minutes of silence per command); now
    AGTRACE_S3_TIMEOUT bounds each attempt (20 s by default) and the error says so."""
    stalled = socket.create_server((HOST, 0), backlog=64)  # listens, never accepts: connects, no answer
    home = tmp_path / "home"
    shutil.copytree(source["path"], home)
    before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    env = {"AGTRACE_S3_ENDPOINT": f"http://{HOST}:{stalled.getsockname()[1]}", "AGTRACE_S3_TIMEOUT": "1",
           "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        for args, where in ((["push", "--all"], home), (["pull", "--all"], tmp_path / "fresh"),
                            (["ls", "--remote", "s3://agtrace-x/p"], tmp_path / "none")):
            proc = run_agtrace([*args, "--remote", "s3://agtrace-x/p"] if args[0] != "ls" else args, where, env=env)
            assert proc.returncode == 1, (args, proc.stderr)
            assert b"did not answer within 1 s" in proc.stderr and b"AGTRACE_S3_TIMEOUT" in proc.stderr, proc.stderr
            assert b"Traceback" not in proc.stderr
    finally:
        stalled.close()
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == before
    assert not (tmp_path / "none").exists()
    monkeypatch.setenv("AGTRACE_S3_TIMEOUT", "soon")
    with pytest.raises(RemoteError, match="AGTRACE_S3_TIMEOUT='soon' is not a positive number"):
        remote_for("s3://agtrace-x/p", endpoint_url=f"http://{HOST}:1", access_key="a", secret_key="b")


def test_unknown_scheme_and_missing_remote():
    with pytest.raises(RemoteError, match="unknown remote scheme"):
        remote_for("gs://bucket/p")
    with pytest.raises(RemoteError, match="AGTRACE_REMOTE"):
        remote_for("")


# -- the CLI, a killed push, a killed capture ------------------------------------------------


def test_cli_push_and_pull(backend, source, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(source["path"], home)
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    first = run_agtrace(["push", "--all", "--json"], home, env=env, check=True)
    assert json.loads(first.stdout)["uploaded"] >= 5
    second = run_agtrace(["push", source["demo"][:10], "--json"], home, env=env, check=True)
    assert json.loads(second.stdout)["uploaded"] == 0
    fresh = tmp_path / "fresh"
    pulled = run_agtrace(["pull", source["demo"][:12], "--json"], fresh, env=env, check=True)
    assert json.loads(pulled.stdout)["ok"] and json.loads(pulled.stdout)["runs"] == [source["demo"]]
    run_agtrace(["verify"], fresh, env=env, check=True)
    assert run_agtrace(["push"], home, env=env).returncode == 2  # neither ids nor --all


def _big_run(store: Store, megabytes: int) -> str:
    """A run whose one sealed segment is ``megabytes`` of incompressible events."""
    run_id = new_run_id()
    (store.runs_dir / run_id).mkdir()
    writer = RunWriter(store.run_dir(run_id), run_id, durability="off", segment_bytes=1 << 40)
    writer.append(RunStarted(agent="big"))
    for _ in range(megabytes):
        writer.append(RawRecorded(source="raw", data=os.urandom(1 << 20)))
        writer.flush(sync=False)
    writer.close()
    return run_id


@pytest.mark.slow  # 10-30 s on a loaded 2-core machine
def test_killed_push_resumes(backend, tmp_path):
    home = tmp_path / "home"
    store = Store(home)
    run_id = _big_run(store, 80)
    store.close()
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    cmd = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "push", run_id, "--json"]
    if isinstance(backend, S3Backend):  # killed while it waits to send part 3: parts 1 and 2 stored
        proxy = HoldingProxy(backend.env["AGTRACE_S3_ENDPOINT"], hold_part=3)
        proc = subprocess.Popen(cmd, env={**os.environ, "AGTRACE_HOME": str(home), **env,
                                          "AGTRACE_S3_ENDPOINT": proxy.endpoint},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            held = proxy.held.wait(120)
            done = proc.poll()
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            proxy.close()
        assert held and done is None, f"the push did not reach part 3: {proc.stderr.read().decode()[-2000:]}"
        assert [len(backend.parts(u)) for u in backend.uploads()] == [2]
        assert not any(k.endswith(".seg") for k in backend.objects())  # nothing half-written is visible
    else:
        proc = subprocess.Popen(cmd, env={**os.environ, "AGTRACE_HOME": str(home), **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.endswith((".tmp", ".part")) for p in backend.root.rglob(".*")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(30)
    again = run_agtrace(["push", run_id, "--json"], home, env=env, check=True)
    report = json.loads(again.stdout)
    if isinstance(backend, S3Backend):
        assert report["resumed_parts"] == 2 and report["uploaded"] >= 1
        assert backend.uploads() == []
    fresh = Store(tmp_path / "fresh")
    with backend.remote() as remote:
        assert pull(fresh, remote, [run_id]).ok
    assert fresh.verify().ok
    assert [r.seq for r in fresh.read(run_id)] == list(range(1, 82))
    fresh.close()


@pytest.mark.slow  # 70 MB through moto
def test_a_resumed_upload_keeps_its_good_parts_and_resends_a_bad_one(moto_server, tmp_path):
    """An upload left in progress with one part that differs from the local file's keeps its
    matching parts and sends that one again; before, the whole upload was left alone and every
    part sent anew. moto stores a part whatever its Content-MD5 says, so a part cut short by a
    killed push can differ: one way the kill-and-resume test above resumed 0 parts in a CI run."""
    backend = S3Backend(moto_server, f"agtrace-{uuid.uuid4().hex[:12]}")
    home = tmp_path / "home"
    store = Store(home)
    run_id = _big_run(store, 70)  # over the 64 MiB multipart threshold: 9 parts of 8 MiB
    ((_, _, segment),) = list_segments(store.run_dir(run_id) / "events")
    store.close()
    data, size = segment.read_bytes(), 8 * 1024 * 1024
    key = f"{backend.prefix}/runs/{run_id}/events/{segment.name}"
    upload = backend.client.create_multipart_upload(Bucket=backend.bucket, Key=key)["UploadId"]
    for number, body in ((1, data[:size]), (2, os.urandom(size)), (3, data[2 * size:3 * size])):
        backend.client.upload_part(Bucket=backend.bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)
    report = json.loads(run_agtrace(["push", run_id, "--json"], home,
                                    env={**backend.env, "AGTRACE_REMOTE": backend.url}, check=True).stdout)
    assert report["resumed_parts"] == 2, report  # parts 1 and 3; part 2 sent again
    assert backend.uploads() == []
    assert backend.client.get_object(Bucket=backend.bucket, Key=key)["Body"].read() == data


SHIP_CHILD = textwrap.dedent("""
    import os, sys, time
    from agtrace.eventlog import Store, RunStarted, LineLogged, PartEnded
    from agtrace.eventlog import RemoteShipper, RunWriter, remote_for
    store = Store(sys.argv[1])
    run_id = sys.argv[3]
    (store.runs_dir / run_id).mkdir()
    writer = RunWriter(store.run_dir(run_id), run_id, segment_bytes=4096)
    writer.append(RunStarted(agent="shipper", heartbeat_s=1.0))
    opts = {}
    if os.environ.get("AGTRACE_S3_ENDPOINT"):
        opts = {"access_key": os.environ["AWS_ACCESS_KEY_ID"], "secret_key": os.environ["AWS_SECRET_ACCESS_KEY"]}
    shipper = RemoteShipper.start(store, run_id, remote_for(sys.argv[2], **opts), interval_s=0.1)
    part = 0
    while True:
        part += 1
        for i in range(20):
            writer.append(LineLogged(stream="stdout", text=f"part {part} line {i} " + os.urandom(16).hex()), part=part)
        writer.append(PartEnded(part_kind="tool", title=f"part {part}"), part=part)
        print(writer.durable_seq, flush=True)
        if shipper.last_error is not None or not shipper._thread.is_alive():
            print(f"part {part}: shipper alive={shipper._thread.is_alive()} last_error={shipper.last_error!r}",
                  file=sys.stderr, flush=True)
        time.sleep(0.01)
""")


def test_run_shipped_while_captured_survives_sigkill(backend, tmp_path):
    home = tmp_path / "home"
    run_id = new_run_id()
    # the child's stderr goes to a file: a pipe nobody reads could fill and block it
    with open(tmp_path / "child.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", SHIP_CHILD, str(home), backend.url, run_id],
                                env={**os.environ, **backend.env}, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120  # a liveness bound: it takes 2-4 s even on a loaded machine
    try:
        while time.monotonic() < deadline:
            segs = [k for k in backend.key_names() if k.startswith(f"runs/{run_id}/events/")]
            if len(segs) >= 5:
                break
            assert proc.poll() is None, (tmp_path / "child.err").read_text()
            time.sleep(0.1)
        else:
            local = sorted(p.name for p in (home / "runs" / run_id / "events").iterdir())
            raise AssertionError(f"the shipper shipped {len(segs)} segments in 120 s; local files: {local}; "
                                 f"child stderr: {(tmp_path / 'child.err').read_text()[-3000:]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    shipped = sorted(k for k in backend.objects() if k.startswith(f"runs/{run_id}/events/"))
    last_shipped = int(shipped[-1].rsplit("-", 1)[1][:16], 16)
    fresh = Store(tmp_path / "fresh")
    with backend.remote() as remote:
        report = pull(fresh, remote, [run_id])
    assert report.ok, report.problems
    assert fresh.verify().ok
    seqs = [r.seq for r in fresh.read(run_id)]
    assert seqs == list(range(1, last_shipped + 1))
    assert fresh.info(run_id).status == "crashed"
    local = Store(home)
    assert [r.seq for r in local.read(run_id)][:last_shipped] == seqs  # the remote is a prefix of the local log
    local.close()
    fresh.close()


def test_shipper_ships_while_running_and_completes_at_stop(backend, tmp_path):
    from agtrace.eventlog import LineLogged, RemoteShipper, RunEnded

    store = Store(tmp_path / "home")
    run_id = new_run_id()
    (store.runs_dir / run_id).mkdir()
    writer = RunWriter(store.run_dir(run_id), run_id, segment_bytes=2048)
    writer.append(RunStarted(agent="shipper"))
    with backend.remote() as remote:
        shipper = RemoteShipper.start(store, run_id, remote, interval_s=0.05)
        for i in range(400):
            writer.append(LineLogged(stream="stdout", text=f"line {i} " + os.urandom(24).hex()))
        writer.flush()
        deadline = time.monotonic() + 60  # a liveness bound; ~1 s unloaded
        while not any(k.startswith(f"runs/{run_id}/events/") for k in backend.key_names()):
            assert time.monotonic() < deadline, shipper.last_error
            time.sleep(0.05)
        assert not any("/manifests/" in k for k in backend.objects())  # no manifest per tick
        writer.append(RunEnded(status="completed"))
        writer.close()
        report = shipper.stop(final=True)
        assert shipper.last_error is None and report.uploaded >= 2
        local = sorted(p.name for p in (store.run_dir(run_id) / "events").glob("*.seg"))
        remote_segs = sorted(k.rsplit("/", 1)[1] for k in backend.objects() if k.startswith(f"runs/{run_id}/events/"))
        assert remote_segs == local
        assert any(k.startswith(f"runs/{run_id}/manifests/") for k in backend.objects())
        fresh = Store(tmp_path / "fresh")
        assert pull(fresh, remote, [run_id]).ok
    assert [(r.seq, r.event) for r in fresh.read(run_id)] == [(r.seq, r.event) for r in store.read(run_id)]
    assert fresh.info(run_id).status == "completed"
    store.close()
    fresh.close()


def test_shipper_outlives_a_push_that_fails_unexpectedly(tmp_path):
    """A push that raises something no remote maps (a bug, a library's surprise) is recorded in
    ``last_error`` and retried on the next tick; the thread does not die while the capture goes on."""
    from agtrace.eventlog import LineLogged, RemoteShipper
    from agtrace.eventlog.remotes.file import FileRemote

    class FailsOnce(FileRemote):
        failed = False

        def put_file(self, key, path, *args, **kwargs):
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise RuntimeError("surprise")
            return super().put_file(key, path, *args, **kwargs)

    store = Store(tmp_path / "home")
    run_id = new_run_id()
    (store.runs_dir / run_id).mkdir()
    writer = RunWriter(store.run_dir(run_id), run_id, segment_bytes=2048)
    writer.append(RunStarted(agent="shipper"))
    for i in range(200):
        writer.append(LineLogged(stream="stdout", text=f"line {i} " + os.urandom(24).hex()))
    writer.flush()
    (tmp_path / "remote").mkdir()
    remote = FailsOnce(tmp_path / "remote")
    shipper = RemoteShipper.start(store, run_id, remote, interval_s=0.02)
    deadline = time.monotonic() + 30
    while not list((tmp_path / "remote").rglob("*.seg")):
        assert time.monotonic() < deadline and shipper._thread.is_alive(), shipper.last_error
        time.sleep(0.02)
    assert FailsOnce.failed and shipper._thread.is_alive()
    writer.close()
    shipper.stop(final=True)
    assert shipper.last_error is None
    store.close()


def test_a_failed_tick_is_reported_in_last_error(tmp_path):
    from agtrace.eventlog import RemoteError, RemoteShipper
    from agtrace.eventlog.remotes.file import FileRemote

    class Broken(FileRemote):
        def list(self, prefix=""):
            raise ValueError("the listing came back malformed")

        def put_file(self, *args, **kwargs):
            raise ValueError("the listing came back malformed")

    store = Store(tmp_path / "home")
    run_id = new_run_id()
    (store.runs_dir / run_id).mkdir()
    writer = RunWriter(store.run_dir(run_id), run_id, segment_bytes=1024)
    writer.append(RunStarted(agent="shipper"))
    writer.roll()
    (tmp_path / "remote").mkdir()
    shipper = RemoteShipper.start(store, run_id, Broken(tmp_path / "remote"), interval_s=0.02)
    deadline = time.monotonic() + 30
    while shipper.last_error is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert isinstance(shipper.last_error, RemoteError)
    assert "ValueError: the listing came back malformed" in str(shipper.last_error)
    assert shipper._thread.is_alive()
    shipper.stop(final=False)
    writer.close()
    store.close()


def test_download_resumes_from_a_partial_file_and_recovers_from_a_bad_one(backend, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src"
    src.write_bytes(data)
    dest = tmp_path / "dl" / "obj.seg"
    dest.parent.mkdir()
    partial = dest.with_name(".obj.seg.part")
    with backend.remote() as remote:
        remote.put_file("runs/X/events/obj.seg", src)
        partial.write_bytes(data[: 1024 * 1024])  # what a killed download left
        remote.get_file("runs/X/events/obj.seg", dest)
        assert dest.read_bytes() == data and not partial.exists()
        dest.unlink()
        partial.write_bytes(b"garbage that is not a prefix")
        remote.get_file("runs/X/events/obj.seg", dest)
        assert dest.read_bytes() == data and not partial.exists()
        dest.unlink()
        with pytest.raises(RemoteError, match="sha256"):
            remote.get_file("runs/X/events/obj.seg", dest, sha256="0" * 64)
        assert not dest.exists() and not partial.exists()
        with pytest.raises(RemoteNotFound):
            remote.get_file("runs/X/events/none.seg", dest)


def test_run_with_remote_killed_mid_run_is_pulled_and_replayed_on_a_fresh_store(backend, tmp_path):
    """`agtrace run --remote` ships while it runs; SIGKILL it; a fresh store pulls and replays."""
    from agtrace.capture.demo_agent import setup_demo_repo
    from agtrace.eventlog import EventlogError
    from agtrace.replay import ReplayError
    from agtrace.replay.workspace import materialize

    wd = tmp_path / "work"
    wd.mkdir()
    setup_demo_repo(wd)
    env = {**os.environ, **backend.env, "AGTRACE_HOME": str(tmp_path / "capture-store"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from agtrace.cli.main import main; main()", "run", "--agent", "codex",
         "--workdir", str(wd), "--remote", backend.url, "--ship-interval", "0.5", "--quiet", "--",
         sys.executable, "-m", "agtrace.capture.demo_agent", "--parts-delay", "0.3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    # kill once a few parts were captured and the shipper has put a bundle and a sealed segment on
    # the remote (waiting on what happened, not on the clock: a loaded machine ships late)
    remote = backend.remote()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        keys = [o.key for o in remote.list("runs/")]
        shipped = max((int(k.rsplit("/", 1)[1].split("-")[1].split(".")[0], 16)
                       for k in keys if "/events/" in k and k.endswith(".seg")), default=0)
        if any("/bundles/" in k for k in keys) and shipped:
            capture = Store(tmp_path / "capture-store")
            try:
                ids = capture.run_ids()
                ends = [r.seq for r in capture.read(ids[0]) if isinstance(r.event, PartEnded)] if ids else []
                if len(ends) >= 3 and shipped >= ends[2]:  # part 3 has reached the remote
                    break
            finally:
                capture.close()
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    started = descendants(proc.pid)
    proc.kill()
    proc.wait(10)
    end(started)  # the supervisor stops the agent; whatever is left is ended by pid
    fresh = Store(tmp_path / "fresh")
    report = pull(fresh, backend.remote(), None)
    assert report.ok, report.problems
    (run_id,) = fresh.run_ids()
    assert fresh.verify(run_id).ok
    info = fresh.info(run_id)
    assert info.status == "crashed" and info.parts >= 3
    local = Store(tmp_path / "capture-store")
    shipped = list(fresh.read(run_id))
    assert [(r.seq, r.event) for r in shipped] == [(r.seq, r.event) for r in local.read(run_id, 1, len(shipped))]
    # every part whose snapshot reached the remote replays to its recorded tree
    replayed = 0
    for part in range(info.parts, 0, -1):
        try:
            view = materialize(fresh, run_id, part, tmp_path / f"p{part}")
        except (ReplayError, EventlogError):  # its bundle had not been shipped yet
            continue
        replayed += 1
        assert view.tree_id
        break
    assert replayed == 1


def _newer_format(data: bytes) -> bytes:
    """A segment's bytes with the header a newer agtrace would write (format 2), frames kept."""
    return b"AGTSEG2\n" + data[8:]


def test_a_segment_of_a_newer_format_is_never_replaced_set_aside_or_pushed(backend, source, tmp_path):
    """Issue: a segment written by a newer agtrace (header ``AGTSEG2``) was damage: pull
    replaced it by the remote's format-1 copy and kept it as ``.damaged-<ns>``; push said
    "bad segment header". Now each names the newer format, says to upgrade and leaves it."""
    demo = source["demo"]
    home = tmp_path / "home"
    store = _copy_store(source["path"], home)
    seg, _bundle = _demo_files(store, demo)
    key = f"runs/{demo}/events/{seg.name}"
    with backend.remote() as remote:
        assert push(store, remote, [demo]).ok
    on_remote = backend.objects()[key]
    seg.write_bytes(newer := _newer_format(seg.read_bytes()))
    store.close()
    for command in (["pull", demo], ["push", demo]):
        proc = run_agtrace([*command, "--remote", backend.url], home, env=backend.env)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert f"{seg}: written by a newer version of agtrace (format 2; this one reads format 1); upgrade " \
               "agtrace to read it" in err, err
        assert "damaged" not in err.replace("nothing this version can read is damaged", "") and "Traceback" not in err
        assert seg.read_bytes() == newer and not [p for p in seg.parent.iterdir() if ".damaged-" in p.name]
        assert backend.objects()[key] == on_remote
    # the remote's copy is of the newer format (its manifest lists it): a pull names it, takes nothing
    manifests = [k for k in backend.key_names() if k.startswith(f"runs/{demo}/manifests/")]
    backend.put_raw(key, _newer_format(on_remote))
    for m in manifests:
        body = json.loads(backend.objects()[m])
        for entry in body["objects"]:
            if entry["key"] == f"events/{seg.name}":  # run-relative
                entry["sha256"] = hashlib.sha256(_newer_format(on_remote)).hexdigest()
        backend.put_raw(m, json.dumps(body).encode())
    fresh = tmp_path / "fresh"
    proc = run_agtrace(["pull", demo, "--remote", backend.url], fresh, env=backend.env)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "written by a newer version of agtrace (format 2" in err and "not pulled" in err, err
    assert not list(fresh.rglob("*.seg")) and not list(fresh.rglob("*.damaged-*"))
