"""Push runs to a remote: what is sent, in which order, and why pushing again sends nothing.

What a push sends, per run, in this order (so the remote never holds an object whose
dependencies it lacks): the blobs the run's sealed segments reference, its bundles, its sealed
segments (``events`` then ``scores``, in seq order), and last a manifest
``runs/<id>/manifests/<last seq>-<sha16>.json`` listing every object with its size and sha256.
Never sent: the open segment, the lock, the catalog, ``repo.git``, ``cache/``, ``staging/``.
A run that no writer holds (its capture crashed) is sealed first: its open segments
(:func:`seal_idle`) and the snapshots of its shadow repository that no bundle holds
(:func:`seal_snapshots`), so that it replays from the remote.
Every object is immutable and put with "never overwrite" (see ``remotes/``), so pushing again
is idempotent and uploads nothing that is already there; an interrupted push resumes.
Because a remote copy can never be replaced, nothing damaged is sent: each sealed segment's
frames are checked (checksums, the seqs its name says, every frame decodes) and each bundle is
checked to be complete (its header, and its pack against the pack's checksum; see
:func:`~agtrace.eventlog.git.bundle.check_bundle`). A damaged object is not sent, nor are the
later segments of its stream (the remote copy of a run is a gapless prefix), the run gets no
manifest, and the report lists the file in ``problems``. Each file is read once for the check
(the segment check is the decode that finds the blobs to send anyway) and once for its sha256.
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
from ..errors import CorruptBlob, CorruptLog, GitStoreError, NewerFormat, StoreError
from ..remotes.base import Remote
from ..remotes.transfer import FileDigest
from ..store import Store
from .keys import BUNDLE_NAME, MANIFEST_FORMAT, STREAMS, Progress, blob_key, check_segment


@dataclass
class PushReport:
    """What a push did, each object counted once: ``uploaded`` objects sent (``bytes_uploaded``);
    ``existed`` objects the remote held before this push; ``shared`` blobs that an earlier run of
    the same push had already sent (several runs reference them); ``skipped`` open segments not
    sent because their run is still being written (``skipped_runs``: which runs); ``problems``
    damaged local files that were not sent (their runs got no manifest)."""

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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

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
        self.problems += [p for p in other.problems if p not in self.problems]  # the shipper re-adds each tick

    def to_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


@dataclass
class _Local:
    key: str
    path: Path


class PushState:
    """What one pusher remembers between pushes of a run: digests and blob refs of sealed files
    (they never change; a sealed file is checked once) and the keys known to be on the remote."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, int, int], FileDigest] = {}
        self.refs: dict[str, set[str]] = {}
        self.bundles: set[tuple[str, int, int]] = set()
        self.on_remote: set[str] = set()

    def digest(self, path: Path, remote: Remote) -> FileDigest:
        st = path.stat()
        k = (str(path), st.st_size, st.st_mtime_ns)
        if k not in self.digests:
            self.digests[k] = remote.digest(path)
        return self.digests[k]

    def blob_refs(self, path: Path, first: int, last: int) -> set[str]:
        """The blobs a sealed segment references, after checking its frames (:class:`CorruptLog`)."""
        if str(path) not in self.refs:
            self.refs[str(path)] = check_segment(path, first, last, damaged="the local file is damaged")
        return self.refs[str(path)]

    def check_bundle(self, path: Path) -> None:
        """Check that a bundle is complete and holds the tip its name says (:class:`GitStoreError`)."""
        from ..git.bundle import check_bundle

        st = path.stat()
        k = (str(path), st.st_size, st.st_mtime_ns)
        if k not in self.bundles:
            check_bundle(path, path.name)
            self.bundles.add(k)


