"""Push runs to a remote and pull them back; ship a live run while it is captured.

What a push sends, per run, in this order (so the remote never holds an object whose
dependencies it lacks): the blobs the run's sealed segments reference, its bundles, its sealed
segments (``events`` then ``scores``, in seq order), and last a manifest
``runs/<id>/manifests/<last seq>-<sha16>.json`` listing every object with its size and sha256.
Never sent: the open segment, the lock, the catalog, ``repo.git``, ``cache/``, ``staging/``.
Every object is immutable and put with "never overwrite" (see ``remote.py``), so pushing again
is idempotent and uploads nothing that is already there; an interrupted push resumes.

A pull downloads what the local store lacks — segments in seq order, so the local run is always
a gapless prefix of the remote one — checks every frame of every segment and the sha256 of every
object before it is renamed into place, fetches referenced blobs (verified against their
address), then brings the catalog up to date. A store that has only the bucket can list, verify
and replay any pulled run (replay unbundles the bundles when ``repo.git`` is absent).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from . import codec, reader, segment
from .errors import CorruptBlob, CorruptLog, EventlogError, StoreError
from .lock import is_locked
from .remote import FileDigest, ObjectInfo, Remote, RemoteError, RemoteNotFound, digest_file
from .store import Store, blob_refs

STREAMS = ("events", "scores")
BUNDLE_NAME = re.compile(r"^[0-9]{4,}-[0-9a-f]{12}\.bundle$")
MANIFEST_NAME = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}\.json$")
MANIFEST_FORMAT = 1

Progress = Callable[[int, int], None]


@dataclass
class PushReport:
    """What a push did. ``uploaded`` counts objects sent; ``existed`` those already there."""

    runs: list[str] = field(default_factory=list)
    uploaded: int = 0
    existed: int = 0
    bytes_uploaded: int = 0
    resumed_parts: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def add(self, other: PushReport) -> None:
        self.runs += [r for r in other.runs if r not in self.runs]
        self.uploaded += other.uploaded
        self.existed += other.existed
        self.bytes_uploaded += other.bytes_uploaded
        self.resumed_parts += other.resumed_parts
        self.keys += other.keys

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PullReport:
    """What a pull did. ``problems`` lists objects that were not pulled and why."""

    runs: list[str] = field(default_factory=list)
    downloaded: int = 0
    present: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


# -- pushing -----------------------------------------------------------------------------------


@dataclass
class _Local:
    key: str
    path: Path


class _PushState:
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
    state = _PushState()
    plan = [(rid, _local_objects(store, rid, state)) for rid in ids]
    total = sum(len(objs) + 1 for _rid, objs in plan)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    for rid, objs in plan:
        report.add(_push_objects(store, remote, rid, objs, state, tick))
    report.seconds = round(time.monotonic() - started, 3)
    return report


def push_run(store: Store, remote: Remote, run_id: str, state: _PushState | None = None, *,
             manifest: bool = True) -> PushReport:
    """Push one run's sealed objects (what the shipper does every few seconds).

    ``manifest=False`` skips the manifest: a live run would otherwise leave one per tick, each
    listing every object so far (quadratic). Pull does not need it; the shipper writes one at stop.
    """
    state = state or _PushState()
    objs = _local_objects(store, run_id, state)
    return _push_objects(store, remote, run_id, objs, state, lambda: None, manifest=manifest)


def _local_objects(store: Store, run_id: str, state: _PushState) -> list[_Local]:
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
        out.append(_Local(_blob_key(digest), path))
    bundle_dir = run_dir / "bundles"
    if bundle_dir.is_dir():
        for path in sorted(bundle_dir.iterdir()):
            if BUNDLE_NAME.match(path.name):
                out.append(_Local(f"runs/{run_id}/bundles/{path.name}", path))
    return out + segments


def _push_objects(store, remote: Remote, run_id: str, objs: list[_Local], state: _PushState, tick,
                  manifest: bool = True) -> PushReport:
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
        if obj.key in state.on_remote:
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


def _blob_key(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest}.zst"


def segment_blob_refs(path: Path) -> set[str]:
    """The blob digests referenced by the events of a sealed segment."""
    refs: set[str] = set()
    data = path.read_bytes()
    for info, batch in segment.iter_frames(data):
        for rec in codec.decode_batch(batch, info.first_seq):
            refs.update(blob_refs(rec.event))
    return refs


# -- pulling -----------------------------------------------------------------------------------


def remote_run_ids(remote: Remote) -> list[str]:
    """The ids of the runs a remote holds (those with at least one object under ``runs/<id>/``)."""
    return sorted({o.key.split("/")[1] for o in remote.list("runs/") if o.key.count("/") >= 2})


def pull(
    store: Store, remote: Remote, run_ids: Iterable[str] | None = None, progress: Progress | None = None
) -> PullReport:
    """Download what the store lacks of ``run_ids`` (all the remote's runs when None), verified.

    Objects that cannot be pulled (damaged on the remote, conflicting with local files) are
    listed in ``problems``; everything else is pulled. The catalog is brought up to date.
    """
    started = time.monotonic()
    ids = list(run_ids) if run_ids is not None else remote_run_ids(remote)
    report = PullReport()
    plans = []
    for rid in ids:
        listing = remote.list(f"runs/{rid}/")
        if not listing:
            raise RemoteNotFound(f"run {rid} is not on {remote.url}; `agtrace pull --all` pulls every run it has")
        if is_locked(store.run_dir(rid) / "lock"):
            raise StoreError(f"run {rid} is being written in {store.root}; pull it once its writer has finished")
        plans.append((rid, listing))
    total = sum(len(listing) for _rid, listing in plans)
    done = [0]

    def tick(n: int = 1) -> None:
        done[0] += n
        if progress:
            progress(done[0], max(total, done[0]))

    for rid, listing in plans:
        _pull_run(store, remote, rid, listing, report, tick)
        report.runs.append(rid)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _pull_run(store: Store, remote: Remote, run_id: str, listing: list[ObjectInfo], report: PullReport, tick) -> None:
    run_dir = store.run_dir(run_id)
    manifests = [o for o in listing if MANIFEST_NAME.match(o.key.rsplit("/", 1)[1])]
    if manifests:  # each manifest lists everything pushed so far: the latest ones suffice
        newest = max(o.key.rsplit("/", 1)[1][:16] for o in manifests)
        manifests = [o for o in manifests if o.key.rsplit("/", 1)[1].startswith(newest)]
    checksums, blobs = _read_manifests(store, remote, manifests)
    tick(len(manifests))
    segments: list[tuple[str, int, int, ObjectInfo]] = []
    bundles: list[ObjectInfo] = []
    for obj in listing:
        parts = obj.key.split("/")
        if len(parts) != 4:
            continue
        if parts[2] in STREAMS:
            parsed = segment.parse_name(parts[3])
            if parsed and parsed[1] is not None:
                segments.append((parts[2], parsed[0], parsed[1], obj))
        elif parts[2] == "bundles" and BUNDLE_NAME.match(parts[3]):
            bundles.append(obj)
    for obj in bundles:
        _fetch(remote, obj, run_dir / "bundles" / obj.key.rsplit("/", 1)[1], checksums.get(obj.key), None, report)
        tick()
    for stream in STREAMS:
        rows = sorted((f, last, o) for s, f, last, o in segments if s == stream)
        local = reader.list_segments(run_dir / stream)
        expected = 1
        for first, last, obj in rows:
            tick()
            dest = run_dir / stream / obj.key.rsplit("/", 1)[1]
            if first != expected:
                report.problems.append(f"{remote.describe(obj.key)}: starts at seq {first}, expected {expected} "
                                       "(a segment is missing on the remote); later segments were not pulled")
                break
            expected = last + 1
            overlap = [p for f, lst, p in local if p != dest and f <= last and (lst is None or lst >= first)]
            if overlap:
                report.problems.append(f"{remote.describe(obj.key)}: the local run already has {overlap[0].name} "
                                       "covering these seqs; not pulled (the two stores diverged)")
                break
            if not _fetch(remote, obj, dest, checksums.get(obj.key), _segment_check(first, last), report):
                break
    needed = set(blobs)
    for stream in STREAMS:
        for _f, last, path in reader.list_segments(run_dir / stream):
            if last is not None:
                needed |= segment_blob_refs(path)
    for digest in sorted(needed):
        if store.blobs.has(digest):
            report.present += 1
            continue
        obj = ObjectInfo(_blob_key(digest), -1)
        try:
            _fetch(remote, obj, store.blobs.path(digest), None, _blob_check(digest), report, raise_missing=True)
        except RemoteNotFound:
            report.problems.append(f"blob {digest} referenced by run {run_id} is missing on {remote.url}")
    if (run_dir / "events").is_dir():
        store.sync(run_id)
        store.record_segments(run_id)


def _read_manifests(store: Store, remote: Remote, manifests: list[ObjectInfo]) -> tuple[dict[str, str], set[str]]:
    checksums: dict[str, str] = {}
    blobs: set[str] = set()
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".pull-") as tmp:
        for i, obj in enumerate(manifests):
            path = Path(tmp) / f"{i}.json"
            remote.get_file(obj.key, path)
            try:
                body = json.loads(path.read_bytes())
                run_prefix = "/".join(obj.key.split("/")[:2])
                for entry in body.get("objects", []):
                    checksums[f"{run_prefix}/{entry['key']}"] = entry["sha256"]
                blobs.update(body.get("blobs", []))
            except (ValueError, KeyError, TypeError) as exc:
                raise RemoteError(f"{remote.describe(obj.key)} is not a valid manifest ({exc}); the remote is damaged") from None
    return checksums, blobs


def _fetch(remote: Remote, obj: ObjectInfo, dest: Path, sha: str | None, check, report: PullReport,
           raise_missing: bool = False) -> bool:
    """Download one object unless the same bytes are already local. False when it was not pulled."""
    if dest.exists():
        if sha and digest_file(dest, md5=False).sha256 != sha:
            report.problems.append(f"{dest} differs from {remote.describe(obj.key)}; local files are never replaced")
            return False
        report.present += 1
        return True

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = remote.get_file(obj.key, dest, sha256=sha or "", verify=check)
    except RemoteNotFound:
        if raise_missing:
            raise
        report.problems.append(f"{remote.describe(obj.key)} vanished during the pull; pull again")
        return False
    except (CorruptLog, RemoteError) as exc:
        if not isinstance(exc, CorruptLog) and type(exc) is not RemoteError:
            raise  # auth, reachability: stop the pull
        report.problems.append(f"{remote.describe(obj.key)}: {exc}")
        return False
    report.downloaded += 1
    report.bytes_downloaded += got.size
    return True


def _segment_check(first: int, last: int) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        frames, problem, off = segment.scan(path)
        if problem:
            raise CorruptLog(f"frame at byte {off}: {problem}; the remote copy is damaged", str(path), off)
        if not frames or frames[0].first_seq != first or frames[-1].last_seq != last:
            raise CorruptLog(f"its frames do not hold seqs {first}..{last} as its name says", str(path))
        with open(path, "rb") as fh:
            for info in frames:
                codec.decode_batch(segment.read_frame(fh, info), info.first_seq)
    return check


def _blob_check(digest: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        try:
            data = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        except zstandard.ZstdError as exc:
            raise CorruptBlob(f"blob {digest} does not decompress: {exc}", str(path)) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"blob {digest} does not match its hash", str(path))
    return check


# -- shipping a live run -----------------------------------------------------------------------


class RemoteShipper:
    """Pushes one run's newly sealed segments, bundles and blobs every ``interval_s`` while it runs.

    Use: ``shipper = RemoteShipper.start(store, run_id, remote, interval_s=5, roll=writer.roll)``
    after the run is created, and ``shipper.stop(final=True)`` after the writer is closed and the
    last bundle is sealed. ``roll`` (optional) is called on the shipper's thread before each push
    to seal the open segment, so a crash loses at most the last ``interval_s`` of events remotely.
    Failed pushes are retried on the next tick (the last error is in :attr:`last_error`); the
    final push of :meth:`stop` raises its error. Reads files only, never the catalog, so it is
    safe beside the writer's thread.
    """

    def __init__(self, store: Store, run_id: str, remote: Remote, *, interval_s: float = 5.0,
                 roll: Callable[[], object] | None = None):
        self.store, self.run_id, self.remote = store, run_id, remote
        self.interval_s = interval_s
        self.roll = roll
        self.report = PushReport(runs=[run_id])
        self.last_error: EventlogError | None = None
        self.pushes = 0
        self._state = _PushState()
        self._stop = threading.Event()
        self._mu = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="agtrace-ship")

    @classmethod
    def start(cls, store: Store, run_id: str, remote: Remote, interval_s: float = 5.0,
              roll: Callable[[], object] | None = None) -> RemoteShipper:
        shipper = cls(store, run_id, remote, interval_s=interval_s, roll=roll)
        shipper._thread.start()
        return shipper

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.roll is not None:
                try:
                    self.roll()
                except EventlogError:
                    pass  # the writer closed meanwhile; stop() pushes what is sealed
            try:
                self.ship_once()
            except (EventlogError, OSError) as exc:
                self.last_error = exc if isinstance(exc, EventlogError) else RemoteError(str(exc))

    def ship_once(self, *, manifest: bool = False) -> PushReport:
        """Push what is sealed now (serialised with the background thread)."""
        with self._mu:
            report = push_run(self.store, self.remote, self.run_id, self._state, manifest=manifest)
            self.report.add(report)
            self.pushes += 1
            self.last_error = None
            return report

    def stop(self, final: bool = True) -> PushReport:
        """Stop the thread; with ``final``, push once more and raise if that push fails."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if final:
            self.ship_once(manifest=True)
        return self.report


__all__ = ["PullReport", "PushReport", "RemoteShipper", "pull", "push", "push_run", "remote_run_ids"]
