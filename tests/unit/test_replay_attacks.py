"""Replays of captured datagrams, by a key holder (keyed) or any local user (unkeyed).

Datagrams sealed from A to B are replayed to C, and to B after B restarted
(a new life with a fresh boot salt and empty replay windows). Every datagram
bound to B's life must be dropped as ``replay``; the only ones that may open
are unbound first-contact datagrams, which carry nothing but a Ping and
signed Alives.
"""

from __future__ import annotations

import pytest
from netsim import LABEL, Net, Node
from test_member_attacks import MODES, ident

from p2phpo.core.entries import Report
from p2phpo.core.messages import Alive, Ping, State, decode_messages
from p2phpo.core.wire import HEADER_LEN, DropReason, pack, unpack_strict


def bound(data: bytes) -> bool:
    return data[HEADER_LEN - 16 : HEADER_LEN] != bytes(16)


def cluster_with_tap(mode: str) -> tuple[Net, list[Node], list[bytes]]:
    cipher, key = MODES[mode]
    net = Net(seed=9, cipher=cipher)
    a = net.add(identity=ident(0), key=key)
    nodes = [a] + [net.add(identity=ident(i), key=key, seeds=[a.addr]) for i in (1, 2)]
    tapped: list[bytes] = []
    b = nodes[1]
    net.drop(lambda src, dst, data: bool(src is a and dst == b.addr and tapped.append(data)))
    for n in nodes:
        n.core.append_local([n.ledger.new(n.node_id, Report, wall=1.0, trial=(n.node_id, 1), step=0, value=0.5)])
    net.run_for(4.0)
    assert len(tapped) > 20
    return net, nodes, tapped


def replay(net: Net, to: Node, frm: Node, datagrams: list[bytes]) -> tuple[int, int]:
    """(accepted, dropped as replay) of ``datagrams`` replayed to ``to``."""
    acc, rep = to.core.stats["accepted"], to.core.dropped[DropReason.REPLAY]
    for d in datagrams:
        to.core.receive_datagram(d, frm.addr, net.now)
        net._pump(to)
    return to.core.stats["accepted"] - acc, to.core.dropped[DropReason.REPLAY] - rep


def first_contact_only(datagrams: list[bytes]) -> bool:
    """Null cipher: the unbound datagrams' plaintext holds only Ping and Alive."""
    for d in datagrams:
        msgs = decode_messages(unpack_strict(d[HEADER_LEN:-16]))
        if any(type(m) not in (Ping, Alive) for m in msgs):
            return False
    return True


@pytest.mark.parametrize("mode", MODES)
def test_datagrams_sealed_for_b_are_rejected_by_c(mode):
    net, (a, b, c), tapped = cluster_with_tap(mode)
    unbound = [d for d in tapped if not bound(d)]
    ledger, members = c.ledger.vv_hash(), [(m.node, m.state, m.incarnation) for m in c.core.members()]
    accepted, replays = replay(net, c, a, tapped)
    assert accepted == len(unbound), f"{accepted} of {len(tapped)} datagrams for B were accepted by C"
    assert replays == len(tapped) - len(unbound)
    assert c.ledger.vv_hash() == ledger
    assert [(m.node, m.state, m.incarnation) for m in c.core.members()] == members
    if mode == "unkeyed":
        assert first_contact_only(unbound)


@pytest.mark.parametrize("mode", MODES)
def test_datagrams_captured_before_a_restart_are_rejected_after_it(mode):
    net, (a, b, c), tapped = cluster_with_tap(mode)
    net.kill(b)
    _, key = MODES[mode]
    b2 = net.add(identity=ident(1), key=key, seeds=[a.addr], ledger=b.ledger, restart=1)
    unbound = [d for d in tapped if not bound(d)]
    accepted, replays = replay(net, b2, a, tapped)
    assert accepted == len(unbound), f"{accepted} of {len(tapped)} pre-restart datagrams were accepted"
    assert replays == len(tapped) - len(unbound)
    net.run_for(4.0)  # the new life still joins and gossips normally
    assert {m.node for m in b2.core.members() if m.state == State.ALIVE} == {a.node_id, b2.node_id, c.node_id}
    assert pack(b2.ledger.vv_hash()) == pack(a.ledger.vv_hash())


@pytest.mark.parametrize("mode", MODES)
def test_a_forged_restart_counter_does_not_cut_a_sender_off(mode):
    """One datagram claiming to be B with the largest restart counter: B's real datagrams
    must still be accepted (they would be dropped as a stale epoch)."""
    from p2phpo.core.messages import MsgType
    from p2phpo.core.wire import Keyring, Sealer

    cipher, key = MODES[mode]
    net, (a, b, c), _ = cluster_with_tap(mode)
    forged = Sealer(Keyring([key], cipher=cipher), b.node_id, 0xFFFF_FFFF, 12345, LABEL)
    a.core.receive_datagram(forged.seal([[MsgType.PING, 1, a.node_id]], to=None), ("10.6.6.6", 1), net.now)
    replays = a.core.dropped[DropReason.REPLAY]
    net.run_for(5.0)
    assert a.core.dropped[DropReason.REPLAY] == replays
    assert view_state(a, b) == State.ALIVE and view_state(b, a) == State.ALIVE


def view_state(x: Node, of: Node) -> State:
    return next(m.state for m in x.core.members() if m.node == of.node_id)
