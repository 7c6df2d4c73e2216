"""Pull runs from a remote into a store, verified, never replacing a local file that is whole.

A pull downloads what the local store lacks — segments in seq order, so the local run is always
a gapless prefix of the remote one — checks every frame of every segment and the sha256 of every
object before it is renamed into place, fetches the blobs a segment references (verified against
their address) before that segment is renamed into place (a killed pull never leaves a segment
naming a missing blob), then brings the catalog up to date. A store that has only the bucket can list, verify
and replay any pulled run (replay unbundles the bundles when ``repo.git`` is absent).

Bundles are checked to be complete and to hold the tip their name says. A local segment or
bundle that differs from the remote copy is replaced only when it fails those same checks
(damaged) and the remote copy passes them; the damaged file is kept beside it as
``<name>.damaged-<ns>``, and the report says so (``replaced``). Keys under ``runs/<id>/`` that
are not of the layout are named in ``problems`` and not pulled. A run this pull created and
left without a single segment (every segment was refused) is removed again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import reader, segment
from ..containment import is_content_address
from ..errors import (
    CorruptLog,
    GitStoreError,
    NewerFormat,
    RemoteError,
    RemoteNotFound,
    RunLocked,
)
from ..ids import is_run_id
from ..lock import RunLock
from ..remotes.base import ObjectInfo, Remote
from ..remotes.transfer import digest_file
from ..segment import fsync_dir
from ..store import Store
from .keys import (
    STREAMS,
    Progress,
    blob_key,
    check_segment,
    remote_run_ids,
    run_key_kind,
    segment_blob_refs,
)
from .manifests import newest_manifests, read_manifests


@dataclass
class PullReport:
    """What a pull did. ``problems`` lists objects that were not pulled and why (``retryable``:
    how many of them a later pull may still get); ``replaced`` the damaged local files that were
    replaced by their remote copy, and where each damaged file was kept."""

    runs: list[str] = field(default_factory=list)
    downloaded: int = 0
    present: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    retryable: int = 0
    replaced: list[str] = field(default_factory=list)

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
    store.require_writable("pull into it")
    started = time.monotonic()
    ids = list(run_ids) if run_ids is not None else remote_run_ids(remote)
    report = PullReport()
    plans = []
    for rid in ids:
        if not is_run_id(rid):
            report.problems.append(f"{remote.describe(f'runs/{rid[:80]}/')}: {rid[:80]!r} is not a run id; not pulled")
            continue
        listing = remote.list(f"runs/{rid}/")
        if not listing:
            raise RemoteNotFound(f"run {rid} is not on {remote.url}; `agtrace pull --all` pulls every run it has")
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
    """Pull one run holding its lock (``runs/<id>/lock``, the one-writer lock): a run being
    written, or pulled by another process into this store, is a retryable problem, not pulled.
    Before, a second pull's clean-up removed the first's download in progress."""
    run_dir = store.run_dir(run_id)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / "lock"
    lock_made = not lock_path.exists()
    try:
        lock = RunLock.acquire(lock_path, run_id)
    except RunLocked as exc:
        holder = exc.holder or {}
        report.problems.append(f"run {run_id} is being written or pulled in {store.root} (pid "
                               f"{holder.get('pid', '?')} on {holder.get('host', '?')}); not pulled: pull again "
                               "once it has finished")
        report.retryable += 1
        return
    try:
        _pull_objects(store, remote, run_id, listing, report, tick)
    finally:
        if created and not any(run_dir.glob("events/*.seg")):
            shutil.rmtree(run_dir, ignore_errors=True)  # made by this pull, and nothing of it landed
        elif lock_made:
            lock_path.unlink(missing_ok=True)  # a pulled run has no lock file of its own, as before
        lock.release()


def _pull_objects(store: Store, remote: Remote, run_id: str, listing: list[ObjectInfo], report: PullReport,
                  tick) -> None:
    run_dir = store.run_dir(run_id)
    manifests = newest_manifests(listing)
    with tempfile.TemporaryDirectory(dir=store.root, prefix=".pull-") as tmp:
        checksums, blobs = read_manifests(remote, manifests, report.problems, Path(tmp))
    tick(len(manifests))
    fetch = _blob_fetcher(store, remote, run_id, report)
    fetch(blobs)  # the blobs the manifests list, before any segment naming them is in place
    segments: list[tuple[str, int, int, ObjectInfo]] = []
    bundles: list[ObjectInfo] = []
    odd: list[str] = []
    for obj in listing:
        kind = run_key_kind(obj.key)
        if kind == "segment":
            parts = obj.key.split("/")
            first, last = segment.parse_name(parts[3])
            segments.append((parts[2], first, last, obj))
        elif kind == "bundle":
            bundles.append(obj)
        elif not kind:
            odd.append(obj.key)
    _report_odd_keys(remote, run_id, odd, report)
    for obj in bundles:
        name = obj.key.rsplit("/", 1)[1]
        _fetch(remote, obj, run_dir / "bundles" / name, checksums.get(obj.key), _bundle_check(name), report,
               local_check=_local_bundle_check(name))
        tick()
    here: list[Path] = []  # sealed segments the store had before this pull
    for stream in STREAMS:
        rows = sorted((f, last, o) for s, f, last, o in segments if s == stream)
        local = reader.list_segments(run_dir / stream)
        here += [p for _f, lst, p in local if lst is not None]
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
            if not _fetch(remote, obj, dest, checksums.get(obj.key), _segment_check(first, last, fetch), report,
                          local_check=_local_segment_check(first, last)):
                break
    fetch(set().union(*(segment_blob_refs(path) for path in here)))
    if (run_dir / "events").is_dir():
        if store.damage(run_id) is not None or any(str(run_dir) in r for r in report.replaced):
            store.rebuild(run_id)  # a repaired run is folded again: its damage mark and figures go
        else:
            store.sync(run_id)
            store.record_segments(run_id)


def _blob_fetcher(store: Store, remote: Remote, run_id: str, report: PullReport) -> Callable[[set[str]], None]:
    """Fetch the blobs named (each once per pull of the run), reporting those that cannot be."""
    done: set[str] = set()

    def fetch(digests: set[str]) -> None:
        for digest in sorted(digests - done):
            done.add(digest)
            _fetch_blob(store, remote, run_id, digest, report)
    return fetch


def _fetch_blob(store: Store, remote: Remote, run_id: str, digest: str, report: PullReport) -> None:
    if not is_content_address(digest):
        report.problems.append(f"run {run_id} names blob {digest[:80]!r}, which is not a content address; "
                               "not pulled (the one path rule, docs/format.md)")
        return
    if store.blobs.has(digest):
        report.present += 1
        return
    obj = ObjectInfo(blob_key(digest), -1)
    try:
        _fetch(remote, obj, store.blobs.path(digest), None, lambda path: store.blobs.check(digest, path), report,
               raise_missing=True)
    except RemoteNotFound:
        report.problems.append(f"blob {digest} referenced by run {run_id} is missing on {remote.url}")


_MAX_ODD = 5
"""Keys off the layout named one by one per run; the rest are counted."""


def _report_odd_keys(remote: Remote, run_id: str, odd: list[str], report: PullReport) -> None:
    """Name the keys under ``runs/<id>/`` that are no segment, bundle or manifest key of the
    layout (a key leaving the run, a hidden name, a stray file): they are never pulled."""
    for key in odd[:_MAX_ODD]:
        report.problems.append(f"{remote.url}: key {key!r} is not a segment, bundle or manifest key of run "
                               f"{run_id} (the key layout, docs/remote.md); not pulled")
    if len(odd) > _MAX_ODD:
        report.problems.append(f"{remote.url}: {len(odd) - _MAX_ODD} more key(s) under runs/{run_id}/ off the "
                               "key layout; not pulled")


def _fetch(remote: Remote, obj: ObjectInfo, dest: Path, sha: str | None, check, report: PullReport,
           raise_missing: bool = False, local_check: Callable[[Path], None] | None = None) -> bool:
    """Download one object unless the same bytes are already local. False when it was not pulled.

    A local file that differs is replaced only when ``local_check`` finds it damaged and the
    remote copy passes ``check`` (see :func:`_replace_damaged`)."""
    if dest.exists():
        if sha and digest_file(dest, md5=False).sha256 == sha:
            report.present += 1
            return True
        if local_check is None and not sha:
            report.present += 1
            return True
        try:
            if local_check is not None:
                local_check(dest)
        except NewerFormat as exc:  # not damage: never replaced nor renamed aside
            report.problems.append(f"{exc}; not replaced by {remote.describe(obj.key)}")
            return False
        except (CorruptLog, GitStoreError, OSError) as exc:
            return _replace_damaged(remote, obj, dest, sha, check, report, _why(exc))
        if sha:
            report.problems.append(
                f"{dest} passes its checks but differs from {remote.describe(obj.key)} (the two stores "
                "diverged); a whole local file is never replaced: to take the remote's copy instead, "
                "remove the local run (`agtrace rm RUN`) and pull it again")
            return False
        report.present += 1  # whole, and the remote has no checksum to compare with
        return True

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = remote.get_file(obj.key, dest, sha256=sha or "", verify=check)
    except RemoteNotFound:
        if raise_missing:
            raise
        report.problems.append(f"{remote.describe(obj.key)} vanished during the pull; pull again")
        report.retryable += 1
        return False
    except NewerFormat as exc:
        report.problems.append(f"{remote.describe(obj.key)}: {exc}; not pulled")
        return False
    except (CorruptLog, GitStoreError, RemoteError) as exc:
        if isinstance(exc, RemoteError) and type(exc) is not RemoteError:
            raise  # auth, reachability: stop the pull
        report.problems.append(f"{remote.describe(obj.key)}: {exc}")
        report.retryable += "pull again" in str(exc)
        return False
    report.downloaded += 1
    report.bytes_downloaded += got.size
    return True


def _replace_damaged(remote: Remote, obj: ObjectInfo, dest: Path, sha: str | None, check, report: PullReport,
                     why: str) -> bool:
    """Replace ``dest``, a local file that fails its checks, by the remote copy once that copy
    passed ``check``; the damaged file is kept beside it as ``<name>.damaged-<ns>``."""
    incoming = dest.with_name(f".{dest.name}.replacing")
    try:
        got = remote.get_file(obj.key, incoming, sha256=sha or "", verify=check)
    except RemoteNotFound:
        report.problems.append(f"{dest} is damaged ({why}) and {remote.describe(obj.key)} vanished during "
                               "the pull; pull again")
        report.retryable += 1
        return False
    except NewerFormat as exc:
        report.problems.append(f"{dest} is damaged ({why}) and the remote copy cannot replace it: "
                               f"{remote.describe(obj.key)}: {exc}")
        return False
    except (CorruptLog, GitStoreError, RemoteError) as exc:
        if isinstance(exc, RemoteError) and type(exc) is not RemoteError:
            raise
        report.problems.append(f"{dest} is damaged ({why}) and the remote copy fails its checks too "
                               f"({remote.describe(obj.key)}: {exc}); restore the file from another copy of "
                               "the store or another remote")
        return False
    aside = dest.with_name(f"{dest.name}.damaged-{time.time_ns()}")
    try:
        os.link(dest, aside)  # the damaged bytes are kept, then the whole copy takes the name in one step
    except OSError:
        shutil.copy2(dest, aside)
    os.replace(incoming, dest)
    fsync_dir(dest.parent)
    report.downloaded += 1
    report.bytes_downloaded += got.size
    report.replaced.append(f"{dest}: it was damaged ({why}); replaced by the copy from "
                           f"{remote.describe(obj.key)}, which passed its checks; the damaged file is kept as "
                           f"{aside.name}")
    return True


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    return str(exc.args[0]) if exc.args else str(exc)


def _local_segment_check(first: int, last: int) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        check_segment(path, first, last, damaged="")
    return check


def _local_bundle_check(name: str) -> Callable[[Path], None]:
    from ..git.bundle import check_bundle

    return lambda path: check_bundle(path, name) and None


def _bundle_check(name: str) -> Callable[[Path], None]:
    """A downloaded bundle must be complete and hold the tip its name ``<nnnn>-<tip12>.bundle`` says."""
    from ..git.bundle import check_bundle

    def check(path: Path) -> None:
        try:
            check_bundle(path, name)
        except GitStoreError as exc:
            raise GitStoreError(f"{exc}; the remote copy is damaged or was replaced. Nothing was written "
                                "locally") from None
    return check


def _segment_check(first: int, last: int, fetch: Callable[[set[str]], None]) -> Callable[[Path], None]:
    """The segment's check, then the blobs its events name fetched, before the segment is renamed
    into place: a pull killed between the two left a segment naming a blob the store lacked."""
    return lambda path: fetch(check_segment(path, first, last))
