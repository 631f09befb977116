"""Datagram codec: envelope, AEAD, replay window, strict msgpack, size limits.

Pure and sans-IO: no clock, no socket, no entropy. The boot salt and the TCP
hello nonces are drawn by the runtime (``os.urandom``) and passed in.

Interface for the gossip core (stable names)
--------------------------------------------
- ``sealer = Sealer(keyring, sender_id, restart_counter, boot_salt, label_hash(label))``
  then ``sealer.seal(messages, to=(receiver, its salt)) -> bytes`` (messages:
  a list of msgpack-able objects), or ``sealer.seal_packed([pack(m) ...], to=...)``
  when messages are already packed (``pack``/``packed_size`` measure them once).
  ``to=None`` seals an unbound datagram (first contact: the receiver's epoch
  is not known yet).
- ``opener.bind(node_id, boot_salt)``: the receiver this opener serves; a
  datagram bound to any other receiver, or to an earlier life of this one,
  is dropped as REPLAY. ``opener.peer_salt(sender)`` is the boot salt of the
  newest epoch authenticated from ``sender`` (what to bind replies to).
- Budget: ``payload_size(sizes) <= plaintext_budget(limit)`` where
  ``payload_size`` adds the msgpack array header; ``seal*`` raises ValueError
  (our misuse) when the datagram would exceed ``max_datagram``.
- ``opener = Opener(keyring, [label_hash(label)])``
  then ``opener.open(data, now) -> Datagram(sender, epoch, counter,
  messages, key_id, bound, study)`` or ``raise WireError`` whose ``.reason`` is a
  :class:`DropReason`; count it with ``DropCounter.add(err)``.
- Opening changes no state unless authentication and decoding succeed. With
  ``open(data, now, commit=False)`` the replay window is left untouched too:
  check each message's schema, then ``opener.accept(datagram)``.
- Map keys inside messages must be str or bytes (msgpack ``strict_map_key``):
  send ``{origin: seq}`` as a list of pairs.
- Schema helpers (``expect_int`` …) raise ``WireError(BAD_SCHEMA)``.
- TCP: ``TcpSession`` in :mod:`p2phpo.core.wire_tcp` (re-exported here).
- Study: ``sealer.study = study_tag(fp)`` once the node holds a study; the
  opener hands each datagram's ``study`` (None: the sender holds none) to the
  gossip core, which keeps the ledgers of two studies apart.

Envelope (57 bytes, all associated data), then ciphertext + 16-byte tag::

    version u8 | label 8 | key id 4 | sender u64 | restart u32 | boot salt u64 | counter u64
    | receiver u64 | receiver boot salt u64

The label is the first 4 bytes of the cluster's ``label_hash`` (another
``--cluster`` name: ``unknown_cluster``) then the sender's 4-byte study tag
(zeros while it holds no study).

The receiver fields bind a datagram to one life of one receiver, so it cannot
be replayed to another node, nor to the same node after it restarted (a new
life draws a new boot salt; replay windows live in memory only). Both are 0
in an unbound datagram, which the gossip core limits to first-contact
messages (a Ping and signed Alives): replaying one gets at most an Ack.

The subkey is HKDF(cluster key, info = sender | restart | boot salt), so the
nonce can be the counter: a restart bumps the persisted restart counter and a
copied state dir still gets a fresh random salt, hence a fresh subkey.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from p2phpo.core.wire_codec import (
    DEFAULT_MAX_DEPTH,
    DropCounter,
    DropReason,
    WireError,
    array_header,
    array_header_size,
    check_depth,
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
    expect_uint64,
    pack,
    packed_size,
    unpack_strict,
)
from p2phpo.core.wire_crypto import (
    KEY_LEN,
    TAG_LEN,
    Aead,
    Cipher,
    Keyring,
    Lru,
    NullAead,
    counter_nonce,
    derive,
    key_id,
)
from p2phpo.core.wire_tcp import MAX_FRAME, Role, TcpSession, tcp_hello

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_MAX_DEPTH",
    "HEADER_LEN",
    "KEY_LEN",
    "MAX_FRAME",
    "OVERHEAD",
    "TAG_LEN",
    "VERSION",
    "Aead",
    "Cipher",
    "Datagram",
    "DropCounter",
    "DropReason",
    "Epoch",
    "Keyring",
    "NullAead",
    "Opener",
    "Role",
    "Sealer",
    "TcpSession",
    "WireError",
    "array_header",
    "array_header_size",
    "check_depth",
    "expect_bool",
    "expect_bytes",
    "expect_enum",
    "expect_float",
    "expect_int",
    "expect_list",
    "expect_map",
    "expect_optional",
    "expect_str",
    "expect_tuple",
    "expect_uint64",
    "key_id",
    "label_hash",
    "study_tag",
    "NO_STUDY",
    "STUDY_TAG_LEN",
    "pack",
    "packed_size",
    "payload_size",
    "plaintext_budget",
    "tcp_hello",
    "unpack_strict",
]

VERSION = 2
DEFAULT_MAX_DATAGRAM = 1232
"""Largest UDP payload sent or accepted (IPv6 minimum MTU minus headers)."""

_HEADER = struct.Struct(">B8s4sQIQQQQ")
HEADER_LEN = _HEADER.size
OVERHEAD = HEADER_LEN + TAG_LEN
_MIN_DATAGRAM = OVERHEAD + 1  # the payload is at least an empty msgpack array
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_SUBKEY_INFO = b"p2phpo/udp/v1"


def plaintext_budget(limit: int = DEFAULT_MAX_DATAGRAM) -> int:
    """Plaintext bytes (msgpack array header included) that fit a datagram of ``limit``."""
    return limit - OVERHEAD


def payload_size(message_sizes: Sequence[int]) -> int:
    """Plaintext bytes of a payload holding messages of the given packed sizes."""
    return array_header_size(len(message_sizes)) + sum(message_sizes)


def label_hash(label: str) -> bytes:
    """8-byte cluster tag: blake2b of the ``--cluster`` label (TCP hellos carry all of it;
    datagrams its first 4 bytes, then the sender's study tag)."""
    raw = label.encode()
    h = hashlib.blake2b(digest_size=8, person=b"p2phpo-label")
    h.update(len(raw).to_bytes(4, "big") + raw)
    return h.digest()


STUDY_TAG_LEN = 4
NO_STUDY = bytes(STUDY_TAG_LEN)


def study_tag(fingerprint: str) -> bytes:
    """The 4-byte tag of the study with ``fingerprint`` that a node's datagrams carry."""
    tag = hashlib.blake2b(fingerprint.encode(), digest_size=STUDY_TAG_LEN,
                          person=b"p2phpo-study").digest()
    return tag if tag != NO_STUDY else b"\x00\x00\x00\x01"


@dataclass(frozen=True, slots=True)
class Epoch:
    """One life of a sender: persisted restart counter plus a random 64-bit boot salt."""

    restart: int
    salt: int

    def __post_init__(self) -> None:
        if not (0 <= self.restart <= _U32 and 0 <= self.salt <= _U64):
            raise ValueError("restart is a uint32 and salt a uint64")


@dataclass(frozen=True, slots=True)
class Datagram:
    """An authenticated, decoded datagram. ``messages`` are not schema-checked yet."""

    sender: int
    epoch: Epoch
    counter: int
    messages: list[Any]
    key_id: bytes
    bound: bool = True
    """False for an unbound (first-contact) datagram, which any receiver accepts once."""
    study: bytes | None = None
    """The sender's study tag (``study_tag``), None while it holds no study."""


def _subkey_aead(cipher: Cipher, key: bytes, sender: int, restart: int, salt: int) -> Aead:
    """The AEAD of one sender life's subkey. The HKDF is a pure function of its inputs,
    kept in a small bounded memo that every Opener and Sealer of the process shares: a
    simulator's 1,000 nodes each meet the same 1,000 senders (one HKDF per sender life,
    not 10^6). Only the 32-byte subkeys are kept, so a flood of made-up senders costs
    at most ``_SUBKEYS_CAP`` of them."""
    info = _SUBKEY_INFO + struct.pack(">QIQ", sender, restart, salt)
    memo_key = (key, info)
    subkey = _SUBKEYS.get(memo_key)
    if subkey is None:
        if len(_SUBKEYS) >= _SUBKEYS_CAP:
            _SUBKEYS.clear()
        subkey = _SUBKEYS[memo_key] = derive(key, info)
    return cipher.aead(subkey)


_SUBKEYS: dict[tuple[bytes, bytes], bytes] = {}
_SUBKEYS_CAP = 4096


class Sealer:
    """Seals this node's outgoing datagrams; one per node life (epoch)."""

    def __init__(
        self,
        keyring: Keyring,
        sender_id: int,
        restart_counter: int,
        boot_salt: int,
        label_hash: bytes,
        *,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
    ) -> None:
        if not 0 <= sender_id <= _U64:
            raise ValueError("sender id is a uint64")
        self._keyring = keyring
        self._sender = sender_id
        self._epoch = Epoch(restart_counter, boot_salt)
        self.label_hash = label_hash
        self.study = NO_STUDY  # our study tag, once we hold one (the gossip core sets it)
        self.max_datagram = max_datagram
        self._counter = 0
        self._aead: tuple[bytes, Aead] | None = None

    @property
    def label_hash(self) -> bytes:
        return self._label

    @label_hash.setter
    def label_hash(self, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != 8:
            raise ValueError("a label hash is 8 bytes (see label_hash())")
        self._label = value

    @property
    def sender(self) -> int:
        return self._sender

    @property
    def epoch(self) -> Epoch:
        return self._epoch

    @property
    def counter(self) -> int:
        """The counter of the last sealed datagram (0 before the first)."""
        return self._counter

    def plaintext_budget(self) -> int:
        return plaintext_budget(self.max_datagram)

    def seal(self, messages: list[Any], to: tuple[int, int] | None = None) -> bytes:
        """One datagram carrying ``messages`` (a list of msgpack-able objects),
        bound to receiver ``to`` = (node id, boot salt), or unbound."""
        return self.seal_raw(pack(list(messages)), to)

    def seal_packed(self, packed: Sequence[bytes], to: tuple[int, int] | None = None) -> bytes:
        """One datagram from messages already packed with :func:`pack`."""
        return self.seal_raw(array_header(len(packed)) + b"".join(packed), to)

    def seal_raw(self, payload: bytes, to: tuple[int, int] | None = None) -> bytes:
        """Seal arbitrary plaintext bytes (tests and fuzzing seal junk with this)."""
        size = OVERHEAD + len(payload)
        if size > self.max_datagram:
            raise ValueError(f"datagram of {size} bytes exceeds the {self.max_datagram}-byte limit")
        if self._counter >= _U64:
            raise RuntimeError("datagram counter exhausted; restart the node")
        receiver, rsalt = to if to is not None else (0, 0)
        if not (0 <= receiver <= _U64 and 0 <= rsalt <= _U64):
            raise ValueError("a receiver is a (uint64 id, uint64 boot salt) pair")
        self._counter += 1
        kid, aead = self._current_aead()
        ad = _HEADER.pack(
            VERSION,
            self._label[:4] + self.study,
            kid,
            self._sender,
            self._epoch.restart,
            self._epoch.salt,
            self._counter,
            receiver,
            rsalt,
        )
        return ad + aead.encrypt(counter_nonce(self._counter), payload, ad)

    def _current_aead(self) -> tuple[bytes, Aead]:
        kid = self._keyring.primary_id
        if self._aead is None or self._aead[0] != kid:
            aead = _subkey_aead(
                self._keyring.cipher,
                self._keyring.primary,
                self._sender,
                self._epoch.restart,
                self._epoch.salt,
            )
            self._aead = (kid, aead)
        return self._aead


_WindowKey = tuple[int, int, int]  # (sender, restart, salt)


class Opener:
    """Authenticates and decodes incoming datagrams; owns the replay windows.

    One window of ``window_bits`` counters per (sender, restart, salt), created
    only by an authenticated datagram; at most ``max_windows`` are kept (least
    recently used evicted: a replay of an evicted epoch's packets would pass,
    so keep the cap well above the cluster size). Once a sender's newer
    restart counter has been seen, its older epochs are rejected as REPLAY.
    """

    def __init__(
        self,
        keyring: Keyring,
        label_hashes: Iterable[bytes],
        *,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        window_bits: int = 1024,
        max_windows: int = 4096,
        max_subkeys: int = 1024,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._keyring = keyring
        self.label_hashes = label_hashes
        self.max_datagram = max_datagram
        self.max_depth = max_depth
        self._wbits = window_bits
        self._wmask = (1 << window_bits) - 1
        # (sender, restart, salt) -> [highest counter, bitmap: bit i = highest - i seen]
        self._windows: Lru[_WindowKey, list[int]] = Lru(max_windows)
        self._newest: Lru[int, tuple[int, int]] = Lru(max_windows)  # sender -> newest (restart, salt)
        self._me: tuple[int, int] | None = None
        self._subkeys: Lru[tuple[bytes, int, int, int], Aead] = Lru(max_subkeys)

    @property
    def label_hashes(self) -> frozenset[bytes]:
        return self._labels

    def bind(self, node_id: int, boot_salt: int) -> None:
        """Serve receiver ``node_id`` in its life ``boot_salt``: datagrams bound elsewhere are REPLAY."""
        self._me = (node_id, boot_salt)

    def peer_salt(self, sender: int) -> int | None:
        """Boot salt of the newest (vouched) epoch authenticated from ``sender``, or None."""
        newest = self._newest.peek(sender)
        return None if newest is None else newest[1]

    @label_hashes.setter
    def label_hashes(self, values: Iterable[bytes]) -> None:
        self._labels = frozenset(values)
        self._clusters = frozenset(v[:4] for v in self._labels)

    def open(self, data: bytes, now: float = 0.0, *, commit: bool = True) -> Datagram:
        """Authenticate and decode ``data`` or raise WireError.

        ``now`` is accepted for symmetry with the gossip core; the wire needs no
        clock. With ``commit`` (default) the replay window records the counter.
        """
        n = len(data)
        if n > self.max_datagram or n < _MIN_DATAGRAM:
            raise WireError(DropReason.BAD_SIZE, f"{n} bytes")
        if type(data) is not bytes:  # bytearray or memoryview from a socket layer
            data = bytes(data)
        if data[0] != VERSION:
            raise WireError(DropReason.BAD_VERSION, f"version {data[0]}")
        _, label, kid, sender, restart, salt, counter, receiver, rsalt = _HEADER.unpack_from(data)
        if label[:4] not in self._clusters:
            raise WireError(DropReason.UNKNOWN_CLUSTER)
        key = self._keyring.get(kid)
        if key is None:
            raise WireError(DropReason.BAD_AUTH, "unknown key id")
        self._check_replay(sender, restart, salt, counter)
        plain = self._decrypt(data, (kid, sender, restart, salt), key, counter)
        messages = unpack_strict(plain, max_depth=self.max_depth)
        if type(messages) is not list:
            raise WireError(DropReason.BAD_SCHEMA, "payload is not an array")
        bound = receiver != 0 or rsalt != 0
        if bound and (receiver, rsalt) != self._me:
            raise WireError(DropReason.REPLAY, "sealed for another receiver or an earlier life")
        study = label[4:] if label[4:] != NO_STUDY else None
        dg = Datagram(sender, Epoch(restart, salt), counter, messages, kid, bound, study)
        if commit:
            self._record(sender, restart, salt, counter)
        return dg

    def _decrypt(self, data: bytes, sk: tuple[bytes, int, int, int], key: bytes, ctr: int) -> bytes:
        """Plaintext of ``data`` under the subkey ``sk`` names; cached only once it worked."""
        aead = self._subkeys.get(sk)
        fresh = aead is None
        if aead is None:
            aead = _subkey_aead(self._keyring.cipher, key, *sk[1:])
        try:
            plain = aead.decrypt(counter_nonce(ctr), data[HEADER_LEN:], data[:HEADER_LEN])
        except InvalidTag:
            raise WireError(DropReason.BAD_AUTH, "tag mismatch") from None
        if fresh:
            self._subkeys.put(sk, aead)
        return plain

    def accept(self, dg: Datagram, *, vouched: bool = True) -> None:
        """Record ``dg``'s counter in its replay window (done by ``open`` unless commit=False).

        Only a ``vouched`` datagram (its sender's own signed record names its boot
        salt) moves the sender's newest epoch, below which datagrams are stale:
        otherwise one forged header with a huge restart counter would cut the
        real sender off. Raises WireError(REPLAY) if the counter was recorded
        since it was opened.
        """
        self._check_replay(dg.sender, dg.epoch.restart, dg.epoch.salt, dg.counter)
        self._record(dg.sender, dg.epoch.restart, dg.epoch.salt, dg.counter, vouched)

    def _record(self, sender: int, restart: int, salt: int, counter: int, vouched: bool = True) -> None:
        wk = (sender, restart, salt)
        win = self._windows.get(wk)
        if win is None:
            self._windows.put(wk, [counter, 1])
        elif counter > win[0]:
            win[1] = ((win[1] << (counter - win[0])) | 1) & self._wmask
            win[0] = counter
        else:
            win[1] |= 1 << (win[0] - counter)
        newest = self._newest.peek(sender)
        if not vouched:
            return
        if newest is None or restart > newest[0] or (restart == newest[0] and salt != newest[1]):
            self._newest.put(sender, (restart, salt))
        else:
            self._newest.get(sender)  # refresh recency

    def _check_replay(self, sender: int, restart: int, salt: int, counter: int) -> None:
        newest = self._newest.peek(sender)
        if newest is not None and restart < newest[0]:
            raise WireError(DropReason.REPLAY, "stale epoch")
        win = self._windows.peek((sender, restart, salt))
        if win is None or counter > win[0]:
            return
        d = win[0] - counter
        if d >= self._wbits or (win[1] >> d) & 1:
            raise WireError(DropReason.REPLAY, f"counter {counter}")

    def snapshot(self) -> bytes:
        """Canonical bytes of the replay state, for tests that assert it did not change."""
        nbytes = (self._wbits + 7) // 8
        windows = sorted([*k, w[0], w[1].to_bytes(nbytes, "big")] for k, w in self._windows.items())
        newest = sorted([s, *r] for s, r in self._newest.items())
        return pack([windows, newest])
