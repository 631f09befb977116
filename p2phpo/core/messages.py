"""Gossip messages: frozen records, their msgpack layout and strict decoding.

A datagram's plaintext is a msgpack array of messages; each message is an
array ``[type, field, ...]``. TCP sync frames hold exactly one message. Decoding
is all-or-nothing: :func:`decode_messages` either returns every message of the
opened payload, schema-checked, or raises ``WireError`` (reason BAD_SCHEMA) and the
caller changes nothing. Ledger entries travel as their canonical bytes and are
decoded later by the core (``decode_record``), so a bad entry costs only itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from p2phpo.core.wire_codec import (
    DropReason,
    WireError,
    array_header,
    expect_bool,
    expect_bytes,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    expect_uint64,
    pack,
)

Addr = tuple[str, int]

MAX_HOST = 255
MAX_META_KEYS = 16
MAX_META_KEY = 32
MAX_META_STR = 256
MAX_META_BYTES = 1024
MAX_MEMBERS_FRAME = 16_384
MAX_ENTRIES_FRAME = 100_000


class MsgType(enum.IntEnum):
    PING = 1
    PING_REQ = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    LEAVE = 8
    ENTRY = 9
    DIGEST = 10
    SYNC_VV = 11
    SYNC_REQ = 12
    HAVE = 13
    HAVES = 14
    PP_STATE = 20
    PP_ENTRIES = 21
    PP_END = 22
    PP_HEALTH_REQ = 23  # p2phpo.core.health
    PP_HEALTH = 24
    DS_GET = 25  # p2phpo.core.dataset_xfer
    DS_CHUNK = 26
    DS_NONE = 27


class State(enum.IntEnum):
    """A member's state as this node sees it."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: int  # 0: whoever listens at the address (join via a seed)


@dataclass(frozen=True, slots=True)
class PingReq:
    seq: int
    target: int
    addr: Addr
    nack: bool


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """A node's own claim of life, signed by it (``core.member_sig``)."""

    node: int
    incarnation: int
    addr: Addr
    meta: dict[str, Any]
    boot: int = 0  # the boot salt of the node's current life (bind datagrams to it); 0: unknown
    pub: bytes = b""  # the node's Ed25519 public key (its id is derived from it)
    sig: bytes = b""  # its signature of (node, incarnation, addr, meta, boot)


@dataclass(frozen=True, slots=True)
class Suspect:
    node: int
    incarnation: int
    sender: int  # who suspects


@dataclass(frozen=True, slots=True)
class Dead:
    node: int
    incarnation: int
    sender: int


@dataclass(frozen=True, slots=True)
class Leave:
    node: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class EntryMsg:
    raw: bytes  # canonical entry bytes


@dataclass(frozen=True, slots=True)
class Digest:
    vv_hash: int
    n_origins: int
    total: int  # sum of the vv: how many entries the sender holds


@dataclass(frozen=True, slots=True)
class Have:
    """The sender holds entry ``(origin, seq)`` (lazy push: a receiver that lacks it
    fetches it; see ``AntiEntropy.on_have``)."""

    origin: int
    seq: int


@dataclass(frozen=True, slots=True)
class Haves:
    """``Have`` for several entries in one message: ``pairs`` is origin, seq, origin,
    seq... (one message to decode per datagram, not one per entry announced)."""

    pairs: tuple[int, ...]


MAX_HAVES = 1024
"""Most (origin, seq) pairs in one ``Haves``."""
HAVES_HEAD = 4
"""Bytes a ``Haves`` adds to its packed pairs (array header and type, at most)."""
_HAVES_TYPE = pack(int(MsgType.HAVES))


def have_item(origin: int, seq: int) -> bytes:
    """One (origin, seq) pair, packed: what the piggyback queue holds for a ``Haves``."""
    return pack(origin) + pack(seq)


def pack_haves(items: list[bytes]) -> bytes:
    """The packed ``Haves`` message of pairs packed by :func:`have_item`."""
    return array_header(1 + 2 * len(items)) + _HAVES_TYPE + b"".join(items)


@dataclass(frozen=True, slots=True)
class SyncReq:
    """Bucketed digest: one 4-byte hash per bucket of origins."""

    n_buckets: int
    hashes: bytes


