"""Plain ASGI middleware that every request passes, outermost first:

1. `SecurityHeaders`: nosniff, no framing, no referrer to other sites (same-origin: with no referrer at all,
   browsers send `Origin: null` on form posts); a strict Content-Security-Policy on pages.
2. `CatchAll`: an unexpected exception is logged and answered 500 `{code, message, hint}`, never a traceback.
3. `HostCheck`: without a token the server is loopback-only, so it answers only requests addressed to a
   loopback name (a DNS-rebinding page cannot reach it through its own domain name).
4. `OriginCheck`: a state-changing request sent by another site's page (its `Origin` is not this server) is 403.
5. `auth.TokenGuard` (in auth.py).
6. `BodyLimit`: bodies are read up to a limit (1 MB, 20 MB for image uploads, 8 MiB for a chunk of a data
   upload) before the app sees them;
   a bigger one is 413 whether or not it announced its length.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelbuilder.config import UPLOAD_CHUNK
from modelbuilder.server import API_PREFIX

log = logging.getLogger("modelbuilder.server")

JSON_LIMIT = 1 << 20  # 1 MiB: the largest JSON body (a run submission is well under 10 KiB)
UPLOAD_LIMIT = 20 << 20  # 20 MiB: the largest image for "try the model"
_MULTIPART_SLACK = 64 << 10  # boundaries and part headers around the image
# the routes that take an image: a run's model and a registered model's version (predict, explain)
_UPLOAD_PATH = re.compile(
    rf"^{API_PREFIX}/(runs/[^/]+|workspaces/[^/]+/models/[^/]+/versions/[^/]+)/(predict|explain)$")
_CHUNK_PATH = re.compile(rf"^{API_PREFIX}/workspaces/[^/]+/data/uploads/[0-9a-f]{{32}}$")  # a data upload's chunk
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


INTERNAL = {
    "code": "internal_error",
    "message": "The server failed to answer this request (an unexpected error; details are in the server's log).",
    "hint": "try again; if it keeps failing, report it with the time of the request.",
}


def is_page(path: str) -> bool:
    """Portal pages (HTML); everything under /api, the schema and its docs, and static files are not."""
    return not (path.startswith(("/api/", "/openapi", "/docs", "/redoc", "/static/")) or path == "/api")


async def send_json(send: Send, status: int, body: dict[str, str], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def drain(receive: Receive) -> None:
    """Read what is left of a refused request's body (some clients wait until it is consumed)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = is_page(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"same-origin")]
                if page and b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + [h for h in extra if h[0] not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchAll:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_json(send, 500, INTERNAL)


def loopback_host(host: str) -> bool:
    """Whether `host` (a name or address, without port) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    header = header.strip()
    if header.startswith("["):  # [::1]:8765
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """Loopback-only mode: refuse requests whose Host header is not a loopback name (DNS rebinding)."""

    def __init__(self, app: ASGIApp, trusted: tuple[str, ...] = ()) -> None:
        self.app, self.trusted = app, frozenset(h.lower() for h in trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = _host_of(host).lower()
            if host and not loopback_host(name) and name not in self.trusted:
                await drain(receive)
                await send_json(send, 400, {
                    "code": "bad_host",
                    "message": f"This server answers only to loopback addresses, not {host[:80]!r}.",
                    "hint": "open it as http://127.0.0.1:PORT, or start it with --token to serve other hosts."})
                return
        await self.app(scope, receive, send)


class OriginCheck:
    """State-changing requests from another site's page are refused (cross-site request forgery)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _UNSAFE:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._same(origin, headers.get("host", "")):
                await drain(receive)
                await send_json(send, 403, {
                    "code": "forbidden", "message": f"Requests from {origin[:80]!r} may not change anything here.",
                    "hint": "use the portal's own pages, or call the API without an Origin header."})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _same(origin: str, host: str) -> bool:
        _, _, rest = origin.partition("://")
        return bool(rest) and rest.lower() == host.lower()


class BodyLimit:
    """Read the body up to its limit before the app runs; 413 beyond it. The app then reads it from memory."""

    def __init__(self, app: ASGIApp, json_limit: int = JSON_LIMIT, upload_limit: int = UPLOAD_LIMIT) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    def limit_for(self, path: str) -> int:
        if _CHUNK_PATH.match(path):
            return UPLOAD_CHUNK
        return self.upload_limit + _MULTIPART_SLACK if _UPLOAD_PATH.match(path) else self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit, scope["path"])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await drain(receive)
                await self._refuse(send, limit, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int, path: str) -> None:
        what = "image upload" if _UPLOAD_PATH.match(path) else "request body"
        await send_json(send, 413, {
            "code": "payload_too_large",
            "message": f"The {what} is larger than {limit // (1 << 20)} MiB.",
            "hint": "send a smaller image (resize it first)." if _UPLOAD_PATH.match(path) else "send less.",
        }, {"connection": "close"})
