"""Ship a live run to a remote while it is captured (``agtrace run --remote``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import EventlogError, RemoteError, StoreError
from ..remotes.base import Remote
from ..store import Store
from .push import PushReport, PushState, push_run


class RemoteShipper:
    """Pushes one run's newly sealed segments, bundles and blobs every ``interval_s`` while it runs.

    Use: ``shipper = RemoteShipper.start(store, run_id, remote, interval_s=5, roll=writer.roll)``
    after the run is created, and ``shipper.stop(final=True)`` after the writer is closed and the
    last bundle is sealed. ``roll`` (optional) is called on the shipper's thread before each push
    to seal the open segment, so a crash loses at most the last ``interval_s`` of events remotely.
    Failed pushes are retried on the next tick (the last error is in :attr:`last_error`, a
    :class:`RemoteError` naming the exception when it was not one of ours: the thread outlives
    any one push); the final push of :meth:`stop` raises its error. Reads files only, never the
    catalog, so it is safe beside the writer's thread.
    """

    def __init__(self, store: Store, run_id: str, remote: Remote, *, interval_s: float = 5.0,
                 roll: Callable[[], object] | None = None):
        self.store, self.run_id, self.remote = store, run_id, remote
        self.interval_s = interval_s
        self.roll = roll
        self.report = PushReport(runs=[run_id])
        self.last_error: EventlogError | None = None
        self._state = PushState()
        self._stop = threading.Event()
        self._mu = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="agtrace-ship")

    @classmethod
    def start(cls, store: Store, run_id: str, remote: Remote, interval_s: float = 5.0,
              roll: Callable[[], object] | None = None) -> RemoteShipper:
        shipper = cls(store, run_id, remote, interval_s=interval_s, roll=roll)
        shipper._thread.start()
        return shipper

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.roll is not None:
                try:
                    self.roll()
                except EventlogError:
                    pass  # the writer closed meanwhile; stop() pushes what is sealed
            try:
                self.ship_once()
            except EventlogError as exc:
                self.last_error = exc
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failed push
                self.last_error = RemoteError(f"shipping run {self.run_id} failed ({type(exc).__name__}: {exc}); "
                                              "it is retried, and `agtrace push` sends what is sealed")

    def ship_once(self, *, manifest: bool = False) -> PushReport:
        """Push what is sealed now (serialised with the background thread)."""
        with self._mu:
            report = push_run(self.store, self.remote, self.run_id, self._state, manifest=manifest)
            self.report.add(report)
            self.last_error = None
            if report.problems:  # a damaged local file, left home (report.problems names each)
                self.last_error = StoreError(f"shipping run {self.run_id}: {report.problems[0]}; "
                                             "`agtrace verify` shows what is damaged")
            return report

    def stop(self, final: bool = True) -> PushReport:
        """Stop the thread; with ``final``, push once more and raise if that push fails."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if final:
            self.ship_once(manifest=True)
        return self.report
