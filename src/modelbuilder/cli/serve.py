"""`modelbuilder serve MODEL`: a scoring server for one model that batches concurrent requests
(`server.model_server`). A client of a remote server (MODELBUILDER_SERVER_URL without MODELBUILDER_DB_URL)
serves a run or a registered version of that server, its MLModel.zip fetched once into this home."""

from __future__ import annotations

from typing import Annotated

import typer

from modelbuilder.cli._common import WorkspaceOption, faces, token_option
from modelbuilder.results.batching import MAX_BATCH, MAX_WAIT_S
from modelbuilder.sdk.models import MODEL_HELP, source


def serve(
    model: Annotated[str, typer.Argument(help=f"The model: {MODEL_HELP}.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    max_batch: Annotated[int, typer.Option(min=1, max=1024, help="Most images the model runs at once (1: one "
                                           "request at a time).")] = MAX_BATCH,
    max_wait_ms: Annotated[float, typer.Option(min=0, max=1000, help="How long a batch may wait for requests "
                                               "still being decoded before it runs.")] = MAX_WAIT_S * 1000,
    threads: Annotated[int | None, typer.Option(min=1, max=256, help="onnxruntime threads (default: the usable "
                                                "cores).", show_default=False)] = None,
    token: Annotated[str | None, token_option("Secret every /predict must carry (Authorization: Bearer).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve a model over HTTP (POST /predict, GET /health), gathering concurrent requests into batches."""
    with faces() as (s, client):
        found = source(s, model, workspace, client)
    # The one import of the server face from this command, and deliberately here: it starts the scoring
    # server, and FastAPI, uvicorn and onnxruntime take a moment to import that no other command should pay.
    from modelbuilder.server.model_server import serve_model

    serve_model(found.path, found.name, found.version, host, port, max_batch=max_batch, max_wait_ms=max_wait_ms,
                threads=threads, token=token or None)


def register(app: typer.Typer) -> None:
    app.command()(serve)
