"""Tables keyed by peer-chosen ids stay bounded; gone members are reaped.

A key-holding insider floods a node with 10,000 validly signed Alives of
freshly made identities (and digests from 10,000 made-up sender ids); the
member table stops at its cap, the per-peer tables do not grow, and once the
forged members are DEAD they are reaped. A ``status`` observer that joins and
leaves is gone from every table after the reap interval.
"""

from __future__ import annotations

import os

import pytest
from netsim import Net
from test_member_attacks import EVIL, MODES, Insider, ident

from p2phpo.core.identity import Identity
from p2phpo.core.messages import Digest, State, to_wire
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import DropReason, Keyring, Sealer

CAP = 512


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def forged_alives(n: int) -> list[list]:
    out = []
    for i in range(n):
        who = Identity(i.to_bytes(32, "big"))
        m = __import__("p2phpo.core.membership", fromlist=["Membership"]).Membership(
            who.node_id, (f"10.9.{i >> 8 & 255}.{i & 255}", 7946), LOCAL, None, identity=who, boot=1
        ).self_alive()
        out.append(to_wire(m))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_ten_thousand_forged_members_stay_bounded_and_are_reaped(mode):
    cipher, key = MODES[mode]
    net = Net(seed=3, cipher=cipher, config={"max_members": CAP})
    a = net.add(identity=ident(0), key=key)
    b = net.add(identity=ident(1), key=key, seeds=[a.addr])
    net.run_for(2.0)
    evil = Insider(net, mode)
    forged = forged_alives(10_000)
    before = rss()
    for i in range(0, len(forged), 8):
        evil.send(a, *forged[i : i + 8])
    ring = Keyring([key], cipher=cipher)
    for sender in range(1000, 11_000):  # made-up sender ids, each with a digest
        to = (a.node_id, a.core.sealer.epoch.salt)
        data = Sealer(ring, sender, 0, 1, evil.sealer.label_hash).seal([to_wire(Digest(1, 1, 1))], to)
        a.core.receive_datagram(data, EVIL, net.now)
    grown = rss() - before
    members = a.core.membership
    assert len(members.ids()) <= CAP
    assert a.core.dropped[DropReason.OVER_LIMIT] > 0
    assert len(a.core.ae.agree) <= CAP and len(a.core.ae.mismatch) <= CAP
    assert len(a.core.opener._windows) <= 4096
    assert grown < 20 << 20, f"RSS grew by {grown >> 20} MB"
    assert b.node_id in members.ids(State.ALIVE)
    # The forged members never answer: suspected, DEAD, then reaped.
    # (probed one per interval, slowed by Lifeguard as probes fail)
    net.run_for(3000.0, stop=lambda: set(members.ids()) == {b.node_id})
    assert set(members.ids()) == {b.node_id}, f"{len(members.ids())} members after {net.now:.0f} s"
    assert net.by_id[b.node_id].core.membership.get(a.node_id).state == State.ALIVE


def test_a_status_observer_leaves_no_trace():
    net = Net(seed=4)
    nodes = [net.add(identity=ident(0))]
    nodes += [net.add(identity=ident(i), seeds=[nodes[0].addr]) for i in (1, 2)]
    net.run_for(2.0)
    observer = net.add(identity=ident(50), seeds=[nodes[0].addr])
    net.run_for(2.0)
    assert all(n.core.membership.get(observer.node_id) is not None for n in nodes)
    observer.core.leave(net.now)
    net._pump(observer)
    net.run_for(0.5)
    net.kill(observer)
    net.run_for(nodes[0].core._reap_after + 10.0)
    for n in nodes:
        assert n.core.membership.get(observer.node_id) is None
        assert observer.node_id not in n.core.ae.agree
        assert {m.node for m in n.core.members()} == {x.node_id for x in nodes}
