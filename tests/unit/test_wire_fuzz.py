"""Fuzz: random and mutated datagrams and TCP frames are decoded or rejected, nothing else.

More than half of the inputs are validly sealed with the cluster key, so the
msgpack limits and the schema checks (not the AEAD) are what reject them.
Invariants: only WireError escapes, every input is either accepted or counted
under a reason, and a rejected input leaves the receiver's state unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from p2phpo.core.wire import (
    DropCounter,
    DropReason,
    Keyring,
    Opener,
    Role,
    Sealer,
    TcpSession,
    WireError,
    expect_bytes,
    expect_int,
    expect_list,
    expect_tuple,
    label_hash,
    pack,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
LABEL = label_hash("fuzz")
N_DATAGRAMS = 100_000
N_FRAMES = 20_000


def check_message(m: object) -> None:
    """The toy schema of this test: [kind 0..9, payload bytes <= 64]."""
    kind, payload = expect_tuple(m, 2)
    expect_int(kind, 0, 9)
    expect_bytes(payload, 64)


def valid_messages(rng: random.Random) -> list:
    return [[rng.randrange(10), rng.randbytes(rng.randrange(65))] for _ in range(rng.randrange(6))]


def junk_payload(rng: random.Random) -> bytes:
    """Plaintext that a strict decoder or the schema must reject."""
    choice = rng.randrange(10)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if choice == 1:
        return b"\x91" * rng.randrange(33, 1100) + b"\xc0"  # deep nesting
    if choice == 2:
        return b"\x91\xd5" + bytes([rng.randrange(256)]) + rng.randbytes(2)  # ext type
    if choice == 3:
        return b"\x91\x81" + bytes([rng.randrange(0x80)]) + b"\xc0"  # int map key
    if choice == 4:
        return b"\x91" + rng.choice([b"\xdb", b"\xc6", b"\xdd", b"\xdf"]) + rng.randbytes(4)
    if choice == 5:
        return pack(valid_messages(rng)) + rng.randbytes(rng.randrange(1, 4))  # trailing
    if choice == 6:
        return pack(rng.choice([{"a": 1}, 5, b"x", None]))  # not an array
    if choice == 7:
        return pack([[rng.randrange(10, 1000), b""]])  # schema: kind out of range
    if choice == 8:
        return pack([[1, b"x" * rng.randrange(65, 200)]])  # schema: payload too long
    good = pack(valid_messages(rng))
    return good[: rng.randrange(1, len(good))] if len(good) > 1 else b"\xc1"  # truncated


def mutate(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data[: rng.randrange(len(data))]
    b = bytearray(data)
    if choice == 1:
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if choice == 2:
        return bytes(b) + rng.randbytes(rng.randrange(1, 1300))
    i = rng.randrange(len(b))
    return bytes(b[:i]) + rng.randbytes(rng.randrange(1, 8)) + bytes(b[i + 1 :])


def datagrams(rng: random.Random, sealers: list[Sealer], stranger: Sealer) -> Iterator[tuple]:
    """(kind, bytes) pairs; kinds: valid, replay, sealed_junk, mutated, oversized, foreign."""
    sent: list[bytes] = []
    for _ in range(N_DATAGRAMS):
        s = rng.choice(sealers)
        r = rng.random()
        if r < 0.15:
            data = s.seal(valid_messages(rng))
            sent.append(data)
            yield "valid", data
        elif r < 0.25 and sent:
            yield "replay", rng.choice(sent)
        elif r < 0.60:
            yield "sealed_junk", s.seal_raw(junk_payload(rng))
        elif r < 0.85:
            base = rng.choice(sent) if sent and rng.random() < 0.5 else s.seal(valid_messages(rng))
            yield "mutated", mutate(rng, base)
        elif r < 0.90:
            yield "oversized", rng.randbytes(rng.randrange(1233, 3000))
        elif r < 0.95:
            yield "foreign", stranger.seal(valid_messages(rng))
        else:
            yield "random", rng.randbytes(rng.randrange(0, 1300))


def open_checked(opener: Opener, data: bytes, check: Callable[[object], None]) -> list:
    dg = opener.open(data, 0.0, commit=False)
    for m in dg.messages:
        check(m)
    opener.accept(dg)
    return dg.messages


def test_fuzz_datagrams():
    rng = random.Random(20261127)
    ring = Keyring([KEY])
    sealers = [Sealer(ring, sender, 1, rng.getrandbits(64), LABEL) for sender in (11, 12, 13)]
    big = Sealer(ring, 14, 1, 5, LABEL, max_datagram=4000)
    stranger = Sealer(Keyring([OTHER_KEY]), 15, 1, 6, LABEL)
    opener = Opener(Keyring([KEY]), [LABEL])
    counter = DropCounter()
    accepted = sealed = total = 0
    kinds: dict[str, int] = {}
    for kind, data in datagrams(rng, sealers, stranger):
        if kind == "oversized" and rng.random() < 0.5:
            data = big.seal([[1, b"x" * 60]] * 40)  # validly sealed but too big
        total += 1
        kinds[kind] = kinds.get(kind, 0) + 1
        sealed += kind in ("valid", "replay", "sealed_junk")
        before = opener.snapshot()
        try:
            open_checked(opener, data, check_message)
        except WireError as e:
            counter.add(e)
            assert opener.snapshot() == before, kind
            assert kind != "valid", e
            if kind == "replay":
                assert e.reason is DropReason.REPLAY
            if kind == "sealed_junk":
                assert e.reason is DropReason.BAD_SCHEMA
            if kind == "foreign":
                assert e.reason is DropReason.BAD_AUTH
            continue
        accepted += 1
        assert kind in ("valid", "mutated"), kind  # a mutation may only cut trailing junk
    assert total == N_DATAGRAMS
    assert accepted + counter.total == total
    assert sealed * 2 >= total
    assert kinds["valid"] <= accepted
    for reason in (DropReason.BAD_SIZE, DropReason.BAD_AUTH, DropReason.REPLAY):
        assert counter[reason] > 0
    assert counter[DropReason.BAD_SCHEMA] >= kinds["sealed_junk"]


def frame_inputs(rng: random.Random, client: TcpSession) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.55:
        return "sealed_junk", client.seal_raw(junk_payload(rng))
    if r < 0.70:
        return "valid", client.seal_frame(valid_messages(rng))
    if r < 0.85:
        return "mutated", mutate(rng, client.seal_frame(valid_messages(rng)))
    if r < 0.90:
        return "oversized", rng.randrange(8 * 2**20 + 17, 2**32).to_bytes(4, "big")
    if r < 0.95:
        return "random", rng.randbytes(rng.randrange(0, 200))
    frame = client.seal_frame(valid_messages(rng))
    return "replay", frame + frame


def handshake(rng: random.Random) -> tuple[TcpSession, TcpSession]:
    kw = {"label_hash": LABEL}
    c = TcpSession(Keyring([KEY]), role=Role.CLIENT, nonce=rng.randbytes(16), sender=1, **kw)
    s = TcpSession(Keyring([KEY]), role=Role.SERVER, nonce=rng.randbytes(16), sender=2, **kw)
    s.feed(c.data_to_send())
    c.feed(s.data_to_send())
    s.feed(c.data_to_send())  # the client's finished frame: both peers proven
    return c, s


def test_fuzz_tcp_frames():
    rng = random.Random(7)
    counter = DropCounter()
    accepted = incomplete = sealed = 0
    for i in range(N_FRAMES):
        if i % 20 == 0:  # the hello itself, mutated or random
            s = TcpSession(
                Keyring([KEY]), role=Role.SERVER, nonce=b"n" * 16, sender=2, label_hash=LABEL
            )
            c = TcpSession(
                Keyring([KEY]),
                role=Role.CLIENT,
                nonce=rng.randbytes(16),
                sender=1,
                label_hash=LABEL,
            )
            kind, data = "hello", mutate(rng, c.data_to_send())
        else:
            c, s = handshake(rng)
            kind, data = frame_inputs(rng, c)
        sealed += kind == "sealed_junk"
        try:
            out = s.feed(data)
        except WireError as e:
            counter.add(e)
            assert s.failed is not None
            if kind == "sealed_junk":
                assert e.reason is DropReason.BAD_SCHEMA
            if kind == "replay":
                assert e.reason is DropReason.BAD_AUTH
            continue
        if out:
            try:
                for frame in out:  # the caller's schema check, as for datagrams
                    for m in expect_list(frame, 5):
                        check_message(m)
            except WireError as e:
                counter.add(e)
                assert kind != "valid"
                continue
            accepted += 1
            assert kind in ("valid", "mutated"), kind
        else:
            incomplete += 1  # a truncated frame or hello waits for more bytes
    assert accepted + incomplete + counter.total == N_FRAMES
    assert sealed * 2 >= N_FRAMES
    assert counter[DropReason.BAD_SIZE] > 0 and counter[DropReason.BAD_AUTH] > 0