def push(
    store: Store, remote: Remote, run_ids: Iterable[str] | None = None, progress: Progress | None = None
) -> PushReport:
    """Upload the sealed objects of ``run_ids`` (all runs when None). Idempotent; resumes.

    Raises :class:`RemoteConflict` if a key holds other bytes (nothing is overwritten) and
    :class:`RemoteError` for every failure of the remote.
    """
    store.require_writable("push it (pushing seals the open segments of crashed runs and stages a manifest "
                           "in the store)")
    started = time.monotonic()
    ids = list(run_ids) if run_ids is not None else store.run_ids()
    report = PushReport()
    state = PushState()
    plan = [(rid, _local_objects(store, rid, state)) for rid in ids]
    total = sum(len(objs) + 1 for _rid, (objs, _problems) in plan)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    counted: set[str] = set()
    for rid, (objs, problems) in plan:
        report.add(_push_objects(store, remote, rid, objs, state, tick, counted=counted, problems=problems))
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
    objs, problems = _local_objects(store, run_id, state)
    return _push_objects(store, remote, run_id, objs, state, lambda: None, manifest=manifest, problems=problems)


def _open_segments(store: Store, run_id: str) -> int:
    """How many of a run's segments are open (never pushed: they still change)."""
    run_dir = store.run_dir(run_id)
    return sum(1 for stream in STREAMS for _f, last, _p in reader.list_segments(run_dir / stream) if last is None)


def _local_objects(store: Store, run_id: str, state: PushState) -> tuple[list[_Local], list[str]]:
    """Blobs, bundles, then sealed segments of a run, in upload order, and the damaged files left
    out (with the later segments of a damaged segment's stream). Reads files, never the catalog."""
    run_dir = store.run_dir(run_id)
    if not (run_dir / "events").is_dir():
        raise StoreError(f"run {run_id} is not in {store.root}; `agtrace ls` lists the runs")
    seal_idle(store, run_id)
    segments: list[_Local] = []
    blobs: set[str] = set()
    problems: list[str] = []
    for stream in STREAMS:
        rows = reader.list_segments(run_dir / stream)
        for i, (first, last, path) in enumerate(rows):
            if last is None:
                continue  # the open segment is never pushed: it still changes
            try:
                blobs |= state.blob_refs(path, first, last)
            except (CorruptLog, NewerFormat, OSError) as exc:
                later = sum(1 for _f, lst, _p in rows[i + 1:] if lst is not None)
                also = f" (nor the {later} later segment(s) of {stream}/)" if later else ""
                problems.append(f"{path}: {_why(exc)}; not pushed{also}")
                break
            segments.append(_Local(f"runs/{run_id}/{stream}/{path.name}", path))
    out = []
    for digest in sorted(blobs):
        path = store.blobs.path(digest)
        if not path.exists():
            raise CorruptBlob(f"run {run_id} references blob {digest}, which is missing from {store.root}; "
                              "`agtrace verify` lists such problems", str(path))
        out.append(_Local(blob_key(digest), path))
    bundle_dir = run_dir / "bundles"
    seal_snapshots(run_dir)
    if bundle_dir.is_dir():
        for path in sorted(bundle_dir.iterdir()):
            if BUNDLE_NAME.match(path.name):
                try:
                    state.check_bundle(path)
                except (GitStoreError, OSError) as exc:
                    problems.append(f"{path}: {_why(exc)}; not pushed")
                    continue
                out.append(_Local(f"runs/{run_id}/bundles/{path.name}", path))
    return out + segments, problems


def _why(exc: Exception) -> str:
    """What is wrong with a damaged local file, without its path (the problem names it)."""
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return str(exc.args[0]) if exc.args else str(exc)


def seal_idle(store: Store, run_id: str) -> None:
    """Seal the open segments of a run that no writer holds (its capture crashed), so that what
    it recorded can be pushed; a run being written is left alone, and so is an open segment that
    recovery refuses (damaged: `agtrace verify` names it)."""
    from ..errors import CorruptLog, NewerFormat, RunLocked
    from ..lock import is_locked
    from ..writer import RunWriter

    run_dir = store.run_dir(run_id)
    sealed = False
    for stream in STREAMS:
        if not any(last is None for _f, last, _p in reader.list_segments(run_dir / stream)):
            continue
        if is_locked(run_dir / ("lock" if stream == "events" else f"{stream}.lock")):
            continue  # being written (the shipper of a live run comes here every few seconds)
        try:
            RunWriter(run_dir, run_id, stream=stream, durability="strict").close()
        except (RunLocked, CorruptLog, NewerFormat):
            continue  # recovery refuses it and changes nothing
        sealed = True
    if sealed:
        store.record_segments(run_id)


