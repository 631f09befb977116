"""``p2phpo export``: every trial of a ledger as csv, jsonl, json or an Optuna study."""

from __future__ import annotations

import sys
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
from p2phpo.core.ledger import Ledger
from p2phpo.export import FORMATS, ExportError, write_optuna, write_rows
from p2phpo.ui.errors import fail, note


def _fail(message: str) -> typer.Exit:
    fail(message)
    return typer.Exit(2)


def _write(ledger: Ledger, fmt: str, out: Path | None, include_all: bool) -> int:
    if out is None:
        return write_rows(ledger, fmt, sys.stdout, include_all)
    try:
        with open(out, "w", encoding="utf-8", newline="") as f:
            return write_rows(ledger, fmt, f, include_all)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None


def export(
    *,
    state_dir: StateDirOption = None,
    fmt: Annotated[
        str, typer.Option("--format", help="csv | jsonl | json | optuna.")
    ] = "csv",
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL for --format optuna, "
                     "e.g. sqlite:///trials.db."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    seed: SeedOption = None,
    key_file: KeyFileOption = None,
    include_all: Annotated[
        bool, typer.Option("--all", help="Also export SUPERSEDED trials (claims that lost "
                           "their slot to another node and never trained).")
    ] = False,
    cluster: ClusterOption = "default",
    insecure: InsecureOption = False,
    timeout: TimeoutOption = 10.0,
) -> None:
    """Export the trials (params, state, reports, result, node, duration)."""
    try:
        _export(state_dir, fmt.lower(), storage, out, seed, key_file,
                (cluster, insecure, timeout), include_all)
    except (UserError, ExportError) as exc:
        raise _fail(str(exc)) from None


def _export(state_dir: Path | None, fmt: str, storage: str | None, out: Path | None,
            seed: str | None, key_file: Path | None,
            remote: tuple[str, bool, float] = ("default", False, 10.0),
            include_all: bool = False) -> None:
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "optuna" and not storage:
        raise UserError("--format optuna needs --storage URL, e.g. --storage sqlite:///trials.db")
    ledger = load_ledger(state_dir, seed, key_file, *remote)
    if fmt == "optuna":
        name, count = write_optuna(ledger, storage or "", include_all=include_all)
        note(f"wrote {count} trials to Optuna study {name!r} in {storage}")
        return
    count = _write(ledger, fmt, out, include_all)
    if out is not None:
        note(f"wrote {count} trials to {out}")
