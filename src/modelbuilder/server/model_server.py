"""`modelbuilder serve MODEL`: a scoring server for one model that gathers concurrent requests into batches.

    POST /predict   an image as a multipart upload (field `image`), as raw bytes (Content-Type image/* or
                    application/octet-stream), or as JSON {"image": "<base64>"}; answers the label, every
                    label's score, and the model's name and version
    GET  /health    the model, its version and labels, and how many batches of each size ran

As `modelbuilder server`: without a token it serves loopback only (`auth.check_bind` refuses anything else at
start-up); with --token (or MODELBUILDER_TOKEN), /predict needs `Authorization: Bearer <token>`. /health,
/docs and /openapi.json stay open: they name the model and its labels, and score nothing.

Images are decoded on the server's worker threads, many at once; the model runs on one thread of its own
(`results.batching.Batcher`), which takes every decoded image waiting, waits up to --max-wait-ms for more
while the batch is below --max-batch and other requests are still being decoded, and runs them together.
`--max-batch 1` answers one request at a time (`benchmarks/bench_serve.py` compares the two).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from modelbuilder.errors import InvalidInput, PayloadTooLarge, Unauthorized
from modelbuilder.results.batching import Batcher
from modelbuilder.results.runtime import PredictionEngine, preprocess
from modelbuilder.server import handlers
from modelbuilder.server.auth import bearer, check_bind, token_matches
from modelbuilder.server.middleware import UPLOAD_LIMIT
from modelbuilder.server.serve import check_port_free, url_of

_SEND = "send the image as multipart field 'image', as raw bytes (Content-Type image/jpeg), or as JSON " \
        '{"image": "<base64>"}.'


class ScoredPublic(BaseModel):
    prediction: str = Field(description="The predicted label.")
    scores: dict[str, float] = Field(description="The probability of every label, in the model's label order.")
    predicted_labels: list[str] | None = Field(
        default=None, description="A multi-label model's labels whose score reaches their threshold.")
    model: str
    model_version: str


class ModelHealthPublic(BaseModel):
    status: str
    model: str
    model_version: str
    labels: list[str]
    max_batch: int
    max_wait_ms: float
    batches: dict[int, int] = Field(description="Batch size -> how many batches of that size the model ran.")


_UPLOAD = {"type": "object", "required": ["image"], "properties": {"image": {"type": "string", "format": "binary"}}}
_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": _UPLOAD},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object", "required": ["image"],
                                    "properties": {"image": {"type": "string", "description": "base64"}}}}}}


async def _image_bytes(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=1)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("The upload has no file field named 'image'.", _SEND)
        data = await upload.read(UPLOAD_LIMIT + 1)
    elif kind == "application/json":
        try:
            body = await request.json()
            text = body["image"] if isinstance(body, dict) else None
            if not isinstance(text, str):
                raise KeyError("image")
            data = base64.b64decode(text, validate=True)
        except (ValueError, KeyError, binascii.Error):
            raise InvalidInput("The JSON body has no base64 string 'image'.", _SEND) from None
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data = await request.body()
    else:
        raise InvalidInput(f"Content type {kind or 'none'!r} is not accepted.", _SEND)
    if len(data) > UPLOAD_LIMIT:
        raise PayloadTooLarge(f"The image is larger than {UPLOAD_LIMIT >> 20} MiB.", "send a smaller image.")
    return data


def _token_check(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A dependency that lets a request through only with `token` (any request when it is None)."""

    async def check(request: Request) -> None:
        if token is not None and not token_matches(bearer(request.headers), token):
            raise Unauthorized("This model server needs its token for /predict.",
                               "send 'Authorization: Bearer <token>' with the token it was started with (its "
                               "--token or MODELBUILDER_TOKEN).")

    return check


def create_model_app(engine: PredictionEngine, name: str, version: str, *, max_batch: int, max_wait_s: float,
                     start: bool = True, token: str | None = None) -> FastAPI:
    """The app serving `engine`; its Batcher is made and stopped with the app (and started, unless `start` is
    False: then requests wait until `app.state.batcher.start()`). With `token`, /predict requires it."""
    labels = engine.labels

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.batcher = Batcher(engine, max_batch=max_batch, max_wait_s=max_wait_s, start=start)
        try:
            yield
        finally:
            app.state.batcher.close()

    app = FastAPI(title=f"modelbuilder serve: {name}", version=version, lifespan=lifespan,
                  description="Classifies images with one model, gathering concurrent requests into batches.")
    handlers.install(app, _json_error)

    @app.post("/predict", openapi_extra={"requestBody": _BODY}, dependencies=[Depends(_token_check(token or None))],
              response_model_exclude_none=True)  # predicted_labels: multi-label models only
    async def predict(request: Request) -> ScoredPublic:
        """Classify one image."""
        data = await _image_bytes(request)
        batcher: Batcher = request.app.state.batcher
        batcher.announce()
        try:
            image = await run_in_threadpool(preprocess, data, engine.preprocess)
        except BaseException:
            batcher.withdraw()
            raise
        probs = await asyncio.wrap_future(batcher.submit(image, announced=True))
        best = int(probs.argmax())
        return ScoredPublic(prediction=labels[best], scores=dict(zip(labels, probs.tolist(), strict=True)),
                            predicted_labels=engine.labels_found(probs), model=name, model_version=version)

    @app.get("/health")
    def health(request: Request) -> ModelHealthPublic:
        """The model, its labels and batch counts. Open without the token: it scores nothing."""
        return ModelHealthPublic(status="ok", model=name, model_version=version, labels=labels,
                                 max_batch=max_batch, max_wait_ms=max_wait_s * 1000,
                                 batches=dict(sorted(request.app.state.batcher.batch_sizes.items())))

    return app


def _json_error(_request: Request, status: int, body: dict[str, str], headers: dict[str, str] | None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def serve_model(model: Path, name: str, version: str, host: str, port: int, *, max_batch: int,
                max_wait_ms: float, threads: int | None = None, token: str | None = None) -> None:
    """Load `model` and serve it on host:port until stopped (what `modelbuilder serve` runs); anything but
    loopback needs `token`, which /predict then requires."""
    check_bind(host, token, exposed="score images with the model")
    check_port_free(host, port)
    engine = PredictionEngine.load(model, threads=threads)
    app = create_model_app(engine, name, version, max_batch=max_batch, max_wait_s=max_wait_ms / 1000, token=token)
    print(f"Serving {name} (version {version}, {len(engine.labels)} labels) on {url_of(host, port)}: POST /predict"
          f"{' with the token' if token else ''}, batches of up to {max_batch} (waiting up to {max_wait_ms:g} ms). "
          "Ctrl-C stops it.", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
                timeout_graceful_shutdown=5)

