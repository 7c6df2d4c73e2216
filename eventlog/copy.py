"""Copying a run whole: ``agtrace cp RUN``.

A copy is a new run (a new id) with its own single identity: its ``run_started`` is the
source's, tagged ``copied_from=<source id>``; every other event keeps its seq, wall-clock ``ts``
and part; its score stream is copied too. The repository state comes along (the shadow
repository and the bundles), so every part replays and diffs in the copy as in the source;
blobs are content-addressed and shared within a store (copied when the copy goes to another
store). A run without repository state (imported, or made with ``new``/``append``) is copied
as it is and still says why it has no trees.

Contracts: the copy is built off to the side (:meth:`Store.staging_dir`) and moved in with one
rename (:meth:`Store.adopt`), so a crash leaves either no copy or a complete one; the source is
only read. A run that is still being written is refused (its end is not known yet). When only
the destination's catalog update failed after the rename (its catalog locked by another process
past the wait), the copy is complete but unlisted: copying again finishes that copy's catalog
update and returns its id (``notice`` is told), rather than making a second copy under a new id.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import reader
from .errors import EventlogError, RunLocked, StoreError
from .events import Record, RunStarted, kind_of
from .ids import new_run_id
from .lock import is_locked
from .verification import blob_refs
from .writer import RunWriter

if TYPE_CHECKING:
    from .store import Store

COPIED_FROM = "copied_from"
"""The tag that links a copy to its source run."""


def copy_run(store: Store, run_id: str, *, into: Store | None = None, tags: dict[str, str] | None = None,
             progress: Callable[[int, int], None] | None = None,
             notice: Callable[[str], None] | None = None) -> str:
    """Copy run ``run_id`` of ``store`` (into ``into``, default the same store) as a new run;
    return the copy's id. ``tags`` are added to the copy's (after ``copied_from``).
    ``progress(events copied, events)`` is called as the events are copied; ``notice(sentence)``
    when an earlier copy whose catalog update failed is finished instead (see the module docstring)."""
    dest = into or store
    source_dir = store.run_dir(run_id)
    if not store.has_run(run_id):
        raise StoreError(f"run {run_id} has no events in {store.root}; `agtrace ls` lists the runs")
    if is_locked(source_dir / "lock"):
        raise RunLocked(f"run {run_id} is still being written; copy it once it has ended "
                        f"(`agtrace close {run_id} --status …` ends a run whose writer is gone)")
    records = store.read(run_id)
    first = next(records, None)
    if first is None or not isinstance(first.event, RunStarted):
        raise StoreError(f"run {run_id} does not start with run_started; `agtrace verify {run_id}` checks it")
    last = reader.last_record(source_dir / "events")
    try:
        earlier = _unfinished_copy(dest, run_id, last) if last is not None else None
    except sqlite3.Error:  # a catalog that cannot even be read (a full disk): the copy says what fails
        earlier = None
    if earlier is not None:
        dest.sync(earlier)
        dest.record_segments(earlier)
        if notice:
            notice(f"run {earlier} in {dest.root} is a complete copy of {run_id} that an earlier `agtrace cp` "
                   "moved in without finishing its catalog update; it is finished now and no second copy was made")
        return earlier
    new_id = new_run_id()
    staging = dest.staging_dir()
    run_dir = staging / new_id
    try:
        run_dir.mkdir()
        started = first.event
        started = msgspec.structs.replace(started, tags={**started.tags, COPIED_FROM: run_id, **(tags or {})})
        blobs: set[str] = set()
        head = msgspec.structs.replace(first, event=started)
        total = store.info(run_id).events
        _copy_stream(run_dir, new_id, "events", itertools.chain([head], records), blobs,
                     (lambda n: progress(n, total)) if progress else None)
        if (source_dir / "scores").is_dir():
            _copy_stream(run_dir, new_id, "scores", store.read(run_id, stream="scores"), blobs)
        _copy_repository(source_dir, run_dir)
        if dest is not store:
            for digest in sorted(blobs):
                if not dest.blobs.has(digest):
                    target = dest.blobs.path(digest)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(store.blobs.path(digest), target)
        try:
            dest.adopt(run_dir)
        except sqlite3.OperationalError as exc:
            if not dest.has_run(new_id):  # not moved in: nothing to finish
                raise
            raise StoreError(f"run {new_id} was copied into {dest.root} but its catalog could not be updated "
                             f"({exc}); run the same `agtrace cp` again once the catalog is free: it finishes "
                             "this copy rather than making a second one") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return new_id


def _unfinished_copy(dest: Store, run_id: str, last: Record) -> str | None:
    """A run of ``dest`` tagged ``copied_from=run_id`` whose last record is ``last`` (the
    source's: same seq, ts, part and kind) and that ``dest``'s catalog does not know, or knows
    without its segments: a copy moved in whose catalog update failed. None if there is none.
    Costs a listing of ``dest``'s runs and one query; only such runs are read (two frames each)."""
    catalog = dest.catalog
    known = set(catalog.run_ids())
    candidates = sorted(n for n in os.listdir(dest.runs_dir) if n not in known and dest.has_run(n))
    candidates += [r[0] for r in catalog.conn.execute(
        "SELECT id FROM runs WHERE json_extract(tags, '$.copied_from') = ? AND id NOT IN "
        "(SELECT run_id FROM segments)", [run_id])]
    want = (last.seq, last.ts, last.part, kind_of(last.event))
    for candidate in candidates:
        try:
            first = next(dest.read(candidate, 1, 1), None)
            got = reader.last_record(dest.run_dir(candidate) / "events")
        except EventlogError:  # damaged: not a copy to finish
            continue
        if (first is not None and isinstance(first.event, RunStarted)
                and first.event.tags.get(COPIED_FROM) == run_id
                and got is not None and (got.seq, got.ts, got.part, kind_of(got.event)) == want):
            return candidate
    return None


def _copy_stream(run_dir: Path, run_id: str, stream: str, records, blobs: set[str],
                 progress: Callable[[int], None] | None = None) -> None:
    """Append ``records`` (their event, part and ts; seqs follow from 1) to a new stream."""
    writer = None
    copied = 0
    try:
        batch = []
        for rec in records:
            if writer is None:
                writer = RunWriter(run_dir, run_id, stream=stream, durability="off")
            blobs.update(blob_refs(rec.event))
            batch.append((rec.event, rec.part, rec.ts))
            if len(batch) >= 1024:
                writer.append_many(batch)
                copied += len(batch)
                batch = []
                if progress:
                    progress(copied)
        if batch:
            writer.append_many(batch)
            if progress:
                progress(copied + len(batch))
    finally:
        if writer is not None:
            writer.close()  # fsyncs and seals


def _copy_repository(source: Path, dest: Path) -> None:
    """The shadow repository and the bundles; immutable files are hard-linked when possible."""
    shadow = source / "repo.git"
    if (shadow / "HEAD").exists():
        shutil.copytree(shadow, dest / "repo.git", copy_function=_link_or_copy, symlinks=True)
    bundles = sorted((source / "bundles").glob("*.bundle"))
    if bundles:
        (dest / "bundles").mkdir()
        for bundle in bundles:
            _link_or_copy(bundle, dest / "bundles" / bundle.name)


def _link_or_copy(src, dst) -> None:
    src, dst = Path(src), Path(dst)
    if "objects" in src.parts or src.suffix == ".bundle":  # content-named, never rewritten
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)
