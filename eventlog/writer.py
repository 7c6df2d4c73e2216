"""The per-run log writer: gapless seqs, group commit, segment roll and seal, torn-tail recovery.

Durability policies (what :meth:`RunWriter.append` may return as durable):

``strict``
    every append is written as its own frame and fsynced before ``append`` returns, so the
    returned ``durable`` equals the returned ``seq``.
``normal`` (default)
    appends are buffered and written as frames (group commit). A part end (``part_ended``), the
    run's start or end makes what is buffered durable: at once if no fsync happened in the last
    :data:`COALESCE_S`, else within that window by the background flusher, so a flood of parts
    shares fsyncs (a group of :meth:`RunWriter.append_many` always within that window, by the
    flusher). Anything else is fsynced within 200 ms. A crash loses at most the events of
    the last 200 ms, and never a part end older than :data:`COALESCE_S`.
``off``
    frames are written when the buffer fills and fsynced only at close; for bulk imports.

Sealing compacts: a segment whose frames are small (as a slowly captured run's are) is rewritten
once, before it becomes immutable, into frames of up to :data:`BATCH_EVENTS` events (temp file,
fsync, rename, then the open file is removed), so sealed segments compress and scan well.

The writer holds the run's lock (one writer per run) from construction until :meth:`close`.
On open it repairs what a crash left (``recovery.py``): it cuts a torn tail off the open
segment (reported in :attr:`torn_tail`) and seals orphaned ones.
A ``run_ended`` event closes the log: later appends raise :class:`RunClosed`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from . import codec, manifest, segment
from .errors import RunClosed
from .events import Event, PartEnded, RunEnded, RunStarted
from .limit import check_record
from .lock import RunLock
from .recovery import recover_stream

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

DURABILITY = ("strict", "normal", "off")
SYNC_INTERVAL_S = 0.2
COALESCE_S = 0.02
SEGMENT_BYTES = 32 * 1024 * 1024
BATCH_EVENTS = 1024
INDEX_INTERVAL_S = 1.0
FRAME_BYTES = 256 * 1024 * 1024
"""A batch that encodes to more than this is split in halves (down to one event) before it is
framed, so a frame stays far below what readers accept (``segment.MAX_FRAME_BYTES``)."""
COMPACT_BELOW = 256
"""Seal-time compaction happens when a segment's frames hold fewer events than this on average."""

Items = list[tuple[int, int | None, Event]]
Listener = Callable[[int, Items], None]
"""Called on the appending thread with ``(first_seq, items)`` of events that are on disk."""

_SYNC_KINDS = frozenset((PartEnded, RunEnded, RunStarted))
"""Exact types (not subclasses: events are final) that make what precedes them durable."""


class Ack(msgspec.Struct, frozen=True, gc=False):
    """What an append achieved: the event's seq and the highest seq that is durable."""

    seq: int
    durable: int


