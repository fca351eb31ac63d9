"""What the commands share: the one services object of a command, the workspace it acts in, options, output.

A command holds one `core.services.Services` for its duration (`services()`): the store is opened when
first used and closed when the command ends. A command that a client of a remote server sends through the
REST API takes `faces()` instead: the same services, and the API client when there is a server to ask.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelbuilder.cli.console import console, err_console
from modelbuilder.core.services import Services
from modelbuilder.sdk import workspaces
from modelbuilder.sdk.client import Client

WORKSPACE_HELP = (
    "Workspace to act in. Default: the one chosen with 'modelbuilder workspace use', else 'default' "
    "(made on first use with its local compute 'local', size auto, as 'modelbuilder train' does)."
)
WorkspaceOption = Annotated[str | None, typer.Option("--workspace", "-w", help=WORKSPACE_HELP, show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")]


def token_option(help_text: str) -> Any:
    """The --token option of a command that starts a server, read from MODELBUILDER_TOKEN when not given."""
    return typer.Option(envvar="MODELBUILDER_TOKEN", show_envvar=True, show_default=False, help=help_text)


_notes: list[str] = []  # said on stderr once the command went well (an error stays one line)


@contextmanager
def services() -> Iterator[Services]:
    """The command's services over the store of `--home` / MODELBUILDER_HOME / MODELBUILDER_DB_URL."""
    _notes.clear()
    with Services() as opened:
        yield opened
    for note in _notes:
        err_console.print(f"[dim]{escape(note)}[/]", highlight=False)
    _notes.clear()


@contextmanager
def faces() -> Iterator[tuple[Services, Client | None]]:
    """The command's services and, for a client of a remote server (`sdk.client.remote_server`), its API
    client: the sdk then goes through the server and this home's store is never opened."""
    with services() as s:
        client = Client.of(s.settings)
        try:
            yield s, client
        finally:
            if client is not None:
                client.close()


def workspace_in_use(services: Services, name: str | None, client: Client | None = None) -> str:
    """The workspace a command acts in (see WORKSPACE_HELP); locally `default` is made when it is missing."""
    resolved, made = workspaces.in_use(services, name, client)
    if made is not None:
        _notes.append(f"Made workspace '{resolved}' with the local compute '{made.name}' (size {made.size}, "
                      f"{made.state}).")
    return resolved


def plain(entity: Any) -> dict[str, Any]:
    """An entity (a dataclass) as a JSON-ready dict."""
    return dataclasses.asdict(entity)


def echo_json(data: Any) -> None:
    """JSON on stdout, datetimes in ISO 8601 (never through Rich, which would wrap and colour it)."""
    typer.echo(json.dumps(data, indent=2, default=_iso))


def out(renderable: object) -> None:
    """Rich output on stdout (markup on, no automatic highlighting of numbers and names)."""
    console.print(renderable, highlight=False)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def when(value: datetime | None) -> str:
    """A timestamp for tables: local time to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


STATE_STYLES = {
    "Succeeded": "green",
    "Completed": "green",
    "Failed": "bold red",
    "Canceled": "yellow",
    "Preempted": "yellow",
    "Creating": "cyan",
    "Deleting": "cyan",
    "Queued": "cyan",
    "Preparing": "cyan",
    "Running": "blue",
    "Finalizing": "blue",
}


def styled(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'white')}]{state}[/]"
