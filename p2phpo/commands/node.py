"""``p2phpo node`` and ``p2phpo status``: run a node, or watch a cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from p2phpo.commands.node_options import load_key, node_options
from p2phpo.runtime.node import Node, NodeError, NodeOptions
from p2phpo.runtime.resolve import env_seeds
from p2phpo.runtime.udp import run as run_loop
from p2phpo.ui.errors import fail


def node(
    study: Annotated[Path | None, typer.Option(help="Study file (TOML). Without it and without --seed: the built-in MNIST MLP study.")] = None,
    seed: Annotated[list[str] | None, typer.Option(help="A peer to join, HOST:PORT or \\[v6addr]:PORT; HOST may be a name (repeatable; default: the comma list in P2PHPO_SEEDS).")] = None,
    bind: Annotated[str, typer.Option(help="Address to listen on (UDP and TCP, same port); HOST may be a name.")] = "127.0.0.1:7946",
    advertise: Annotated[str | None, typer.Option(help="HOST:PORT peers should use to reach this node (NAT, 0.0.0.0 binds); HOST may be a name.")] = None,
    cluster: Annotated[str, typer.Option(help="Cluster label; packets of other clusters are dropped.")] = "default",
    state_dir: Annotated[Path | None, typer.Option(help="Where the node keeps its id and ledger (default ~/.local/state/p2phpo).")] = None,
    key_file: Annotated[str | None, typer.Option(help="Cluster key file (p2phpo keygen); or set P2PHPO_KEY.")] = None,
    insecure: Annotated[bool, typer.Option(help="Allow a non-loopback bind without a key.")] = False,
    profile: Annotated[str, typer.Option(help="Failure-detector timings: lan, local or wan.")] = "lan",
    data_dir: Annotated[str | None, typer.Option(help="Folder with the dataset files.")] = None,
    ui: Annotated[bool | None, typer.Option("--ui/--no-ui", help="Live view (default: when stdout is a terminal).")] = None,
    linger: Annotated[bool, typer.Option(help="Keep serving the ledger after the study is done.")] = False,
    grace: Annotated[float, typer.Option(help="Seconds a finished node stays reachable at most while peers that ran the study are not done (a crashed one restarting learns the study is over).")] = 30.0,
    log_level: Annotated[str, typer.Option(help="node.log level: debug, info, warning.")] = "info",
    metrics: Annotated[str | None, typer.Option(metavar="[HOST:]PORT", help="Serve this node's health in the Prometheus text format (loopback unless HOST is given; needs prometheus_client).")] = None,
    batch: Annotated[int | None, typer.Option(metavar="K", help="Train up to K trials at once in one worker (packed into one program when they share batch size, depth and activation); default: the study's [study] batch, else 1.")] = None,
    allow_objective: Annotated[list[str] | None, typer.Option(help="Run this objective (package.module:function) if the cluster's study names it; without it a joiner runs only built-in objectives, its own --study's, or the one its state dir already ran (repeatable).")] = None,
) -> None:
    """Run a node: join the cluster, run trials, gossip results."""
    try:
        opts = node_options(study=study, seeds=list(seed or []) or env_seeds(), bind=bind,
                            advertise=advertise, cluster=cluster, state_dir=state_dir,
                            key_file=key_file, insecure=insecure, profile=profile,
                            data_dir=data_dir, linger=linger, grace=grace, log_level=log_level,
                            metrics=metrics, allow_objectives=list(allow_objective or []),
                            batch=batch)
    except NodeError as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    code = run_loop(_run_node(opts, ui, log_level))
    raise typer.Exit(code)


async def _run_node(opts: NodeOptions, ui: bool | None, log_level: str) -> int:
    from rich.console import Console

    from p2phpo.ui.live import run_events, run_live

    n = Node(opts)
    console = Console()
    live = console.is_terminal if ui is None else ui
    try:
        n.setup()
    except NodeError as exc:
        fail(str(exc))
        return 2
    stop_view = asyncio.Event()
    runner = asyncio.create_task(n.run())
    started = asyncio.create_task(n.started.wait())
    await asyncio.wait([runner, started], return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        started.cancel()
        return _finish(n, runner)
    view = asyncio.create_task(
        (run_live if live else run_events)(n.snapshot, stop_view, 0.5, console=console))
    await asyncio.wait([runner])
    stop_view.set()
    await view
    return _finish(n, runner)


def _finish(n: Node, runner: asyncio.Task) -> int:
    exc = runner.exception() if runner.done() and not runner.cancelled() else None
    if isinstance(exc, NodeError):
        fail(str(exc))
        return 2
    if exc is not None:
        raise exc
    if n.error:
        fail(n.error)
    return n.exit_code


def status(
    seed: Annotated[str | None, typer.Option(help="A node of the cluster, HOST:PORT (HOST may be a name; default: the first of P2PHPO_SEEDS).")] = None,
    key_file: Annotated[str | None, typer.Option(help="Cluster key file; or set P2PHPO_KEY.")] = None,
    cluster: Annotated[str, typer.Option(help="Cluster label.")] = "default",
    insecure: Annotated[bool, typer.Option(help="Watch a cluster that runs without a key on another machine.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON snapshot and exit.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Print the view once and exit.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster's ledger.")] = 10.0,
) -> None:
    """Watch a cluster as an observer (runs no trials)."""
    seed = seed or next(iter(env_seeds()), None)
    if seed is None:
        fail("status needs --seed HOST:PORT (a node of the cluster) or P2PHPO_SEEDS")
        raise typer.Exit(2)
    code = run_loop(_status(seed, key_file, cluster, as_json, once, timeout, insecure))
    raise typer.Exit(code)


async def _status(seed: str, key_file: str | None, cluster: str, as_json: bool, once: bool,
                  timeout: float, insecure: bool = False) -> int:
    from rich.console import Console

    from p2phpo.runtime.fetch import observe, observed, stop_observer
    from p2phpo.ui.live import run_live
    from p2phpo.ui.render import render
    from p2phpo.ui.snapshot import to_status_json

    try:
        n = await observe(seed, load_key(key_file), cluster, timeout, insecure)
    except NodeError as exc:
        fail(str(exc))
        return 2
    try:
        if as_json:
            print(json.dumps(to_status_json(observed(n)), indent=1))
            return 0
        if once:
            Console().print(render(observed(n)))
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await run_live(lambda: observed(n), stop, 0.5, console=Console())
        return 0
    finally:
        await stop_observer(n)
