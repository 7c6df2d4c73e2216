"""What a remote holds, run by run, and removing runs from it (`agtrace ls --remote`,
`agtrace pull PREFIX`, `agtrace rm --remote`).

One listing of ``runs/`` answers :func:`list_remote_runs`: per run its objects and bytes on the
key layout (what `pull` takes), its sealed segments and last seq, its bundles, whether a manifest
says a push completed, and apart the keys off the layout (which `pull` names and ignores). Removing
a run deletes every object under ``runs/<id>/``, manifests first (a manifest says the objects it
lists are there); blobs stay, since other runs of the remote may share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import segment
from ..errors import AmbiguousRunId, RunNotFound
from ..ids import is_run_id, looks_like_run_id, run_id_time_ns
from ..remotes.base import Remote
from .keys import run_key_kind


@dataclass
class RemoteRun:
    """One run as a remote holds it."""

    id: str
    started_at: int | None = None
    objects: int = 0
    """Objects on the key layout (what `pull` takes): sealed segments, bundles, manifests."""
    bytes: int = 0
    """Their bytes."""
    segments: int = 0
    last_seq: int = 0
    bundles: int = 0
    manifest: bool = False
    off_layout: int = 0
    """Keys under ``runs/<id>/`` off the layout (`pull` names and ignores them), not in ``objects``."""
    off_layout_bytes: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RemoteRemoval:
    """What :func:`remove_remote_runs` deleted (or, with ``dry_run``, would delete)."""

    url: str
    runs: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def list_remote_runs(remote: Remote, strays: dict[str, int] | None = None) -> list[RemoteRun]:
    """Every run the remote holds, oldest first (run ids sort by time). A folder under ``runs/``
    that is no run id (:func:`is_run_id`: pull names it and takes nothing from it) is no run;
    ``strays``, when given, gets the number of keys under each such folder."""
    runs: dict[str, RemoteRun] = {}
    for obj in remote.list("runs/"):
        parts = obj.key.split("/")
        if len(parts) < 3 or not is_run_id(parts[1]):
            if strays is not None and len(parts) >= 3:
                strays[parts[1]] = strays.get(parts[1], 0) + 1
            continue
        run = runs.get(parts[1])
        if run is None:
            run = runs[parts[1]] = RemoteRun(parts[1], run_id_time_ns(parts[1]))
        kind = run_key_kind(obj.key)
        if not kind:
            run.off_layout += 1
            run.off_layout_bytes += obj.size
            continue
        run.objects += 1
        run.bytes += obj.size
        if kind == "segment":
            run.segments += 1
            last = segment.parse_name(parts[3])[1]
            if parts[2] == "events":
                run.last_seq = max(run.last_seq, last)
        elif kind == "bundle":
            run.bundles += 1
        else:
            run.manifest = True
    return [runs[k] for k in sorted(runs)]


def resolve_remote(remote: Remote, prefix: str, runs: list[RemoteRun] | None = None) -> str:
    """The full id of the run the remote holds that ``prefix`` names (unique, case-insensitive)."""
    prefix = prefix.strip().upper()
    if not looks_like_run_id(prefix):
        raise RunNotFound(f"{prefix!r} is not a run id; `agtrace ls --remote {remote.url}` lists the runs it holds")
    runs = runs if runs is not None else list_remote_runs(remote)
    matches = [r.id for r in runs if r.id.startswith(prefix)]
    if not matches:
        raise RunNotFound(f"no run matches {prefix!r} on {remote.url}; `agtrace ls --remote {remote.url}` "
                          "lists the runs it holds")
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise AmbiguousRunId(f"{prefix!r} matches {len(matches)} runs on {remote.url} ({shown}…); give more characters")
    return matches[0]


def remove_remote_runs(remote: Remote, run_ids: list[str], *, dry_run: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> RemoteRemoval:
    """Delete every object of ``run_ids`` from the remote, manifests first; blobs stay.
    Raises :class:`RunNotFound` (before deleting anything) for a run the remote does not hold.
    ``progress(done, total)`` is called after each run listed, then after each run deleted
    (``total`` is twice the runs; with ``dry_run``, the runs)."""
    report = RemoteRemoval(remote.url, dry_run=dry_run)
    plans = []
    ids = list(dict.fromkeys(run_ids))
    steps = len(ids) if dry_run else 2 * len(ids)
    for rid in ids:
        listing = remote.list(f"runs/{rid}/")
        if not listing:
            raise RunNotFound(f"run {rid} is not on {remote.url}; `agtrace ls --remote {remote.url}` lists the runs it holds")
        plans.append((rid, listing))
        if progress is not None:
            progress(len(plans), steps)
    for rid, listing in plans:
        keys = sorted((o.key for o in listing), key=lambda k: (k.split("/")[2] != "manifests", k))
        if not dry_run:
            remote.delete(keys)
        report.runs.append(rid)
        report.objects += len(keys)
        report.bytes += sum(o.size for o in listing)
        if progress is not None and not dry_run:
            progress(len(ids) + len(report.runs), steps)
    return report
