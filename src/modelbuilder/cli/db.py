"""`modelbuilder db ...`: the store's schema revision, and upgrading it after a new modelbuilder."""

from __future__ import annotations

import typer

from modelbuilder.core import store

db_app = typer.Typer(help="The store's schema (SQLite under --home, or MODELBUILDER_DB_URL).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Bring the store's schema to the newest revision (idempotent; run it while nothing else writes)."""
    before, after = store.upgrade()
    typer.echo(f"store schema: {before or 'none'} -> {after}")


@db_app.command("current")
def current() -> None:
    """Print the store's schema revision and the newest this modelbuilder knows (changes nothing)."""
    revision, head = store.current_revision(), store.head_revision()
    if revision == head:
        note = "up to date"
    elif revision is None:
        note = "no schema yet; the first command that uses the store creates it"
    else:
        note = f"this modelbuilder expects {head}; 'modelbuilder db upgrade' brings an older store up to date"
    typer.echo(f"store schema: {revision or 'none'} ({note})")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
