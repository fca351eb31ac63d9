"""Validators for everything a user names or types: one set, used by the CLI, the SDK and the API.

Each validator returns the value it accepted (normalised where that is harmless) or raises
`InvalidInput` saying what was wrong and what would be accepted.
"""

from __future__ import annotations

import re

from modelbuilder.errors import InvalidInput, step

WORKSPACE_NAME = re.compile(r"[A-Za-z0-9-]{3,33}")
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,35}")
COMPUTE_NAME = re.compile(r"[A-Za-z0-9-]{2,16}")
RESOURCE_GROUP = re.compile(r"[A-Za-z0-9_.()-]{0,89}[A-Za-z0-9_()-]")
PROJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,63}")
MODEL_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")  # starts with a letter: never taken for a version
MAX_MODEL_VERSION = 1_000_000_000

DEFAULT_REGIONS = (
    "local",
    "eastus",
    "eastus2",
    "westus",
    "westus2",
    "westus3",
    "centralus",
    "northcentralus",
    "southcentralus",
    "canadacentral",
    "brazilsouth",
    "northeurope",
    "westeurope",
    "uksouth",
    "francecentral",
    "germanywestcentral",
    "swedencentral",
    "switzerlandnorth",
    "norwayeast",
    "eastasia",
    "southeastasia",
    "japaneast",
    "koreacentral",
    "centralindia",
    "australiaeast",
    "southafricanorth",
    "uaenorth",
)

PRIORITIES = ("low-priority", "dedicated")
COMPUTE_KINDS = ("local", "ray")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def workspace_name(value: str) -> str:
    if not isinstance(value, str) or not WORKSPACE_NAME.fullmatch(value):
        raise InvalidInput(
            f"Workspace name {_shown(value)} is not valid.",
            "use 3 to 33 characters: letters, digits and hyphens only (for example 'team-vision').",
        )
    return value


def experiment_name(value: str) -> str:
    if not isinstance(value, str) or not EXPERIMENT_NAME.fullmatch(value):
        raise InvalidInput(
            f"Experiment name {_shown(value)} is not valid.",
            "use 3 to 36 characters of letters, digits, '_' and '-', starting with a letter or digit "
            "(for example 'pets_v2').",
        )
    return value


def compute_name(value: str) -> str:
    if not isinstance(value, str) or not COMPUTE_NAME.fullmatch(value):
        raise InvalidInput(
            f"Compute name {_shown(value)} is not valid.",
            "use 2 to 16 characters: letters, digits and hyphens only (for example 'gpu-1').",
        )
    return value


def resource_group(value: str) -> str:
    if not isinstance(value, str) or not RESOURCE_GROUP.fullmatch(value):
        raise InvalidInput(
            f"Resource group {_shown(value)} is not valid.",
            "use 1 to 90 characters of letters, digits, '_', '-', '.', '(' and ')', not ending in '.'.",
        )
    return value


def region(value: str, allowed: tuple[str, ...] | list[str] = DEFAULT_REGIONS) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        shown = ", ".join(list(allowed)[:8]) + (", ..." if len(allowed) > 8 else "")
        raise InvalidInput(
            f"Region {_shown(value)} is not one of the configured regions.",
            f"use one of: {shown} ({{regions}}).", {"regions": step("list_regions")},
        )
    return value.lower()


def priority(value: str) -> str:
    if value not in PRIORITIES:
        raise InvalidInput(
            f"Priority {_shown(value)} is not valid.", "use 'low-priority' or 'dedicated'."
        )
    return value


def compute_kind(value: str) -> str:
    if value not in COMPUTE_KINDS:
        raise InvalidInput(f"Compute kind {_shown(value)} is not valid.", "use 'local' or 'ray'.")
    return value


def project_name(value: str) -> str:
    """The `<Name>` of the generated `<Name>.ConsoleApp`, `<Name>.Model` and `<Name>.WebApi` projects."""
    if not isinstance(value, str) or not PROJECT_NAME.fullmatch(value):
        raise InvalidInput(
            f"Model name {_shown(value)} is not valid.",
            "use 1 to 64 letters, digits and '_', starting with a letter (for example 'PetClassifier').",
        )
    return value


