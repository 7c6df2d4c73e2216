"""Keeping a store small: remove runs (by id or by a retention rule) and collect what no run
references any more (`agtrace rm`, `agtrace gc`).

Contracts:

* A run is removed whole: its lock is taken first (a run being written is refused, never cut),
  its directory is renamed into ``staging/`` (one atomic step: the run is there or gone) and
  then deleted, its catalog rows are forgotten, its replay cache is dropped. Blobs it shared
  with other runs stay; the blobs only it referenced go with the next :func:`collect_garbage`.
* Retention (:func:`select_runs`) picks runs by start time: ``older_than_s`` and/or all but the
  newest ``keep``; runs being written are never picked.
* :func:`collect_garbage` removes only what nothing needs: blobs no segment of any run (sealed
  or open, events or scores) references, caches of runs that are gone, records of replay
  directories that are gone, leftovers of interrupted imports, transfers and bundle writes
  (a bundle's temp file whose writer is gone), and the objects of shadow repositories that no ref reaches, loose or packed (loose ones are pruned, the rest
  packed; when some are in packs, every pack is rewritten into one holding only what the ref
  reaches, which also merges the small packs of snapshots) — only where
  every tree the run's events name is reachable, never in a run being written. While
  any run is being written, blobs younger than :data:`GRACE_S` are kept (a writer stores a
  blob just before the event that names it). While a run is being built off to the side (an
  import or a copy in ``staging/``, see :func:`building`; a pull), no unreferenced blob is
  removed at all: such a build puts its blobs into the shared ``blobs/`` as it goes, and the
  events naming them reach ``runs/`` only when the run is adopted, maybe more than
  :data:`GRACE_S` later; its segments in ``staging/`` are no guide either (events may still be
  in the writer's buffer). A blob put (or put again) after gc began is kept too. A staged
  build in progress is never removed, however old.
  ``dry_run`` reports the same and changes nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import leftover
from .errors import RunLocked, RunNotFound
from .git.bundle import prune_repository, unreachable_objects
from .lock import RunLock, is_locked, read_holder
from .store import Store
from .verification import blob_refs

GRACE_S = 3600
"""While a run is being written, blobs younger than this are kept by :func:`collect_garbage`."""


@dataclass
class Removal:
    """What :func:`remove_runs` removed (or, with ``dry_run``, would remove)."""

    runs: list[str] = field(default_factory=list)
    bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Collection:
    """What :func:`collect_garbage` removed or packed: ``items`` are ``{"kind", "path", "bytes"}``
    (kinds: ``blob``, ``cache``, ``checkout``, ``staging``, ``repository``)."""

    items: list[dict] = field(default_factory=list)
    kept_recent_blobs: int = 0
    kept_building_blobs: int = 0
    """Unreferenced blobs kept because a run was being built (``building``) and may name them."""
    building: list[str] = field(default_factory=list)
    """What was building a run off to the side: ``staging/`` entries in progress, pulls."""
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(i["bytes"] for i in self.items)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i["kind"]] = out.get(i["kind"], 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"items": self.items, "bytes": self.bytes, "counts": self.counts(),
                "kept_recent_blobs": self.kept_recent_blobs, "kept_building_blobs": self.kept_building_blobs,
                "building": self.building, "dry_run": self.dry_run}


def select_runs(store: Store, *, older_than_s: float | None = None, keep: int | None = None,
                now_ns: int | None = None) -> list[str]:
    """Runs a retention rule removes: started more than ``older_than_s`` ago and/or not among
    the newest ``keep`` (both: runs matching both). Runs being written are never selected."""
    if older_than_s is None and keep is None:
        raise ValueError("a retention rule needs older_than_s or keep")
    now_ns = now_ns if now_ns is not None else time.time_ns()
    runs = sorted(store.runs(), key=lambda r: (r.started_at or 0, r.id), reverse=True)  # newest first
    picked = set(r.id for r in runs)
    if keep is not None:
        picked &= {r.id for r in runs[max(keep, 0):]}
    if older_than_s is not None:
        cutoff = now_ns - int(older_than_s * 1e9)
        picked &= {r.id for r in runs if (r.started_at or 0) < cutoff}
    return sorted(rid for rid in picked if not is_locked(store.run_dir(rid) / "lock"))


def remove_runs(store: Store, run_ids: Iterable[str], *, dry_run: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Removal:
    """Remove whole runs from the store (see the module docstring). Raises :class:`RunLocked`
    for a run being written (runs before it in ``run_ids`` are already removed) and
    :class:`RunNotFound` for an id the store does not hold (checked before anything is removed).
    ``progress(done, total)`` is called after each run (sized, with ``dry_run``, or removed)."""
    if not dry_run:
        store.require_writable("remove runs from it")
    ids = list(dict.fromkeys(run_ids))
    for rid in ids:
        if not store.run_dir(rid).is_dir():
            raise RunNotFound(f"run {rid} is not in {store.root}; `agtrace ls` lists the runs")
    report = Removal(dry_run=dry_run)
    for rid in ids:
        run_dir = store.run_dir(rid)
        nbytes = _size(run_dir)
        if dry_run:
            if is_locked(run_dir / "lock"):
                holder = read_holder(run_dir / "lock")
                raise RunLocked(f"run {rid} is being written (by pid {holder.get('pid', '?')} on "
                                f"{holder.get('host', '?')}); it cannot be removed until that writer ends", holder)
        else:
            lock = RunLock.acquire(run_dir / "lock", rid)
            try:
                trash = store.staging_dir() / rid
                os.rename(run_dir, trash)
            finally:
                lock.release()
            store.catalog.forget(rid)
            shutil.rmtree(trash.parent, ignore_errors=True)
            shutil.rmtree(store.root / "cache" / rid, ignore_errors=True)
        report.runs.append(rid)
        report.bytes += nbytes
        if progress is not None:
            progress(len(report.runs), len(ids))
    return report


def collect_garbage(store: Store, *, dry_run: bool = False, now: float | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Collection:
    """Remove what no run needs and pack ended runs' repositories (see the module docstring).
    ``progress(done, total)`` is called per run read (then per repository checked)."""
    if not dry_run:
        store.require_writable("collect its garbage")
    started = time.time()
    now = now if now is not None else started
    report = Collection(dry_run=dry_run)
    ids = store.run_ids()
    live = {rid for rid in ids if is_locked(store.run_dir(rid) / "lock")}
    report.building = [str(p) for p in building(store, now)]  # before the runs are read: see building()
    referenced: set[str] = set()
    trees: dict[str, set[str]] = {}
    for i, rid in enumerate(ids):
        if progress:
            progress(i + 1, 2 * len(ids))
        named = trees.setdefault(rid, set())
        for stream in ("events", "scores"):
            if (store.run_dir(rid) / stream).is_dir():
                for rec in store.read(rid, stream=stream):
                    referenced.update(blob_refs(rec.event))
                    tree = getattr(rec.event, "tree_id", "")
                    if tree:
                        named.add(tree)
    report.building = sorted({*report.building, *(str(p) for p in building(store, now))})  # and builds begun since
    for digest in list(store.blobs.digests()):
        if digest in referenced:
            continue
        path = store.blobs.path(digest)
        if report.building or _mtime(path) >= started:  # a blob put since gc began: no run read names it
            report.kept_building_blobs += 1
            continue
        if live and now - _mtime(path) < GRACE_S:
            report.kept_recent_blobs += 1
            continue
        _drop(report, "blob", path, dry_run)
    cache = store.root / "cache"
    if cache.is_dir():
        for entry in sorted(cache.iterdir()):
            if entry.name != "checkouts" and entry.is_dir() and entry.name not in ids:
                _drop(report, "cache", entry, dry_run)
        checkouts = cache / "checkouts"
        for state in sorted(checkouts.glob("*.json")) if checkouts.is_dir() else ():
            if not _checkout_exists(state):
                _drop(report, "checkout", state, dry_run)
    staging = store.root / "staging"
    if staging.is_dir():
        for entry in sorted(staging.iterdir()):
            if now - entry.stat().st_mtime >= GRACE_S and str(entry) not in report.building:
                _drop(report, "staging", entry, dry_run)
    for stray in [*sorted(store.root.glob(".p[ue]s[hl]-*")),  # temp dirs of killed pushes/pulls
                     *sorted(store.blobs.root.glob("*/.*.tmp"))]:  # blobs a killed writer left half-written
        if now - stray.stat().st_mtime >= GRACE_S:
            _drop(report, "staging", stray, dry_run)
    for rid in ids:  # bundles a killed capture or push left half-written (a bundle can be big)
        bundles = store.run_dir(rid) / "bundles"
        for stray in sorted(bundles.glob(".*")) if bundles.is_dir() else ():
            if _dead_bundle_temp(stray, now):
                _drop(report, "staging", stray, dry_run)
    for i, rid in enumerate(ids):
        if progress:
            progress(len(ids) + i + 1, 2 * len(ids))
        repo = store.run_dir(rid) / "repo.git"
        if rid in live or not (repo / "objects").is_dir():
            continue
        unreachable = unreachable_objects(repo)
        loose = [repo / "objects" / oid[:2] / oid[2:] for oid in unreachable]
        loose = [p for p in loose if p.is_file()]
        safe = not (set(unreachable) & trees.get(rid, set()))  # a recorded tree no ref reaches: keep all
        if not (unreachable and safe):
            continue
        packed = len(unreachable) > len(loose)  # some in packs: repack what the ref reaches, drop the rest
        nbytes = sum(p.stat().st_size for p in loose)  # what pruning removes (packs: measured after)
        if not dry_run:
            before = _size(repo / "objects") if packed else 0  # the reachable loose ones move into the pack
            prune_repository(repo, prune=True, packs=packed)
            nbytes = max(0, before - _size(repo / "objects")) if packed else nbytes
        report.items.append({"kind": "repository", "path": str(repo), "bytes": nbytes, "objects": len(unreachable)})
    return report


def building(store: Store, now: float | None = None) -> list[Path]:
    """What is building a run off to the side in ``store`` right now, and so may have put blobs
    that no run in ``runs/`` names yet: each ``staging/`` entry whose maker is alive (its name's
    ``@<host>-<pid>@`` tag, :mod:`~agtrace.eventlog.leftover`; an untagged one while it is
    younger than :data:`GRACE_S`), and each pull's temp directory younger than :data:`GRACE_S`.

    :func:`collect_garbage` asks before it reads the runs (a build that ends meanwhile has
    adopted its run by then, so the blobs it named are read as referenced) and again after (a
    build begun meanwhile); a blob put after gc began is kept in any case."""
    now = now if now is not None else time.time()
    found = []
    staging = store.root / "staging"
    entries = sorted(staging.iterdir()) if staging.is_dir() else []
    for path in [*entries, *sorted(store.root.glob(".pull-*"))]:
        try:
            mtime = path.lstat().st_mtime
        except FileNotFoundError:
            continue  # it ended meanwhile
        if path.parent == staging and leftover.is_tagged(path.name):
            alive = not leftover.is_stale(path.name, mtime)
        else:
            alive = now - mtime < GRACE_S
        if alive:
            found.append(path)
    return found


_OLD_BUNDLE_TEMP = re.compile(r"^\..+\.bundle\.tmp-[0-9]+$")
"""How agtrace named a bundle's temp file before it named its owner: ``.<name>.tmp-<pid>``."""


def _dead_bundle_temp(path: Path, now: float) -> bool:
    """Whether ``path`` (in a run's ``bundles/``) is the temp file of a bundle whose writer is
    gone: named by an owner who is gone (:mod:`~agtrace.eventlog.leftover`), or named the older
    way, which names no host, and untouched for :data:`GRACE_S`."""
    try:
        mtime = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if path.name.endswith(".tmp") and leftover.is_tagged(path.name):
        return leftover.is_stale(path.name, mtime)
    return _OLD_BUNDLE_TEMP.match(path.name) is not None and now - mtime >= GRACE_S


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0  # removed meanwhile (another gc): nothing to keep


def _drop(report: Collection, kind: str, path: Path, dry_run: bool) -> None:
    nbytes = _size(path)
    if not dry_run:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    report.items.append({"kind": kind, "path": str(path), "bytes": nbytes})


def _checkout_exists(state: Path) -> bool:
    import json

    try:
        return Path(json.loads(state.read_text())["path"]).is_dir()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
