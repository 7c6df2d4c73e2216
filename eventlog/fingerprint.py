"""Telling that a run's sealed segments changed on disk after the catalog indexed them.

Projections fold a run from their saved position onward and a run that ended is never read
again, so a sealed segment damaged afterwards (bytes flipped, the file truncated, replaced or
removed) would leave ``ls``, ``show`` and ``metrics`` showing the old figures as if the run were
whole. The catalog's ``segments`` table records each sealed segment's size, ``st_mtime_ns`` and
``st_ino`` (:meth:`Store.record_segments`); :func:`changed_runs` stats each recorded segment
(one ``stat`` per segment, no directory listing) and names the runs whose files no longer match,
for the store to fold again from the segments (:meth:`Store.rebuild`), so their figures stop at
the damage and their damage mark names the file and byte.

Sealed segments are immutable, so a size that differs or a file that is gone is a change. The
same size under another mtime or inode is what copying a store (``cp -r``, a restore) does to
whole files: such a segment's frame checksums are checked once, and when they pass over the
recorded seq range its new mtime and inode are recorded instead (no false alarm on a copied
store). A row recorded before mtimes were (NULL) is taken as it is when its size matches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from . import reader, segment
from .catalog import Catalog
from .database import transaction
from .errors import EventlogError

if TYPE_CHECKING:
    from .store import Store


def sealed_segments(stream_dir: Path) -> list[tuple[str, int, int, int, bool, int, int]]:
    """The ``segments`` rows of a stream's sealed segments as they are on disk now:
    ``(name, first, last, bytes, sealed, mtime_ns, inode)``."""
    rows = []
    for first, last, path in reader.list_segments(stream_dir):
        if last is not None:
            st = path.stat()
            rows.append((path.name, first, last, st.st_size, True, st.st_mtime_ns, st.st_ino))
    return rows


def refold_changed(store: Store, run_ids: Collection[str] | None = None) -> list[str]:
    """Fold again (:meth:`Store.rebuild`) the runs of ``run_ids`` (default: every run with
    recorded segments) whose sealed segments changed on disk since they were indexed; returns them."""
    changed = changed_runs(store.catalog, store.runs_dir, run_ids)
    for run_id in changed:
        store.rebuild(run_id)
    return changed


def changed_runs(catalog: Catalog, runs_dir: str | os.PathLike, run_ids: Collection[str] | None = None) -> list[str]:
    """The runs of ``run_ids`` (default: every run with recorded segments) whose recorded sealed
    segments are not the files on disk any more, in id order; whole segments that were only
    copied (same size and frames) get their new stat recorded. See the module docstring."""
    sql = "SELECT run_id, stream, name, bytes, mtime_ns, inode FROM segments WHERE sealed = 1"
    if run_ids is None:
        rows = catalog.conn.execute(sql).fetchall()
    else:
        rows = catalog.conn.execute(sql + " AND run_id IN (SELECT value FROM json_each(?))",
                                    [json.dumps(sorted(run_ids))]).fetchall()
    changed: set[str] = set()
    restat: list[tuple[int, int, str, str, str]] = []
    root = os.open(runs_dir, os.O_RDONLY | os.O_DIRECTORY)  # stat relative to it: a third cheaper
    try:
        for run_id, stream, name, size, mtime_ns, inode in rows:
            path = f"{run_id}/{stream}/{name}"
            try:
                st = os.stat(path, dir_fd=root)
            except FileNotFoundError:
                if os.path.isdir(os.path.join(runs_dir, run_id)):  # a removed run is no damage
                    changed.add(run_id)
                continue
            if st.st_size != size:
                changed.add(run_id)
            elif (st.st_mtime_ns, st.st_ino) != (mtime_ns, inode) and run_id not in changed:
                if mtime_ns is None or _whole(catalog, os.path.join(runs_dir, path), run_id, stream, name):
                    restat.append((st.st_mtime_ns, st.st_ino, run_id, stream, name))
                else:
                    changed.add(run_id)
    finally:
        os.close(root)
    if restat:
        with transaction(catalog.conn) as conn:
            conn.executemany("UPDATE segments SET mtime_ns=?, inode=? WHERE run_id=? AND stream=? AND name=?", restat)
    return sorted(changed)


def _whole(catalog: Catalog, path: str, run_id: str, stream: str, name: str) -> bool:
    """Every frame of the segment at ``path`` passes its checksum and they hold the seqs its
    ``segments`` row says."""
    first, last = catalog.conn.execute("SELECT first_seq, last_seq FROM segments WHERE run_id=? AND stream=? "
                                       "AND name=?", [run_id, stream, name]).fetchone()
    try:
        frames, problem, _off = segment.scan(path, verify=True)
    except (OSError, EventlogError):  # unreadable, or a newer format: the fold says which
        return False
    return problem is None and bool(frames) and frames[0].first_seq == first and frames[-1].last_seq == last
