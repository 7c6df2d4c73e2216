"""Push runs to a remote: what is sent, in which order, and why pushing again sends nothing.

What a push sends, per run, in this order (so the remote never holds an object whose
dependencies it lacks): the blobs the run's sealed segments reference, its bundles, its sealed
segments (``events`` then ``scores``, in seq order), and last a manifest
``runs/<id>/manifests/<last seq>-<sha16>.json`` listing every object with its size and sha256.
Never sent: the open segment, the lock, the catalog, ``repo.git``, ``cache/``, ``staging/``.
Every object is immutable and put with "never overwrite" (see ``remotes/``), so pushing again
is idempotent and uploads nothing that is already there; an interrupted push resumes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import reader, segment
from ..errors import CorruptBlob, StoreError
from ..remotes.base import Remote
from ..remotes.transfer import FileDigest
from ..store import Store
from .keys import BUNDLE_NAME, MANIFEST_FORMAT, STREAMS, Progress, blob_key, segment_blob_refs


@dataclass
class PushReport:
    """What a push did, each object counted once: ``uploaded`` objects sent (``bytes_uploaded``);
    ``existed`` objects the remote held before this push; ``shared`` blobs that an earlier run of
    the same push had already sent (several runs reference them); ``skipped`` open segments not
    sent because their run is still being written (``skipped_runs``: which runs)."""

    runs: list[str] = field(default_factory=list)
    uploaded: int = 0
    existed: int = 0
    shared: int = 0
    skipped: int = 0
    skipped_runs: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    resumed_parts: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def add(self, other: PushReport) -> None:
        self.runs += [r for r in other.runs if r not in self.runs]
        self.uploaded += other.uploaded
        self.existed += other.existed
        self.shared += other.shared
        self.skipped += other.skipped
        self.skipped_runs += [r for r in other.skipped_runs if r not in self.skipped_runs]
        self.bytes_uploaded += other.bytes_uploaded
        self.resumed_parts += other.resumed_parts
        self.keys += other.keys

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Local:
    key: str
    path: Path


class PushState:
    """What one pusher remembers between pushes of a run: digests and blob refs of sealed files
    (they never change) and the keys known to be on the remote."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, int, int], FileDigest] = {}
        self.refs: dict[str, set[str]] = {}
        self.on_remote: set[str] = set()

    def digest(self, path: Path, remote: Remote) -> FileDigest:
        st = path.stat()
        k = (str(path), st.st_size, st.st_mtime_ns)
        if k not in self.digests:
            self.digests[k] = remote.digest(path)
        return self.digests[k]

    def blob_refs(self, path: Path) -> set[str]:
        if str(path) not in self.refs:
            self.refs[str(path)] = segment_blob_refs(path)
        return self.refs[str(path)]


def push(
    store: Store, remote: Remote, run_ids: Iterable[str] | None = None, progress: Progress | None = None
) -> PushReport:
    """Upload the sealed objects of ``run_ids`` (all runs when None). Idempotent; resumes.

    Raises :class:`RemoteConflict` if a key holds other bytes (nothing is overwritten) and
    :class:`RemoteError` for every failure of the remote.
    """
    started = time.monotonic()
    ids = list(run_ids) if run_ids is not None else store.run_ids()
    report = PushReport()
    state = PushState()
    plan = [(rid, _local_objects(store, rid, state)) for rid in ids]
    total = sum(len(objs) + 1 for _rid, objs in plan)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    counted: set[str] = set()
    for rid, objs in plan:
        report.add(_push_objects(store, remote, rid, objs, state, tick, counted=counted))
        open_segments = _open_segments(store, rid)
        if open_segments:
            report.skipped += open_segments
            report.skipped_runs.append(rid)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def push_run(store: Store, remote: Remote, run_id: str, state: PushState | None = None, *,
             manifest: bool = True) -> PushReport:
    """Push one run's sealed objects (what the shipper does every few seconds).

    ``manifest=False`` skips the manifest: a live run would otherwise leave one per tick, each
    listing every object so far (quadratic). Pull does not need it; the shipper writes one at stop.
    """
    state = state or PushState()
    objs = _local_objects(store, run_id, state)
    return _push_objects(store, remote, run_id, objs, state, lambda: None, manifest=manifest)


def _open_segments(store: Store, run_id: str) -> int:
    """How many of a run's segments are open (never pushed: they still change)."""
    run_dir = store.run_dir(run_id)
    return sum(1 for stream in STREAMS for _f, last, _p in reader.list_segments(run_dir / stream) if last is None)


