"""Verifying a store: every frame of every segment, and every blob an event refers to.

Read-only. Problems are listed with the segment path and the byte offset of the first bad
frame of a stream (the rest of that stream is not read), or the seq of the event whose blob is
damaged or missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from . import codec, reader, segment
from .errors import CorruptBlob, CorruptLog, UnsafePath
from .events import Event, MessageAdded, RawRecorded, Record, ToolReturned

if TYPE_CHECKING:
    from .store import Store


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` found. ``ok`` is False when any problem was found."""

    runs: int = 0
    segments: int = 0
    frames: int = 0
    events: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store, run_id: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check one run (or every run) of ``store``; see the module docstring."""
    report = VerifyReport()
    ids = [run_id] if run_id else store.run_ids()
    for i, rid in enumerate(ids):
        report.runs += 1
        for stream in ("events", "scores"):
            _verify_stream(store, rid, stream, report)
        if progress:
            progress(i + 1, len(ids))
    return report


def _verify_stream(store: Store, run_id: str, stream: str, report: VerifyReport) -> None:
    expected = 1
    for first, last, path in reader.list_segments(store.run_dir(run_id) / stream):
        report.segments += 1
        frames, problem, off = segment.scan(path)
        report.frames += len(frames)
        if first != expected:
            report.problems.append(f"{path}: starts at seq {first}, expected {expected} (a segment is missing)")
        if problem:
            report.problems.append(f"{path}: frame at byte {off}: {problem}")
            return
        if frames and frames[0].first_seq != first:
            report.problems.append(f"{path}: first frame starts at seq {frames[0].first_seq}, name says {first}")
        if last is not None and (not frames or frames[-1].last_seq != last):
            report.problems.append(f"{path}: last seq differs from the name's {last}")
        expected = frames[-1].last_seq + 1 if frames else expected
        with open(path, "rb") as fh:
            for info in frames:
                try:
                    records = _decode_frame(fh, info)
                except (CorruptLog, msgspec.DecodeError, Exception) as exc:  # noqa: BLE001
                    report.problems.append(f"{path}: frame at byte {info.offset}: does not decode: {exc}")
                    return
                report.events += len(records)
                for rec in records:
                    for digest in blob_refs(rec.event):
                        report.blobs += 1
                        try:
                            store.blobs.get(digest)
                        except (CorruptBlob, UnsafePath) as exc:
                            report.problems.append(f"seq {rec.seq} of run {run_id}: {exc}")


def _decode_frame(fh, info: segment.FrameInfo) -> list[Record]:
    return codec.decode_batch(segment.read_frame(fh, info), info.first_seq)


def blob_refs(event: Event) -> list[str]:
    """The blob addresses an event refers to."""
    if isinstance(event, ToolReturned) and event.output_blob:
        return [event.output_blob]
    if isinstance(event, RawRecorded) and event.blob:
        return [event.blob]
    if isinstance(event, MessageAdded) and event.text_blob:
        return [event.text_blob]
    return []
