"""Join a cluster as an observer just long enough to copy its ledger.

Used by ``p2phpo status --json`` and ``p2phpo export --seed``: the observer
binds an ephemeral port, joins through the seed, and returns once its
ledger holds the study and has stopped growing (or ``timeout`` passed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from p2phpo.runtime.node import Node, NodeError, NodeOptions


def observer_options(seed: str, key_file: str | None, cluster: str = "default",
                     bind: str | None = None, profile: str = "local") -> NodeOptions:
    host = seed.rsplit(":", 1)[0].strip("[]")
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    default_bind = ("[::1]:0" if host == "::1" else "127.0.0.1:0") if loopback else "0.0.0.0:0"
    return NodeOptions(seeds=[seed], bind=bind or default_bind, key_file=key_file,
                       cluster=cluster, profile=profile, observer=True)


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


async def observe(seed: str, key_file: str | None = None, cluster: str = "default",
                  timeout: float = 10.0) -> Node:
    """A started observer node whose ledger has caught up; call ``stop_observer`` after."""
    node = Node(observer_options(seed, key_file, cluster))
    node.setup()
    assert node.rt is not None
    await node.rt.start(node._seeds)
    node.addr = node.rt.addr
    await settle(node, timeout)
    if node.ledger.study is None:
        await stop_observer(node)
        raise NodeError(f"no study arrived from {seed} within {timeout:g} s; is a node running "
                        "there with the same key and --cluster?")
    return node


async def stop_observer(node: Node) -> None:
    if node.rt is not None:
        await node.rt.stop(leave=True)


async def fetch_ledger(seed: str, key_file: str | None = None, cluster: str = "default") -> Any:
    node = await observe(seed, key_file, cluster)
    await stop_observer(node)
    return node.ledger
