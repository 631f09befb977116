"""Signed membership: each node signs its own Alive; anyone can check it.

Pure. A node signs (node id, incarnation, address, metadata) with its
Ed25519 identity whenever one of them changes, and the signature travels
with every copy of that Alive: gossiped, relayed, and inside push-pull member
records. Node ids are self-certifying (``node_id_of(public key)``), so a
receiver needs no key directory: an Alive is valid when its public key hashes
to its node id and the signature checks. Nobody but the node itself can thus
move its address, change its metadata or raise its incarnation.

Verifying costs ~50-100 µs, so :class:`AliveVerifier` remembers the verdict
of each valid signature by the signed bytes' hash (a relayed copy is checked
for free); invalid ones are not remembered (an attacker chooses their bytes),
and the caller drops a datagram at its first invalid Alive.
"""

from __future__ import annotations

import hashlib
from typing import Any

from p2phpo.core.identity import PUBLIC_LEN, SIGNATURE_LEN, Identity, node_id_of, verify
from p2phpo.core.wire_codec import pack
from p2phpo.core.wire_crypto import Lru

ALIVE_CONTEXT = b"p2phpo/alive/v1\x00"
U64 = (1 << 64) - 1


def alive_bytes(node: int, incarnation: int, addr: tuple[str, int], meta: dict[str, Any], boot: int) -> bytes:
    """The bytes a node signs for its Alive (domain-separated msgpack of the fields)."""
    return ALIVE_CONTEXT + pack([node, incarnation, addr[0], addr[1], meta, boot])


def sign_alive(
    identity: Identity, incarnation: int, addr: tuple[str, int], meta: dict[str, Any], boot: int
) -> bytes:
    """``identity``'s signature of its Alive with these fields."""
    return identity.sign(alive_bytes(identity.node_id, incarnation, addr, meta, boot))


class AliveVerifier:
    """Checks signed Alives; remembers each valid signature (bounded LRU)."""

    __slots__ = ("_ok", "checked", "verified")

    def __init__(self, cap: int = 8192) -> None:
        self._ok: Lru[bytes, bytes] = Lru(cap)
        self.checked = 0  # calls
        self.verified = 0  # Ed25519 verifications actually run

    def check(self, a: Any) -> bool:
        """True when ``a`` (an Alive or a MemberRecord) carries node ``a.node``'s own
        signature of its fields. Never raises."""
        self.checked += 1
        pub, sig = a.pub, a.sig
        if len(pub) != PUBLIC_LEN or len(sig) != SIGNATURE_LEN or node_id_of(pub) != a.node:
            return False
        if not (0 <= a.incarnation <= U64 and 0 <= a.boot <= U64):
            return False
        try:
            data = alive_bytes(a.node, a.incarnation, a.addr, a.meta, a.boot)
        except (TypeError, ValueError, OverflowError):
            return False
        digest = hashlib.blake2b(data + pub, digest_size=16).digest()
        if self._ok.get(sig) == digest:
            return True
        self.verified += 1
        if not verify(pub, sig, data):
            return False
        self._ok.put(sig, digest)
        return True
