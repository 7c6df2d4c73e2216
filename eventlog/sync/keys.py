"""Where a store's objects live on a remote, shared by push, pull and the shipper.

Keys (normative, ``docs/remote.md``): ``runs/<id>/<stream>/<first>-<last>.seg`` for sealed
segments of each stream in :data:`STREAMS`, ``runs/<id>/bundles/<nnnn>-<tip12>.bundle``,
``runs/<id>/manifests/<last>-<sha16>.json`` and ``blobs/<aa>/<sha256>.zst``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .. import codec, segment
from ..errors import CorruptLog
from ..remotes.base import Remote
from ..verification import blob_refs

STREAMS = ("events", "scores")
BUNDLE_NAME = re.compile(r"^[0-9]{4,}-[0-9a-f]{12}\.bundle$")
MANIFEST_NAME = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}\.json$")
MANIFEST_FORMAT = 1

Progress = Callable[[int, int], None]
"""``progress(done, total)``: objects handled so far, of how many."""


def run_key_kind(key: str) -> str:
    """Where ``key`` (``runs/<id>/…``) stands on the layout: ``"segment"`` (a sealed segment of
    a stream), ``"bundle"``, ``"manifest"``, or ``""`` off the layout (an open segment, a key
    leaving the run, a hidden name, a stray file). Pull takes only the first three and names the
    rest; ``ls --remote`` counts them apart."""
    parts = key.split("/")
    if len(parts) != 4:
        return ""
    where, name = parts[2], parts[3]
    if where in STREAMS:
        parsed = segment.parse_name(name)
        return "segment" if parsed and parsed[1] is not None else ""
    if where == "bundles":
        return "bundle" if BUNDLE_NAME.match(name) else ""
    if where == "manifests":
        return "manifest" if MANIFEST_NAME.match(name) else ""
    return ""


def blob_key(digest: str) -> str:
    return f"blobs/{digest[:2]}/{digest}.zst"


def segment_blob_refs(path: Path) -> set[str]:
    """The blob digests referenced by the events of a sealed segment."""
    refs: set[str] = set()
    data = path.read_bytes()
    for info, batch in segment.iter_frames(data, where=str(path)):
        for rec in codec.decode_batch(batch, info.first_seq):
            refs.update(blob_refs(rec.event))
    return refs


def check_segment(path: Path, first: int, last: int, damaged: str = "the remote copy is damaged") -> set[str]:
    """The blob digests referenced by the events of ``path``, a sealed segment whose frames must
    hold exactly seqs ``first``..``last`` (as its name says) and decode; else :class:`CorruptLog`
    (its message ends with ``damaged``, whose copy it is, when given)."""
    whose = f"; {damaged}" if damaged else ""
    frames, problem, off = segment.scan(path)
    if problem:
        raise CorruptLog(f"frame at byte {off}: {problem}{whose}", str(path), off)
    if not frames or frames[0].first_seq != first or frames[-1].last_seq != last:
        raise CorruptLog(f"its frames do not hold seqs {first}..{last} as its name says{whose}", str(path))
    refs: set[str] = set()
    with open(path, "rb") as fh:
        for info in frames:
            try:
                records = codec.decode_batch(segment.read_frame(fh, info), info.first_seq)
            except MemoryError:
                raise  # this machine's shortage, not damage: a whole copy is never called damaged for it
            except Exception as exc:  # noqa: BLE001 - a frame that does not decode is damage
                raise CorruptLog(f"frame at byte {info.offset}: {segment.frame_damage(exc, path, info.offset)}{whose}",
                                 str(path), info.offset) from None
            for rec in records:
                refs.update(blob_refs(rec.event))
    return refs


def remote_run_ids(remote: Remote) -> list[str]:
    """The ids of the runs a remote holds (those with at least one object under ``runs/<id>/``)."""
    return sorted({o.key.split("/")[1] for o in remote.list("runs/") if o.key.count("/") >= 2})
