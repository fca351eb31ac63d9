"""Plumbing of the control-plane commands: one store per command, the services on it, shared options.

Commands import the control plane lazily (inside the command), so `modelbuilder --help` stays quick.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

if TYPE_CHECKING:
    from modelbuilder.core.store import Store

WORKSPACE_HELP = (
    "Workspace to act in. Default: the one chosen with 'modelbuilder workspace use', else 'default' "
    "(made on first use with its local compute 'local', size auto, as 'modelbuilder train' does)."
)
WorkspaceOption = Annotated[str | None, typer.Option("--workspace", "-w", help=WORKSPACE_HELP, show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON to stdout.")]


class Services:
    """The control-plane services of one command's store (`core.services.Services`, imported only when a
    command runs), and the notes the command says on success."""

    def __init__(self, store: Store) -> None:
        from modelbuilder.core.services import Services as CoreServices

        self.core = CoreServices(store=store)
        self.notes: list[str] = []  # said on stderr once the command went well (an error stays one line)

    def __getattr__(self, name: str) -> Any:  # store, workspaces, computes, runs, leases, artifacts
        return getattr(self.core, name)

    def workspace(self, name: str | None) -> str:
        """The workspace a command acts in (see WORKSPACE_HELP); `default` is made when it is missing."""
        from modelbuilder import names
        from modelbuilder.core.workspace import DEFAULT_WORKSPACE
        from modelbuilder.errors import NotFound

        resolved = self.workspaces.resolve(names.workspace_name(name) if name is not None else None)
        if resolved == DEFAULT_WORKSPACE:
            try:
                self.workspaces.get(resolved)
            except NotFound:
                _, compute = self.workspaces.ensure_default()
                self.notes.append(f"Made workspace '{resolved}' with the local compute '{compute.name}' "
                                  f"(size {compute.size}, {compute.state}).")
        return resolved


@contextmanager
def services() -> Iterator[Services]:
    """Open the store (`--home` / MODELBUILDER_HOME / MODELBUILDER_DB_URL) for one command."""
    from modelbuilder.core.store import Store

    store = Store.open()
    opened = Services(store)
    try:
        yield opened
    finally:
        store.close()
    if opened.notes:
        from modelbuilder.cli.console import err_console

        for note in opened.notes:
            err_console.print(f"[dim]{escape(note)}[/]", highlight=False)


def plain(entity: Any) -> dict[str, Any]:
    """An entity (a dataclass) as a JSON-ready dict."""
    return dataclasses.asdict(entity)


def echo_json(data: Any) -> None:
    """JSON on stdout, datetimes in ISO 8601 (never through Rich, which would wrap and colour it)."""
    typer.echo(json.dumps(data, indent=2, default=_iso))


def out(renderable: object) -> None:
    """Rich output on stdout (markup on, no automatic highlighting of numbers and names)."""
    from modelbuilder.cli.console import console

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