def _local_objects(store: Store, run_id: str, state: PushState) -> list[_Local]:
    """Blobs, bundles, then sealed segments of a run, in upload order. Reads files, never the catalog."""
    run_dir = store.run_dir(run_id)
    if not (run_dir / "events").is_dir():
        raise StoreError(f"run {run_id} is not in {store.root}; `agtrace ls` lists the runs")
    segments: list[_Local] = []
    blobs: set[str] = set()
    for stream in STREAMS:
        for _first, last, path in reader.list_segments(run_dir / stream):
            if last is None:
                continue  # the open segment is never pushed: it still changes
            segments.append(_Local(f"runs/{run_id}/{stream}/{path.name}", path))
            blobs |= state.blob_refs(path)
    out = []
    for digest in sorted(blobs):
        path = store.blobs.path(digest)
        if not path.exists():
            raise CorruptBlob(f"run {run_id} references blob {digest}, which is missing from {store.root}; "
                              "`agtrace verify` lists such problems", str(path))
        out.append(_Local(blob_key(digest), path))
    bundle_dir = run_dir / "bundles"
    if bundle_dir.is_dir():
        for path in sorted(bundle_dir.iterdir()):
            if BUNDLE_NAME.match(path.name):
                out.append(_Local(f"runs/{run_id}/bundles/{path.name}", path))
    return out + segments


def _push_objects(store, remote: Remote, run_id: str, objs: list[_Local], state: PushState, tick,
                  manifest: bool = True, counted: set[str] | None = None) -> PushReport:
    report = PushReport(runs=[run_id])
    if not manifest and all(o.key in state.on_remote for o in objs):
        report.existed = len(objs)  # nothing new since the last push of this pusher
        return report
    listed = {o.key: o for o in remote.list(f"runs/{run_id}/")}
    blob_keys = [o.key for o in objs if o.key.startswith("blobs/") and o.key not in state.on_remote]
    for prefix in sorted({k.rsplit("/", 1)[0] + "/" for k in blob_keys}):
        listed.update((o.key, o) for o in remote.list(prefix))
    entries = []
    for obj in objs:
        digest = state.digest(obj.path, remote)
        if obj.key.startswith("runs/"):
            entries.append({"key": obj.key.split("/", 2)[2], "size": digest.size, "sha256": digest.sha256})
        if counted is not None and obj.key in counted:  # a blob another run of this push counted
            report.shared += 1
        elif obj.key in state.on_remote:
            report.existed += 1
        elif obj.key in listed:
            if not remote.same_as(obj.key, digest, listed[obj.key]):
                raise remote.conflict(obj.key, digest)
            report.existed += 1
        else:
            result = remote.put_file(obj.key, obj.path, digest=digest)
            if result.status == "uploaded":
                report.uploaded += 1
                report.bytes_uploaded += result.nbytes
                report.resumed_parts += result.resumed_parts
                report.keys.append(obj.key)
            else:
                report.existed += 1
        state.on_remote.add(obj.key)
        if counted is not None:
            counted.add(obj.key)
        tick()
    if entries and manifest:
        _push_manifest(store, remote, run_id, objs, entries, listed, report)
    tick()
    return report


def _push_manifest(store, remote, run_id, objs, entries, listed, report) -> None:
    """Write the manifest last: its presence says every object it lists is on the remote."""
    last = 0
    for obj in objs:
        parsed = segment.parse_name(obj.path.name)
        if obj.key.startswith(f"runs/{run_id}/events/") and parsed and parsed[1]:
            last = max(last, parsed[1])
    blobs = sorted(o.key.rsplit("/", 1)[1][:-4] for o in objs if o.key.startswith("blobs/"))
    body = {"format": MANIFEST_FORMAT, "run_id": run_id, "last_seq": last, "objects": entries, "blobs": blobs}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    key = f"runs/{run_id}/manifests/{last:016x}-{hashlib.sha256(data).hexdigest()[:16]}.json"
    if key in listed:
        report.existed += 1
        return
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".push-") as tmp:
        path = Path(tmp) / "run.json"
        path.write_bytes(data)
        result = remote.put_file(key, path)
    if result.status == "uploaded":
        report.uploaded += 1
        report.bytes_uploaded += result.nbytes
        report.keys.append(key)
    else:
        report.existed += 1
