"""Settings: where modelbuilder keeps its state, and how to reach a server.

One pydantic-settings class, read from `MODELBUILDER_*` environment variables. `--home DIR` on the
CLI sets `MODELBUILDER_HOME` before anything reads it, so every layer agrees on one home.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelbuilder.errors import InvalidInput
from modelbuilder.names import DEFAULT_REGIONS

UPLOAD_CHUNK = 8 << 20  # the largest chunk of a data upload a request carries (client, server and SDK agree)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELBUILDER_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".modelbuilder")
    db_url: str | None = None
    artifact_root: Path | None = None
    cache_dir: Path | None = None
    server_url: str | None = None
    token: str | None = None
    regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    prices_file: Path | None = None  # JSON or YAML: {size: price per hour in USD} overriding list prices
    # Set to 1 where the network cannot be reached, so pretrained weights are not even tried online.
    offline: bool = False
    # The niceness of training processes (0-19; 0 keeps the agent's). Training takes every core it is
    # given; at the same priority the kernel would share them evenly with the server on the same host,
    # and each API request would queue behind training. At 10 the server gets the CPU when it needs it,
    # and training still gets every cycle the server leaves idle (docs/RELIABILITY.md, the load drill).
    # The largest data asset upload (the packed zip, and the images unpacked from it), in MiB.
    max_upload_mb: int = Field(default=8192, ge=1)
    worker_nice: int = Field(default=10, ge=0, le=19)

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def store_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.resolved_home / 'modelbuilder.db'}"

    @property
    def artifacts(self) -> Path:
        return (self.artifact_root or self.resolved_home / "artifacts").expanduser().resolve()

    @property
    def decoded_cache(self) -> Path:
        return (self.cache_dir or self.resolved_home / "cache").expanduser().resolve()

    @property
    def context_file(self) -> Path:
        """Where `workspace use NAME` remembers the default workspace."""
        return self.resolved_home / "context.json"


def get_settings() -> Settings:
    """Fresh settings from the environment (cheap; not cached so tests can change the environment)."""
    try:
        return Settings()
    except ValidationError as exc:  # a MODELBUILDER_* variable out of shape: one line, not a traceback
        first = exc.errors()[0]
        name = f"MODELBUILDER_{str(first['loc'][0]).upper()}" if first.get("loc") else "a MODELBUILDER_ variable"
        raise InvalidInput(f"{name}={str(first.get('input'))[:80]!r} is not valid ({first['msg'].lower()}).",
                           f"set {name} to a valid value, or unset it.") from None


def set_home(path: str | os.PathLike[str]) -> None:
    os.environ["MODELBUILDER_HOME"] = str(Path(path).expanduser().resolve())


def _local_server(settings: Settings) -> dict | None:
    """`<home>/server.json` of a live `modelbuilder server` started with this home, if there is one."""
    try:
        info = json.loads((settings.resolved_home / "server.json").read_text())
        os.kill(int(info["pid"]), 0)
        return dict(info)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_server(settings: Settings | None = None) -> str | None:
    """The URL of the portal for this store: MODELBUILDER_SERVER_URL, else a live local server's."""
    settings = settings or get_settings()
    if settings.server_url:
        return settings.server_url.rstrip("/")
    info = _local_server(settings)
    return str(info["url"]).rstrip("/") if info else None


def server_runs_agent(settings: Settings | None = None) -> bool:
    """Whether a server executes queued runs (a configured one is taken to; a local one says so)."""
    settings = settings or get_settings()
    if settings.server_url:
        return True
    info = _local_server(settings)
    return bool(info and info.get("agent", True))


def run_url(base: str, workspace: str, run_id: str) -> str:
    return f"{base}/workspaces/{workspace}/runs/{run_id}"
