"""`modelbuilder agent`: run the scheduler on this host without the portal (e.g. on each GPU box of a
team that shares a PostgreSQL store)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from modelbuilder.backends import start_agent
from modelbuilder.cli._common import services
from modelbuilder.cli.console import console


def agent(
    kinds: Annotated[str | None, typer.Option(help="Compute kinds to serve, comma-separated (default: local, "
                                              "and ray where Ray is installed).", show_default=False)] = None,
    poll: Annotated[float, typer.Option(help="Seconds between scheduling passes.")] = 1.0,
) -> None:
    """Claim and run queued runs of this host's computes until stopped (Ctrl-C or SIGTERM)."""
    chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else None
    with services() as s:
        running = start_agent(s.store, kinds=chosen, poll_s=poll)
        console.print(f"Agent {running.owner} serving {', '.join(running.kinds)} computes; Ctrl-C to stop "
                      "(running workers finish on their own).", highlight=False)
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        while not stopped.wait(0.5):
            pass
        running.stop()


def register(app: typer.Typer) -> None:
    app.command()(agent)
