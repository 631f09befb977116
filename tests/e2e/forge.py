"""What an attacker on the machine (or holding the cluster key) sends: sealed
datagrams of ledger records, to real nodes on 127.0.0.1.

Datagrams carrying entries must be bound to one life of their receiver, so the
attacker first makes contact as any new node would (an unbound Ping), reads
the receiver's id, boot salt and study tag from its authenticated reply, and
binds to it (entries of another study would be dropped unread).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from p2phpo.core.messages import EntryMsg, Ping, to_wire
from p2phpo.core.wire import NO_STUDY, Cipher, Keyring, Opener, Sealer, label_hash
from p2phpo.keys import load_keyring


def _ring(key_file: Path | None) -> Keyring:
    """The cluster key, or the public key of unkeyed loopback mode."""
    ring = load_keyring(key_file) if key_file is not None else Keyring([bytes(32)], cipher=Cipher.NULL)
    assert ring is not None
    return ring


def send_records(port: int, raws: list[bytes], key_file: Path | None, cluster: str = "default") -> None:
    """Each record in a datagram of its own to 127.0.0.1:``port``, bound to the node there."""
    ring, label = _ring(key_file), label_hash(cluster)
    me, salt = int.from_bytes(os.urandom(8), "big") | 1, int.from_bytes(os.urandom(8), "big")
    sealer, opener = Sealer(ring, me, 0, salt, label), Opener(ring, [label])
    opener.bind(me, salt)
    target = ("127.0.0.1", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5.0)
        sock.sendto(sealer.seal([to_wire(Ping(1, 0))]), target)  # first contact: unbound
        while True:
            data, src = sock.recvfrom(65536)
            if src[1] == port:
                reply = opener.open(data)
                break
        to = (reply.sender, reply.epoch.salt)
        sealer.study = reply.study or NO_STUDY  # pose as a node of the receiver's study
        for raw in raws:
            sock.sendto(sealer.seal([to_wire(EntryMsg(raw))], to=to), target)
