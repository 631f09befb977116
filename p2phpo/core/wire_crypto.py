"""Keys, HKDF subkeys and AEAD ciphers for the wire format.

Pure: keys arrive as bytes, nothing here draws entropy. Two ciphers share one
interface (``encrypt``/``decrypt`` as in ``cryptography``'s ``AESGCM``):
AES-256-GCM, and a null cipher for the simulator and tests that keeps the same
sizes (plaintext in clear plus a 16-byte CRC32 check). The null cipher detects
corruption and a wrong key most of the time; it is NOT secure.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from enum import Enum
from typing import Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_LEN = 32
TAG_LEN = 16
NONCE_LEN = 12
KEY_ID_LEN = 4

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Aead(Protocol):
    """What a sealing key can do (the shape of ``cryptography``'s AESGCM)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


_PAD = bytes(TAG_LEN - 4)


class NullAead:
    """Plaintext plus a CRC32 over key, nonce, associated data and plaintext.

    Same sizes as AES-GCM so simulated datagrams match real ones byte for byte.
    Raises ``InvalidTag`` like AESGCM when the check fails.
    """

    __slots__ = ("_seed",)

    def __init__(self, key: bytes) -> None:
        self._seed = zlib.crc32(key)

    def _tag(self, nonce: bytes, data: bytes, ad: bytes | None) -> bytes:
        c = zlib.crc32(nonce, self._seed)
        c = zlib.crc32(ad or b"", c)
        c = zlib.crc32(data, c)
        return c.to_bytes(4, "big") + _PAD

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return data + self._tag(nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < TAG_LEN:
            raise InvalidTag()
        body, tag = data[:-TAG_LEN], data[-TAG_LEN:]
        if tag != self._tag(nonce, body, associated_data):
            raise InvalidTag()
        return body


class Cipher(Enum):
    """Which AEAD seals the wire: real AES-256-GCM or the size-matched null cipher."""

    AES_GCM = "aes-gcm"
    NULL = "null"

    def aead(self, key: bytes) -> Aead:
        """An AEAD object for a 32-byte (sub)key."""
        return AESGCM(key) if self is Cipher.AES_GCM else NullAead(key)


def derive(key: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    """HKDF-SHA256 of ``key`` with ``info`` (no salt: the cluster key is uniform)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def key_id(key: bytes) -> bytes:
    """4-byte identifier of a key, sent in the clear to select it on receipt."""
    return hashlib.blake2b(key, digest_size=KEY_ID_LEN, person=b"p2phpo-key-id").digest()


def counter_nonce(counter: int) -> bytes:
    """12-byte AEAD nonce from a 64-bit counter (unique per subkey by construction)."""
    return counter.to_bytes(NONCE_LEN, "big")


class Lru(Generic[K, V]):
    """A dict with a size cap that evicts the least recently used entry."""

    __slots__ = ("_cap", "_d")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("an LRU needs a capacity of at least 1")
        self._cap = cap
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, k: K) -> V | None:
        v = self._d.get(k)
        if v is not None:
            self._d.move_to_end(k)
        return v

    def peek(self, k: K) -> V | None:
        """Like get, without touching the recency order."""
        return self._d.get(k)

    def put(self, k: K, v: V) -> None:
        self._d[k] = v
        self._d.move_to_end(k)
        if len(self._d) > self._cap:
            self._d.popitem(last=False)

    def pop(self, k: K) -> V | None:
        return self._d.pop(k, None)

    def keys(self) -> list[K]:
        return list(self._d)

    def items(self) -> list[tuple[K, V]]:
        return list(self._d.items())

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, k: object) -> bool:
        return k in self._d


class Keyring:
    """Installed cluster keys: the primary seals, any installed key opens.

    Rotation: ``install(new)`` on every node, then ``use(new)`` on every node,
    then ``remove(old)``. Keys are 32 bytes; a key is named by :func:`key_id`.
    """

    __slots__ = ("_cipher", "_keys", "_primary")

    def __init__(self, keys: Iterable[bytes], *, cipher: Cipher = Cipher.AES_GCM) -> None:
        self._cipher = cipher
        self._keys: dict[bytes, bytes] = {}
        for k in keys:
            self.install(k)
        if not self._keys:
            raise ValueError("a keyring needs at least one key")
        self._primary = next(iter(self._keys))

    @property
    def cipher(self) -> Cipher:
        return self._cipher

    @property
    def primary_id(self) -> bytes:
        return self._primary

    @property
    def primary(self) -> bytes:
        return self._keys[self._primary]

    def install(self, key: bytes) -> bytes:
        """Add ``key`` (idempotent) and return its key id."""
        if not isinstance(key, bytes) or len(key) != KEY_LEN:
            raise ValueError(f"a cluster key is {KEY_LEN} bytes")
        kid = key_id(key)
        old = self._keys.get(kid)
        if old is not None and old != key:
            raise ValueError("two different keys share a key id; generate another key")
        self._keys[kid] = key
        return kid

    def use(self, key: bytes) -> None:
        """Make an installed key (given as key or key id) the one that seals."""
        kid = self._resolve(key)
        self._primary = kid

    def remove(self, key: bytes) -> None:
        """Uninstall a key (given as key or key id); the primary cannot be removed."""
        kid = self._resolve(key)
        if kid == self._primary:
            raise ValueError("cannot remove the primary key; use another key first")
        del self._keys[kid]

    def get(self, kid: bytes) -> bytes | None:
        """The key with id ``kid``, or None when it is not installed."""
        return self._keys.get(kid)

    def ids(self) -> list[bytes]:
        return list(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys.values())

    def _resolve(self, key: bytes) -> bytes:
        kid = key if len(key) == KEY_ID_LEN else key_id(key)
        if kid not in self._keys:
            raise KeyError("that key is not installed in the keyring")
        return kid
