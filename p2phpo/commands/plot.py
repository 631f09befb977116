"""``p2phpo plot``: draw a study's history, curves, parameters and importance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2phpo.commands.ledger_source import (
    ClusterOption,
    InsecureOption,
    KeyFileOption,
    SeedOption,
    StateDirOption,
    TimeoutOption,
    UserError,
    load_ledger,
)
from p2phpo.ui.errors import fail, note


def plot(
    *,
    out: Annotated[Path, typer.Option("--out", help="The picture to write: .png, .svg or .html.")],
    state_dir: StateDirOption = None,
    seed: SeedOption = None,
    key_file: KeyFileOption = None,
    cluster: ClusterOption = "default",
    insecure: InsecureOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Draw the study: optimization history, learning curves, parallel coordinates, importance."""
    from p2phpo.plot import SUFFIXES, PlotError, draw, plot_data

    try:
        if out.suffix.lower() not in SUFFIXES:
            raise UserError(f"--out must end in {', '.join(SUFFIXES)}, got {out.name!r}")
        ledger = load_ledger(state_dir, seed, key_file, cluster, insecure, timeout)
        if ledger.study is None and not ledger.trials():
            raise UserError("the ledger holds no study yet; nothing to plot")
        data = plot_data(ledger)
        draw(data, out)
    except (UserError, PlotError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    note(f"wrote {out} ({data.n_trials} trials)")
