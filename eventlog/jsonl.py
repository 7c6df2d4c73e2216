"""Appending JSON lines in bulk: what ``agtrace append`` does with its standard input.

Lines are read in blocks of :data:`BLOCK_BYTES`; each block is redacted as a whole
(:meth:`~agtrace.eventlog.Redactor.redact_json_lines`: a screen over the block, then only the
lines that may hold a secret one by one), decoded in one loop
(:func:`~agtrace.eventlog.codec.events_from_json_lines`), checked, and handed to the writer as one
group (:meth:`~agtrace.eventlog.writer.RunWriter.append_many`), which frames, compresses and
makes it durable under the writer's policy. The next block is read and screened on a helper
thread while one is decoded and stored (the screen's search lets go of the GIL, so the second
core does it); values learned from a block are looked for again in the next one, which was
screened without them.

Why not a second process for the decoding, which holds the GIL: handing a block's events over
costs a msgpack encode and decode (0.4 s of CPU per 100k events of 1.5 KB) for the 0.45 s the
JSON decode costs. Tried (a forked child preparing the blocks): the two processes spent 30%
more CPU than one, so on two cores, where the screen and the compression already use the
second, it could gain 15% at most (from those CPU times); not worth a fork.

Contract: events are stored in line order; blank lines are skipped but counted, and so are
``run_started`` lines (a run has its own identity). On a line that
does not decode, every event of the lines before it is appended, and :class:`InvalidEvent`
names the line, how many events are stored and their seqs; nothing after it is stored.
``bytes`` fields (base64 in JSON: ``raw_recorded.data``, ``line_logged.data``) are redacted once
decoded; a ``line_logged`` with ``data`` gets the replaced decoding of its (redacted) bytes as
its ``text``, so the two cannot disagree.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import msgspec

from .codec import events_from_json_lines
from .collector import collector_paused
from .errors import InvalidEvent
from .events import (
    END_STATUSES,
    Event,
    LineLogged,
    RawRecorded,
    RunEnded,
    RunStarted,
    TestsRan,
    Usage,
    UsageReported,
)
from .limit import check_record
from .redaction import Redactor, Screened

BLOCK_BYTES = 4 << 20
"""Bytes read from the input at a time (a block ends at the last newline in it)."""


def json_line_blocks(source: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """``(number of the first line, lines)`` of ``source`` in blocks, newlines removed."""
    for line_no, _, lines, _ in _blocks(source, block_bytes):
        yield line_no, lines


def _blocks(source: BinaryIO, block_bytes: int) -> Iterator[tuple[int, bytes, list[bytes], int]]:
    """``(number of the first line, the block, its lines, bytes of input it covers)``: the block
    is the lines joined by newlines; it covers them and the newline after its last line, if any."""
    rest = b""
    line_no = 1
    read = _reader(source, block_bytes)
    while data := read():
        cut = data.rfind(b"\n")
        if cut < 0:
            rest += data
            continue
        # one copy of the block's bytes (rest + data, then a slice of it, would make two)
        block = rest + memoryview(data)[:cut] if rest else data[:cut]
        lines = block.split(b"\n")
        rest = data[cut + 1 :]
        yield line_no, block, lines, len(block) + 1
        line_no += len(lines)
    if rest:
        yield line_no, rest, [rest], len(rest)


def _reader(source: BinaryIO, block_bytes: int) -> Callable[[], bytes]:
    """A function reading the next piece of ``source``: up to ``block_bytes``, as much as is
    there without waiting. A pipe hands over at most its buffer (64 KiB) per read, so more
    reads follow while its descriptor has data ready and the block is not full; a live stream
    (a writer still writing) is read as soon as a line is there, a file or a fast pipe in full
    blocks (a 50 MB pipe made 763 blocks of ~45 lines, each paying a block's fixed costs)."""
    read = getattr(source, "read1", source.read)  # what a pipe has, without waiting for a full block
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return lambda: read(block_bytes)
    import select

    ready = select.poll()
    ready.register(fd, select.POLLIN)
    ended = False

    def pieces() -> bytes:
        nonlocal ended
        if ended:  # a terminal's end (Ctrl-D) is read once: the next read would wait for more
            return b""
        data = read(block_bytes)
        if not data or len(data) >= block_bytes:
            return data
        got, size = [data], len(data)
        while size < block_bytes and ready.poll(0):
            more = read(block_bytes - size)
            if not more:  # the end: what was read so far is the last piece
                ended = True
                break
            got.append(more)
            size += len(more)
        return got[0] if len(got) == 1 else b"".join(got)

    return pieces


def _screened_ahead(source: BinaryIO, redactor: Redactor | None,
                    block_bytes: int) -> Iterator[tuple[int, list[bytes], Screened | None, int]]:
    """:func:`_blocks` with each block's screen (:meth:`Redactor.screen_json_lines`) and the
    bytes of input it covers (its newline included), read and screened one block ahead on a
    daemon thread. Closing the generator stops the thread (once a read it is waiting in
    returns); an error on the thread is raised here, in order."""
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand(item) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for line_no, block, lines, size in _blocks(source, block_bytes):
                if stop.is_set():
                    return
                screened = redactor.screen_json_lines(lines, block) if redactor is not None else None
                hand((line_no, lines, screened, size))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, who raises it
            hand(exc)
            return
        hand(None)

    threading.Thread(target=work, name="agtrace-screen", daemon=True).start()
    try:
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


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
                      block_bytes: int = BLOCK_BYTES, progress: Callable[[int, int], None] | None = None) -> Appended:
    """Append the events of the JSON lines of ``source`` (what ``agtrace log --json`` prints)
    to ``writer``, redacted by ``redactor`` when given; ``check(event)`` may refuse an event
    (raising :class:`InvalidEvent`, e.g. ``Store.check_blobs``), as the limits of
    :func:`check_record` do. ``run_started`` lines are skipped (and named in the result).
    ``progress(bytes read, events appended)`` is called after each block is stored.

    The store assigns seqs; ``ts`` and ``part`` are kept when given. See the module docstring
    for what happens on a bad line.
    """
    first = writer.next_seq
    done = Appended()

    def store(batch: list) -> None:
        if batch:
            writer.append_many(batch, checked=True)
        done.appended += len(batch)
        if started_at is not None:
            done.before_start += sum(1 for _, _, ts in batch if ts is not None and ts < started_at)

    def refuse(batch: list, exc: InvalidEvent, at: int) -> InvalidEvent:
        store(batch)
        text = str(exc) if str(exc).startswith(f"line {at}:") else f"line {at}: {exc}"
        if not done.appended:
            return InvalidEvent(f"{text}; no events were stored", at)
        return InvalidEvent(f"{text}; the {done.appended} event(s) before line {at} are stored "
                            f"(seq {first}..{first + done.appended - 1}); nothing after it was stored", at)

    read = 0
    for line_no, lines, screened, size in _screened_ahead(source, redactor, block_bytes):
        with collector_paused():  # a block holds tens of thousands of objects and no cycle
            counts: dict[int, int] = {}
            if redactor is not None:
                lines, counts = redactor.redact_json_lines(lines, screened)
            decoded, error = events_from_json_lines(lines, line_no)
            batch = []
            for i, item in enumerate(decoded):
                if item is None:
                    continue
                event, ts, part = item
                t = type(event)
                if t is RunStarted:  # the run has its identity: one run_started per run
                    done.skipped_lines.append(line_no + i)
                    continue
                try:
                    if redactor is not None and (t is RawRecorded or t is LineLogged and event.data):  # base64 bytes
                        event, _ = redactor.redact_event(event)
                        if t is LineLogged:  # its text is its bytes' decoding; their secrets are counted
                            event = msgspec.structs.replace(event, text=event.data.decode("utf-8", "replace"))
                        elif i in counts:
                            event = msgspec.structs.replace(event, redactions=event.redactions + counts[i])
                    check_record(event, ts, part)
                    if t is UsageReported or t is TestsRan or t is RunEnded:
                        _check_values(event)
                    if check is not None:
                        check(event)
                except InvalidEvent as exc:
                    raise refuse(batch, exc, line_no + i) from None
                batch.append((event, part, ts))
            if error is not None:
                raise refuse(batch, error, line_no + len(decoded)) from None
            store(batch)
        if progress is not None:
            read += size
            progress(read, done.appended)
    return done


