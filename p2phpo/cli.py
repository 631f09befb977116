"""The ``p2phpo`` command line (typer)."""

from __future__ import annotations

from typing import Annotated

import typer

from p2phpo import __version__
from p2phpo.commands.export import export
from p2phpo.commands.keygen import keygen
from p2phpo.commands.node import node, status
from p2phpo.commands.simulate import simulate
from p2phpo.commands.train import train

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Peer-to-peer hyperparameter search with no central coordinator.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"p2phpo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Peer-to-peer hyperparameter search with no central coordinator."""


app.command("node")(node)
app.command("status")(status)
app.command("export")(export)
app.command("keygen")(keygen)
app.command("train")(train)
app.command("simulate")(simulate)


def main() -> None:
    app()
