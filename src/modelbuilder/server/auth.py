"""The server's one secret: a token that every API and page request must carry once it is set.

- Without a token the server may only listen on loopback (`check_bind` refuses anything else at start-up).
- With one, a request carries it as `Authorization: Bearer <token>`, or as the portal's session cookie that
  the login page sets (HttpOnly, SameSite=Strict). The cookie holds an HMAC of the token, never the token.
- Every comparison is `hmac.compare_digest` (constant time).
- An unauthenticated API request (and /openapi.json, /docs) is 401 JSON; a page is redirected to /login.
- Only /login, /logout and the static files (no data in them) are open.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from modelbuilder.errors import InvalidInput
from modelbuilder.server.middleware import drain, is_page, loopback_host, send_json

COOKIE = "modelbuilder_session"
MIN_TOKEN_LENGTH = 12
_OPEN_PATHS = ("/login", "/logout")
_SAFE = ("GET", "HEAD")


def check_bind(host: str, token: str | None, exposed: str = "train, read and delete everything") -> None:
    """Refuse a bind the server could not defend: a non-loopback address without a token, or a weak token.
    `exposed` says what anyone could do without one (`modelbuilder serve` only scores)."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInput(
            f"The token is too short ({len(token)} characters).",
            f"use at least {MIN_TOKEN_LENGTH}, e.g. --token \"$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')\".")
    if token is None and not loopback_host(host):
        raise InvalidInput(
            f"Refusing to serve on {host!r} without a token: anyone who can reach it could {exposed}.",
            "add --token TOKEN (or set MODELBUILDER_TOKEN), or bind to loopback with --host 127.0.0.1.")


def session_value(token: str) -> str:
    """What the session cookie holds: derived from the token, so the cookie never reveals it."""
    return hmac.new(token.encode(), b"modelbuilder portal session v1", hashlib.sha256).hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def bearer(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(
            ord(ch) < 32 for ch in target):
        return "/"
    return target


class TokenGuard:
    """Let a request through only with the token (when one is set)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.token
        if scope["type"] != "http" or token is None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in _OPEN_PATHS or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if token_matches(bearer(headers), token):
            await self.app(scope, receive, send)
            return
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if token_matches(cookie, session_value(token)):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE:
            await drain(receive)
        if is_page(path) and scope["method"] in _SAFE:
            query = scope.get("query_string", b"").decode("latin-1")
            target = quote(path + (f"?{query}" if query else ""), safe="")
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", f"/login?next={target}".encode()), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send_json(send, 401, {
            "code": "unauthorized", "message": "This server needs its token for every request.",
            "hint": "send 'Authorization: Bearer <token>', or sign in at /login."}, {"WWW-Authenticate": "Bearer"})
