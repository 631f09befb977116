"""Datagram envelope: sealing, opening, replay windows, keyring, strict decoding."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2phpo.core.wire import (
    DEFAULT_MAX_DATAGRAM,
    OVERHEAD,
    Cipher,
    DropCounter,
    DropReason,
    Keyring,
    Opener,
    Sealer,
    WireError,
    expect_bool,
    expect_bytes,
    expect_enum,
    expect_float,
    expect_int,
    expect_list,
    expect_map,
    expect_optional,
    expect_str,
    expect_tuple,
    key_id,
    label_hash,
    pack,
    payload_size,
    plaintext_budget,
    study_tag,
    unpack_strict,
)

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
K3 = bytes(range(2, 34))
LABEL = label_hash("lab")
CIPHERS = [Cipher.AES_GCM, Cipher.NULL]


def pair(cipher=Cipher.AES_GCM, *, sender=7, restart=1, salt=0xABCDEF, **opener_kw):
    ring = Keyring([K1], cipher=cipher)
    return (
        Sealer(ring, sender, restart, salt, LABEL),
        Opener(Keyring([K1], cipher=cipher), [LABEL], **opener_kw),
    )


def reason(opener: Opener, data: bytes) -> DropReason:
    before = opener.snapshot()
    with pytest.raises(WireError) as ei:
        opener.open(data, 0.0)
    assert opener.snapshot() == before, "a rejected datagram changed the receiver's state"
    return ei.value.reason


MSGS = [[1, b"\x00" * 8, "hello", {"k": [1.5, None, True]}], [2, 2**64 - 1, -5]]


@pytest.mark.parametrize("cipher", CIPHERS)
def test_round_trip(cipher):
    s, o = pair(cipher)
    dg = o.open(s.seal(MSGS), 0.0)
    assert (dg.sender, dg.epoch.restart, dg.epoch.salt, dg.counter) == (7, 1, 0xABCDEF, 1)
    assert dg.messages == MSGS
    assert dg.key_id == key_id(K1)
    assert o.open(s.seal([]), 0.0).counter == 2
    assert o.open(memoryview(s.seal(MSGS)), 0.0).messages == MSGS
    assert o.open(bytearray(s.seal(MSGS)), 0.0).messages == MSGS


def test_null_cipher_has_the_same_sizes_as_aes_gcm():
    a, _ = pair(Cipher.AES_GCM)
    n, _ = pair(Cipher.NULL)
    for msgs in ([], MSGS, [b"x" * 1000]):
        assert len(a.seal(msgs)) == len(n.seal(msgs)) == OVERHEAD + len(pack(msgs))


@pytest.mark.parametrize("cipher", CIPHERS)
def test_wrong_key_is_bad_auth(cipher):
    s, _ = pair(cipher)
    other = Opener(Keyring([K2, K1], cipher=cipher), [LABEL])
    data = s.seal(MSGS)
    # Same key id, different key bytes: forge the key id of K1 over a K2 keyring.
    forged = data[:9] + key_id(K2) + data[13:]
    assert reason(other, forged) is DropReason.BAD_AUTH
    assert reason(Opener(Keyring([K2], cipher=cipher), [LABEL]), data) is DropReason.BAD_AUTH


@pytest.mark.parametrize("cipher", CIPHERS)
def test_tampering_any_byte_is_rejected(cipher):
    s, o = pair(cipher)
    data = s.seal(MSGS)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        assert reason(o, bytes(bad)) in (
            DropReason.BAD_AUTH,
            DropReason.BAD_VERSION,
            DropReason.UNKNOWN_CLUSTER,
        )
    assert o.open(data, 0.0).messages == MSGS


def test_replay_is_rejected_and_out_of_order_within_the_window_is_not():
    s, o = pair(window_bits=64)
    packets = [s.seal([i]) for i in range(100)]
    o.open(packets[99], 0.0)
    assert reason(o, packets[99]) is DropReason.REPLAY
    assert o.open(packets[50], 0.0).messages == [50]  # late but inside the window
    assert reason(o, packets[50]) is DropReason.REPLAY
    assert reason(o, packets[10]) is DropReason.REPLAY  # fell out of the window


def test_older_epoch_of_a_sender_is_rejected_after_a_newer_one():
    old, o = pair(restart=3)
    new = Sealer(Keyring([K1]), 7, 4, 99, LABEL)
    late = old.seal(["old"])
    o.open(new.seal(["new"]), 0.0)
    assert reason(o, late) is DropReason.REPLAY


def test_restart_with_new_salt_gets_a_new_subkey_and_a_new_window():
    ring = Keyring([K1])
    a = Sealer(ring, 7, 1, 111, LABEL)
    b = Sealer(ring, 7, 1, 222, LABEL)  # copied state dir: same restart counter
    pa, pb = a.seal(MSGS), b.seal(MSGS)
    # Same sender, restart and counter; only the salt differs, so nonce reuse is harmless:
    # header: version 1 | label 8 | key id 4 | sender 8 | restart 4 | salt 8 (25:33) | counter 8
    assert pa[:25] == pb[:25] and pa[33:41] == pb[33:41] and pa[25:33] != pb[25:33]
    assert pa[41:] != pb[41:]
    o = Opener(Keyring([K1]), [LABEL])
    assert o.open(pa, 0.0).counter == o.open(pb, 0.0).counter == 1
    # Moving a packet to the other salt breaks authentication.
    fresh = Opener(Keyring([K1]), [LABEL])
    assert reason(fresh, pa[:25] + pb[25:33] + pa[33:]) is DropReason.BAD_AUTH


def test_other_cluster_is_unknown_cluster_and_the_study_tag_travels():
    ring = Keyring([K1])
    o = Opener(Keyring([K1]), [LABEL])
    assert reason(o, Sealer(ring, 1, 0, 0, label_hash("other")).seal([])) is (
        DropReason.UNKNOWN_CLUSTER
    )
    assert study_tag("fp-a") != study_tag("fp-b") and len(study_tag("fp-a")) == 4
    assert o.open(Sealer(ring, 3, 0, 0, LABEL).seal([]), 0.0).study is None  # holds none yet
    s = Sealer(ring, 2, 0, 0, LABEL)
    s.study = study_tag("fp-a")  # another study of the same cluster opens: the core sorts it
    assert o.open(s.seal([]), 0.0).study == study_tag("fp-a")
    other = Sealer(ring, 4, 0, 0, label_hash("other"))
    other.study = study_tag("fp-a")
    assert reason(o, other.seal([])) is DropReason.UNKNOWN_CLUSTER


def test_key_rotation_install_use_remove():
    a_ring, b_ring = Keyring([K1]), Keyring([K1])
    a = Sealer(a_ring, 1, 0, 5, LABEL)
    b_open = Opener(b_ring, [LABEL])
    assert b_open.open(a.seal(["k1"]), 0.0).key_id == key_id(K1)
    a_ring.install(K2)
    b_ring.install(K2)
    a_ring.use(K2)
    assert b_open.open(a.seal(["k2"]), 0.0).key_id == key_id(K2)
    b_ring.use(key_id(K2))
    b_ring.remove(K1)
    a_ring.use(K1)  # a node that still seals with the removed key is not heard
    assert reason(b_open, a.seal(["k1 again"])) is DropReason.BAD_AUTH
    with pytest.raises(ValueError):
        b_ring.remove(K2)  # the primary stays
    with pytest.raises(KeyError):
        b_ring.use(K3)


def test_keyring_rejects_bad_keys():
    with pytest.raises(ValueError):
        Keyring([])
    with pytest.raises(ValueError):
        Keyring([b"short"])


def test_size_limits():
    s, o = pair()
    budget = plaintext_budget()
    blob = b"y" * (budget - 4)  # array header 1 byte + bin16 header 3 bytes fill the budget
    exact = s.seal([blob])
    assert len(exact) == DEFAULT_MAX_DATAGRAM
    assert o.open(exact, 0.0).messages == [blob]
    with pytest.raises(ValueError):
        s.seal([blob + b"!"])  # our own misuse: one byte too big to send
    big = Sealer(Keyring([K1]), 7, 1, 0xABCDEF, LABEL, max_datagram=9000).seal([b"z" * 2000])
    assert reason(o, big) is DropReason.BAD_SIZE
    assert reason(o, exact + b"\x00") is DropReason.BAD_SIZE
    assert reason(o, b"") is DropReason.BAD_SIZE
    assert reason(o, exact[:OVERHEAD]) is DropReason.BAD_SIZE


def test_payload_size_matches_seal_packed():
    s, o = pair()
    for n in (0, 1, 15, 16, 40):
        msgs = [[i, b"e" * (i % 7)] for i in range(n)]
        packed = [pack(m) for m in msgs]
        data = s.seal_packed(packed)
        assert len(data) == OVERHEAD + payload_size([len(p) for p in packed])
        assert o.open(data, 0.0).messages == msgs


def test_bad_version():
    s, o = pair()
    data = s.seal([])
    assert reason(o, b"\x01" + data[1:]) is DropReason.BAD_VERSION


def test_open_without_commit_leaves_the_window_then_accept_records():
    s, o = pair()
    data = s.seal(MSGS)
    before = o.snapshot()
    dg = o.open(data, 0.0, commit=False)
    assert o.snapshot() == before
    o.accept(dg)
    assert reason(o, data) is DropReason.REPLAY


def test_bad_payloads_are_bad_schema_and_change_nothing():
    s, o = pair()
    junk = [
        b"\xc1",  # never-used byte
        b"\x91",  # truncated array
        b"\x90\x90",  # trailing bytes
        b"\x01",  # not an array
        b"\x91\xd4\x01\x00",  # extension type
        b"\x91\xc7\x00\x05",  # zero-length extension
        b"\x91\x81\x01\x02",  # int map key
        b"\x91\xa2\xff\xfe",  # invalid UTF-8
        b"\x91\xdb\xff\xff\xff\xff",  # str32 claiming 4 GiB
        b"\x91\xdd\xff\xff\xff\xff",  # array32 claiming 4 billion items
        b"\x91" * 1100 + b"\xc0",  # deeper than msgpack's own stack
        b"\x91" * 40 + b"\xc0",  # deeper than our depth limit
    ]
    for payload in junk:
        assert reason(o, s.seal_raw(payload)) is DropReason.BAD_SCHEMA, payload[:8]
    assert o.snapshot() == Opener(Keyring([K1]), [LABEL]).snapshot()


def test_unpack_strict_accepts_nesting_up_to_the_limit():
    assert unpack_strict(b"\x91" * 32 + b"\xc0") is not None
    filler = pack(b"\x90" * 100)  # header-like bytes defeat the quick bound: the walk runs
    assert unpack_strict(b"\x92" + filler + b"\x91" * 31 + b"\xc0") is not None
    for data in (b"\x91" * 33 + b"\xc0", b"\x92" + filler + b"\x91" * 32 + b"\xc0"):
        with pytest.raises(WireError) as ei:
            unpack_strict(data)
        assert ei.value.reason is DropReason.BAD_SCHEMA
    assert unpack_strict(msgpack.packb({"a": [{"b": b"c"}]})) == {"a": [{"b": b"c"}]}


def test_replay_windows_are_capped():
    o = Opener(Keyring([K1]), [LABEL], max_windows=4)
    ring = Keyring([K1])
    for sender in range(10):
        o.open(Sealer(ring, sender, 0, 0, LABEL).seal([]), 0.0)
    assert len(msgpack.unpackb(o.snapshot())[0]) == 4


def test_drop_counter():
    c = DropCounter()
    c.add(DropReason.REPLAY)
    c.add(WireError(DropReason.BAD_AUTH, "x"), 2)
    assert c[DropReason.BAD_AUTH] == 2 and c.total == 3
    assert c.as_dict() == {
        "bad_size": 0,
        "bad_auth": 2,
        "replay": 1,
        "bad_schema": 0,
        "unknown_cluster": 0,
        "bad_version": 0,
        "bad_signature": 0,
        "over_limit": 0,
        "unknown_key": 0,
        "other_study": 0,
    }


def test_schema_helpers():
    assert expect_int(5, 0, 10) == 5
    assert expect_float(3, 0, 5) == 3.0
    assert expect_bytes(b"ab", 2) == b"ab"
    assert expect_str("ab", 2) == "ab"
    assert expect_list([1], 3) == [1]
    assert expect_tuple([1, 2], 2) == [1, 2]
    assert expect_map({"a": 1}, 1) == {"a": 1}
    assert expect_bool(True) is True
    assert expect_enum("replay", DropReason) is DropReason.REPLAY
    assert expect_optional(None, expect_int, 0, 1) is None
    bad = [
        lambda: expect_int(True, 0, 10),
        lambda: expect_int(11, 0, 10),
        lambda: expect_int(1.0, 0, 10),
        lambda: expect_float(float("nan")),
        lambda: expect_float(False),
        lambda: expect_bytes("ab", 5),
        lambda: expect_bytes(b"abc", 2),
        lambda: expect_bytes(b"", 2, min_len=1),
        lambda: expect_str(b"a", 5),
        lambda: expect_list((1,), 5),
        lambda: expect_tuple([1], 2),
        lambda: expect_map([], 3),
        lambda: expect_bool(1),
        lambda: expect_enum("nope", DropReason),
        lambda: expect_optional(20, expect_int, 0, 1),
    ]
    for f in bad:
        with pytest.raises(WireError) as ei:
            f()
        assert ei.value.reason is DropReason.BAD_SCHEMA


def test_envelope_layout_is_fixed():
    s, _ = pair()
    data = s.seal([], to=(9, 0x1234))
    fields = struct.unpack_from(">B8s4sQIQQQQ", data)
    assert fields == (2, LABEL[:4] + bytes(4), key_id(K1), 7, 1, 0xABCDEF, 1, 9, 0x1234)
    s.study = study_tag("fp")  # the label's last 4 bytes: the sender's study
    assert struct.unpack_from(">B8s", s.seal([]))[1] == LABEL[:4] + study_tag("fp")
    assert struct.unpack_from(">QQ", s.seal([]), 41) == (0, 0)  # unbound


def test_a_datagram_bound_to_one_receiver_life_opens_nowhere_else():
    s, _ = pair()
    _, b = pair()
    b.bind(9, 0x1234)
    dg = b.open(s.seal(["hi"], to=(9, 0x1234)))
    assert dg.bound and dg.messages == ["hi"]
    assert b.peer_salt(7) == 0xABCDEF and b.peer_salt(8) is None
    for to in [(10, 0x1234), (9, 0x1235)]:  # another node; the same node's next life
        with pytest.raises(WireError) as ei:
            b.open(s.seal(["hi"], to=to))
        assert ei.value.reason is DropReason.REPLAY
    assert not b.open(s.seal(["first contact"])).bound


_scalars = (
    st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(_values, max_size=6), cipher=st.sampled_from(CIPHERS))
def test_any_msgpack_messages_round_trip(messages, cipher):
    s, o = pair(cipher)
    if len(pack(messages)) > plaintext_budget():
        with pytest.raises(ValueError):
            s.seal(messages)
        return
    assert o.open(s.seal(messages), 0.0).messages == messages


def test_accept_after_an_uncommitted_open_keeps_the_same_replay_state_as_a_committing_open():
    """``accept`` (one pass over the replay tables) against ``open`` with commit (the
    check, then the record): same refusals, same windows, same evictions, over
    random senders, lives and counters with room for only three windows."""
    import random

    rng = random.Random(5)
    lives = [(s, r, salt) for s in (7, 8, 9) for r in (1, 2) for salt in (5, 6)]
    sealers = {life: Sealer(Keyring([K1], cipher=Cipher.NULL), *life, LABEL) for life in lives}
    sent: list[bytes] = []
    one, two = (Opener(Keyring([K1], cipher=Cipher.NULL), [LABEL], window_bits=16, max_windows=3)
                for _ in range(2))
    for _ in range(3000):
        if sent and rng.random() < 0.4:
            data = rng.choice(sent[-40:])  # a replay, or a late one inside the window
        else:
            data = sealers[rng.choice(lives)].seal([1])
            sent.append(data)
        outcomes = []
        try:
            one.open(data, 0.0)
            outcomes.append("ok")
        except WireError as e:
            outcomes.append(e.reason)
        try:
            two.accept(two.open(data, 0.0, commit=False))
            outcomes.append("ok")
        except WireError as e:
            outcomes.append(e.reason)
        assert outcomes[0] == outcomes[1]
        assert one.snapshot() == two.snapshot()
        assert one._windows.keys() == two._windows.keys()  # the same recency order
        assert one._newest.keys() == two._newest.keys()
