"""Appending JSON lines in bulk: what ``agtrace append`` does with its standard input.

Lines are read in blocks of :data:`BLOCK_BYTES`; each block is redacted as a whole
(:meth:`~agtrace.eventlog.Redactor.redact_json_lines`: a screen over the block, then only the
lines that may hold a secret one by one), decoded line by line, and handed to the writer as one
group (:meth:`~agtrace.eventlog.writer.RunWriter.append_many`), which frames, compresses and
makes it durable under the writer's policy, as single appends would.

Contract: events are stored in line order; blank lines are skipped but counted, and so are
``run_started`` lines (a run has its own identity). On a line that
does not decode, every event of the lines before it is appended, and :class:`InvalidEvent`
names the line, how many events are stored and their seqs; nothing after it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import msgspec

from .codec import event_from_json
from .errors import InvalidEvent
from .events import Event, RawRecorded, RunStarted
from .limit import check_record
from .redaction import Redactor

BLOCK_BYTES = 4 << 20
"""Bytes read from the input at a time (a block ends at the last newline in it)."""


def json_line_blocks(source: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """``(number of the first line, lines)`` of ``source`` in blocks, newlines removed."""
    rest = b""
    line_no = 1
    read = getattr(source, "read1", source.read)  # what a pipe has, without waiting for a full block
    while data := read(block_bytes):
        if rest:
            data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        lines = data[:cut].split(b"\n")
        rest = data[cut + 1 :]
        yield line_no, lines
        line_no += len(lines)
    if rest:
        yield line_no, [rest]


@dataclass
class Appended:
    """What :func:`append_json_lines` did: events appended, the numbers of the lines whose
    ``run_started`` was skipped (a run has its own), and how many events have a ``ts`` before
    ``started_at``."""

    appended: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    before_start: int = 0


def append_json_lines(writer, source: BinaryIO, redactor: Redactor | None = None, *,
                      check: Callable[[Event], None] | None = None, started_at: int | None = None,
                      block_bytes: int = BLOCK_BYTES) -> Appended:
    """Append the events of the JSON lines of ``source`` (what ``agtrace log --json`` prints)
    to ``writer``, redacted by ``redactor`` when given; ``check(event)`` may refuse an event
    (raising :class:`InvalidEvent`, e.g. ``Store.check_blobs``), as the limits of
    :func:`check_record` do. ``run_started`` lines are skipped (and named in the result).

    The store assigns seqs; ``ts`` and ``part`` are kept when given. See the module docstring
    for what happens on a bad line.
    """
    first = writer.next_seq
    done = Appended()
    for line_no, lines in json_line_blocks(source, block_bytes):
        counts: dict[int, int] = {}
        if redactor is not None:
            lines, counts = redactor.redact_json_lines(lines)
        batch = []
        at = line_no
        try:
            for i, line in enumerate(lines):
                if not line or line.isspace():
                    continue
                at = line_no + i
                event, ts, part = event_from_json(line, at)
                if type(event) is RunStarted:  # the run has its identity: one run_started per run
                    done.skipped_lines.append(at)
                    continue
                if type(event) is RawRecorded and redactor is not None:  # its bytes were base64
                    event, _ = redactor.redact_event(event)
                    if i in counts:
                        event = msgspec.structs.replace(event, redactions=event.redactions + counts[i])
                check_record(event, ts, part)
                if check is not None:
                    check(event)
                batch.append((event, part, ts))
                done.before_start += ts is not None and started_at is not None and ts < started_at
        except InvalidEvent as exc:
            if batch:
                writer.append_many(batch, checked=True)
            done.appended += len(batch)
            text = str(exc) if str(exc).startswith(f"line {at}:") else f"line {at}: {exc}"
            raise InvalidEvent(
                f"{text}; the {done.appended} event(s) before line {at} are stored "
                f"(seq {first}..{first + done.appended - 1}); nothing after it was read",
                at,
            ) from None
        if batch:
            writer.append_many(batch, checked=True)
        done.appended += len(batch)
    return done
