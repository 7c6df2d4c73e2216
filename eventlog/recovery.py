"""What a writer finds in a stream directory before it appends, and what it repairs there.

A crash can leave, in a stream directory (``runs/<id>/events`` or ``scores``):

* a ``*.tmp`` file: a seal-time compaction cut short; the open segment it was made from is
  still there, so the temp file is removed;
* an open segment whose first seq is also a sealed segment's: the compaction was renamed into
  place but the open file not yet removed; it is removed;
* several open segments (a roll cut short): all but the last are sealed (compacted if their
  frames are small);
* a torn tail on the last open segment: cut off by checksum (see :func:`segment.recover`) and
  reported; a bad frame followed by a valid one raises :class:`CorruptLog` instead.

Every repair is journalled in the stream's manifest (``manifest.py``), and sealed segments the
manifest lacks are added to it. Idempotent: recovering a recovered directory changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from . import manifest, segment
from .events import RunEnded
from .reader import last_record


class Recovered(msgspec.Struct, frozen=True):
    """The state of a recovered stream: the seq to append next, the open segment to continue
    (None: start a new one at ``next_seq``), the cut made, and whether the stream has ended."""

    next_seq: int
    open_path: Path | None
    open_first: int
    torn_tail: segment.TornTail | None
    ended: bool


def recover_stream(directory: Path, *, batch_events: int, compact_below: int) -> Recovered:
    """Repair ``directory`` as the module docstring says and describe what is left.
    Orphaned open segments are compacted into frames of ``batch_events`` when their frames hold
    fewer than ``compact_below`` events on average."""
    sealed_last = 0
    open_files = []
    sealed_firsts = set()
    for name in os.listdir(directory):
        if name.endswith(".tmp"):
            os.unlink(directory / name)
            continue
        parsed = segment.parse_name(name)
        if parsed is None:
            continue
        first, last = parsed
        if last is None:
            open_files.append((first, name))
        else:
            sealed_last = max(sealed_last, last)
            sealed_firsts.add(first)
    for first, name in list(open_files):
        if first in sealed_firsts:
            os.unlink(directory / name)
            open_files.remove((first, name))
    open_files.sort()
    for _first, name in open_files[:-1]:
        _seal_orphan(directory / name, batch_events, compact_below)
    next_seq, open_path, open_first, torn = sealed_last + 1, None, 0, None
    if open_files:
        first, name = open_files[-1]
        path = directory / name
        frames, torn = segment.recover(path)
        if torn is not None:
            manifest.append(directory, cut=name, offset=torn.offset, bytes=torn.bytes_cut)
        if frames:
            next_seq, open_path, open_first = frames[-1].last_seq + 1, path, first
        else:
            path.unlink()
            manifest.append(directory, dropped=name)
    _list_sealed(directory)
    ended = False
    if next_seq > 1:
        rec = last_record(directory)
        ended = rec is not None and isinstance(rec.event, RunEnded)
    return Recovered(next_seq, open_path, open_first, torn, ended)


def _seal_orphan(path: Path, batch_events: int, compact_below: int) -> None:
    frames, _ = segment.recover(path)
    if frames:
        sealed = path.parent / segment.sealed_name(frames[0].first_seq, frames[-1].last_seq)
        if not segment.compact(path, sealed, batch_events, compact_below):
            os.replace(path, sealed)
    else:
        path.unlink()
        manifest.append(path.parent, dropped=path.name)


def _list_sealed(directory: Path) -> None:
    """Add to the manifest the sealed segments it lacks (a crash between a seal's rename and its
    manifest line, or a stream written before manifests existed): they are there, so they count."""
    listed = manifest.read(directory).sealed
    for name in sorted(os.listdir(directory)):
        parsed = segment.parse_name(name)
        if parsed is not None and parsed[1] is not None and name not in listed:
            manifest.append(directory, sealed=name, bytes=(directory / name).stat().st_size)
