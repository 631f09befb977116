"""Join a cluster as an observer just long enough to copy its ledger.

Used by ``p2phpo status --json`` and ``p2phpo export --seed``: the observer
binds an ephemeral port, joins through the seed, and returns once its
ledger holds the study and has stopped growing (or ``timeout`` passed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from typing import Any

from p2phpo.core.joinwatch import explain
from p2phpo.core.wire import Keyring
from p2phpo.runtime.node import DEFAULT_PORT, Node, NodeError, NodeOptions
from p2phpo.runtime.resolve import ResolveError, resolve
from p2phpo.runtime.udp import RuntimeConfigError, parse_peer


def observer_options(seed: str, keyring: Keyring | None, cluster: str = "default",
                     bind: str | None = None, profile: str = "local",
                     insecure: bool = False) -> NodeOptions:
    """Options of an observer of ``seed``; the bind is chosen by :func:`observe` once
    the seed's name is resolved (loopback for a seed on this machine)."""
    return NodeOptions(seeds=[seed], bind=bind or "127.0.0.1:0", keyring=keyring,
                       cluster=cluster, profile=profile, observer=True, insecure=insecure)


async def _observer_bind(seed: str, keyed: bool, insecure: bool) -> str:
    """An ephemeral bind that can reach ``seed``: its loopback if it is on this machine."""
    try:
        host, port = parse_peer(seed, DEFAULT_PORT)
        addr = (await resolve(host, port))[0]
    except RuntimeConfigError as exc:
        raise NodeError(f"--seed {seed}: {str(exc).rstrip('.')}") from None
    except ResolveError as exc:
        raise NodeError(f"cannot reach --seed {seed}: {exc}") from None
    ip = ipaddress.ip_address(addr[0])
    if ip.is_loopback:
        return f"[{ip}]:0" if ip.version == 6 else f"{ip}:0"
    if not keyed and not insecure:
        raise NodeError(
            f"{seed} is not on this machine, and watching it needs the cluster's key: pass "
            "--key-file (or set P2PHPO_KEY), or --insecure if the cluster runs without a key")
    return "[::]:0" if ip.version == 6 else "0.0.0.0:0"


async def settle(node: Node, timeout: float, quiet: float = 0.6) -> None:
    """Wait until the ledger has a study and no new entry arrived for ``quiet`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last = (-1, 0)
    stable_since = loop.time()
    while loop.time() < end:
        await asyncio.sleep(0.1)
        state = (len(node.ledger), len(node.rt.core.members()) if node.rt else 0)
        if state != last:
            last, stable_since = state, loop.time()
        elif node.ledger.study is not None and loop.time() - stable_since >= quiet:
            return


async def observe(seed: str, keyring: Keyring | None = None, cluster: str = "default",
                  timeout: float = 10.0, insecure: bool = False) -> Node:
    """A started observer node whose ledger has caught up; call ``stop_observer`` after."""
    keyed = keyring is not None
    bind = await _observer_bind(seed, keyed, insecure)
    node = Node(observer_options(seed, keyring, cluster, bind=bind, insecure=insecure))
    node.setup()
    assert node.rt is not None
    node.rt.core.want_health = True  # the seed's own counters, over the sealed TCP session
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    node.make_driver(t0)
    try:
        await node.rt.start(node._seeds)
    except RuntimeConfigError as exc:
        raise NodeError(str(exc).rstrip(".")) from None
    node.addr = node.rt.addr
    await settle(node, timeout)
    if node.ledger.study is None:
        why = "; ".join(explain(s, loop.time() - t0) for s in node.rt.seed_states())
        why = why or "; ".join(node.rt.seed_errors().values())
        await stop_observer(node)
        raise NodeError(f"no study arrived from {seed} within {timeout:g} s: {why}")
    end = t0 + timeout
    while seed_health(node) is None and loop.time() < end:
        await asyncio.sleep(0.1)
    return node


def seed_health(node: Node) -> tuple[str, dict[str, Any]] | None:
    """(the seed as the user named it, its own health) once a push-pull brought it."""
    if node.rt is None:
        return None
    core = node.rt.core
    for addr, nid in core.seed_nodes.items():
        got = core.peer_health.get(nid)
        if got is not None:
            return node.rt.seeds.name_of(addr), got[1]
    return None


def observed(node: Node) -> Any:
    """The observer's snapshot with the seed's own health (``status --seed``)."""
    return dataclasses.replace(node.snapshot(), remote=seed_health(node))


async def stop_observer(node: Node) -> None:
    if node.rt is not None:
        await node.rt.stop(leave=True)


async def fetch_ledger(seed: str, keyring: Keyring | None = None, cluster: str = "default",
                       insecure: bool = False, timeout: float = 10.0) -> Any:
    node = await observe(seed, keyring, cluster, timeout, insecure)
    await stop_observer(node)
    return node.ledger
