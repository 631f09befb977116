"""``p2phpo export``: every trial of a ledger as csv, jsonl, json or an Optuna study."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from p2phpo.core.ledger import Ledger
from p2phpo.export import FORMATS, ExportError, write_optuna, write_rows
from p2phpo.runtime.udp import run as run_loop
from p2phpo.storage import StorageError, read_state
from p2phpo.ui.errors import fail, note
from p2phpo.ui.snapshot import default_state_dir


class _UserError(Exception):
    pass


def _fail(message: str) -> typer.Exit:
    fail(message)
    return typer.Exit(2)


def _note(message: str) -> None:
    note(message)


def _ledger_from_dir(state_dir: Path) -> Ledger:
    root = state_dir.expanduser()
    if root.is_file():
        raise _UserError(f"--state-dir {root} is a file, not a folder; point it at a node's state "
                         "dir (the folder that holds ledger.log)")
    if not root.is_dir():
        raise _UserError(f"state dir {root} does not exist; point --state-dir at a node's state dir")
    try:
        snap = read_state(root)
    except StorageError as exc:
        raise _UserError(str(exc)) from None
    if snap.torn_bytes:
        _note(f"note: skipped {snap.torn_bytes} bytes at the end of {root}/ledger.log "
              "(a record being written, or a torn tail)")
    if snap.damaged_records:
        _note(f"note: skipped {snap.damaged_records} damaged record(s) in {root}/ledger.log; "
              "the node repairs them from its peers when it next starts")
    return snap.ledger


def _ledger_from_seed(seed: str, key_file: Path | None, cluster: str = "default",
                      insecure: bool = False, timeout: float = 10.0) -> Ledger:
    try:
        fetch = importlib.import_module("p2phpo.runtime.fetch").fetch_ledger
    except (ImportError, AttributeError):
        raise _UserError("export --seed needs a running node; not available yet") from None
    from p2phpo.commands.node_options import load_key
    from p2phpo.runtime.node import NodeError

    try:
        keyring = load_key(key_file)
    except NodeError as exc:
        raise _UserError(str(exc)) from None
    try:
        result: Any = fetch(seed, keyring=keyring, cluster=cluster, insecure=insecure,
                            timeout=timeout)
        if inspect.isawaitable(result):
            result = run_loop(result)
    except Exception as exc:  # network, key and protocol errors all end the command
        raise _UserError(f"could not fetch the ledger from {seed}: {exc}") from None
    if not isinstance(result, Ledger):
        result = getattr(result, "ledger", result)
    if not isinstance(result, Ledger):
        raise _UserError(f"could not fetch the ledger from {seed}: no ledger came back")
    return result


def _write(ledger: Ledger, fmt: str, out: Path | None, include_all: bool) -> int:
    if out is None:
        return write_rows(ledger, fmt, sys.stdout, include_all)
    try:
        with open(out, "w", encoding="utf-8", newline="") as f:
            return write_rows(ledger, fmt, f, include_all)
    except OSError as exc:
        raise _UserError(f"cannot write {out}: {exc.strerror}") from None


def export(
    *,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="A node's state dir (read-only; safe while it runs). "
                     "Default: $XDG_STATE_HOME/p2phpo or ~/.local/state/p2phpo."),
    ] = None,
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
    seed: Annotated[
        str | None,
        typer.Option("--seed", help="Fetch the ledger from a running node at HOST:PORT "
                     "instead of reading a state dir."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Cluster key file, for --seed (or set P2PHPO_KEY).")
    ] = None,
    include_all: Annotated[
        bool, typer.Option("--all", help="Also export SUPERSEDED trials (claims that lost "
                           "their slot to another node and never trained).")
    ] = False,
    cluster: Annotated[str, typer.Option("--cluster", help="Cluster label, for --seed.")] = "default",
    insecure: Annotated[
        bool, typer.Option("--insecure", help="For --seed: fetch from a cluster that runs "
                           "without a key on another machine.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="For --seed: seconds to wait for the ledger.")
    ] = 10.0,
) -> None:
    """Export the trials (params, state, reports, result, node, duration)."""
    try:
        _export(state_dir, fmt.lower(), storage, out, seed, key_file,
                (cluster, insecure, timeout), include_all)
    except (_UserError, ExportError) as exc:
        raise _fail(str(exc)) from None


def _export(state_dir: Path | None, fmt: str, storage: str | None, out: Path | None,
            seed: str | None, key_file: Path | None,
            remote: tuple[str, bool, float] = ("default", False, 10.0),
            include_all: bool = False) -> None:
    if fmt not in FORMATS:
        raise _UserError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "optuna" and not storage:
        raise _UserError("--format optuna needs --storage URL, e.g. --storage sqlite:///trials.db")
    if seed is not None and state_dir is not None:
        raise _UserError("give either --state-dir or --seed, not both")
    if seed is not None:
        ledger = _ledger_from_seed(seed, key_file, *remote)
    else:
        ledger = _ledger_from_dir(state_dir or default_state_dir())
    if fmt == "optuna":
        name, count = write_optuna(ledger, storage or "", include_all=include_all)
        _note(f"wrote {count} trials to Optuna study {name!r} in {storage}")
        return
    count = _write(ledger, fmt, out, include_all)
    if out is not None:
        _note(f"wrote {count} trials to {out}")
