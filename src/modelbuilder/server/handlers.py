"""One place that turns every failure into an answer: `{code, message, hint}` JSON for the API, an
error page for the portal.

- `ModelBuilderError` and the runtime's `PipelineError` keep their own HTTP status;
- a request out of shape (FastAPI's validation) is 422 `invalid_input`, naming the field and its fix;
- routing errors (unknown address, wrong method) keep their status;
- anything else is a bug of ours: logged with its traceback, answered 500 with a generic message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelbuilder import names
from modelbuilder.errors import InvalidInput, ModelBuilderError
from modelbuilder.results.runtime import PipelineError
from modelbuilder.sdk import submit
from modelbuilder.server import fixes
from modelbuilder.server.middleware import is_page

log = logging.getLogger("modelbuilder.server")

_HTTP_CODES = {
    400: ("bad_request", "fix the request."),
    401: ("unauthorized", "send 'Authorization: Bearer <token>', or sign in at /login."),
    403: ("forbidden", "send the request from the portal's own pages."),
    404: ("not_found", "check the address; the API is under /api/v1 (see /docs)."),
    405: ("method_not_allowed", "check the method; see /docs for what each address accepts."),
    413: ("payload_too_large", "send less."),
}
_NAME_CHECKS = {
    "workspace": names.workspace_name,
    "experiment": names.experiment_name,
    "compute": names.compute_name,
    "idempotency_key": names.idempotency_key,
    "resource_group": names.resource_group,
}


class BadPath(InvalidInput):
    """A client-supplied path was refused (traversal, absolute, odd characters): 400, never read."""

    code = "bad_path"
    http_status = 400


ErrorPage = Callable[[Request, int, dict[str, Any], dict[str, str] | None], Response]


def error_response(request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
                   ) -> Response:
    """A portal page gets the portal's error page; everything else (the API, the schema) JSON."""
    if is_page(request.url.path):
        page: ErrorPage = request.app.state.error_page
        return page(request, status, body, headers)
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_body(request: Request, exc: RequestValidationError) -> dict[str, str]:
    errors = exc.errors()
    first: dict[str, Any] = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ())]
    where = loc[0] if loc else "request"
    field = ".".join(loc[1:]) or where
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    message = f"{where.capitalize()} field {field!r}: {first.get('msg', 'is not valid')}{more}."
    hint = "check the request against the API schema at /docs."
    check = _NAME_CHECKS.get(loc[-1] if loc else "")
    if loc == ["body", "name"]:  # the name of what the route creates
        check = names.compute_name if "/computes" in request.url.path else names.workspace_name
    if check is not None and isinstance(first.get("input"), str):
        try:
            check(first["input"])
        except InvalidInput as named:
            message, hint = named.message, named.hint
    if loc[:2] == ["body", "recipe"] and len(loc) == 3 and "input" in first:  # the recipe's own words, as elsewhere
        said = submit.setting_error(loc[2], first["input"])
        if said is not None:
            message, hint = said.message, said.hint
    return {"code": InvalidInput.code, "message": message, "hint": hint}


async def _on_model_builder_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelBuilderError | PipelineError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    if exc.http_status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    body = exc.to_dict(fixes.request) if isinstance(exc, ModelBuilderError) else exc.to_dict()
    return error_response(request, exc.http_status, body, headers)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 422, _validation_body(request, exc))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, hint = _HTTP_CODES.get(exc.status_code, ("http_error", "see /docs."))
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else "The request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = f"Nothing is at {request.url.path[:200]!r}."
    return error_response(request, exc.status_code, {"code": code, "message": message, "hint": hint},
                          dict(exc.headers) if exc.headers else None)


def install(app: FastAPI, error_page: ErrorPage) -> None:
    """Render errors as JSON for the API, and with `error_page` (the portal's) for pages."""
    app.state.error_page = error_page
    app.add_exception_handler(ModelBuilderError, _on_model_builder_error)
    app.add_exception_handler(PipelineError, _on_model_builder_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
