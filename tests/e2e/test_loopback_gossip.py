"""Five real gossip runtimes on 127.0.0.1 with a shared key (AES-GCM, local profile)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from p2phpo.core.entries import Report
from p2phpo.core.ledger import Ledger
from p2phpo.core.messages import State
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Keyring
from p2phpo.runtime.udp import GossipRuntime, RuntimeConfigError, parse_hostport, run


async def wait_for(cond: Callable[[], bool], limit: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def states(rt: GossipRuntime) -> dict[int, State]:
    return {m.node: m.state for m in rt.core.members()}


async def scenario() -> None:
    ring = Keyring([os.urandom(32)])
    rts = [
        GossipRuntime.create(i, Ledger(), bind="127.0.0.1:0", keyring=ring, profile=LOCAL)
        for i in range(1, 6)
    ]
    seed = await rts[0].start()
    for rt in rts[1:]:
        await rt.start(seeds=[seed])
    intruder = GossipRuntime.create(
        99, Ledger(), bind="127.0.0.1:0", keyring=Keyring([os.urandom(32)]), profile=LOCAL
    )
    try:
        everyone = set(range(1, 6))
        assert await wait_for(lambda: all(set(states(rt)) == everyone for rt in rts), 20.0)
        await intruder.start(seeds=[seed])

        for rt in rts:
            node = rt.core.node_id
            entries = [
                rt.core.ledger.new(node, Report, wall=1.0, trial=(node, 1), step=s, value=0.1 * s)
                for s in range(3)
            ]
            rt.append_local(entries)
        assert await wait_for(lambda: all(len(rt.core.ledger) == 15 for rt in rts), 20.0)
        assert len({rt.core.ledger.vv_hash() for rt in rts}) == 1

        victim = rts[4]
        await victim.stop(leave=False)  # a crash: no LEAVE, no push-pull
        survivors = rts[:4]
        lo, hi = LOCAL.suspicion_bounds(5)
        bound = 5 * LOCAL.probe_interval + hi + 2.0  # a probe round, max suspicion, gossip
        assert await wait_for(
            lambda: all(states(rt)[5] == State.DEAD for rt in survivors), 2 * bound
        )

        assert all(99 not in states(rt) for rt in survivors)
        assert rts[0].counters()["dropped"]["bad_auth"] > 0
        assert 1 not in states(intruder)
    finally:
        await intruder.stop(leave=False)
        for rt in rts[:4]:
            await rt.stop()


def test_loopback_cluster_converges_detects_crash_and_rejects_wrong_key():
    run(scenario())


async def leave_scenario() -> None:
    rts = [GossipRuntime.create(i, Ledger(), profile=LOCAL) for i in (1, 2, 3)]  # no key: loopback
    seed = await rts[0].start()
    for rt in rts[1:]:
        await rt.start(seeds=[seed])
    try:
        assert await wait_for(lambda: all(len(states(rt)) == 3 for rt in rts), 20.0)
        node = rts[2].core.node_id
        rts[2].append_local([rts[2].core.ledger.new(node, Report, wall=1.0, trial=(3, 1), step=1, value=1.0)])
        await rts[2].stop()  # LEAVE plus a final push-pull
        assert all(len(rt.core.ledger) == 1 for rt in rts[:2]) or await wait_for(
            lambda: all(len(rt.core.ledger) == 1 for rt in rts[:2]), 5.0
        )
        assert await wait_for(lambda: all(states(rt)[3] == State.LEFT for rt in rts[:2]), 10.0)
    finally:
        for rt in rts[:2]:
            await rt.stop()


def test_graceful_stop_gossips_leave():
    run(leave_scenario())


def test_refuses_public_bind_without_key():
    with pytest.raises(RuntimeConfigError, match="without a cluster key"):
        GossipRuntime.create(1, Ledger(), bind="0.0.0.0:7946")
    GossipRuntime.create(1, Ledger(), bind="0.0.0.0:7946", insecure=True)


def test_parse_hostport():
    assert parse_hostport("10.0.0.1:7946") == ("10.0.0.1", 7946)
    assert parse_hostport("[::1]:9000") == ("::1", 9000)
    assert parse_hostport("example.org") == ("example.org", 7946)
    with pytest.raises(RuntimeConfigError):
        parse_hostport("host:notaport")
    with pytest.raises(RuntimeConfigError, match="has no host"):
        parse_hostport("7946")  # not the address 0.0.31.10


async def ipv6_scenario() -> None:
    a = GossipRuntime.create(1, Ledger(), bind="[::1]:0", profile=LOCAL)
    b = GossipRuntime.create(2, Ledger(), bind="[::1]:0", profile=LOCAL)
    seed = await a.start()
    await b.start(seeds=[seed])
    try:
        assert await wait_for(lambda: states(b).get(1) == State.ALIVE == states(a).get(2), 10.0)
        assert states(b)[2] == State.ALIVE
    finally:
        await b.stop()
        await a.stop()


def test_ipv6_loopback_bind():
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    run(ipv6_scenario())


async def tcp_abuse_scenario() -> None:
    rt = GossipRuntime.create(1, Ledger(), keyring=Keyring([os.urandom(32)]), profile=LOCAL)
    host, port = await rt.start()
    conns = []
    try:
        # A junk hello is rejected and counted.
        r, w = await asyncio.open_connection(host, port)
        w.write(b"\x01" + os.urandom(200))
        await w.drain()
        assert await r.read(100) == b""  # the server hangs up
        w.close()
        assert sum(rt.counters()["dropped"].values()) == 1
        # Idle unauthenticated connections are capped: the oldest make room.
        for _ in range(rt.tcp.preauth_cap + 4):
            conns.append(await asyncio.open_connection(host, port))
        assert await wait_for(lambda: rt.counters()["tcp_evicted"] == 4, 5.0)
        assert rt._pp is not None and rt._pp.preauth == rt.tcp.preauth_cap
    finally:
        for _, w in conns:
            w.close()
        await rt.stop()


def test_tcp_junk_is_counted_and_preauth_connections_are_capped():
    run(tcp_abuse_scenario())
