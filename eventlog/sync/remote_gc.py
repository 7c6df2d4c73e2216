"""Collecting a remote's garbage (`agtrace gc --remote URL`): the blobs no run on it references.

`agtrace rm --remote` deletes a run's objects but leaves the blobs, which other runs of the
remote may share. This finds the blobs that no remaining run references and deletes them.

What a run references is read from the remote itself, never from a local store: its newest
manifests list the blobs of everything pushed before them; sealed segments that no manifest
lists (shipped live, or pushed by a process killed before its manifest) are downloaded and
their events read. A folder under ``runs/`` that is no run id holds no run (pull does not take
it): it is named in ``problems`` and not read. When a run's references cannot be read whole (a damaged manifest or
segment), nothing is deleted: a :class:`RemoteError` names the object.

A push uploads blobs before the segments and the manifest that reference them, so a blob
younger than ``min_age_s`` is kept (default :data:`MIN_AGE_S`), and so is one whose age the
backend does not report. ``dry_run`` reports the same and deletes nothing.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from .. import segment
from ..errors import CorruptLog, RemoteError
from ..ids import is_run_id
from ..remotes.base import ObjectInfo, Remote
from .keys import STREAMS, check_segment
from .manifests import newest_manifests, read_manifests

MIN_AGE_S = 86400.0
"""Unreferenced blobs younger than this (a day) are kept: a push may be sending the run that
will reference them."""

_BLOB_KEY = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{64})\.zst$")


@dataclass
class RemoteGarbage:
    """What :func:`collect_remote_garbage` found and deleted (with ``dry_run``: would delete)."""

    url: str
    runs: int = 0
    blobs: int = 0
    referenced: int = 0
    removed: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_recent: int = 0
    segments_read: int = 0
    problems: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def collect_remote_garbage(remote: Remote, *, min_age_s: float = MIN_AGE_S, dry_run: bool = False,
                           now_ns: int | None = None, among: Collection[str] | None = None,
                           progress: Callable[[int, int], None] | None = None) -> RemoteGarbage:
    """Delete the blobs of ``remote`` that no run on it references and that are older than
    ``min_age_s``; see the module docstring for how references are read. ``among`` limits the
    deletion to those keys (what a dry run listed and a user confirmed): the references are read
    again, so a blob a run came to reference since the dry run is kept."""
    report = RemoteGarbage(remote.url, dry_run=dry_run)
    by_run: dict[str, list[ObjectInfo]] = {}
    strays: set[str] = set()
    for obj in remote.list("runs/"):
        parts = obj.key.split("/")
        if len(parts) >= 3 and is_run_id(parts[1]):
            by_run.setdefault(parts[1], []).append(obj)
        elif len(parts) >= 3:
            strays.add(parts[1])
    report.problems += [f"{remote.describe(f'runs/{name[:80]}/')}: {name[:80]!r} is not a run id, so no run (pull "
                        "does not take it); its keys were not read" for name in sorted(strays)]
    blobs = {m.group(2): obj for obj in remote.list("blobs/") if (m := _BLOB_KEY.match(obj.key))
             and m.group(1) == m.group(2)[:2]}
    report.runs, report.blobs = len(by_run), len(blobs)
    referenced: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="agtrace-gc-") as tmp:
        for i, (run_id, listing) in enumerate(sorted(by_run.items())):
            referenced |= _references(remote, run_id, listing, Path(tmp), report)
            if progress:
                progress(i + 1, len(by_run))
    report.referenced = len(referenced & set(blobs))
    cutoff = (now_ns if now_ns is not None else time.time_ns()) - int(min_age_s * 1e9)
    doomed = []
    for digest, obj in sorted(blobs.items()):
        if digest in referenced or (among is not None and obj.key not in among):
            continue
        if not obj.modified_ns or obj.modified_ns > cutoff:
            report.kept_recent += 1
            continue
        doomed.append(obj)
    if doomed and not dry_run:
        remote.delete([o.key for o in doomed])
    report.removed = [o.key for o in doomed]
    report.bytes = sum(o.size for o in doomed)
    return report


def _references(remote: Remote, run_id: str, listing: list[ObjectInfo], tmp: Path,
                report: RemoteGarbage) -> set[str]:
    """The blobs run ``run_id`` references on the remote (its manifests, then the sealed
    segments they do not list)."""
    problems: list[str] = []
    checksums, refs = read_manifests(remote, newest_manifests(listing), problems, tmp)
    report.problems += problems
    for obj in listing:
        parts = obj.key.split("/")
        if len(parts) != 4 or parts[2] not in STREAMS:
            continue
        parsed = segment.parse_name(parts[3])
        if not parsed or parsed[1] is None or (obj.key in checksums and not problems):
            continue  # an open segment is never pushed; a listed one's blobs are in the manifest
        path = tmp / f"{run_id}-{parts[2]}-{parts[3]}"
        remote.get_file(obj.key, path)
        try:
            refs |= check_segment(path, parsed[0], parsed[1])
        except (CorruptLog, ValueError, msgspec.MsgspecError) as exc:
            raise RemoteError(f"{remote.describe(obj.key)} cannot be read ({exc}), so the blobs run {run_id} "
                              "references are unknown; nothing was deleted. `agtrace pull` of the run "
                              "says more; remove the run with `agtrace rm --remote` if it is lost") from None
        finally:
            path.unlink(missing_ok=True)
        report.segments_read += 1
    return refs
