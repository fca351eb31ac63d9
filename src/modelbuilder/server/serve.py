"""Running the server (what `modelbuilder server` does): check the address and the token, then serve the
app with uvicorn until stopped. Its errors name the command's options: nothing else starts a server.

Without a token it serves loopback only; any other address needs a token, and then every request must
carry it. While it runs, `<home>/server.json` tells `modelbuilder train` and the SDK where a run's page
is ("Monitor current run: <url>").
"""

from __future__ import annotations

import socket
import sys

import uvicorn

from modelbuilder.config import get_settings
from modelbuilder.errors import InvalidInput
from modelbuilder.server.api import create_app
from modelbuilder.server.auth import check_bind


def url_of(host: str, port: int) -> str:
    """The address clients should use: a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def check_port_free(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInput(f"Cannot bind to host {host!r} ({exc.strerror}).",
                           "pass an address of this machine, e.g. --host 127.0.0.1.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise InvalidInput(f"Cannot listen on {host}:{port} ({exc.strerror}).",
                               "pass another --port, or stop the program that uses it.") from None


def serve(host: str, port: int, token: str | None, agent: bool) -> None:
    """Serve the REST API, the portal and (with `agent`) the scheduler's agent on host:port until stopped."""
    check_bind(host, token)
    check_port_free(host, port)
    settings = get_settings().model_copy(update={"token": token})
    url = url_of(host, port)
    app = create_app(settings, start_agents=agent, server_url=url)
    print(f"modelbuilder server on {url} (home {settings.resolved_home}"
          f"{', token required' if token else ', loopback only'}). Ctrl-C stops it.", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                timeout_graceful_shutdown=5, access_log=False)
