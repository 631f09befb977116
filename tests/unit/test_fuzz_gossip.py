"""Fuzz: 100,000+ hostile datagrams and 20,000+ hostile TCP frames at a gossip core.

More than half of the datagrams are validly sealed with the cluster key, so
the msgpack limits and the schema checks (not the AEAD) must reject them.
Invariants (h11's fuzz rule): nothing raises, every input is counted under a
drop reason, and the core's canonical state dump and the replay windows are
byte-identical before and after.
"""

from __future__ import annotations

import random

from netsim import KEY, LABEL, Net, Node

from p2phpo.core.entries import Report, encode_entry
from p2phpo.core.gossip import GossipCore
from p2phpo.core.messages import decode_frame, decode_messages
from p2phpo.core.wire import (
    HEADER_LEN,
    Cipher,
    Keyring,
    Role,
    Sealer,
    TcpSession,
    WireError,
    pack,
    unpack_strict,
)

N_DATAGRAMS = 100_000
N_FRAMES = 20_000


def warm_cluster() -> tuple[Net, Node, list[bytes]]:
    net = Net(seed=11)
    first = net.add()
    nodes = [first] + [net.add(seeds=[first.addr]) for _ in range(3)]
    captured: list[bytes] = []
    net.drop(lambda src, dst, data: bool(dst == first.addr and data and captured.append(data)))
    for n in nodes:
        es = [n.ledger.new(n.node_id, Report, wall=1.0, trial=(n.node_id, 1), step=s, value=0.5) for s in range(5)]
        n.core.append_local(es)
    net.run_for(3.0)
    assert len({n.ledger.vv_hash() for n in nodes}) == 1
    return net, first, captured


def is_valid(payload: bytes) -> bool:
    """Would the core accept this plaintext? (then it is not a fuzz input)"""
    try:
        msgs = decode_messages(unpack_strict(payload))
        GossipCore._decode_entries(msgs)
        return True
    except WireError:
        return False


def junk_payloads(rng: random.Random, valid: list[bytes]) -> list[bytes]:
    """Plaintexts that decode as msgpack or nearly so, but break the limits or schema."""
    raw_entry = encode_entry(Report(origin=5, seq=1, wall=1.0, trial=(5, 1), step=1, value=0.5))
    fixed = [
        b"\x91" * 40 + b"\x90",  # deep nesting
        b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 billion items
        b"\xdf\x00\x01\x00\x00",  # map32 of 65536 entries, no data
        b"\xc7\x00\x05",  # ext type
        b"\xd4\x01\x00",  # fixext
        b"\x90",  # empty array
        b"\xc0",
        pack([[1, True, 2]]),  # bool where an int belongs
        pack([[1, 1.5, 2]]),
        pack([[99, 1]]),  # unknown type
        pack([[3]]),  # wrong arity
        pack([[5, 1, 0, "h", 70000, {}]]),  # bad port
        pack([[5, 1, 0, "h", 1, {1: 2}]]),  # int map key
        pack([[5, 1, 0, "h", 1, {"k": [1]}]]),  # nested meta
        pack([[5, 1, 0, "h", 1, {"k" * 40: 1}]]),  # long meta key
        pack([[9, b"\x93\x01\x02"]]),  # entry that is not an entry
        pack([[9, raw_entry[:-1]]]),  # truncated entry
        pack([[9, raw_entry + b"\x00"]]),  # trailing byte
        pack([[11, 4, [1, 2], [9, 1, 3, 1], True]]),  # vv origins not ascending
        pack([[11, 4, [7], [], True]]),  # bucket out of range
        pack([[12, 4, b"\x00" * 15]]),  # short bucket hashes
        pack([[2, 1, 2, "", 5, True]]),  # empty host
        pack([[10, -1, 0, 0]]),
        pack([[1, -5, 2]]),  # negative seq
        b"\xa3\xff\xfe\xfd",  # invalid UTF-8 string
    ]
    out: list[bytes] = list(fixed)
    while len(out) < 4000:
        kind = rng.random()
        if kind < 0.3:
            p = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80)))
        elif kind < 0.8:
            base = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(base))
                base[i] = rng.getrandbits(8)
            p = bytes(base)
        else:
            base = rng.choice(valid)
            p = base[: rng.randrange(len(base))]
        if p and not is_valid(p):
            out.append(p)
    return out


