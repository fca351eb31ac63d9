"""Typed errors. Each carries a stable code, an HTTP status and a one-line fix.

The CLI and the API render them the same way: what was wrong, then how to fix it. Anything that is
not a `ModelBuilderError` is a bug of ours, not a mistake of the user's, and keeps its traceback.
"""

from __future__ import annotations


class ModelBuilderError(Exception):
    """Base class: `message` says what was wrong, `hint` how to fix it."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class InvalidInput(ModelBuilderError):
    """A name, number, path or option given by the user is not acceptable."""

    code = "invalid_input"
    http_status = 422


class DataError(ModelBuilderError):
    """The training data cannot be used (missing, empty, a single label, a bad manifest)."""

    code = "bad_data"
    http_status = 422


class InvalidImage(ModelBuilderError):
    """One image could not be read or decoded."""

    code = "invalid_image"
    http_status = 422


class NotFound(ModelBuilderError):
    code = "not_found"
    http_status = 404


class AlreadyExists(ModelBuilderError):
    code = "already_exists"
    http_status = 409


class Conflict(ModelBuilderError):
    """The request is valid but the current state of a resource does not allow it."""

    code = "conflict"
    http_status = 409


class StaleAttempt(Conflict):
    """A worker whose lease was taken over tried to write (fencing)."""

    code = "stale_attempt"


class CapacityError(ModelBuilderError):
    """A compute size cannot be met by the host or cluster."""

    code = "capacity"
    http_status = 409


class Unauthorized(ModelBuilderError):
    code = "unauthorized"
    http_status = 401


class PayloadTooLarge(ModelBuilderError):
    code = "payload_too_large"
    http_status = 413


class SchemaOutOfDate(ModelBuilderError):
    """The store's schema is older (or newer) than this version of modelbuilder."""

    code = "schema_out_of_date"
    http_status = 503


class StoreUnavailable(ModelBuilderError):
    code = "store_unavailable"
    http_status = 503


class ExportCheckFailed(ModelBuilderError):
    """The ONNX model disagreed with PyTorch beyond tolerance; nothing was recorded."""

    code = "export_check_failed"
    http_status = 500


class WeightsError(ModelBuilderError):
    code = "bad_weights"
    http_status = 422
