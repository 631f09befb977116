"""Sealed TCP streams (push-pull, catch-up, ``status``/``export --seed``).

Pure and sans-IO, in h11's shape: bytes in with :meth:`TcpSession.feed`,
bytes out with :meth:`TcpSession.data_to_send` and :meth:`TcpSession.seal_frame`.
The runtime adds the 5 s deadline and the cap on unauthenticated connections.

Handshake: the client sends a hello, the server answers with its own. A hello
is ``version u8 | label hash 8 | key id 4 | role u8 | nonce 16`` (associated
data) then the sender's node id sealed under a hello key derived from the
cluster key (the client's key id selects it; the server answers under the
same key). Each side draws its 16-byte nonce at random (passed in); the
per-direction subkeys are HKDF(cluster key, nonce_c | nonce_s | direction),
so every session has fresh keys. Key confirmation: right after its hello
is answered, each side seals a fixed "finished" frame (frame counter 1) under
the session keys, and the first frame a side accepts must be exactly the
peer's finished frame. A replayed hello gets nowhere: the replayer cannot
seal the finished frame, so :attr:`TcpSession.peer_proven` stays false, and
until then nothing larger than a finished frame is ever buffered.

Frames: ``length u32`` (of the sealed body) then AEAD(body) with the frame
counter as nonce and the length as associated data. The length is checked
against the frame cap (the finished-frame size before the peer is proven)
before the body is buffered. Frame bodies are msgpack objects; the framing
does not care what they mean, so new request kinds need no framing change.
"""

from __future__ import annotations

import struct
from enum import Enum
from typing import Any

from cryptography.exceptions import InvalidTag

from p2phpo.core.wire_codec import DEFAULT_MAX_DEPTH, DropReason, WireError, pack, unpack_strict
from p2phpo.core.wire_crypto import TAG_LEN, Aead, Keyring, counter_nonce, derive

TCP_VERSION = 2
MAX_FRAME = 8 * 1024 * 1024
"""Largest plaintext of one TCP frame."""
HELLO_NONCE_LEN = 16
_HELLO_AD = struct.Struct(">B8s4sB16s")
HELLO_LEN = _HELLO_AD.size + 8 + TAG_LEN
_LEN = struct.Struct(">I")
_HELLO_INFO = b"p2phpo/tcp-hello/v1"
_SESSION_INFO = b"p2phpo/tcp/v2"
_FINISHED = b"p2phpo/tcp/finished"
FINISHED_LEN = _LEN.size + len(_FINISHED) + TAG_LEN
"""Bytes of a sealed finished frame (what a side sends right after the hellos)."""


class Role(Enum):
    CLIENT = 0
    SERVER = 1


def tcp_hello(
    keyring: Keyring,
    *,
    role: Role,
    nonce: bytes,
    sender: int,
    label_hash: bytes,
    key_id: bytes | None = None,
) -> bytes:
    """The sealed hello a side sends first (``key_id`` defaults to the primary)."""
    if len(nonce) != HELLO_NONCE_LEN:
        raise ValueError(f"a hello nonce is {HELLO_NONCE_LEN} random bytes")
    kid = keyring.primary_id if key_id is None else key_id
    key = keyring.get(kid)
    if key is None:
        raise ValueError("the hello key is not installed")
    ad = _HELLO_AD.pack(TCP_VERSION, label_hash, kid, role.value, nonce)
    aead = keyring.cipher.aead(derive(key, _HELLO_INFO))
    return ad + aead.encrypt(nonce[:12], sender.to_bytes(8, "big"), ad)


def _open_hello(
    keyring: Keyring, data: bytes, role: Role, labels: frozenset[bytes]
) -> tuple[bytes, bytes, int]:
    """(key id, nonce, sender) of a peer's hello, or WireError."""
    version, label, kid, peer_role, nonce = _HELLO_AD.unpack_from(data)
    if version != TCP_VERSION:
        raise WireError(DropReason.BAD_VERSION, f"tcp version {version}")
    if label not in labels:
        raise WireError(DropReason.UNKNOWN_CLUSTER)
    key = keyring.get(kid)
    if key is None or peer_role != role.value:
        raise WireError(DropReason.BAD_AUTH, "unknown key id or wrong role")
    ad = data[: _HELLO_AD.size]
    try:
        sender = keyring.cipher.aead(derive(key, _HELLO_INFO)).decrypt(
            nonce[:12], data[_HELLO_AD.size :], ad
        )
    except InvalidTag:
        raise WireError(DropReason.BAD_AUTH, "hello tag mismatch") from None
    return kid, nonce, int.from_bytes(sender, "big")


