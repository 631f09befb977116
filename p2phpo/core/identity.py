"""Node identity: an Ed25519 key pair and the 64-bit node id derived from it.

Pure: the caller supplies the 32-byte private seed (the state dir keeps it;
only the runtime reads the OS's randomness). Ids are self-certifying: anyone
holding a public key can check that it belongs to a node id, so a public key
may travel with any message without a directory of keys.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SEED_LEN = 32
PUBLIC_LEN = 32
SIGNATURE_LEN = 64
_ID_PERSON = b"p2phpo-node-id"


def node_id_of(public_key: bytes) -> int:
    """The 64-bit node id of ``public_key`` (never 0)."""
    if len(public_key) != PUBLIC_LEN:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_LEN} bytes, not {len(public_key)}")
    digest = hashlib.blake2b(public_key, digest_size=8, person=_ID_PERSON).digest()
    return int.from_bytes(digest, "big") or 1


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``data``; never raises."""
    if len(public_key) != PUBLIC_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """A node's signing key; ``node_id`` is derived from ``public_key``."""

    __slots__ = ("_key", "public_key", "node_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an identity seed has {SEED_LEN} bytes, not {len(seed)}")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id = node_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)
