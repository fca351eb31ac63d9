"""`modelbuilder server`: the REST API, the portal and the scheduler's agent in one process.

Without a token it serves loopback only; any other address needs `--token` (or MODELBUILDER_TOKEN),
and then every request must carry it. While it runs, `<home>/server.json` tells `modelbuilder train`
and the SDK where a run's page is ("Monitor current run: <url>").
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer


def _url(host: str, port: int) -> str:
    """The address clients should use: a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _check_port_free(host: str, port: int) -> None:
    from modelbuilder.errors import InvalidInput

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


def server(
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[str | None, typer.Option(envvar="MODELBUILDER_TOKEN", show_envvar=True, show_default=False,
                                              help="Secret every request must carry (Authorization: Bearer, or "
                                                   "the portal's sign-in).")] = None,
    agent: Annotated[bool, typer.Option(help="Run the scheduler agent that starts queued runs on local "
                                             "computes.")] = True,
) -> None:
    """Serve the REST API (/api/v1, docs at /docs) and the portal, and run queued runs."""
    import uvicorn

    from modelbuilder.config import get_settings
    from modelbuilder.server.api import create_app
    from modelbuilder.server.auth import check_bind

    token = token or None
    check_bind(host, token)
    _check_port_free(host, port)
    settings = get_settings().model_copy(update={"token": token})
    url = _url(host, port)
    app = create_app(settings, start_agents=agent, server_url=url)
    typer.echo(f"modelbuilder server on {url} (home {settings.resolved_home}"
               f"{', token required' if token else ', loopback only'}). Ctrl-C stops it.", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                timeout_graceful_shutdown=5, access_log=False)


def register(app: typer.Typer) -> None:
    app.command()(server)