def seal_snapshots(run_dir: Path) -> Path | None:
    """Bundle the snapshots of a run's shadow repository that no bundle holds yet, when no writer
    holds the run: a capture that crashed before sealing still ships the trees it has (the next
    ``<nnnn>-<tip12>.bundle``, holding what came after the last bundle's tip). Returns the new
    bundle, or None when there was nothing to bundle or the run is live."""
    from ..git.bundle import bundle_heads
    from ..git.repository import GitStore
    from ..lock import is_locked

    shadow = run_dir / "repo.git"
    if not (shadow / "HEAD").exists() or is_locked(run_dir / "lock"):
        return None
    git = GitStore.open(shadow)
    tip = git.head
    if tip is None:
        return None
    bundle_dir = run_dir / "bundles"
    bundles = sorted(p for p in bundle_dir.glob("*.bundle") if BUNDLE_NAME.match(p.name)) if bundle_dir.is_dir() else []
    heads = [h for b in bundles for h in bundle_heads(b)]
    if tip in heads:
        return None
    since = next((h for h in reversed(heads) if git.has_object(h)), None)
    path = bundle_dir / f"{len(bundles) + 1:04d}-{tip[:12]}.bundle"
    git.write_bundle(path, since_commit=since)
    return path


def _push_objects(store, remote: Remote, run_id: str, objs: list[_Local], state: PushState, tick,
                  manifest: bool = True, counted: set[str] | None = None,
                  problems: list[str] | None = None) -> PushReport:
    report = PushReport(runs=[run_id], problems=list(problems or ()))
    if report.problems:
        manifest = False  # a manifest says the push of the run completed: it did not
    if not manifest and all(o.key in state.on_remote for o in objs):
        report.existed = len(objs)  # nothing new since the last push of this pusher
        return report
    listed = {o.key: o for o in remote.list(f"runs/{run_id}/")}
    blob_keys = [o.key for o in objs if o.key.startswith("blobs/") and o.key not in state.on_remote]
    for prefix in sorted({k.rsplit("/", 1)[0] + "/" for k in blob_keys}):
        listed.update((o.key, o) for o in remote.list(prefix))
    entries = []
    relied: list[_Local] = []  # blobs this push did not send: a concurrent `gc --remote` may delete them
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
            relied += [obj] if obj.key.startswith("blobs/") else []
        else:
            result = remote.put_file(obj.key, obj.path, digest=digest)
            if result.status == "uploaded":
                report.uploaded += 1
                report.bytes_uploaded += result.nbytes
                report.resumed_parts += result.resumed_parts
                report.keys.append(obj.key)
            else:
                report.existed += 1
                relied += [obj] if obj.key.startswith("blobs/") else []
        state.on_remote.add(obj.key)
        if counted is not None:
            counted.add(obj.key)
        tick()
    if entries and manifest:
        _push_manifest(store, remote, run_id, objs, entries, listed, report)
    _restore_deleted(remote, relied, state, report)
    tick()
    return report


def _restore_deleted(remote: Remote, relied: list[_Local], state: PushState, report: PushReport) -> None:
    """Upload again the blobs this push found on the remote and did not send, if they are gone
    now that the run's segments and manifest reference them: a `gc --remote` that read the runs
    before this push may have deleted them as unreferenced (before: the manifest named a
    missing blob). Checked after the manifest, so a gc that deletes later sees the manifest."""
    if not relied:
        return
    present = {o.key for prefix in sorted({o.key.rsplit("/", 1)[0] + "/" for o in relied})
               for o in remote.list(prefix)}
    for obj in relied:
        if obj.key in present:
            continue
        result = remote.put_file(obj.key, obj.path, digest=state.digest(obj.path, remote))
        if result.status == "uploaded":
            report.existed -= 1
            report.uploaded += 1
            report.bytes_uploaded += result.nbytes
            report.keys.append(obj.key)


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
