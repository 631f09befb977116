"""``p2phpo plot``: draw a study's history, curves, parameters and importance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2phpo.commands.export import _ledger_from_dir, _ledger_from_seed, _UserError
from p2phpo.ui.errors import fail, note
from p2phpo.ui.snapshot import default_state_dir


def plot(
    *,
    out: Annotated[Path, typer.Option("--out", help="The picture to write: .png, .svg or .html.")],
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="A node's state dir (read-only; safe while it runs). "
                     "Default: $XDG_STATE_HOME/p2phpo or ~/.local/state/p2phpo."),
    ] = None,
    seed: Annotated[
        str | None, typer.Option("--seed", help="Fetch the ledger from a running node at "
                                 "HOST:PORT instead of reading a state dir."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Cluster key file, for --seed (or set "
                                  "P2PHPO_KEY).")
    ] = None,
    cluster: Annotated[str, typer.Option("--cluster", help="Cluster label, for --seed.")] = "default",
    insecure: Annotated[
        bool, typer.Option("--insecure", help="For --seed: fetch from a cluster that runs "
                           "without a key on another machine.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="For --seed: seconds to wait for the ledger.")
    ] = 10.0,
) -> None:
    """Draw the study: optimization history, learning curves, parallel coordinates, importance."""
    from p2phpo.plot import SUFFIXES, PlotError, draw, plot_data

    try:
        if out.suffix.lower() not in SUFFIXES:
            raise _UserError(f"--out must end in {', '.join(SUFFIXES)}, got {out.name!r}")
        if seed is not None and state_dir is not None:
            raise _UserError("give either --state-dir or --seed, not both")
        if seed is not None:
            ledger = _ledger_from_seed(seed, key_file, cluster, insecure, timeout)
        else:
            ledger = _ledger_from_dir(state_dir or default_state_dir())
        if ledger.study is None and not ledger.trials():
            raise _UserError("the ledger holds no study yet; nothing to plot")
        data = plot_data(ledger)
        draw(data, out)
    except (_UserError, PlotError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    note(f"wrote {out} ({data.n_trials} trials)")