def project_name_from(text: str) -> str:
    """A valid project name derived from free text (a data folder's name): 'my pets-2' -> 'MyPets2'."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    name = name.lstrip("0123456789")[:64]
    return name or "MLModel"


def idempotency_key(value: str) -> str:
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput(
            f"Idempotency key {_shown(value)} is not valid.",
            "use 1 to 128 characters of letters, digits, '_', '.', ':' and '-'.",
        )
    return value


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def duration_seconds(value: str | float | int) -> float:
    """'90s', '10m', '1h30m' or a plain number of seconds -> seconds."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            match = _DURATION.fullmatch(text)
            if not text or not match or not any(match.groups()):
                raise InvalidInput(
                    f"Duration {_shown(value)} is not valid.",
                    "write it like '90s', '10m' or '1h30m' (or a number of seconds).",
                ) from None
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s
    if not seconds > 0:
        raise InvalidInput(f"Duration {_shown(value)} must be positive.", "give a time such as '10m'.")
    return seconds


def positive_int(value: int, what: str, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what} must be a positive whole number, got {_shown(value)}.", f"pass {what} >= 1.")
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{what} {value} is too large.", f"pass {what} <= {maximum}.")
    return value


def fraction(value: float, what: str) -> float:
    if not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
        raise InvalidInput(f"{what} must be between 0 and 1, got {_shown(value)}.", f"pass a {what} such as 0.2.")
    return float(value)


def model_name(value: str) -> str:
    """The name of a registered model (its versions are 1, 2, ...)."""
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise InvalidInput(
            f"Registered model name {_shown(value)} is not valid.",
            "use 2 to 64 characters of letters, digits, '_' and '-', starting with a letter or digit "
            "(for example 'pets').",
        )
    return value


def model_alias(value: str) -> str:
    if not isinstance(value, str) or not MODEL_ALIAS.fullmatch(value):
        raise InvalidInput(
            f"Model alias {_shown(value)} is not valid.",
            "use 1 to 32 characters of letters, digits, '_' and '-', starting with a letter (for example "
            "'production').",
        )
    return value


def model_version(value: int | str) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_MODEL_VERSION:
        raise InvalidInput(f"Model version {_shown(value)} is not valid.",
                           "use a version number 1, 2, ... as 'modelbuilder models show NAME' lists them.")
    return int(text)


def model_ref(value: str) -> tuple[str, int | str | None]:
    """'pets' -> ('pets', None): the latest version; 'pets:3' -> ('pets', 3); 'pets:production' -> ('pets',
    'production'), the version the alias names."""
    name, sep, which = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not isinstance(value, str) or (sep and not which) or ":" in which:
        raise InvalidInput(f"Model reference {_shown(value)} is not valid.",
                           "write NAME, NAME:VERSION (pets:3) or NAME:ALIAS (pets:production).")
    model_name(name)
    if not sep:
        return name, None
    return (name, model_version(which)) if which[:1].isdigit() else (name, model_alias(which))


def data_name(value: str) -> str:
    """The name of a data asset (its versions are 1, 2, ...)."""
    if not isinstance(value, str) or not MODEL_NAME.fullmatch(value):
        raise InvalidInput(
            f"Data asset name {_shown(value)} is not valid.",
            "use 2 to 64 characters of letters, digits, '_' and '-', starting with a letter or digit "
            "(for example 'pets').",
        )
    return value


def data_version(value: int | str) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_MODEL_VERSION:
        raise InvalidInput(f"Data asset version {_shown(value)} is not valid.",
                           "use a version number 1, 2, ... as 'modelbuilder data show NAME' lists them.")
    return int(text)


def data_ref(value: str) -> tuple[str, int | None]:
    """'pets' -> ('pets', None): the latest version; 'pets:2' -> ('pets', 2)."""
    name, sep, which = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not isinstance(value, str) or (sep and not which):
        raise InvalidInput(f"Data asset reference {_shown(value)} is not valid.",
                           "write NAME (the latest version) or NAME:VERSION (pets:2).")
    data_name(name)
    return (name, data_version(which)) if sep else (name, None)


def looks_like_data_ref(value: object) -> bool:
    """Whether `value` has the shape of a data asset reference (pets, pets:2) rather than of a path."""
    if not isinstance(value, str):
        return False
    name, sep, which = value.partition(":")
    return bool(MODEL_NAME.fullmatch(name)) and (not sep or (which.isascii() and which.isdigit()))