class TcpSession:
    """One side of a sealed TCP stream. Construct, send ``data_to_send()``, then feed."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        role: Role,
        nonce: bytes,
        sender: int,
        label_hash: bytes,
        accept_labels: frozenset[bytes] | set[bytes] | None = None,
        max_frame: int = MAX_FRAME,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._keyring = keyring
        self._role = role
        self._nonce = nonce
        self._sender = sender
        self._label = label_hash
        self._labels = frozenset(accept_labels or {label_hash})
        self.max_frame = max_frame
        self.max_depth = max_depth
        self._out = bytearray()
        self._buf = bytearray()
        self._failed: WireError | None = None
        self._tx: Aead | None = None
        self._rx: Aead | None = None
        self._tx_n = 0
        self._rx_n = 0
        self.peer_sender: int | None = None
        if role is Role.CLIENT:
            self._out += tcp_hello(
                keyring, role=role, nonce=nonce, sender=sender, label_hash=label_hash
            )

    @property
    def established(self) -> bool:
        """True once the peer's hello authenticated and frames can be sealed."""
        return self._tx is not None

    @property
    def peer_proven(self) -> bool:
        """True once the peer's finished frame authenticated under this session's fresh keys.

        A hello alone can be a replay; count the connection as unauthenticated
        (pre-auth cap, hello deadline) until this is true, and let a server send
        bulk data only after it.
        """
        return self._rx_n > 0

    @property
    def buffered(self) -> int:
        """Bytes received and held until their frame is complete."""
        return len(self._buf)

    @property
    def failed(self) -> WireError | None:
        """The error that broke this session, if any (then drop the connection)."""
        return self._failed

    def data_to_send(self) -> bytes:
        """Handshake bytes waiting to be written (empty when none)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def seal_frame(self, obj: Any) -> bytes:
        """One sealed, length-prefixed frame carrying ``obj``."""
        if self._tx is None:
            raise RuntimeError("seal_frame before the handshake completed")
        return self.seal_raw(pack(obj))

    def seal_raw(self, payload: bytes) -> bytes:
        """Seal arbitrary plaintext bytes as one frame (tests and fuzzing seal junk)."""
        if self._tx is None:
            raise RuntimeError("seal_frame before the handshake completed")
        if len(payload) > self.max_frame:
            raise ValueError(f"frame of {len(payload)} bytes exceeds the {self.max_frame} cap")
        self._tx_n += 1
        header = _LEN.pack(len(payload) + TAG_LEN)
        return header + self._tx.encrypt(counter_nonce(self._tx_n), payload, header)

    def feed(self, data: bytes) -> list[Any]:
        """Decoded objects of every complete frame in ``data`` (plus what was buffered).

        Raises WireError on a bad hello or frame; the session is then dead and
        every later call raises too. Objects are not schema-checked.
        """
        if self._failed is not None:
            raise WireError(self._failed.reason, "session already failed")
        self._buf += data
        try:
            if self._rx is None and not self._take_hello():
                return []
            return self._take_frames()
        except WireError as e:
            self._failed = e
            self._buf.clear()
            raise

    def _take_hello(self) -> bool:
        if len(self._buf) < HELLO_LEN:
            return False
        hello = bytes(self._buf[:HELLO_LEN])
        del self._buf[:HELLO_LEN]
        peer_role = Role.SERVER if self._role is Role.CLIENT else Role.CLIENT
        kid, peer_nonce, self.peer_sender = _open_hello(
            self._keyring, hello, peer_role, self._labels
        )
        if self._role is Role.SERVER:
            self._out += tcp_hello(
                self._keyring,
                role=self._role,
                nonce=self._nonce,
                sender=self._sender,
                label_hash=self._label,
                key_id=kid,
            )
            nc, ns = peer_nonce, self._nonce
        else:
            nc, ns = self._nonce, peer_nonce
        key = self._keyring.get(kid)
        assert key is not None  # checked by _open_hello
        c2s = self._keyring.cipher.aead(derive(key, _SESSION_INFO + nc + ns + b"c2s"))
        s2c = self._keyring.cipher.aead(derive(key, _SESSION_INFO + nc + ns + b"s2c"))
        self._tx, self._rx = (c2s, s2c) if self._role is Role.CLIENT else (s2c, c2s)
        self._out += self.seal_raw(_FINISHED)  # key confirmation, frame counter 1
        return True

    def _take_frames(self) -> list[Any]:
        out: list[Any] = []
        buf = self._buf
        while len(buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(buf)
            if self._rx_n == 0 and n != FINISHED_LEN - _LEN.size:
                raise WireError(DropReason.BAD_AUTH, "no finished frame after the hello")
            if n > self.max_frame + TAG_LEN or n <= TAG_LEN:
                raise WireError(DropReason.BAD_SIZE, f"frame of {n} bytes")
            if len(buf) < _LEN.size + n:
                break
            header = bytes(buf[: _LEN.size])
            body = bytes(buf[_LEN.size : _LEN.size + n])
            del buf[: _LEN.size + n]
            assert self._rx is not None
            try:
                plain = self._rx.decrypt(counter_nonce(self._rx_n + 1), body, header)
            except InvalidTag:
                raise WireError(DropReason.BAD_AUTH, "frame tag mismatch") from None
            self._rx_n += 1
            if self._rx_n == 1:
                if plain != _FINISHED:
                    raise WireError(DropReason.BAD_AUTH, "bad finished frame")
                continue
            out.append(unpack_strict(plain, max_depth=self.max_depth))
        return out
