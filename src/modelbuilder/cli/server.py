"""`modelbuilder server`: the REST API, the portal and the scheduler's agent in one process (`server.serve`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelbuilder.cli._common import token_option


def server(
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[str | None, token_option("Secret every request must carry (Authorization: Bearer, or the "
                                              "portal's sign-in).")] = None,
    agent: Annotated[bool, typer.Option(help="Run the scheduler agent that starts queued runs on local "
                                             "computes.")] = True,
) -> None:
    """Serve the REST API (/api/v1, docs at /docs) and the portal, and run queued runs."""
    # The one import of the server face from the CLI, and deliberately here: this command starts the
    # server (nothing else of the server is used by the CLI), and FastAPI, uvicorn and the app's routers
    # take about half a second to import, which no other command should pay.
    from modelbuilder.server.serve import serve

    serve(host, port, token or None, agent)


def register(app: typer.Typer) -> None:
    app.command()(server)
