"""Structured fuzz: validly sealed, well-formed messages with hostile values.

Every datagram decodes and passes the schema; its values are chosen to hurt:
the largest integers, the ids of other nodes and of the receiver itself,
metadata at every size limit, signatures that belong to someone else,
unbound datagrams carrying more than first contact allows. The node must
never raise, every datagram must be either accepted or counted under a drop
reason, real members keep their addresses and signed incarnations, and every
table keyed by peer-chosen ids stays within its cap.
"""

from __future__ import annotations

import random

import pytest
from netsim import LABEL, Net
from test_member_attacks import MODES, ident

from p2phpo.core.identity import Identity
from p2phpo.core.member_sig import U64, sign_alive
from p2phpo.core.messages import MsgType, State
from p2phpo.core.wire import Keyring, Sealer, pack

N = 20_000
CAP = 256


def hostile_values(rng: random.Random, ids: list[int]) -> dict[str, object]:
    big = [0, 1, U64, U64 - 1, 1 << 63, rng.getrandbits(64)]
    return {
        "u64": rng.choice(big),
        "id": rng.choice(ids + big),
        "meta": rng.choice([
            {},
            {f"k{i:02d}": "x" * 40 for i in range(16)},  # 16 keys, under the byte cap
            {"k" * 32: -(1 << 63), "n": None, "f": 1e308, "b": True},
            {"ready": True, "study": "s" * 256},
        ]),
        "addr": rng.choice([("127.0.0.1", 0), ("h" * 255, 65535), ("10.6.6.6", 6666)]),
    }


def hostile_message(rng: random.Random, ids: list[int], me: int, keys: list[Identity]) -> list:
    v = hostile_values(rng, ids + [me])
    u, node, meta, (host, port) = v["u64"], v["id"], v["meta"], v["addr"]
    k = rng.choice(keys)
    kind = rng.randrange(14)
    if kind == 0:
        return [MsgType.PING, u, node]
    if kind == 1:
        return [MsgType.PING_REQ, u, node, host, port, rng.random() < 0.5]
    if kind in (2, 3):
        return [rng.choice([MsgType.ACK, MsgType.NACK]), u]
    if kind == 4:  # an Alive about someone, signed by another key (or by its own, for a stranger)
        inc = rng.choice([0, U64, u])
        sig = sign_alive(k, inc, (host, port), meta, 1)
        return [MsgType.ALIVE, rng.choice([node, k.node_id]), inc, host, port, meta, 1, k.public_key, sig]
    if kind == 5:
        return [MsgType.SUSPECT, node, u, rng.choice(ids + [me])]
    if kind == 6:
        return [MsgType.DEAD, node, u, node]
    if kind == 7:
        return [MsgType.LEAVE, node, u]
    if kind == 8:
        return [MsgType.DIGEST, u, u, u]
    if kind == 9:
        nb = rng.choice([1, 2, 4096])
        return [MsgType.SYNC_REQ, nb, bytes(rng.getrandbits(8) for _ in range(4 * nb))]
    if kind == 10:
        flat = []
        for o in sorted(rng.sample(range(1, 1 << 40), 50)):
            flat += [o, rng.choice([1, 1 << 62])]
        return [MsgType.SYNC_VV, 1, [0], flat, True]
    if kind == 11:  # an announcement of an entry nobody holds: the fetch goes nowhere
        return [MsgType.HAVE, node, rng.choice([1, u, 1 << 62])]
    if kind == 12:  # many announcements in one message, of entries nobody holds
        pairs = [(rng.choice(ids + [node]), rng.choice([1, u, 1 << 62])) for _ in range(rng.randint(1, 60))]
        return [MsgType.HAVES, *[x for pair in pairs for x in pair]]
    return [MsgType.ENTRY, b"\x93\x01\x02\x03"]


@pytest.mark.parametrize("mode", MODES)
def test_hostile_values_never_raise_and_every_drop_is_counted(mode):
    cipher, key = MODES[mode]
    net = Net(seed=21, cipher=cipher, config={"max_members": CAP})
    a = net.add(identity=ident(0), key=key)
    others = [net.add(identity=ident(i), key=key, seeds=[a.addr]) for i in (1, 2)]
    net.run_for(3.0)
    real = {o.node_id: (o.addr, o.core.incarnation) for o in others}
    rng = random.Random(mode)
    keys = [Identity(rng.randbytes(32)) for _ in range(64)]
    ring = Keyring([key], cipher=cipher)
    ids = [o.node_id for o in others]
    sealers = [Sealer(ring, rng.choice(ids + [0xBAD, U64]), 0, rng.getrandbits(64), LABEL) for _ in range(8)]
    salt = a.core.sealer.epoch.salt
    sent = uncounted = 0
    for _ in range(N):
        msgs = [hostile_message(rng, ids, a.node_id, keys) for _ in range(rng.randint(1, 4))]
        to = rng.choice([None, (a.node_id, salt), (a.node_id, salt ^ 1), (ids[0], salt)])
        try:
            data = rng.choice(sealers).seal_packed([pack(m) for m in msgs], to)
        except ValueError:
            continue  # larger than a datagram: a real sender could not send it either
        sent += 1
        before = a.core.stats["accepted"] + a.core.dropped.total
        a.core.receive_datagram(data, ("10.6.6.6", 6666), net.now)
        uncounted += a.core.stats["accepted"] + a.core.dropped.total == before
        net._pump(a)
        if rng.random() < 0.01:
            net.run_for(0.05)
    assert sent >= N * 0.8 and uncounted == 0  # each one accepted or counted
    assert a.core.dropped.total > sent // 2
    m = a.core.membership
    assert len(m.ids()) <= CAP and len(a.core.ae.agree) <= CAP + 1 and len(a.core.swim.relays) <= 256
    for node, (addr, inc) in real.items():
        info = m.get(node)
        assert info is not None and info.addr == addr and info.incarnation <= inc + 2
    net.run_for(10.0)  # the cluster still works afterwards
    for o in others:
        assert o.core.membership.get(a.node_id).state in (State.ALIVE, State.SUSPECT)
