"""What an attacker on the machine (or holding the cluster key) sends: sealed
datagrams of ledger records, to real nodes on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from p2phpo.core.messages import EntryMsg, to_wire
from p2phpo.core.wire import Cipher, Keyring, Sealer, label_hash
from p2phpo.keys import load_keyring


def sealer(key_file: Path | None, cluster: str = "default") -> Sealer:
    """A sender the nodes accept: the cluster key, or the public key of unkeyed loopback mode."""
    ring = load_keyring(key_file) if key_file is not None else Keyring([bytes(32)], cipher=Cipher.NULL)
    assert ring is not None
    sender = int.from_bytes(os.urandom(8), "big") | 1
    return Sealer(ring, sender, 0, int.from_bytes(os.urandom(8), "big"), label_hash(cluster))


def send_records(port: int, raws: list[bytes], key_file: Path | None) -> None:
    """Each record in a datagram of its own to 127.0.0.1:``port``."""
    s = sealer(key_file)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for raw in raws:
            sock.sendto(s.seal([to_wire(EntryMsg(raw))]), ("127.0.0.1", port))
