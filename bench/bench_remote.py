"""Benchmark push and pull against a local S3 (moto server on 127.0.0.1) and a file:// remote.

Measured in one run, on the same store: one run with one large segment (multipart path) and one
run of many small segments (per-object overhead), incompressible payloads so sizes are honest.

* push MB/s and pull MB/s (``agtrace.eventlog.push`` / ``pull``: digests, listing,
  conditional puts with Content-MD5, frame checks on pull, catalog sync);
* baseline, per remote, measured on the same bytes in the same run: a plain copy — boto3's
  ``upload_file`` / ``download_file`` for S3, ``shutil.copyfile`` + fsync for file:// — so the
  printed ratio agtrace/baseline is the cost of agtrace's checks and bookkeeping;
* a second push (nothing to upload): seconds, to show it costs a listing, not a transfer.

Medians of ``--repeat`` runs; nothing is asserted. Every server is on 127.0.0.1.

Usage: python bench/bench_remote.py [--big-mb 96] [--small 200] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3

from agtrace.eventlog import (
    LineLogged,
    RawRecorded,
    RunStarted,
    Store,
    new_run_id,
    pull,
    push,
    remote_for,
)
from agtrace.eventlog.writer import RunWriter

HOST = "127.0.0.1"


def make_store(root: Path, big_mb: int, small: int) -> Store:
    store = Store(root)
    big = new_run_id()
    (store.runs_dir / big).mkdir()
    w = RunWriter(store.run_dir(big), big, durability="off", segment_bytes=1 << 40)
    w.append(RunStarted(agent="bench-big"))
    for _ in range(big_mb):
        w.append(RawRecorded(source="raw", data=os.urandom(1 << 20)))
        w.flush(sync=False)
    w.close()
    many = new_run_id()
    (store.runs_dir / many).mkdir()
    w = RunWriter(store.run_dir(many), many, durability="off", segment_bytes=64 * 1024)
    w.append(RunStarted(agent="bench-small"))
    for i in range(small * 40):
        w.append(LineLogged(stream="stdout", text=os.urandom(1024).hex()))
        if i % 10 == 9:
            w.flush(sync=False)  # frames of ~10 KB, so segments roll at ~64 KB
    w.close()
    store.reindex()
    return store


def store_bytes(store: Store) -> int:
    return sum(p.stat().st_size for p in store.runs_dir.rglob("*.seg"))


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return proc, f"http://{HOST}:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("moto server did not start")


def bench_backend(name: str, new_remote, baseline_put, baseline_get, store: Store, work: Path, repeat: int) -> dict:
    nbytes = store_bytes(store)
    push_s, push2_s, pull_s, base_put_s, base_get_s = [], [], [], [], []
    files = sorted(store.runs_dir.rglob("*.seg"))
    for i in range(repeat):
        remote = new_remote()
        t = time.perf_counter()
        first = push(store, remote)
        push_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        second = push(store, remote)
        push2_s.append(time.perf_counter() - t)
        assert second.uploaded == 0, second
        fresh = Store(work / f"{name}-pull-{i}")
        t = time.perf_counter()
        report = pull(fresh, remote)
        pull_s.append(time.perf_counter() - t)
        assert report.ok, report.problems
        fresh.close()
        shutil.rmtree(work / f"{name}-pull-{i}")
        remote.close()
        t = time.perf_counter()
        target = baseline_put(files)
        base_put_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        baseline_get(target, work / f"{name}-base-{i}")
        base_get_s.append(time.perf_counter() - t)
        shutil.rmtree(work / f"{name}-base-{i}")
    mb = nbytes / 1e6
    med = statistics.median
    return {
        "remote": name, "mb": round(mb, 1), "objects": first.uploaded,
        "push_mb_s": round(mb / med(push_s), 1), "pull_mb_s": round(mb / med(pull_s), 1),
        "baseline_put_mb_s": round(mb / med(base_put_s), 1), "baseline_get_mb_s": round(mb / med(base_get_s), 1),
        "push_vs_baseline": round(med(base_put_s) / med(push_s), 2),
        "pull_vs_baseline": round(med(base_get_s) / med(pull_s), 2),
        "second_push_s": round(med(push2_s), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big-mb", type=int, default=96)
    ap.add_argument("--small", type=int, default=200, help="small segments (~64 KB each) in the second run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agtrace-bench-remote-"))
    proc, endpoint = start_moto()
    try:
        store = make_store(work / "store", args.big_mb, args.small)
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)

        def new_s3():
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            s3.create_bucket(Bucket=bucket)
            return remote_for(f"s3://{bucket}/p", endpoint_url=endpoint, access_key="bench", secret_key="bench")

        def s3_put(files):
            bucket = f"base-{uuid.uuid4().hex[:12]}"
            s3.create_bucket(Bucket=bucket)
            for f in files:
                s3.upload_file(str(f), bucket, f"p/{f.parent.parent.name}/{f.name}")
            return bucket

        def s3_get(bucket, dest: Path):
            dest.mkdir()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", ()):
                    s3.download_file(bucket, obj["Key"], str(dest / obj["Key"].replace("/", "_")))

        def new_dir():
            d = work / f"remote-{uuid.uuid4().hex[:8]}"
            d.mkdir()
            return remote_for(f"file://{d}")

        def dir_put(files):
            d = work / f"base-{uuid.uuid4().hex[:8]}"
            d.mkdir()
            for f in files:
                out = d / f"{f.parent.parent.name}_{f.name}"
                shutil.copyfile(f, out)
                with open(out, "rb+") as fh:
                    os.fsync(fh.fileno())
            return d

        def dir_get(src: Path, dest: Path):
            dest.mkdir()
            for f in src.iterdir():
                shutil.copyfile(f, dest / f.name)
                with open(dest / f.name, "rb+") as fh:
                    os.fsync(fh.fileno())

        results = [
            bench_backend("s3 (moto, 127.0.0.1)", new_s3, s3_put, s3_get, store, work, args.repeat),
            bench_backend("file://", new_dir, dir_put, dir_get, store, work, args.repeat),
        ]
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['remote']}: {r['mb']} MB in {r['objects']} objects")
        print(f"  push {r['push_mb_s']} MB/s (plain copy {r['baseline_put_mb_s']} MB/s, ratio {r['push_vs_baseline']})")
        print(f"  pull {r['pull_mb_s']} MB/s (plain copy {r['baseline_get_mb_s']} MB/s, ratio {r['pull_vs_baseline']})")
        print(f"  second push (nothing new): {r['second_push_s']} s")


if __name__ == "__main__":
    main()
