"""The `modelbuilder` command: thin adapters that read their options, call the application layer
(`modelbuilder.sdk`) or a service, and render the answer.

Every mistake a user can make surfaces as a `ModelBuilderError` (or the prediction runtime's
`PipelineError`) and is printed here as one line with its fix in the CLI's terms (`fixes.py`), exit
code 2, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from modelbuilder import __version__
from modelbuilder.cli import (
    agent,
    compute,
    data,
    db,
    experiment,
    export,
    models,
    predict,
    runs,
    serve,
    server,
    train,
    workspace,
)
from modelbuilder.cli.console import fail
from modelbuilder.cli.fixes import one_line
from modelbuilder.errors import ModelBuilderError
from modelbuilder.results.runtime import PipelineError

app = typer.Typer(
    name="modelbuilder",
    help="Train an image classifier from a folder of labeled images and get a ready-to-use result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelbuilder {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[Path | None, typer.Option("--home", help="State folder (default ~/.modelbuilder; "
                                              "or MODELBUILDER_HOME).", show_default=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    if home is not None:
        os.environ["MODELBUILDER_HOME"] = str(home.expanduser().resolve())


for commands in (train, predict, workspace, compute, experiment, runs, models, data, agent, db, server, serve,
                 export):
    commands.register(app)


def main() -> None:
    try:
        app()
    except ModelBuilderError as exc:
        fail(one_line(exc))
    except PipelineError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted.", code=130)
