"""Pull runs from a remote into a store, verified, never replacing a local file.

A pull downloads what the local store lacks — segments in seq order, so the local run is always
a gapless prefix of the remote one — checks every frame of every segment and the sha256 of every
object before it is renamed into place, fetches referenced blobs (verified against their
address), then brings the catalog up to date. A store that has only the bucket can list, verify
and replay any pulled run (replay unbundles the bundles when ``repo.git`` is absent).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from .. import codec, reader, segment
from ..containment import check_name, is_content_address
from ..errors import CorruptBlob, CorruptLog, RemoteError, RemoteNotFound, StoreError, UnsafePath
from ..ids import looks_like_run_id
from ..lock import is_locked
from ..remotes.base import ObjectInfo, Remote
from ..remotes.transfer import digest_file
from ..store import Store
from .keys import (
    BUNDLE_NAME,
    MANIFEST_NAME,
    STREAMS,
    Progress,
    blob_key,
    remote_run_ids,
    segment_blob_refs,
)


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
        if not looks_like_run_id(rid) or len(rid) != 26 or rid != rid.upper():
            report.problems.append(f"{remote.describe(f'runs/{rid}/')}: {rid!r} is not a run id; not pulled")
            continue
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
    checksums, blobs = _read_manifests(store, remote, manifests, report)
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
        if not is_content_address(digest):
            report.problems.append(f"run {run_id} names blob {digest[:80]!r}, which is not a content address; "
                                   "not pulled (the one path rule, docs/format.md)")
            continue
        if store.blobs.has(digest):
            report.present += 1
            continue
        obj = ObjectInfo(blob_key(digest), -1)
        try:
            _fetch(remote, obj, store.blobs.path(digest), None, _blob_check(digest), report, raise_missing=True)
        except RemoteNotFound:
            report.problems.append(f"blob {digest} referenced by run {run_id} is missing on {remote.url}")
    if (run_dir / "events").is_dir():
        store.sync(run_id)
        store.record_segments(run_id)


def _read_manifests(store: Store, remote: Remote, manifests: list[ObjectInfo],
                    report: PullReport) -> tuple[dict[str, str], set[str]]:
    """Checksums by key and blob addresses the manifests list; an entry that breaks the path
    rule (a key leaving the run, a blob that is no content address) is a problem, skipped."""
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
                    key, sha = entry["key"], entry["sha256"]
                    try:
                        for name in key.split("/") if isinstance(key, str) else [key]:
                            check_name(name, f"manifest entry {key!r}", hidden=False)
                    except UnsafePath as exc:
                        report.problems.append(f"{remote.describe(obj.key)}: {exc}")
                        continue
                    checksums[f"{run_prefix}/{key}"] = sha
                for digest in body.get("blobs", []):
                    if is_content_address(digest):
                        blobs.add(digest)
                    else:
                        report.problems.append(f"{remote.describe(obj.key)}: lists blob {str(digest)[:80]!r}, which "
                                               "is not a content address; not pulled (the one path rule, docs/format.md)")
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
