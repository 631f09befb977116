"""The ``p2phpo`` command line (typer)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from p2phpo import __version__
from p2phpo.commands.export import export
from p2phpo.commands.keygen import keygen
from p2phpo.commands.node import node, status
from p2phpo.commands.plot import plot
from p2phpo.commands.simulate import simulate
from p2phpo.commands.train import train


class _TidyGroup(TyperGroup):
    """The root command; tidies every command's help before it parses anything."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _tidy_help(self, "p2phpo")
        return super().main(*args, **kwargs)


app = typer.Typer(cls=_TidyGroup, no_args_is_help=True, add_completion=False,
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
app.command("plot")(plot)
app.command("simulate")(simulate)


# Help shows what to type, not Python types: no "<bool>" after a flag (or --help),
# "HOST:PORT" rather than "<list[str]>".
_METAVARS = {"seed": "HOST:PORT", "bind": "HOST:PORT", "advertise": "HOST:PORT",
             "state_dir": "DIR", "data_dir": "DIR", "study": "FILE", "key_file": "FILE",
             "out": "FILE", "storage": "URL", "fmt": "FORMAT", "cluster": "NAME",
             "profile": "PROFILE", "log_level": "LEVEL", "params": "JSON", "trial": "TRIAL",
             "dataset": "NAME|PATH", "timeout": "SECONDS", "grace": "SECONDS",
             "scenario": "SCENARIO"}
_BY_TYPE = {"int": "N", "float": "NUMBER", "str": "TEXT", "path": "PATH"}


def _type_name(param: Any, ctx: Any) -> str:
    """``int``/``float``/``str``/``path``/...: typer's shown type where it has one (newer
    typer), else click's own type name (older typer, e.g. 0.12-0.15)."""
    shown = getattr(param, "display_type", None)
    if shown is not None:
        kind = str(shown(ctx)).strip("<>").removeprefix("list[").split()[0]
        return kind.removesuffix("]")
    name = getattr(getattr(param, "type", None), "name", "") or ""
    return {"integer": "int", "text": "str"}.get(name, name)


def _tidy_help(command: Any, name: str) -> None:
    ctx = typer.Context(command, info_name=name)
    params = list(command.params)
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
            continue
        if param.metavar is not None:
            continue
        kind = _type_name(param, ctx)
        if param.name in _METAVARS and not (param.name == "seed" and kind == "int"):
            param.metavar = _METAVARS[param.name]
        elif kind in _BY_TYPE:
            param.metavar = _BY_TYPE[kind]
    for sub_name, sub in getattr(command, "commands", {}).items():
        _tidy_help(sub, sub_name)


def main() -> None:
    app(prog_name="p2phpo")
