"""Sealed TCP streams: hello, per-direction subkeys, frames, size cap, failures."""

from __future__ import annotations

import pytest

from p2phpo.core.wire import (
    MAX_FRAME,
    Cipher,
    DropReason,
    Keyring,
    Role,
    TcpSession,
    WireError,
    label_hash,
)
from p2phpo.core.wire_tcp import FINISHED_LEN, HELLO_LEN

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
LABEL = label_hash("lab")


def session(role, keys=(K1,), *, nonce=None, label=LABEL, cipher=Cipher.AES_GCM, **kw):
    nonce = nonce or (b"c" if role is Role.CLIENT else b"s") * 16
    sender = 1 if role is Role.CLIENT else 2
    ring = Keyring(list(keys), cipher=cipher)
    return TcpSession(ring, role=role, nonce=nonce, sender=sender, label_hash=label, **kw)


def connect(client, server):
    assert server.feed(client.data_to_send()) == []
    assert client.feed(server.data_to_send()) == []  # server hello + finished
    assert client.peer_proven and not server.peer_proven
    assert server.feed(client.data_to_send()) == []  # client finished
    assert client.established and server.established
    assert client.peer_proven and server.peer_proven


def fails(sess, data) -> DropReason:
    with pytest.raises(WireError) as ei:
        sess.feed(data)
    assert sess.failed is not None
    with pytest.raises(WireError):
        sess.feed(b"")  # a failed session stays failed
    return ei.value.reason


@pytest.mark.parametrize("cipher", [Cipher.AES_GCM, Cipher.NULL])
def test_handshake_and_frames_both_ways(cipher):
    c, s = session(Role.CLIENT, cipher=cipher), session(Role.SERVER, cipher=cipher)
    assert not c.established
    connect(c, s)
    assert (c.peer_sender, s.peer_sender) == (2, 1)
    frames = [{"vv": [[1, 2]]}, [b"x" * 5000], "done"]
    assert s.feed(b"".join(c.seal_frame(f) for f in frames)) == frames
    assert c.feed(s.seal_frame([1, 2, 3])) == [[1, 2, 3]]


def test_byte_by_byte_delivery():
    c, s = session(Role.CLIENT), session(Role.SERVER)
    stream = c.data_to_send()
    out = []
    for i in range(len(stream)):
        out += s.feed(stream[i : i + 1])
    c.feed(s.data_to_send())
    data = c.data_to_send() + c.seal_frame(["a"]) + c.seal_frame(["b"])
    for i in range(len(data)):
        out += s.feed(data[i : i + 1])
    assert out == [["a"], ["b"]]


def test_server_frames_may_follow_its_hello_in_one_read():
    c, s = session(Role.CLIENT), session(Role.SERVER)
    s.feed(c.data_to_send())
    assert c.feed(s.data_to_send() + s.seal_frame("hi")) == ["hi"]


def test_fresh_nonces_give_fresh_session_keys():
    c1, s1 = session(Role.CLIENT), session(Role.SERVER)
    c2, s2 = session(Role.CLIENT), session(Role.SERVER, nonce=b"t" * 16)
    connect(c1, s1)
    connect(c2, s2)
    assert c1.seal_frame("same") != c2.seal_frame("same")


def test_wrong_key_wrong_cluster_and_reflection_are_rejected():
    c = session(Role.CLIENT, keys=(K2,))
    assert fails(session(Role.SERVER), c.data_to_send()) is DropReason.BAD_AUTH
    c = session(Role.CLIENT, label=label_hash("other"))
    assert fails(session(Role.SERVER), c.data_to_send()) is DropReason.UNKNOWN_CLUSTER
    c = session(Role.CLIENT)
    hello = c.data_to_send()
    assert fails(c, hello) is DropReason.BAD_AUTH  # its own hello reflected back
    forged = bytearray(hello)
    forged[-1] ^= 1
    assert fails(session(Role.SERVER), bytes(forged)) is DropReason.BAD_AUTH


def test_rotation_server_answers_under_the_clients_key():
    c = session(Role.CLIENT, keys=(K2, K1))
    s = session(Role.SERVER, keys=(K1, K2))
    connect(c, s)
    assert s.feed(c.seal_frame("rotated")) == ["rotated"]


def test_bad_frames():
    c, s = session(Role.CLIENT), session(Role.SERVER)
    connect(c, s)
    frame = c.seal_frame(["ok"])
    assert s.feed(frame) == [["ok"]]
    assert fails(s, frame) is DropReason.BAD_AUTH  # replayed frame: wrong counter

    c, s = session(Role.CLIENT), session(Role.SERVER)
    connect(c, s)
    too_big = (MAX_FRAME + 17).to_bytes(4, "big")
    assert fails(s, too_big) is DropReason.BAD_SIZE  # rejected before any body arrives

    c, s = session(Role.CLIENT), session(Role.SERVER)
    connect(c, s)
    flipped = bytearray(c.seal_frame(["ok"]))
    flipped[-3] ^= 0x80
    assert fails(s, bytes(flipped)) is DropReason.BAD_AUTH

    c, s = session(Role.CLIENT), session(Role.SERVER)
    connect(c, s)
    assert fails(s, c.seal_raw(b"\x91" * 50 + b"\xc0")) is DropReason.BAD_SCHEMA


def test_small_frame_cap_and_local_misuse():
    c, s = session(Role.CLIENT, max_frame=64), session(Role.SERVER, max_frame=64)
    with pytest.raises(RuntimeError):
        c.seal_frame("too early")
    connect(c, s)
    with pytest.raises(ValueError):
        c.seal_frame(b"x" * 100)
    big = session(Role.CLIENT)
    big_server = session(Role.SERVER, max_frame=64)
    big_server.feed(big.data_to_send())
    big.feed(big_server.data_to_send())
    big_server.feed(big.data_to_send())
    assert fails(big_server, big.seal_frame(b"x" * 100)) is DropReason.BAD_SIZE


def test_hello_size_is_fixed():
    assert len(session(Role.CLIENT).data_to_send()) == HELLO_LEN


def test_replayed_client_hello_never_proves_itself():
    c, s = session(Role.CLIENT), session(Role.SERVER)
    hello = c.data_to_send()
    s.feed(hello)
    c.feed(s.data_to_send())
    old_finished = c.data_to_send()
    old_frame = c.seal_frame("recorded")
    for later in (old_finished, old_frame, old_finished + old_frame):
        replayed = session(Role.SERVER, nonce=b"u" * 16)  # a new connection, fresh server nonce
        assert replayed.feed(hello) == []
        assert replayed.established and not replayed.peer_proven
        assert fails(replayed, later) is DropReason.BAD_AUTH


def test_nothing_but_a_finished_frame_is_buffered_before_the_peer_is_proven():
    c, s = session(Role.CLIENT), session(Role.SERVER)
    s.feed(c.data_to_send())
    # A replayer announces a 4 MiB frame: refused on its 4-byte length, nothing buffered.
    assert fails(s, (4 << 20).to_bytes(4, "big")) is DropReason.BAD_AUTH
    c, s = session(Role.CLIENT), session(Role.SERVER)
    s.feed(c.data_to_send())
    assert s.feed(b"\x00\x00") == [] and s.buffered == 2
    assert FINISHED_LEN < 64
