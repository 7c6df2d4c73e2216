"""A real `agtrace view` process for tests and benches: started on 127.0.0.1 (any free port),
its URL read from what it prints, ended by pid; and a client that never uses a proxy."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .procs import end

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_RAW = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


class ViewServer:
    """``agtrace view --port 0`` over ``store``; use as a context manager."""

    def __init__(self, store: str | os.PathLike, *args: str, timeout: float = 60.0):
        env = {**os.environ, "AGTRACE_HOME": str(store), "NO_PROXY": "*"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from agtrace.cli.main import main; main()", "view", "--port", "0", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, deadline = b"", time.monotonic() + timeout
        while b"\n" not in out:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError(f"agtrace view did not start: {self._stop_and_read_stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"agtrace view exited: {self._stop_and_read_stderr()}")
            out += chunk
        self.banner = out.decode()
        self.url = re.search(r"http://[^\s\"]+", self.banner).group(0)
        self.base = re.match(r"http://[^/]+", self.url).group(0)

    def get(self, path: str, *, headers: dict | None = None, follow: bool = True) -> tuple[int, dict, bytes]:
        """``(status, headers, body)`` of a GET (errors are answers, not exceptions)."""
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with (_OPENER if follow else _RAW).open(req, timeout=60) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def json(self, path: str, **kw):
        status, _, body = self.get(path, **kw)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def _stop_and_read_stderr(self) -> str:
        """Stop the server and return what it wrote on stderr (for the error that says why)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        end([self.proc.pid], grace=10)
        err = self.proc.stderr.read().decode(errors="replace")
        self.close()
        return err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        end([self.proc.pid], grace=10)
        self.proc.wait()
        for fh in (self.proc.stdout, self.proc.stderr):
            if not fh.closed:
                fh.close()

    def __enter__(self) -> ViewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fast_dir(fallback: Path) -> Path:
    """A scratch directory on tmpfs when there is one (a store of many runs is written in
    seconds instead of waiting on fsync), else ``fallback``."""
    import tempfile

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="agtrace-view-", dir=shm))
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
