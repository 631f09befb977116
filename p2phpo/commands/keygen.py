"""``p2phpo keygen``: make a 32-byte cluster key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2phpo.keys import KeyFileError, generate_key, write_key_file


def keygen(
    *,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the key to this file (mode 0600) instead of stdout."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key file.")] = False,
) -> None:
    """Generate a cluster key; share it with every node via --key-file or P2PHPO_KEY."""
    if out is None:
        typer.echo(generate_key().hex())
        return
    try:
        write_key_file(out, force=force)
    except KeyFileError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote a new cluster key to {out}", err=True)
