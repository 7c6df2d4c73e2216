"""``agtrace view``: the store as a local web app (Starlette on uvicorn), read through the API only.

:func:`viewer_app` returns the ASGI application; :func:`serve` runs it. Pages:

``/``
    the runs index: one page of :func:`agtrace.eventlog.index_runs` at a time (sorted, filtered
    and cut in SQL), grouped by task on request, searchable, updated live;
``/runs/{id}``
    the run's report (:func:`agtrace.replay.render_report`) with a file browser of the tree at
    any part (:func:`agtrace.replay.tree_files`, :func:`agtrace.replay.read_file`);
``/compare?runs=A,B,…``
    the comparison (:func:`agtrace.replay.render_compare`) with the diff of any two runs' trees
    at chosen parts (:func:`agtrace.replay.diff_run_trees`).

Every page is built from ``/api/…`` JSON endpoints a script can call too (see docs/view.md).
``/api/live`` streams server-sent events: a run's index row each time its log grows (followed
with :meth:`Store.tail`), when it ends, and when its writer goes away without an end (crashed).

Access: with a ``token`` every request must carry it (``?token=`` once, which sets a cookie,
an ``Authorization: Bearer`` header, or the cookie); without one only requests whose ``Host``
is a loopback name are served (no DNS rebinding). Run data are hostile: pages build the DOM with
``textContent``, their script runs under a per-response nonce, and JSON is served as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from agtrace.eventlog import (
    AmbiguousRunId,
    IndexQuery,
    RunNotFound,
    Store,
    index_runs,
    json_name,
    live_statuses,
    refold_changed,
)

from .compare import compare_runs
from .compare_trees import diff_run_trees
from .errors import PartNotFound, ReplayError
from .report import render_report
from .tree_file import read_file, tree_files
from .viewer_guard import Guard
from .viewer_page import compare_page, index_page, run_page
from .viewer_query import _int, query_from

FILE_VIEW_BYTES = 1024 * 1024
"""A file shown in the browser is cut here (the rest: `agtrace cat`)."""
LAZY = ("costs",)
"""Lazy projections the index reads, caught up by the live thread when the store has them."""


class Gate:
    """The store's one lock, fair to requests: the live thread's long catch-up folds go a few
    runs at a time and only while no request is waiting (a plain lock let them starve every
    request for ~45 s after starting on 10,000 runs)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiting = 0
        self._mu = threading.Lock()

    def __enter__(self) -> Gate:
        with self._mu:
            self._waiting += 1
        self._lock.acquire()
        with self._mu:
            self._waiting -= 1
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    @contextmanager
    def after_requests(self) -> Iterator[None]:
        """Hold the lock, taken once no request is waiting for it (for background work)."""
        while self._waiting:
            time.sleep(0.002)
        with self._lock:
            yield


