"""A small headless-Chromium driver over the DevTools protocol on a pipe (no port, no websocket).

Chromium started with ``--remote-debugging-pipe`` reads CDP commands from fd 3 and writes replies
and events to fd 4, each a JSON message ended by a NUL byte. Only the standard library is used.
The browser runs with a fresh profile and every network feature off; pages are opened from disk.
Used by ``tests/test_report.py`` and ``bench/bench_report.py``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("AGTRACE_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def available() -> bool:
    return Path(CHROMIUM).exists()


class CdpError(Exception):
    """The browser answered a command with an error, or did not answer in time."""


class Chromium:
    """One headless browser with one page. Use as a context manager.

    ``events`` collects every CDP event received (method, params), so callers can look for
    console errors, exceptions and network requests after the fact.
    """

    def __init__(self, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="agtrace-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def protocol_fds() -> None:  # in the child: fds 3 and 4 become the protocol pipe
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=protocol_fds,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[tuple[str, dict]] = []
        self.session = None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True, session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # -- protocol ----------------------------------------------------------------------------

    def _send(self, msg: dict) -> None:
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")

    def _recv(self, timeout: float) -> dict:
        import select

        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                raise CdpError(f"no message from Chromium within {timeout}s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CdpError("Chromium closed the protocol pipe (did it crash?)")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, timeout: float = 30.0, session: object = ..., **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are recorded."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        sid = self.session if session is ... else session
        if sid:
            msg["sessionId"] = sid
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(max(0.01, deadline - time.monotonic()))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append((reply["method"], reply.get("params", {})))

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        for i, (m, params) in enumerate(self.events):
            if m == method:
                del self.events[i]
                return params
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(max(0.01, deadline - time.monotonic()))
            if "method" in msg:
                if msg["method"] == method:
                    return msg.get("params", {})
                self.events.append((msg["method"], msg.get("params", {})))

    # -- page --------------------------------------------------------------------------------

    def open(self, path: str | os.PathLike, *, ready: str = "document.body.dataset.ready", timeout: float = 60.0) -> None:
        """Navigate to a file (or an ``http://`` URL) and wait for its load event and for ``ready``
        to be truthy."""
        url = str(path) if str(path).startswith(("http://", "https://")) else Path(path).resolve().as_uri()
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while not self.eval(f"!!({ready})"):
            if time.monotonic() > deadline:
                raise CdpError(f"{url} was not ready within {timeout}s")
            time.sleep(0.02)

    def eval(self, expression: str):
        """The value of a JS expression in the page (awaited if it is a promise)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise CdpError(f"{expression!r} threw: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the element."""
        box = self.eval(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.scrollIntoView({{block: 'center'}});"
                        " const r = el.getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2]; })()")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = True) -> Path:
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, Math.min(document.documentElement.scrollHeight, 8000)]")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen since the last ``open``."""
        out = []
        for method, p in self.events:
            if method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def requests(self) -> list[str]:
        """URLs the page requested since the last ``open``."""
        return [p["request"]["url"] for m, p in self.events if m == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5, session=None)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
