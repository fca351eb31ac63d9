"""Compute backends: where a run's worker really runs. Importing this registers their launchers."""

from __future__ import annotations

import importlib.util

from modelbuilder.backends import local  # noqa: F401 - registers the "local" launcher
from modelbuilder.backends import ray as _ray  # noqa: F401 - registers "ray" (imports the ray package lazily)
from modelbuilder.core.scheduler import Agent
from modelbuilder.core.store import Store


def default_kinds() -> tuple[str, ...]:
    """The compute kinds an agent serves unless told otherwise: local, and ray where Ray is installed."""
    return ("local", "ray") if importlib.util.find_spec("ray") is not None else ("local",)


def start_agent(store: Store, kinds: tuple[str, ...] | None = None, poll_s: float = 1.0) -> Agent:
    """An agent serving these compute kinds (default: `default_kinds()`), already running in a background thread."""
    return Agent(store, kinds=kinds or default_kinds(), poll_s=poll_s).start()