@dataclass(frozen=True, slots=True)
class SyncVV:
    """The sender's vv restricted to ``buckets`` (complete for those buckets)."""

    n_buckets: int
    buckets: tuple[int, ...]
    vv: dict[int, int]
    reply: bool  # the receiver should answer with its own vv for these buckets


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member in a push-pull; ``pub``/``sig`` sign its last Alive (incarnation, addr, meta, boot)."""

    node: int
    incarnation: int
    state: State
    addr: Addr
    meta: dict[str, Any]
    boot: int = 0
    pub: bytes = b""
    sig: bytes = b""

    def alive(self) -> Alive:
        return Alive(self.node, self.incarnation, self.addr, self.meta, self.boot, self.pub, self.sig)


@dataclass(frozen=True, slots=True)
class PPState:
    members: tuple[MemberRecord, ...]
    vv: dict[int, int]
    tag: bytes = b""  # the sender's study tag (``wire.study_tag``; empty: it holds none yet)


@dataclass(frozen=True, slots=True)
class PPEntries:
    raws: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PPEnd:
    pass


Message = (
    Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | Leave | EntryMsg | Digest | SyncReq | SyncVV
    | Have | Haves
)
Frame = PPState | PPEntries | PPEnd


# --------------------------------------------------------------------------- encoding


def _addr(a: Addr) -> list[Any]:
    return [a[0], a[1]]


def _vv_flat(vv: dict[int, int]) -> list[int]:
    out: list[int] = []
    for o in sorted(vv):
        out += (o, vv[o])
    return out


def to_wire(m: Message | Frame) -> list[Any]:
    """The msgpack-ready array of one message."""
    t = type(m)
    if t is Ping:
        return [MsgType.PING, m.seq, m.target]
    if t is PingReq:
        return [MsgType.PING_REQ, m.seq, m.target, *_addr(m.addr), m.nack]
    if t is Ack:
        return [MsgType.ACK, m.seq]
    if t is Nack:
        return [MsgType.NACK, m.seq]
    if t is Alive:
        return [MsgType.ALIVE, m.node, m.incarnation, *_addr(m.addr), m.meta, m.boot, m.pub, m.sig]
    if t is Suspect:
        return [MsgType.SUSPECT, m.node, m.incarnation, m.sender]
    if t is Dead:
        return [MsgType.DEAD, m.node, m.incarnation, m.sender]
    if t is Leave:
        return [MsgType.LEAVE, m.node, m.incarnation]
    if t is EntryMsg:
        return [MsgType.ENTRY, m.raw]
    if t is Digest:
        return [MsgType.DIGEST, m.vv_hash, m.n_origins, m.total]
    if t is SyncReq:
        return [MsgType.SYNC_REQ, m.n_buckets, m.hashes]
    if t is Have:
        return [MsgType.HAVE, m.origin, m.seq]
    if t is Haves:
        return [MsgType.HAVES, *m.pairs]
    if t is SyncVV:
        return [MsgType.SYNC_VV, m.n_buckets, list(m.buckets), _vv_flat(m.vv), m.reply]
    if t is PPState:
        members = [
            [r.node, r.incarnation, int(r.state), *_addr(r.addr), r.meta, r.boot, r.pub, r.sig]
            for r in m.members
        ]
        return [MsgType.PP_STATE, members, _vv_flat(m.vv), m.tag]
    if t is PPEntries:
        return [MsgType.PP_ENTRIES, list(m.raws)]
    if t is PPEnd:
        return [MsgType.PP_END]
    raise TypeError(f"not a message: {m!r}")


def encode_message(m: Message | Frame) -> bytes:
    """msgpack bytes of one message (a datagram is the array of several)."""
    return pack(to_wire(m))


def join_messages(parts: list[bytes]) -> bytes:
    """A datagram payload from already-encoded messages."""
    return array_header(len(parts)) + b"".join(parts)


def payload_overhead(n: int) -> int:
    return len(array_header(n))


# --------------------------------------------------------------------------- decoding


def _bad(what: str) -> WireError:
    return WireError(DropReason.BAD_SCHEMA, what)


def _get_addr(host: object, port: object) -> Addr:
    return (expect_str(host, MAX_HOST, min_len=1), expect_int(port, 0, 65535))


def _get_meta(x: object) -> dict[str, Any]:
    meta = expect_map(x, MAX_META_KEYS)
    for k, v in meta.items():
        expect_str(k, MAX_META_KEY, min_len=1)
        if v is None or type(v) in (bool, float):
            continue
        if type(v) is int:
            expect_int(v, -(1 << 63), (1 << 64) - 1)
        elif type(v) is str:
            expect_str(v, MAX_META_STR)
        else:
            raise _bad("meta values are str, int, float, bool or nil")
    if len(pack(meta)) > MAX_META_BYTES:
        raise _bad("meta too large")
    return meta


def _get_vv(x: object, max_pairs: int) -> dict[int, int]:
    flat = expect_list(x, 2 * max_pairs)
    if len(flat) % 2:
        raise _bad("odd vv list")
    vv: dict[int, int] = {}
    prev = -1
    for i in range(0, len(flat), 2):
        o = expect_uint64(flat[i])
        if o <= prev:
            raise _bad("vv origins not ascending")
        prev = o
        vv[o] = expect_int(flat[i + 1], 1, 1 << 62)
    return vv


def _fields(x: object, n_min: int, n_max: int) -> list[Any]:
    return expect_list(x, n_max, min_len=n_min)


class _Memo:
    """Decoded values by the msgpack bytes of their wire form, for what arrives again and
    again: a member's record in every push-pull of a big cluster, a signed Alive relayed
    by every peer (and, in a simulator, by every node of the process). Decoding is a pure
    function of those bytes (the packing of a decoded value tells int, bool and float
    apart), so a hit is exactly what decoding would return; what fails is not kept.
    Bounded: emptied when full. The values are immutable or never mutated by a reader."""

    __slots__ = ("_cap", "_d")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._d: dict[bytes, Any] = {}

    def get(self, x: object, decode: Any) -> Any:
        key = pack(x)
        hit = self._d.get(key)
        if hit is None:
            hit = decode(x)
            if len(self._d) >= self._cap:
                self._d.clear()
            self._d[key] = hit
        return hit


_RECORDS = _Memo(1 << 16)
_ALIVES = _Memo(1 << 14)


_HAVE, _ENTRY, _ALIVE, _U64 = int(MsgType.HAVE), int(MsgType.ENTRY), int(MsgType.ALIVE), (1 << 64) - 1
_HAVES, _MAX_LEN = int(MsgType.HAVES), 1 + 2 * MAX_HAVES
_INT = {int}


def _decode_one(x: object) -> Message:
    """One message of a datagram. The busiest kinds (``Have``, ``EntryMsg``: most of a
    busy cluster's messages) are checked inline first; whatever that does not accept
    goes through the general decoder, which accepts or rejects it as always."""
    if type(x) is list:
        n, t = len(x), x[0] if x else None
        if type(t) is int:
            if n == 3 and t == _HAVE:
                o, s = x[1], x[2]
                if type(o) is int and type(s) is int and 0 <= o <= _U64 and 0 <= s <= _U64:
                    return Have(o, s)
            elif n == 2 and t == _ENTRY:
                raw = x[1]
                if type(raw) is bytes and 1 <= len(raw) <= 65536:
                    return EntryMsg(raw)
            elif t == _HAVES and n & 1 and 3 <= n <= _MAX_LEN:
                pairs = x[1:]
                if set(map(type, pairs)) == _INT and min(pairs) >= 0 and max(pairs) <= _U64:
                    return Haves(tuple(pairs))
            elif n == 9 and t == _ALIVE:
                return _ALIVES.get(x, _decode_uncached)  # type: ignore[no-any-return]
    return _decode_uncached(x)


def _decode_uncached(x: object) -> Message:
    f = expect_list(x, _MAX_LEN, min_len=1)
    t = expect_int(f[0], 0, 255)
    u64 = expect_uint64
    if t == MsgType.HAVES and len(f) >= 3 and len(f) % 2 == 1:
        return Haves(tuple(u64(v) for v in f[1:]))
    if len(f) > 9:
        raise _bad("unknown message type or arity")
    if t == MsgType.PING and len(f) == 3:
        return Ping(u64(f[1]), u64(f[2]))
    if t == MsgType.PING_REQ and len(f) == 6:
        return PingReq(u64(f[1]), u64(f[2]), _get_addr(f[3], f[4]), expect_bool(f[5]))
    if t == MsgType.ACK and len(f) == 2:
        return Ack(u64(f[1]))
    if t == MsgType.NACK and len(f) == 2:
        return Nack(u64(f[1]))
    if t == MsgType.ALIVE and len(f) == 9:
        return Alive(u64(f[1]), u64(f[2]), _get_addr(f[3], f[4]), _get_meta(f[5]), u64(f[6]), *_get_sig(f[7], f[8]))
    if t == MsgType.SUSPECT and len(f) == 4:
        return Suspect(u64(f[1]), u64(f[2]), u64(f[3]))
    if t == MsgType.DEAD and len(f) == 4:
        return Dead(u64(f[1]), u64(f[2]), u64(f[3]))
    if t == MsgType.LEAVE and len(f) == 3:
        return Leave(u64(f[1]), u64(f[2]))
    if t == MsgType.ENTRY and len(f) == 2:
        return EntryMsg(expect_bytes(f[1], 65536, min_len=1))
    if t == MsgType.DIGEST and len(f) == 4:
        return Digest(u64(f[1]), u64(f[2]), u64(f[3]))
    if t == MsgType.HAVE and len(f) == 3:
        return Have(u64(f[1]), u64(f[2]))
    if t == MsgType.SYNC_REQ and len(f) == 3:
        nb = expect_int(f[1], 1, 4096)
        return SyncReq(nb, expect_bytes(f[2], 4 * nb, min_len=4 * nb))
    if t == MsgType.SYNC_VV and len(f) == 5:
        nb = expect_int(f[1], 1, 4096)
        buckets = tuple(expect_int(b, 0, nb - 1) for b in expect_list(f[2], nb, min_len=1))
        return SyncVV(nb, buckets, _get_vv(f[3], 65536), expect_bool(f[4]))
    raise _bad("unknown message type or arity")


def decode_messages(obj: object, max_messages: int = 512) -> list[Message]:
    """Every message of an opened datagram (its decoded array), or WireError(BAD_SCHEMA)."""
    items = expect_list(obj, max_messages, min_len=1)
    return [_decode_one(x) for x in items]


def _get_tag(x: object) -> bytes:
    tag = expect_bytes(x, 4)
    if len(tag) not in (0, 4):
        raise _bad("a study tag is 4 bytes (or none)")
    return tag


def _get_sig(pub: object, sig: object) -> tuple[bytes, bytes]:
    """(public key, signature); empty only where nodes run without identities (tests)."""
    pub, sig = expect_bytes(pub, 32), expect_bytes(sig, 64)
    if len(pub) not in (0, 32) or len(sig) not in (0, 64):
        raise _bad("public key or signature of the wrong size")
    return pub, sig


def _decode_member(x: object) -> MemberRecord:
    return _RECORDS.get(x, _decode_member_uncached)  # type: ignore[no-any-return]


def _decode_member_uncached(x: object) -> MemberRecord:
    f = expect_list(x, 9, min_len=9)
    state = expect_int(f[2], 0, 3)
    return MemberRecord(
        expect_uint64(f[0]), expect_uint64(f[1]), State(state), _get_addr(f[3], f[4]), _get_meta(f[5]),
        expect_uint64(f[6]), *_get_sig(f[7], f[8]),
    )


def decode_frame(obj: object) -> Frame:
    """One TCP sync frame (as the sealed stream decoded it), or WireError(BAD_SCHEMA)."""
    f = expect_list(obj, 4, min_len=1)
    t = expect_int(f[0], 0, 255)
    if t == MsgType.PP_STATE and len(f) in (3, 4):
        members = tuple(_decode_member(m) for m in expect_list(f[1], MAX_MEMBERS_FRAME))
        if len({m.node for m in members}) != len(members):
            raise _bad("member listed twice")
        tag = _get_tag(f[3]) if len(f) == 4 else b""
        return PPState(members, _get_vv(f[2], 1 << 20), tag)
    if t == MsgType.PP_ENTRIES and len(f) == 2:
        raws = expect_list(f[1], MAX_ENTRIES_FRAME)
        return PPEntries(tuple(expect_bytes(r, 65536, min_len=1) for r in raws))
    if t == MsgType.PP_END and len(f) == 1:
        return PPEnd()
    raise _bad("unknown frame type or arity")