class RunWriter:
    """Appends events to one stream (``events`` or ``scores``) of one run.

    Not safe to share between processes (the lock prevents it); safe to call from several
    threads of one process.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        run_id: str,
        *,
        stream: str = "events",
        durability: str = "normal",
        segment_bytes: int = SEGMENT_BYTES,
        listener: Listener | None = None,
    ):
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
        self.run_id = run_id
        self.stream = stream
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / stream
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durability = durability
        self._strict = durability == "strict"
        self._in_flusher = False  # the catalog listener runs on appending threads only
        self.segment_bytes = segment_bytes
        self._listener = listener
        lock_name = "lock" if stream == "events" else f"{stream}.lock"
        self._lock = RunLock.acquire(self.run_dir / lock_name, run_id)
        self._mu = threading.RLock()
        self._buf: Items = []
        self._pending: Items = []  # on disk, not yet given to the listener
        self._pending_first = 0
        self._fh = None
        self._open_path: Path | None = None
        self._open_first = 0
        self._closed = False
        try:
            found = recover_stream(self.dir, batch_events=BATCH_EVENTS, compact_below=COMPACT_BELOW)
            if found.open_path is not None:
                self._open_path, self._open_first = found.open_path, found.open_first
                self._fh = open(found.open_path, "ab")  # noqa: SIM115 - held until close()
        except BaseException:
            self._lock.release()
            raise
        self.torn_tail = found.torn_tail
        self._next = found.next_seq
        self._ended = found.ended
        self._written = self._next - 1  # on the OS: in the file
        self._framed = self._next - 1  # in a frame, written or being compressed
        self._durable = self._next - 1  # fsynced
        self._inflight: deque = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._wake = threading.Condition(self._mu)
        self._last_fsync = 0.0
        self._sync_due: float | None = None  # monotonic time a deferred part-end sync is due
        self._asks = 0  # syncs asked for so far (one asked while the flusher syncs unlocked stays due)
        self._last_index = time.monotonic()
        self._flusher = None
        if durability == "normal":
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="agtrace-flush")
            self._flusher.start()

    # -- appending ---------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def durable_seq(self) -> int:
        return self._durable

    def append(self, event: Event, *, part: int | None = None, ts: int | None = None) -> Ack:
        """Append one event; return its seq and the highest durable seq (see module docstring).

        An event that breaks a limit (:mod:`~agtrace.eventlog.limit`: an integer beyond 64
        bits, nesting too deep) raises InvalidEvent and gets no seq."""
        check_record(event, ts, part)
        with self._mu:
            if self._ended or self._closed:
                self._refuse()
            seq = self._next
            self._next = seq + 1
            buf = self._buf
            buf.append((time.time_ns() if ts is None else ts, part, event))
            special = type(event) in _SYNC_KINDS
            if special and type(event) is RunEnded:
                self._ended = True
            if self._strict:
                self._flush(sync=True)
            elif special:
                if self.durability == "normal":
                    self._sync_soon()
            elif len(buf) >= BATCH_EVENTS:
                self._handoff()
            if special and self._listener and type(event) is not PartEnded:
                self._notify()
            return Ack(seq, self._durable)

    def _sync_soon(self) -> None:
        """Group commit: fsync now if the last fsync is older than COALESCE_S, else soon."""
        now = time.monotonic()
        if now - self._last_fsync >= COALESCE_S:
            self._flush(sync=True)
        else:
            self._ask_sync(self._last_fsync + COALESCE_S)

    def _sync_within(self, seconds: float) -> None:
        """Have the background flusher make what is written and buffered durable within ``seconds``."""
        self._ask_sync(time.monotonic() + seconds)

    def _ask_sync(self, due: float) -> None:
        """Ask the flusher for a sync by ``due`` (monotonic), counted in ``_asks``: an ask that
        comes while the flusher syncs unlocked stays due after that sync, even when an earlier
        ask is still pending."""
        self._asks += 1
        if self._sync_due is None or due < self._sync_due:
            self._sync_due = due
            self._wake.notify()

    def wait_durable(self, seq: int, timeout: float | None = None) -> bool:
        """Block until ``seq`` is durable (or the timeout passes); True if it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._mu:
            while self._durable < seq:
                if self.durability != "normal" or self._closed:
                    self._flush(sync=True)
                    break
                if self._sync_due is None:
                    self._ask_sync(time.monotonic())
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._wake.wait(left if left is not None else 0.05)
            return self._durable >= seq

    def append_many(self, events: Iterable[tuple[Event, int | None, int | None]], *,
                    checked: bool = False) -> Ack:
        """Append ``(event, part, ts)`` triples (``ts`` None: now) as one group, with one fsync
        for the group: at once under ``strict`` (and when it ends the run); under ``normal``
        within :data:`COALESCE_S` when the group holds a part end or the run's start, else
        within 200 ms, by the background flusher, so a stream of groups (``agtrace append``)
        goes on while the last one is synced; under ``off`` at close. Events are framed as the
        buffer fills, as :meth:`append` frames them.

        All or nothing: if one of them breaks a limit (InvalidEvent), none is appended
        (``checked``: the caller ran :func:`check_record` on each already)."""
        events = list(events)
        if not checked:
            for event, part, ts in events:
                check_record(event, ts, part)
        with self._mu:
            if self._ended or self._closed:
                self._refuse()
            seq = self._next - 1
            special = notify = False
            buf = self._buf
            for event, part, ts in events:
                if self._ended:
                    self._refuse()
                seq = self._next
                self._next += 1
                buf.append((ts if ts is not None else time.time_ns(), part, event))
                t = type(event)
                if t in _SYNC_KINDS:
                    special = True
                    if t is RunEnded:
                        self._ended = True
                    notify = notify or t is not PartEnded
                if len(buf) >= BATCH_EVENTS:
                    self._handoff()
                    buf = self._buf
            if self._strict or self._ended:
                self._flush(sync=True)
            elif special and self.durability == "normal":
                self._sync_within(COALESCE_S)
            if notify and self._listener:
                self._notify()
            return Ack(seq, self._durable)

    def _refuse(self):
        if self._closed:
            raise RunClosed(f"the writer of run {self.run_id} is closed; open a new one to append")
        raise RunClosed(
            f"run {self.run_id} has ended (it has a run_ended event); a resumed or continued "
            f"run is a new run: create one with `agtrace new --parent {self.run_id}` (or "
            f"`agtrace run --parent {self.run_id} -- …`; in Python, RunStarted(parent_run=…))"
        )

    def flush(self, sync: bool = True) -> int:
        """Write buffered events; with ``sync`` fsync them. Returns the highest durable seq."""
        with self._mu:
            self._flush(sync=sync and self.durability != "off")
            if self._listener:
                self._notify()
            return self._durable

    def _handoff(self, *, wait: bool = True) -> None:
        """A full buffer becomes frames compressed on a helper thread (zstd lets go of the GIL),
        written strictly in seq order; at most two in flight (unless ``wait=False``: the flusher)."""
        items, self._buf = self._buf, []
        first = self._framed + 1
        self._framed += len(items)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # only writers of full frames need it

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="agtrace-compress")
        for at, part, batch in _batches(first, items):
            self._inflight.append((at, part, self._pool.submit(segment.encode_frame, at, batch)))
        while wait and self._inflight and (len(self._inflight) > 2 or self._inflight[0][2].done()):
            first, items, future = self._inflight.popleft()
            self._write_frame(first, items, future.result())

    def _write_frame(self, first: int, items: Items, frame: bytes) -> None:
        fh = self._segment_for(first)
        fh.write(frame)
        fh.flush()
        self._written = first + len(items) - 1
        if self._listener:  # without one, nothing is kept: the store folds the files
            if not self._pending:
                self._pending_first = first
            self._pending.extend(items)
            if not self._in_flusher and (
                len(self._pending) > 50_000 or time.monotonic() - self._last_index > INDEX_INTERVAL_S
            ):
                self._notify()
        if fh.tell() >= self.segment_bytes:
            self._seal()

    def _flush(self, *, sync: bool) -> None:
        while self._inflight:  # frames already handed off go first, in order
            first, items, future = self._inflight.popleft()
            self._write_frame(first, items, future.result())
        if self._buf:
            first = self._framed + 1
            items, self._buf = self._buf, []
            self._framed += len(items)
            for at, part, batch in _batches(first, items):
                self._write_frame(at, part, segment.encode_frame(at, batch))
        if sync and self._durable < self._written:
            os.fsync(self._fh.fileno())
            self._durable = self._written
            self._last_fsync = time.monotonic()
        if sync:
            self._sync_due = None
            self._wake.notify_all()

    def _segment_for(self, first: int):
        if self._fh is None:
            self._open_first = first
            self._open_path = self.dir / segment.open_name(first)
            self._fh = open(self._open_path, "wb")  # noqa: SIM115 - held until seal
            self._fh.write(segment.SEGMENT_MAGIC)
            segment.fsync_dir(self.dir)
            manifest.append(self.dir, open=self._open_path.name)
        return self._fh

    def _seal(self) -> None:
        """Make the open segment immutable under its range name. Everything in it is durable."""
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._durable = self._written
        self._fh.close()
        self._fh = None
        sealed = self.dir / segment.sealed_name(self._open_first, self._written)
        if not segment.compact(self._open_path, sealed, BATCH_EVENTS, COMPACT_BELOW):
            os.replace(self._open_path, sealed)
        segment.fsync_dir(self.dir)
        manifest.append(self.dir, sealed=sealed.name, bytes=sealed.stat().st_size)
        self._open_path = None

    def _notify(self) -> None:
        self._last_index = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            self._listener(self._pending_first, pending)

    def _flush_loop(self) -> None:
        """Background group commit: deferred part-end syncs, and everything within 200 ms."""
        with self._mu:
            last_periodic = time.monotonic()
            while not self._closed and not self._stop.is_set():
                now = time.monotonic()
                due = last_periodic + SYNC_INTERVAL_S
                if self._sync_due is not None:
                    due = min(due, self._sync_due)
                if now < due:
                    self._wake.wait(due - now)
                    continue
                if self._closed:
                    return
                if self._sync_due is not None or self._buf or self._inflight or self._durable < self._written:
                    self._write_unlocked()
                    self._sync_unlocked()
                if now >= last_periodic + SYNC_INTERVAL_S:
                    last_periodic = now

    def _write_unlocked(self) -> None:
        """The flusher's write of what is appended so far: frames in flight are waited for with
        ``_mu`` let go, so appends go on (holding it held a 200k-event bulk append up 0.5 s of
        2.9 s). Frames are written in seq order, under the lock, by whichever thread is first."""
        if self._buf:
            self._handoff(wait=False)
        target = self._framed
        while self._written < target and self._inflight:
            first, items, future = self._inflight[0]
            if not future.done():
                from concurrent.futures import wait  # in flight: the pool was made
                self._mu.release()
                try:
                    wait([future])
                finally:
                    self._mu.acquire()
                if self._closed:  # closed or abandoned meanwhile: nothing is left to write
                    return
                continue  # meanwhile another thread may have written it
            self._inflight.popleft()
            self._in_flusher = True
            try:
                self._write_frame(first, items, future.result())
            finally:
                self._in_flusher = False

    def _sync_unlocked(self) -> None:
        """The flusher's fsync of what is written so far, with ``_mu`` let go meanwhile (on a slow
        disk each takes long). Called by the flusher loop only, which holds the lock once. It
        syncs a duplicate of the open segment's descriptor, valid whatever the appending thread
        does meanwhile (seal, close). What was written before it started is durable after it; a
        sync asked for meanwhile stays due."""
        if self._fh is None or self._durable >= self._written:  # nothing written since (a seal syncs)
            self._sync_due = None
            self._wake.notify_all()
            return
        target, asked = self._written, self._asks
        try:
            fd = os.dup(self._fh.fileno())
        except OSError:  # out of descriptors: sync as before, holding the lock
            self._flush(sync=True)
            return
        self._mu.release()
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
            self._mu.acquire()
        if target > self._durable:
            self._durable = target
            self._last_fsync = time.monotonic()
        if self._asks == asked:
            self._sync_due = None
        self._wake.notify_all()

    def roll(self) -> None:
        """Seal the open segment now (no-op if none), so that it can be shipped; thread-safe."""
        with self._mu:
            if not self._closed:
                self._flush(sync=True)
                self._seal()

    # -- closing -----------------------------------------------------------------------------

    def close(self, *, seal: bool = True) -> int:
        """Flush, fsync, seal the open segment (unless ``seal=False``) and release the lock."""
        with self._mu:
            if self._closed:
                return self._durable
            self._stop.set()
            self._wake.notify_all()
            try:
                self._flush(sync=True)
                if self._fh is not None:
                    os.fsync(self._fh.fileno())
                    self._durable = self._written
                    if seal:
                        self._seal()
                    else:
                        self._fh.close()
                        self._fh = None
                if self._listener:
                    self._notify()
            finally:
                self._closed = True
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._lock.release()
        return self._durable

    def abandon(self) -> None:
        """Release the lock without flushing (buffered events are dropped). For tests and crashes."""
        with self._mu:
            self._stop.set()
            self._closed = True
            self._wake.notify_all()
            self._inflight.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._fh is not None:
                with contextlib.suppress(OSError):  # what is still buffered is dropped anyway (a full disk)
                    self._fh.close()
            self._lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _batches(first: int, items: Items) -> list[tuple[int, Items, bytes]]:
    """``(first_seq, items, batch)`` of the frames ``items`` are written as: one, unless its
    batch encodes to more than :data:`FRAME_BYTES` (1,024 events of up to 64 MiB each would
    make a frame of gigabytes), then halves of it, split again as needed."""
    batch = codec.encode_batch(items)
    if len(batch) <= FRAME_BYTES or len(items) == 1:
        return [(first, items, batch)]
    half = len(items) // 2
    return _batches(first, items[:half]) + _batches(first + half, items[half:])
