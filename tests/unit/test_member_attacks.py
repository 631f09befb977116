"""Signed membership against a key-holding insider (keyed AES-GCM, and the unkeyed
loopback mode whose null-cipher key every local user holds).

The attacker seals datagrams with the cluster key under a sender id of its own
and injects them at real gossip cores: an Alive about node C at incarnation
2**64 - 1 (the one-datagram wedge), an Alive moving C to the attacker's
address, Suspect/Dead naming an incarnation C never signed, and forged member
records in a push-pull. Every attempt is tried in the legacy unsigned layout
too, as an attacker would.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from netsim import LABEL, Net, Node

from p2phpo.core.gossip_types import GossipConfig
from p2phpo.core.identity import Identity
from p2phpo.core.member_sig import U64, AliveVerifier, alive_bytes
from p2phpo.core.membership import Membership
from p2phpo.core.messages import (
    Dead,
    MemberRecord,
    MsgType,
    PPState,
    State,
    Suspect,
    to_wire,
)
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Cipher, DropReason, Keyring, Sealer, pack, unpack_strict
from p2phpo.runtime.udp import INSECURE_KEY

EVIL = ("10.6.6.6", 6666)
MODES = {"keyed": (Cipher.AES_GCM, bytes(range(7, 39))), "unkeyed": (Cipher.NULL, INSECURE_KEY)}


def ident(n: int) -> Identity:
    return Identity(hashlib.sha256(f"wire-test/{n}".encode()).digest())


def cluster(mode: str, n: int = 3) -> tuple[Net, list[Node]]:
    cipher, key = MODES[mode]
    net = Net(seed=5, cipher=cipher)
    first = net.add(identity=ident(0), key=key)
    nodes = [first] + [net.add(identity=ident(i), key=key, seeds=[first.addr]) for i in range(1, n)]
    net.run_for(3.0)
    for x in nodes:
        assert {m.node for m in x.core.members() if m.state == State.ALIVE} == {y.node_id for y in nodes}
    return net, nodes


class Insider:
    """Holds the cluster key, not a member: seals whatever it likes under sender 0xBAD."""

    def __init__(self, net: Net, mode: str) -> None:
        cipher, key = MODES[mode]
        self.net = net
        self.sealer = Sealer(Keyring([key], cipher=cipher), 0xBAD, 0, 1, LABEL)

    def send(self, to: Node, *messages: list) -> None:
        to_life = (to.node_id, to.core.sealer.epoch.salt)  # bound to the receiver, as a peer would
        data = self.sealer.seal_packed([pack(m) for m in messages], to_life)
        to.core.receive_datagram(data, EVIL, self.net.now)
        self.net._pump(to)


def alive_forms(node: int, inc: int, addr: tuple[str, int], pub: bytes, sig: bytes) -> list[list]:
    """The same forged Alive in the legacy layout and the signed one."""
    legacy = [MsgType.ALIVE, node, inc, addr[0], addr[1], {}]
    return [legacy, [*legacy, 1, pub, sig]]


def view(x: Node, of: Node):
    return next(m for m in x.core.members() if m.node == of.node_id)


@pytest.mark.parametrize("mode", MODES)
def test_one_alive_at_the_top_incarnation_no_longer_wedges_a_node(mode):
    net, (a, b, c) = cluster(mode)
    evil = Insider(net, mode)
    other = ident(99)  # the attacker's own key: a valid signature, but not C's
    for pub, sig in [(c_pub := ident(2).public_key, bytes(64)),
                     (other.public_key, other.sign(alive_bytes(c.node_id, U64, EVIL, {}, 1)))]:
        for form in alive_forms(c.node_id, U64, EVIL, pub, sig):
            for x in (a, b, c):
                evil.send(x, form)
    assert c_pub == c.core.identity.public_key
    net.run_for(5.0)  # C keeps ticking: before, its timer raised OverflowError every tick
    for x in (a, b):
        m = view(x, c)
        assert (m.state, m.addr) == (State.ALIVE, c.addr)
        assert m.incarnation < 10
        assert x.core.dropped[DropReason.BAD_SIGNATURE] >= 1
    assert c.core.incarnation < 10


@pytest.mark.parametrize("mode", MODES)
def test_nobody_but_the_node_moves_its_address(mode):
    net, (a, b, c) = cluster(mode)
    evil = Insider(net, mode)
    inc = view(a, c).incarnation
    for form in alive_forms(c.node_id, inc + 1, EVIL, c.core.identity.public_key, bytes(64)):
        evil.send(a, form)
    # C's own Alive, replayed with another address: the signature no longer matches.
    real = c.core.membership.self_alive()
    evil.send(a, [MsgType.ALIVE, c.node_id, real.incarnation + 1, *EVIL, {}, real.boot, real.pub, real.sig])
    net.run_for(3.0)
    assert view(a, c).addr == c.addr and view(b, c).addr == c.addr
    assert a.core.dropped[DropReason.BAD_SIGNATURE] >= 2


@pytest.mark.parametrize("mode", MODES)
def test_suspect_and_dead_above_the_signed_incarnation_are_ignored(mode):
    net, (a, b, c) = cluster(mode)
    evil = Insider(net, mode)
    inc = view(a, c).incarnation
    evil.send(a, to_wire(Dead(c.node_id, inc + 7, 0xBAD)), to_wire(Suspect(b.node_id, U64, 0xBAD)))
    evil.send(c, to_wire(Dead(c.node_id, U64, 0xBAD)))  # about C, to C
    assert view(a, c).state == State.ALIVE and view(a, b).state == State.ALIVE
    assert c.core.incarnation == inc  # no refutation was forced


@pytest.mark.parametrize("mode", MODES)
def test_forged_member_records_fail_the_push_pull(mode):
    net, (a, b, c) = cluster(mode)
    forged = MemberRecord(c.node_id, U64, State.ALIVE, EVIL, {}, 1, c.core.identity.public_key, bytes(64))
    session = a.core.sync_session(initiator=False)
    assert session.receive(unpack_strict(pack(to_wire(PPState((forged,), {})))), net.now) == []
    assert session.failed is DropReason.BAD_SIGNATURE
    assert view(a, c).addr == c.addr


def test_incarnation_arithmetic_stops_at_the_ceiling():
    me = ident(1)
    m = Membership(me.node_id, ("h", 1), LOCAL, __import__("random").Random(1), incarnation=U64, identity=me)
    m.refute(U64)
    m.set_meta({"ready": True}, 0.0)
    m.apply_suspect(Suspect(me.node_id, U64, 5), 0.0)
    assert m.incarnation == U64
    a = m.self_alive()
    pack(to_wire(a))  # encodes
    assert AliveVerifier().check(a)
    assert GossipConfig(incarnation=U64).incarnation == U64


def test_verifier_checks_each_signature_once():
    me = ident(3)
    a = Membership(me.node_id, ("h", 1), LOCAL, __import__("random").Random(1), identity=me).self_alive()
    v = AliveVerifier()
    for _ in range(5):
        assert v.check(a)
    assert v.verified == 1
    for change in [{"incarnation": 1}, {"node": a.node + 1}, {"meta": {"x": 1}}, {"boot": 9},
                   {"addr": ("h", 2)}, {"pub": b"", "sig": b""}, {"sig": bytes(64)}]:
        assert not v.check(dataclasses.replace(a, **change))
