"""Verifying a store: is every run whole, and what of it can still be replayed.

For each run, read-only (normative list in ``docs/format.md``, "What verify checks"):

* **frames**: every frame of every segment of both streams passes its checksum and decodes;
  seqs are gapless from 1 across segments; each sealed segment's name matches its frames.
* **completeness**: every sealed segment the stream's manifest lists is there with its size;
  the open segment the manifest says is being written is there; events the catalog indexed
  are still in the log (an open segment without a frame is named then); a run the catalog saw end still has its ``run_ended``.
* **blobs**: every blob an event names is there and hashes to its address.
* **snapshots**: every tree a part ended with is whole (every tree and blob it reaches reads
  back and re-hashes) in the shadow repository and, separately, in the bundles (unbundled into a
  temporary repository; ``git`` checks the packs); a part whose tree is whole in either can be
  replayed.

Problems are sentences naming the file (and byte offset) or the seq; a damaged stream is read no
further than its first bad frame. :class:`RunCheck` says, per run, which parts can still be
replayed and why the others cannot.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import codec, manifest, reader, segment
from .errors import CorruptBlob, CorruptLog, GitStoreError, NewerFormat, UnsafePath
from .events import (
    Event,
    MessageAdded,
    PartEnded,
    RawRecorded,
    Record,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    ToolReturned,
)

if TYPE_CHECKING:
    from .store import Store


@dataclass
class RunCheck:
    """What verify found for one run."""

    run_id: str
    problems: list[str] = field(default_factory=list)
    last_seq: int = 0
    """The last seq of the events stream that reads (everything up to it is intact)."""
    ended: bool = False
    parts: int = 0
    """Parts whose ``part_ended`` reads."""
    replayable: list[int] = field(default_factory=list)
    """Parts (0: the base tree) whose tree is whole in the shadow repository or the bundles."""
    not_replayable: dict[int, str] = field(default_factory=dict)
    """Part → why it cannot be replayed."""
    snapshots: dict[str, str] = field(default_factory=dict)
    """``repo.git`` and ``bundles`` → ``ok``, ``absent`` or what is wrong."""
    newer: list[str] = field(default_factory=list)
    """Segments written by a newer agtrace (:class:`NewerFormat`): not damage, but not checked
    either (nor anything after them in their stream), so the run is not ``ok``."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.newer

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "ok": self.ok, "problems": self.problems, "newer": self.newer,
                "last_seq": self.last_seq,
                "ended": self.ended, "parts": self.parts, "replayable": self.replayable,
                "not_replayable": {str(k): v for k, v in sorted(self.not_replayable.items())},
                "snapshots": self.snapshots}


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` found. ``ok`` is False when any problem was found."""

    runs: int = 0
    segments: int = 0
    """Segments of both streams (``events`` and ``scores``)."""
    frames: int = 0
    events: int = 0
    """Records of the ``events`` stream: what ``show`` and ``ls`` count as the run's events."""
    scores: int = 0
    """Records of the ``scores`` stream (``rescore``'s results), counted apart from the events."""
    blobs: int = 0
    trees: int = 0
    """Distinct trees checked, per run; each is checked in every source the run has."""
    tree_checks: int = 0
    """Trees checked, counted once per source (``repo.git``, the bundles)."""
    problems: list[str] = field(default_factory=list)
    newer: list[str] = field(default_factory=list)
    """Every run's :attr:`RunCheck.newer`: segments to read with a newer agtrace."""
    checks: list[RunCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.newer

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("runs", "segments", "frames", "events", "scores", "blobs", "trees",
                                             "tree_checks", "problems", "newer")}
        return {"ok": self.ok, **out, "checks": [c.to_dict() for c in self.checks]}


@dataclass
class _Stream:
    last_seq: int = 0
    ended: bool = False
    damaged: bool = False
    base_tree: str = ""
    trees: dict[int, str] = field(default_factory=dict)
    """Part → the tree it ended with ("" when it recorded none)."""
    empty_open: Path | None = None
    source: str = ""
    """``run_started.source`` (``import:…``, ``append``, ``capture``…): names why a run has no trees."""


def verify(store: Store, run_id: str | None = None, progress: Callable[[int, int], None] | None = None,
           *, snapshots: bool = True) -> VerifyReport:
    """Check one run (or every run) of ``store``; see the module docstring."""
    report = VerifyReport()
    ids = [run_id] if run_id else store.run_ids()
    for i, rid in enumerate(ids):
        report.runs += 1
        check = RunCheck(rid)
        events = _verify_stream(store, rid, "events", report, check)
        _verify_stream(store, rid, "scores", report, check)
        check.last_seq, check.ended = events.last_seq, events.ended
        check.parts = sum(1 for _ in events.trees)
        if not events.damaged:
            _compare_with_catalog(store, rid, events, check)
        if snapshots:
            _verify_snapshots(store, rid, events, check, report)
        report.problems.extend(check.problems)
        report.newer.extend(check.newer)
        report.checks.append(check)
        if progress:
            progress(i + 1, len(ids))
    return report


def _verify_stream(store: Store, run_id: str, stream: str, report: VerifyReport, check: RunCheck) -> _Stream:
    out = _Stream()
    directory = store.run_dir(run_id) / stream
    segments = reader.list_segments(directory)
    _check_manifest(directory, segments, run_id, check)
    expected = 1
    for first, last, path in segments:
        report.segments += 1
        try:
            frames, problem, off = segment.scan(path)
        except NewerFormat as exc:
            check.newer.append(str(exc))
            out.damaged = True  # what follows is not read; the catalog is not compared with it
            return out
        report.frames += len(frames)
        if first != expected:
            check.problems.append(f"{path}: starts at seq {first}, expected {expected} (a segment is missing)")
            out.damaged = True
        if problem:
            check.problems.append(f"{path}: frame at byte {off}: {problem}")
        if frames and frames[0].first_seq != first:
            check.problems.append(f"{path}: first frame starts at seq {frames[0].first_seq}, name says {first}")
        if not problem and last is not None and (not frames or frames[-1].last_seq != last):
            check.problems.append(f"{path}: last seq differs from the name's {last}")
        if last is None and not frames and not problem:
            out.empty_open = path  # a crash before its first frame, or emptied: the catalog tells
        expected = frames[-1].last_seq + 1 if frames else expected
        if not _read_frames(store, run_id, path, frames, report, check, out, scores=stream == "scores"):
            out.damaged = True
            return out
        if problem:
            out.damaged = True
            return out
    return out


def _read_frames(store, run_id, path, frames, report, check, out: _Stream, *, scores: bool) -> bool:
    with open(path, "rb") as fh:
        for info in frames:
            try:
                records = _decode_frame(fh, info)
            except MemoryError:
                raise  # this machine's shortage (a frame may hold up to MAX_FRAME_BYTES), not damage
            except Exception as exc:  # noqa: BLE001 - any failure to decode is damage to report
                check.problems.append(f"{path}: frame at byte {info.offset}: {segment.frame_damage(exc, path, info.offset)}")
                return False
            if scores:
                report.scores += len(records)
            else:
                report.events += len(records)
            for rec in records:
                _note(rec, out)
                for digest in blob_refs(rec.event):
                    report.blobs += 1
                    try:
                        store.blobs.check(digest)
                    except (CorruptBlob, UnsafePath) as exc:
                        check.problems.append(f"seq {rec.seq} of run {run_id}: {exc}")
    return True


def _note(rec: Record, out: _Stream) -> None:
    out.last_seq = rec.seq
    ev = rec.event
    if isinstance(ev, RunStarted) and rec.seq == 1:
        out.source = ev.source or ""
    elif isinstance(ev, SnapshotTaken) and not ev.final:
        if rec.part is None:
            out.base_tree = out.base_tree or ev.tree_id
        else:
            out.trees.setdefault(rec.part, "")
            out.trees[rec.part] = ev.tree_id
    elif isinstance(ev, PartEnded) and rec.part is not None:
        out.trees[rec.part] = ev.tree_id or out.trees.get(rec.part, "")
    out.ended = isinstance(ev, RunEnded)


def _check_manifest(directory: Path, segments, run_id: str, check: RunCheck) -> None:
    found = manifest.read(directory)
    if not found.present:
        return
    for no in found.damaged_lines:
        check.problems.append(f"{directory / manifest.NAME}: line {no} is damaged")
    names = {path.name: path for _f, _l, path in segments}
    firsts = {first for first, _l, _p in segments}
    for name, size in sorted(found.sealed.items()):
        path = names.get(name)
        if path is None:
            first_last = segment.parse_name(name)
            span = f" (events {first_last[0]}..{first_last[1]})" if first_last else ""
            check.problems.append(f"{directory / name}: sealed segment listed in the manifest is missing{span}")
        elif size >= 0 and path.stat().st_size != size:
            check.problems.append(f"{path}: has {path.stat().st_size} bytes, the manifest says {size}")
    if found.open is not None and found.open not in names:
        parsed = segment.parse_name(found.open)
        if parsed is None or parsed[0] not in firsts:
            start = f" from seq {parsed[0]} on" if parsed else ""
            check.problems.append(f"{directory / found.open}: the open segment is missing; its events{start} are lost")


def _compare_with_catalog(store: Store, run_id: str, events: _Stream, check: RunCheck) -> None:
    """The catalog as a second witness: what it indexed must still be in the log."""
    import sqlite3

    if not (store.root / "catalog.db").exists():
        return
    try:
        row = store.catalog.run_row(run_id)
    except sqlite3.Error:
        return
    if row is None:
        return
    indexed = row.get("events") or 0
    if indexed > events.last_seq:
        where = f" ({events.empty_open} holds no frame)" if events.empty_open else ""
        check.problems.append(f"run {run_id}: the log ends at seq {events.last_seq} but the catalog indexed "
                              f"seqs up to {indexed}: events {events.last_seq + 1}..{indexed} are missing{where}")
    if row.get("end_status") and not events.ended:
        check.problems.append(f"run {run_id}: the catalog saw the run end ({row['end_status']}) but its "
                              "run_ended event is missing from the log")


def _verify_snapshots(store: Store, run_id: str, events: _Stream, check: RunCheck, report: VerifyReport) -> None:
    from contextlib import nullcontext

    from .git.repository import GitStore

    wanted = {p: t for p, t in events.trees.items()}
    if events.base_tree:
        wanted[0] = events.base_tree
    run_dir = store.run_dir(run_id)
    shadow = run_dir / "repo.git"
    bundles = sorted((run_dir / "bundles").glob("*.bundle")) if (run_dir / "bundles").is_dir() else []
    damage: dict[str, dict[str, str]] = {}  # source -> tree -> what is wrong
    trees = sorted({t for t in wanted.values() if t})
    report.trees += len(trees)
    sources = []
    if shadow.exists():
        sources.append(("repo.git", lambda: nullcontext(GitStore.open(shadow))))
    if bundles:
        sources.append(("bundles", lambda: _unbundled(GitStore, bundles)))
    for name, opener in sources:
        try:
            with opener() as git:
                seen: set[str] = set()
                damage[name] = {}
                for tree in trees:
                    report.tree_checks += 1
                    wrong = git.damage_in(tree, seen)
                    if wrong:
                        damage[name][tree] = wrong
        except GitStoreError as exc:
            check.snapshots[name] = " ".join(str(exc).split())
            check.problems.append(f"{run_dir / name}: cannot be read: {check.snapshots[name]}")
            continue
        bad = damage[name]
        check.snapshots[name] = "ok" if not bad else f"{len(bad)} of {len(trees)} trees damaged"
        for tree, wrong in sorted(bad.items()):
            check.problems.append(f"{run_dir / name}: tree {tree}: {wrong}")
    for name in ("repo.git", "bundles"):
        check.snapshots.setdefault(name, "absent")
    good = set(damage)  # the sources that could be opened
    without = _without_repository(events.source) if not sources else ""
    for part, tree in sorted(wanted.items()):
        if not tree:
            check.not_replayable[part] = without or "no snapshot was recorded"
        elif not good:
            check.not_replayable[part] = without or "the run has neither a readable shadow repository nor bundles"
        elif all(tree in damage[src] for src in good):
            check.not_replayable[part] = "; ".join(f"{src}: {damage[src][tree]}" for src in sorted(good))
        else:
            check.replayable.append(part)


def _without_repository(source: str) -> str:
    """Why a run that never had a repository here has no trees, in words naming the cause ("" when
    its source does not say: a captured run whose repository is gone is a loss, said as such)."""
    if source.startswith("import"):
        return f"imported without repository state ({source})"
    if source == "append":
        return "copied events only, without repository state (`agtrace cp RUN` copies a run with its repository)"
    return ""


class _unbundled:
    """The bundles unbundled into a temporary repository (git checks every pack), as a context."""

    def __init__(self, git_store, bundles: list[Path]):
        import tempfile  # only a verify that unbundles needs it

        self._tmp = tempfile.TemporaryDirectory(prefix="agtrace-verify-")
        try:
            self.git = git_store.from_bundles(bundles, os.path.join(self._tmp.name, "repo.git"))
        except BaseException:
            self._tmp.cleanup()
            raise

    def __enter__(self):
        return self.git

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()


def _decode_frame(fh, info: segment.FrameInfo) -> list[Record]:
    return codec.decode_batch(segment.read_frame(fh, info), info.first_seq)


_BLOB_FIELDS = {ToolReturned: "output_blob", RawRecorded: "blob", MessageAdded: "text_blob"}
"""The field of each event type that may name a blob (one per type)."""


def blob_refs(event: Event) -> list[str]:
    """The blob addresses an event refers to."""
    name = _BLOB_FIELDS.get(type(event))
    digest = getattr(event, name) if name is not None else ""
    return [digest] if digest else []


__all__ = ["CorruptLog", "RunCheck", "VerifyReport", "blob_refs", "verify"]
