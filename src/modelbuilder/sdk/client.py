"""The REST API as a client sees it: for a process that has no store of its own to share with the server
(its own empty MODELBUILDER_HOME, a server elsewhere). Set MODELBUILDER_SERVER_URL (and MODELBUILDER_TOKEN
when the server has one) and leave MODELBUILDER_DB_URL unset: `modelbuilder data ...`, `modelbuilder
train --data ASSET`, `modelbuilder runs ...`, `modelbuilder workspace ...`, `modelbuilder experiment ...` and
`modelbuilder compute ...` then go through the server.

An error answered by the server comes back as the same one-line error, with the server's code, message and
hint (worded as API requests); a server that cannot be reached is one line too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from modelbuilder.config import Settings
from modelbuilder.errors import ModelBuilderError, Step, StoreUnavailable, fix_of

API = "/api/v1"
TIMEOUT_S = 120.0
RETRIES = 5


class RemoteError(ModelBuilderError):
    """An error the server answered, as it said it; the steps its hint names (`fix`) are this client's to
    word (the CLI as its commands), those only the server's host can take as the server worded them."""

    def __init__(self, code: str, status: int, message: str, hint: str,
                 steps: dict[str, Step] | None = None) -> None:
        super().__init__(message, hint, steps)
        self.code, self.http_status = code, status


def remote_server(settings: Settings) -> str | None:
    """The server a client talks to instead of a store: MODELBUILDER_SERVER_URL without MODELBUILDER_DB_URL."""
    return settings.server_url.rstrip("/") if settings.server_url and not settings.db_url else None


class Client:
    def __init__(self, url: str, token: str | None = None, transport: httpx.BaseTransport | None = None,
                 retries: int = RETRIES) -> None:
        self.retries = retries
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S, transport=transport)

    @classmethod
    def of(cls, settings: Settings) -> Client | None:
        url = remote_server(settings)
        return cls(url, settings.token) if url else None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, retry: bool = False, **kwargs: Any) -> httpx.Response:
        """One request to `API + path`; an error answer raises its RemoteError. With `retry` (for requests
        that may be sent twice), a lost connection is retried a few times before it is an error."""
        tries = self.retries if retry else 1
        for attempt in range(tries):
            try:
                response = self.http.request(method, API + path, **kwargs)
                break
            except httpx.TransportError as error:
                if attempt + 1 >= tries:
                    raise StoreUnavailable(f"Cannot reach the server {self.url} ({type(error).__name__}: {error}).",
                                           "start it, or fix MODELBUILDER_SERVER_URL.") from None
                time.sleep(min(2.0**attempt, 10.0))
        if response.status_code >= 400:
            raise _error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def download(self, path: str, target: Path) -> Path:
        """Stream a file answer into `target`."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._stream("GET", API + path) as response, target.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
        return target

    @contextmanager
    def _stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        try:
            with self.http.stream(method, path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield response
        except httpx.TransportError as error:
            raise StoreUnavailable(f"Cannot reach the server {self.url} ({error}).",
                                   "start it, or fix MODELBUILDER_SERVER_URL.") from None


def _error(response: httpx.Response) -> RemoteError:
    try:
        body = response.json()
        hint, steps = fix_of(body.get("fix")) or (str(body.get("hint", "")), None)
        return RemoteError(str(body["code"]), response.status_code, str(body["message"]), hint, steps)
    except (ValueError, KeyError, TypeError):
        hint = "set MODELBUILDER_TOKEN to the server's token." if response.status_code == 401 else ""
        return RemoteError("http_error", response.status_code,
                           f"The server answered {response.status_code} ({response.text[:120]!r}).", hint)