_TEST_FIELDS = ("passed", "failed", "errors", "skipped", "total")


def _check_values(event: UsageReported | TestsRan | RunEnded) -> None:
    """Refuse values no tool reports, each of which would make the run's figures wrong: a
    negative token count (a usage is what a call spent, a delta, never a correction), a
    negative test count, tests that add up to more than their ``total``, or an end status
    outside :data:`END_STATUSES` (no `ls --status` could select the run)."""
    if type(event) is RunEnded:
        if event.status not in END_STATUSES:
            raise InvalidEvent(f"run_ended: status is {event.status!r}, not one of {', '.join(END_STATUSES)} "
                               "(the statuses `agtrace close --status` takes)")
        return
    if type(event) is UsageReported:
        for name in Usage.__struct_fields__:
            if (value := getattr(event.usage, name)) < 0:
                raise InvalidEvent(f"usage_reported: usage.{name} is {value}: a usage is the tokens one call or "
                                   "part spent (a delta, never negative); send what was spent since the last report")
        return
    for name in _TEST_FIELDS:
        if (value := getattr(event, name)) < 0:
            raise InvalidEvent(f"tests_ran: {name} is {value}: a count of tests is never negative")
    counted = event.passed + event.failed + event.errors + event.skipped
    if event.total and counted > event.total:
        raise InvalidEvent(f"tests_ran: passed + failed + errors + skipped is {counted}, more than total "
                           f"{event.total}: total counts every test (or leave it 0)")