class Live:
    """Follows every run that may still grow and tells subscribers when its row changed.

    One discovery thread lists the store every ``poll_s`` for new runs; one thread per unended
    run follows its log (:meth:`Store.tail`) and marks it changed; the discovery loop folds
    changed runs (:meth:`Store.sync`) and publishes their index rows, at most once per poll.
    """

    def __init__(self, store: Store, lock: Gate, poll_s: float = 0.5):
        self.store, self.lock, self.poll_s = store, lock, poll_s
        self.known: set[str] = set()
        self.tailing: set[str] = set()
        self.dirty: set[str] = set()
        self.fresh: set[str] = set()
        self.mu = threading.Lock()
        self.subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._discover, name="agtrace-view-live", daemon=True)

    def start(self) -> None:
        with self.lock:
            self.known = set(self.store.run_ids())
            unended = list(live_statuses(self.store))
        for run_id in unended:
            self._follow(run_id)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self.mu:
            self.subscribers.add((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        with self.mu:
            self.subscribers = {s for s in self.subscribers if s[1] is not q}

    def _follow(self, run_id: str) -> None:
        with self.mu:
            if run_id in self.tailing:
                return
            self.tailing.add(run_id)
        threading.Thread(target=self._tail, args=(run_id,), name=f"agtrace-view-tail-{run_id[:10]}",
                         daemon=True).start()

    def _tail(self, run_id: str) -> None:
        try:
            with self.lock:
                start = self.store.catalog.position(run_id) + 1
            for _rec in self.store.tail(run_id, start, poll_s=self.poll_s / 2):
                with self.mu:
                    self.dirty.add(run_id)
                if self.stopped.is_set():
                    return
        except Exception:  # a damaged log stops following it; the index still shows the run
            pass
        finally:
            with self.mu:
                self.tailing.discard(run_id)
                self.dirty.add(run_id)  # ended or crashed: one last row

    def _discover(self) -> None:
        self._catch_up(self.store.run_ids())
        ticks = 0
        while not self.stopped.wait(self.poll_s):
            ticks += 1
            try:
                self._tick()
                if ticks % 20 == 0:  # runs that grew (a rescore, an append) or were damaged behind our back
                    with self.lock:
                        damaged = refold_changed(self.store)
                        stale = self.store.catalog.stale_runs(self.store.run_ids())
                        for run_id in stale:
                            self.store.sync(run_id)
                    with self.mu:
                        self.dirty |= set(damaged)  # their rows go out again, marked damaged
                    self._catch_up(stale)
            except Exception:  # never let the live view die of one bad run
                time.sleep(self.poll_s)

    def _catch_up(self, run_ids: list[str]) -> None:
        """Fold the lazy projections the index reads (costs, when this agtrace has them) for
        ``run_ids``, ten runs at a time and only while no request waits, so pages are served in between."""
        catch_up = getattr(self.store, "catch_up", None)
        names = [n for n in LAZY if self.store.catalog.projections.get(n) is not None]
        if catch_up is None or not names:
            return
        for i in range(0, len(run_ids), 10):
            if self.stopped.is_set():
                return
            with self.lock.after_requests():
                catch_up(names, run_ids[i:i + 10])

    def _tick(self) -> None:
        ids = set(self.store.run_ids())
        new = ids - self.known
        self.known |= new
        self.fresh |= new
        for run_id in new:
            self._follow(run_id)
        with self.mu:
            changed, self.dirty = self.dirty | new, set()
        if not changed:
            return
        self._catch_up(sorted(changed))
        with self.lock:
            for run_id in changed:
                self.store.sync(run_id)
            live = live_statuses(self.store)
            rows = index_runs(self.store, IndexQuery(run_ids=tuple(changed), limit=len(changed)), live=live).rows
        for row in rows:  # a run is new until its first row is out (its directory may come before its events)
            fresh = row["id"] in self.fresh
            self.fresh.discard(row["id"])
            self.publish({"type": "run", "new": fresh, "row": row})

    def publish(self, message: dict) -> None:
        data = json.dumps(message)
        with self.mu:
            subscribers = list(self.subscribers)
        for loop, q in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, q, data)
            except RuntimeError:  # that loop is closed
                self.unsubscribe(q)


def _offer(q: asyncio.Queue, data: str) -> None:
    if not q.full():
        q.put_nowait(data)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _search_api():
    """The store's full-text search (``agtrace.eventlog.search``), or None on a version without it."""
    import agtrace.eventlog as eventlog

    try:
        return eventlog.search
    except AttributeError:
        return None


def viewer_app(store_root: str, *, token: str | None = None, poll_s: float = 0.5,
               wait_s: float | None = None) -> Starlette:
    """The viewer's ASGI application over the store at ``store_root`` (see the module docstring);
    ``wait_s``: how long a request waits for another process writing the catalog (the store's
    default when None), after which it is answered 503."""
    store = Store(store_root, create=False) if wait_s is None else Store(store_root, create=False, wait_s=wait_s)
    lock = Gate()
    live = Live(store, lock, poll_s)
    with lock:  # runs that grew or were damaged while no viewer ran; later, the live thread watches
        refold_changed(store)
        for run_id in store.catalog.stale_runs(store.run_ids()):
            store.sync(run_id)

    def locked(handler: Callable) -> Callable:
        def run(request: Request):
            try:
                with lock:
                    return handler(request)
            except (RunNotFound, AmbiguousRunId) as exc:
                return _error(404, str(exc))
            except (ValueError, ReplayError) as exc:
                return _error(400, str(exc))
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                return _error(503, "another process is writing the store's catalog; retry in a moment (`agtrace "
                              "--lock-wait SECONDS view` waits longer)")
        return run

    def search_hits(text: str, limit: int = 200) -> list[dict]:
        search = _search_api()
        if search is None:
            raise ValueError("this agtrace has no full-text search (agtrace.eventlog.search); upgrade agtrace")
        return [h.to_dict() if hasattr(h, "to_dict") else dict(h.__dict__) for h in search(store, text, limit=limit)]

    seen: list = [0.0, {}]

    def statuses() -> dict:
        """:func:`live_statuses`, at most twice a second (the live thread tells of changes sooner)."""
        if time.monotonic() - seen[0] > 0.5:
            seen[:] = [time.monotonic(), live_statuses(store)]
        return seen[1]

    @locked
    def api_runs(request: Request):
        query, text = query_from(request.query_params)
        hits = None
        if text:
            hits = search_hits(text, limit=2000)
            query = IndexQuery(**{**query.__dict__, "run_ids": tuple(dict.fromkeys(h["run_id"] for h in hits))})
        page = index_runs(store, query, live=statuses()).to_dict()
        page["search"] = None if hits is None else {"q": text, "hits": len(hits)}
        return JSONResponse(page)

    @locked
    def api_facets(request: Request):
        conn = store.catalog.conn
        out = {k: [r[0] for r in conn.execute(f"SELECT DISTINCT {c} FROM runs WHERE coalesce({c}, '') != '' "
                                              f"ORDER BY 1 LIMIT 500")]
               for k, c in (("agents", "agent"), ("models", "model"), ("tasks", "task_id"))}
        out["scorers"] = [r[0] for r in conn.execute("SELECT DISTINCT scorer FROM scores ORDER BY 1 LIMIT 200")]
        out["search"] = _search_api() is not None
        return JSONResponse(out)

    @locked
    def api_search(request: Request):
        text = (request.query_params.get("q") or "").strip()
        if not text:
            raise ValueError("search for something: ?q=TEXT")
        limit = min(_int(request.query_params.get("limit"), "limit", 50), 500)
        return JSONResponse({"q": text, "hits": search_hits(text, limit)})

    @locked
    def api_files(request: Request):
        run_id = store.resolve(request.path_params["run"])
        asked = request.query_params.get("part")
        part = _part(store, run_id, asked)
        try:
            files = tree_files(store, run_id, part)
        except PartNotFound as exc:
            if asked not in (None, "", "last"):
                raise
            return JSONResponse({"run_id": run_id, "part": None, "files": [], "reason": str(exc)})
        return JSONResponse({"run_id": run_id, "part": part, "files": [f.to_dict() for f in files]})

    @locked
    def api_file(request: Request):
        run_id = store.resolve(request.path_params["run"])
        part = _part(store, run_id, request.query_params.get("part"))
        content = read_file(store, run_id, part, request.query_params.get("path") or "")
        data = content.data
        cut = len(data) > FILE_VIEW_BYTES
        text = content.text() if not cut or content.binary else data[:FILE_VIEW_BYTES].decode("utf-8", "replace")
        return JSONResponse({"run_id": run_id, "part": part, "path": json_name(content.path), "binary": content.binary,
                             "size": len(data), "cut": cut, "text": text})

    @locked
    def api_diff(request: Request):
        p = request.query_params
        run_a, run_b = store.resolve(p.get("a") or ""), store.resolve(p.get("b") or "")
        part_a = None if p.get("pa") in (None, "", "last") else _int(p.get("pa"), "pa")
        part_b = None if p.get("pb") in (None, "", "last") else _int(p.get("pb"), "pb")
        return JSONResponse(diff_run_trees(store, run_a, run_b, part_a=part_a, part_b=part_b).to_dict())

    @locked
    def api_compare(request: Request):
        ids = _run_list(store, request.query_params.get("runs"))
        return JSONResponse({"runs": compare_runs(store, ids).rows})

    def page_index(request: Request):  # static: no lock
        return _html(index_page)

    @locked
    def page_run(request: Request):
        run_id = store.resolve(request.path_params["run"])
        info = store.info(run_id)
        return _html(lambda nonce: run_page(render_report(store, run_id), info.to_dict(), nonce))

    @locked
    def page_compare(request: Request):
        ids = _run_list(store, request.query_params.get("runs"))
        comparison = compare_runs(store, ids)
        runs = [store.info(r).to_dict() for r in ids]
        return _html(lambda nonce: compare_page(comparison.html(), runs, nonce))

    async def api_live(request: Request):
        q = live.subscribe()

        async def stream():
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        data = await asyncio.wait_for(q.get(), timeout=15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: run\ndata: {data}\n\n"
            finally:
                live.unsubscribe(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        live.start()
        try:
            yield
        finally:
            live.stop()
            store.close()

    routes = [
        Route("/", page_index), Route("/runs/{run}", page_run), Route("/compare", page_compare),
        Route("/api/runs", api_runs), Route("/api/facets", api_facets), Route("/api/search", api_search),
        Route("/api/runs/{run}/files", api_files), Route("/api/runs/{run}/file", api_file),
        Route("/api/diff", api_diff), Route("/api/compare", api_compare), Route("/api/live", api_live),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.live = live
    return Guard(app, token)


def _part(store: Store, run_id: str, value: str | None) -> int:
    if value in (None, "", "last"):
        store.sync(run_id)
        rows = [r for r in store.catalog.part_rows(run_id) if r["tree_id"]]
        return rows[-1]["part"] if rows else 0
    part = _int(value, "part")
    if part < 0:
        raise ValueError(f"part is 0 (the base tree) or more, not {part}")
    return part


def _run_list(store: Store, value: str | None) -> list[str]:
    ids = [v.strip() for v in (value or "").split(",") if v.strip()]
    if not ids:
        raise ValueError("name the runs to compare: ?runs=ID,ID,…")
    if len(ids) > 20:
        raise ValueError(f"compare at most 20 runs at once, not {len(ids)}")
    return list(dict.fromkeys(store.resolve(i) for i in ids))


def _html(build: Callable[[str], str]) -> HTMLResponse:
    import secrets

    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(build(nonce), headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                               "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})


def serve(store_root: str, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          ready: Callable[[str], None] | None = None, wait_s: float | None = None) -> None:
    """Run the viewer until interrupted; ``ready(url)`` is called once it listens; ``wait_s``
    as for :func:`viewer_app`."""
    import uvicorn

    app = viewer_app(store_root, token=token, wait_s=wait_s)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=1, access_log=False)
    server = uvicorn.Server(config)
    if ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
                shown = f"[{host}]" if ":" in host else host
                ready(f"http://{shown}:{bound}/" + (f"?token={token}" if token else ""))

        server.startup = startup
    server.run()
