"""A stream's manifest: the journal of the segments its writers opened, sealed, cut and dropped.

``runs/<id>/<stream>/manifest`` holds one JSON object per line, appended (and fsynced) by the
writer when it opens a segment, seals one, cuts a torn tail or drops an open segment that held
no complete frame (normative copy in ``docs/format.md``)::

    {"open":"0000000000000001.open"}
    {"sealed":"0000000000000001-0000000000000009.seg","bytes":812}
    {"cut":"000000000000000a.open","offset":530,"bytes":17}
    {"dropped":"000000000000000a.open"}

It is what lets ``verify`` see a segment that is gone: a sealed segment listed here must exist
with its size, and an open segment listed and neither sealed nor dropped since must still be
there. A store written before the manifest existed has none; verify then checks what the files
alone can show. A line cut short by a crash (the last one) is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

NAME = "manifest"


def append(stream_dir: str | os.PathLike, **entry) -> None:
    """Append one entry and fsync it (the manifest is created on first use)."""
    path = Path(stream_dir) / NAME
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Manifest:
    """What a manifest says: the sealed segments (name → bytes) and the open segment that must
    still be there (None when the last one opened was sealed or dropped)."""

    present: bool = False
    sealed: dict[str, int] = field(default_factory=dict)
    open: str | None = None
    damaged_lines: list[int] = field(default_factory=list)


def read(stream_dir: str | os.PathLike) -> Manifest:
    """The manifest of a stream directory (``present`` False when it has none)."""
    path = Path(stream_dir) / NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    out = Manifest(present=True)
    lines = data.split(b"\n")
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            if no != len(lines):  # the last line may be one a crash cut short
                out.damaged_lines.append(no)
            continue
        if isinstance(entry.get("open"), str):
            out.open = entry["open"]
        elif isinstance(entry.get("sealed"), str):
            name = entry["sealed"]
            out.sealed[name] = entry.get("bytes", -1) if isinstance(entry.get("bytes"), int) else -1
            if out.open is not None and name[:16] == out.open[:16]:
                out.open = None
        elif isinstance(entry.get("dropped"), str) and entry["dropped"] == out.open:
            out.open = None
    return out
