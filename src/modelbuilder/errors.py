"""Typed errors. Each carries a stable code, an HTTP status and a one-line fix.

The CLI and the API render them the same way: what was wrong, then how to fix it. Anything that is
not a `ModelBuilderError` is a bug of ours, not a mistake of the user's, and keeps its traceback.

A fix speaks of concepts ("delete the compute first"). Where it names a step the user can take, the
step is a `Step` (an action of `ACTIONS` and what it acts on), placed in the hint as " ({name})", and
each face words it in its own terms: the CLI as its command, the API as its method and address
(`hint_in(words)`). Plain, as the SDK shows it, the hint leaves the step out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Every step a fix can name; each face words each of them (or leaves it out), which a test checks.
ACTIONS = frozenset({
    "list_workspaces", "create_workspace", "use_workspace", "list_regions",
    "list_computes", "create_compute", "show_compute", "delete_compute", "compute_sizes",
    "list_experiments", "list_runs", "show_run", "cancel_run", "follow_run", "list_artifacts",
    "delete_with_force", "upgrade_store", "choose_home", "give_data", "give_validation_data",
    "list_models", "show_model", "list_data", "show_data",
})
# Steps only whoever runs the server can take: a client of a server shows them as the server words them.
HOST_ACTIONS = frozenset({"upgrade_store", "choose_home"})
_PLACE = re.compile(r" ?\(\{(\w+)\}\)")


@dataclass(frozen=True)
class Step:
    """A step that fixes an error: what to do (`action`) and what it acts on (`args`: workspace, compute, run)."""

    action: str
    args: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown step {self.action!r}")


def step(action: str, **args: str) -> Step:
    return Step(action, args)


class ModelBuilderError(Exception):
    """Base class: `message` says what was wrong, `hint` how to fix it; `steps` are the steps it names."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, hint: str = "", steps: Mapping[str, Step] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.steps = dict(steps or {})
        self._hint = hint
        self.hint = self.hint_in(lambda _: None)

    def hint_in(self, words: Callable[[Step], str | None]) -> str:
        """The hint with each step worded by `words` (None leaves that step out)."""

        def word(found: re.Match[str]) -> str:
            worded = words(self.steps[found.group(1)])
            return f" ({worded})" if worded else ""

        return _PLACE.sub(word, self._hint)

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message

    def to_dict(self, words: Callable[[Step], str | None] | None = None) -> dict[str, Any]:
        """The error as the API answers it: `hint` worded by `words`, and, where the hint names steps, `fix`:
        the hint with each step's place ({name}) and the steps, for a client to word them in its own terms."""
        body: dict[str, Any] = {"code": self.code, "message": self.message,
                                "hint": self.hint_in(words) if words else self.hint}
        if self.steps:
            body["fix"] = {"hint": self._hint, "steps": {name: {"action": s.action, "args": dict(s.args)}
                                                         for name, s in self.steps.items()}}
        return body


def fix_of(body: Any) -> tuple[str, dict[str, Step]] | None:
    """The hint and its steps from an error's `fix` (`ModelBuilderError.to_dict`), for a client to word them;
    None when there is none, it is malformed, or a step is one only the server's host can take."""
    try:
        hint, given = body["hint"], body["steps"]
        steps = {str(name): Step(s["action"], {str(k): str(v) for k, v in s["args"].items()})
                 for name, s in given.items()}
    except (TypeError, KeyError, AttributeError, ValueError):
        return None
    if not isinstance(hint, str) or any(s.action in HOST_ACTIONS for s in steps.values()):
        return None
    if any(name not in steps for name in _PLACE.findall(hint)):
        return None
    return hint, steps


class InvalidInput(ModelBuilderError):
    """A name, number, path or option given by the user is not acceptable."""

    code = "invalid_input"
    http_status = 422


class DataError(ModelBuilderError):
    """The data to train on or to score cannot be used (missing, empty, a single label, a bad manifest)."""

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


class Busy(Conflict):
    """Another request is doing this very thing now; asking again later gets its answer."""

    code = "busy"


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
