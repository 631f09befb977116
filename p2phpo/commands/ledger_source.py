"""Where ``export`` and ``plot`` read a ledger from: a state dir, or a running node (--seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from p2phpo.core.ledger import Ledger
from p2phpo.storage import StorageError, read_state
from p2phpo.ui.errors import note
from p2phpo.ui.snapshot import default_state_dir


class UserError(Exception):
    """A mistake in the command line or its inputs: one sentence, exit 2."""


StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="A node's state dir (read-only; safe while it runs). "
                 "Default: $XDG_STATE_HOME/p2phpo or ~/.local/state/p2phpo."),
]
SeedOption = Annotated[
    str | None,
    typer.Option("--seed", help="Fetch the ledger from a running node at HOST:PORT "
                 "instead of reading a state dir."),
]
KeyFileOption = Annotated[
    Path | None, typer.Option("--key-file", help="Cluster key file, for --seed (or set P2PHPO_KEY).")
]
ClusterOption = Annotated[str, typer.Option("--cluster", help="Cluster label, for --seed.")]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="For --seed: fetch from a cluster that runs "
                       "without a key on another machine.")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="For --seed: seconds to wait for the ledger.")
]


def load_ledger(state_dir: Path | None, seed: str | None, key_file: Path | None,
                cluster: str = "default", insecure: bool = False,
                timeout: float = 10.0) -> Ledger:
    """The ledger of ``--seed`` (fetched) or of ``--state-dir`` (read, default dir if neither)."""
    if seed is not None and state_dir is not None:
        raise UserError("give either --state-dir or --seed, not both")
    if seed is not None:
        return ledger_from_seed(seed, key_file, cluster, insecure, timeout)
    return ledger_from_dir(state_dir or default_state_dir())


def ledger_from_dir(state_dir: Path) -> Ledger:
    root = state_dir.expanduser()
    if root.is_file():
        raise UserError(f"--state-dir {root} is a file, not a folder; point it at a node's state "
                        "dir (the folder that holds ledger.log)")
    if not root.is_dir():
        raise UserError(f"state dir {root} does not exist; point --state-dir at a node's state dir")
    try:
        snap = read_state(root)
    except StorageError as exc:
        raise UserError(str(exc)) from None
    if snap.torn_bytes:
        note(f"note: skipped {snap.torn_bytes} bytes at the end of {root}/ledger.log "
             "(a record being written, or a torn tail)")
    if snap.damaged_records:
        note(f"note: skipped {snap.damaged_records} damaged record(s) in {root}/ledger.log "
             f"({snap.unknown_records} entr{'y' if snap.unknown_records == 1 else 'ies'} unknown here: "
             "a trial they belong to shows as missing or RUNNING); the node repairs them from its "
             "peers when it next starts")
    return snap.ledger


def ledger_from_seed(seed: str, key_file: Path | None, cluster: str = "default",
                     insecure: bool = False, timeout: float = 10.0) -> Ledger:
    from p2phpo.commands.node_options import load_key
    from p2phpo.runtime.fetch import fetch_ledger
    from p2phpo.runtime.node import NodeError
    from p2phpo.runtime.udp import run as run_loop

    try:
        keyring = load_key(key_file)
    except NodeError as exc:
        raise UserError(str(exc)) from None
    try:
        result = run_loop(fetch_ledger(seed, keyring=keyring, cluster=cluster,
                                       insecure=insecure, timeout=timeout))
    except Exception as exc:  # network, key and protocol errors all end the command
        raise UserError(f"could not fetch the ledger from {seed}: {exc}") from None
    if not isinstance(result, Ledger):
        raise UserError(f"could not fetch the ledger from {seed}: no ledger came back")
    return result
