"""The viewer's access check (see :mod:`agtrace.replay.viewer`): with a token every request
carries it (``?token=`` once, which sets a cookie, an ``Authorization: Bearer`` header, or the
cookie); without one only requests whose ``Host`` is a loopback name are served (no DNS
rebinding)."""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.responses import RedirectResponse

COOKIE = "agtrace_view"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class Guard:
    """The access check in front of the app (see the module docstring)."""

    def __init__(self, app: Starlette, token: str | None):
        self.app, self.token = app, token
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is None:
            host = headers.get("host", "").rsplit(":", 1)[0] if not headers.get("host", "").startswith("[") \
                else headers.get("host", "").split("]")[0] + "]"
            if host not in LOOPBACK:
                return await _refuse(send, 403, "this viewer serves loopback names only (Host: 127.0.0.1 or "
                                     "localhost); to serve another address, start it with --host and --token")
            return await self.app(scope, receive, send)
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (params.get("token") or [""])[0]
        if given and hmac.compare_digest(given, self.token):
            rest = {k: v for k, v in params.items() if k != "token"}
            location = scope["path"] + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            response = RedirectResponse(location, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return await response(scope, receive, send)
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        cookie = next((c.split("=", 1)[1] for c in headers.get("cookie", "").split("; ")
                       if c.startswith(f"{COOKIE}=")), "")
        if any(v and hmac.compare_digest(v, self.token) for v in (bearer, cookie)):
            return await self.app(scope, receive, send)
        return await _refuse(send, 401, "this viewer needs its token: open the URL `agtrace view` printed "
                             "(…/?token=…), or send Authorization: Bearer TOKEN")


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