def test_hostile_datagrams_change_nothing_and_are_all_counted():
    net, core_node, captured = warm_cluster()
    core = core_node.core
    rng = random.Random(1234)
    valid_plain = [pack(x) for x in _captured_plaintexts(core, captured)]
    junk = junk_payloads(rng, valid_plain)
    fake = Sealer(Keyring([KEY], cipher=Cipher.NULL), 77, 0, 1, LABEL)
    before = (pack(core.dump()), core.opener.snapshot(), core.ledger.vv_hash())
    start_drops, start_accepted = core.dropped.total, core.stats["accepted"]
    now = net.now
    sealed = 0
    for i in range(N_DATAGRAMS):
        r = i % 20
        if r < 11:  # validly sealed, rejected by msgpack limits or schema
            data = fake.seal_raw(junk[i % len(junk)])
            sealed += 1
        elif r < 14:  # replay of a datagram the core already accepted
            data = captured[i % len(captured)]
        elif r < 17:  # bit flips, truncation, extension of real datagrams
            data = bytearray(captured[i % len(captured)])
            j = rng.randrange(len(data))
            data[j] ^= 1 << rng.randrange(8)
            data = bytes(data)[: rng.choice([len(data), rng.randrange(len(data) + 1)])]
        elif r < 18:
            data = captured[i % len(captured)] + bytes(rng.randint(1, 2000))  # oversized
        else:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 1400)))
        core.receive_datagram(data, ("6.6.6.6", 6666), now)
    assert sealed >= N_DATAGRAMS // 2
    assert core.stats["accepted"] == start_accepted
    assert core.dropped.total - start_drops == N_DATAGRAMS
    counts = core.dropped.as_dict()
    assert counts["bad_schema"] >= sealed and counts["replay"] > 0 and counts["bad_auth"] > 0
    assert counts["bad_size"] > 0 and counts["unknown_cluster"] > 0
    after = (pack(core.dump()), core.opener.snapshot(), core.ledger.vv_hash())
    assert after == before
    assert core.datagrams_to_send(now) == []


def _captured_plaintexts(core: GossipCore, captured: list[bytes]) -> list[object]:
    # Null cipher: the plaintext sits between the header and the 16-byte tag.
    return [unpack_strict(d[HEADER_LEN:-16]) for d in captured]


def _tcp_pair() -> tuple[TcpSession, TcpSession]:
    ring = Keyring([KEY], cipher=Cipher.NULL)
    c = TcpSession(ring, role=Role.CLIENT, nonce=b"c" * 16, sender=77, label_hash=LABEL)
    s = TcpSession(ring, role=Role.SERVER, nonce=b"s" * 16, sender=1, label_hash=LABEL)
    s.feed(c.data_to_send())
    c.feed(s.data_to_send())
    s.feed(c.data_to_send())  # the client's finished frame
    return c, s


def test_hostile_tcp_frames_change_nothing_and_are_all_counted():
    net, core_node, _ = warm_cluster()
    core = core_node.core
    rng = random.Random(99)
    own_state = core.sync_session(initiator=True).start(net.now)[0]
    valid = [pack(own_state), pack([21, [encode_entry(e) for e in list(core.ledger)[:3]]]), pack([22])]
    frames: list[bytes] = []
    while len(frames) < 2000:
        base = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 3)):
            base[rng.randrange(len(base))] = rng.getrandbits(8)
        p = bytes(base[: rng.randint(1, len(base))])
        try:
            decode_frame(unpack_strict(p))
        except WireError:
            frames.append(p)
    frames += [b"\x91" * 50 + b"\x90", pack([21, [b"junk"]]), pack([20, [], [5, 1, 4, 1]]), pack([23])]
    before = (pack(core.dump()), core.ledger.vv_hash())
    start = core.dropped.total
    client, server = _tcp_pair()
    for i in range(N_FRAMES):
        try:
            objs = server.feed(client.seal_raw(frames[i % len(frames)]))
        except WireError as e:
            core.count_drop(e.reason)
            client, server = _tcp_pair()
            continue
        session = core.sync_session(initiator=False)
        session.receive(unpack_strict(pack(own_state)), net.now)  # as a peer in sync would
        for obj in objs:
            session.receive(obj, net.now)
        assert session.failed is not None
    assert core.dropped.total - start == N_FRAMES
    assert (pack(core.dump()), core.ledger.vv_hash()) == before
