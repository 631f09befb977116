"""Anti-entropy helpers: bucketed vv digests and the TCP push-pull session.

Bucketed digests (DESIGN §4): past ~48 origins a whole vv no longer fits a
probe, so origins are spread over a power-of-two number of buckets by a
fixed multiplicative hash and each bucket gets a 4-byte hash. Two peers
compare bucket hashes, then exchange the vv of the mismatched buckets only.

:class:`SyncSession` is the sans-IO push-pull over one TCP stream: both sides
exchange their member table and vv (``PP_STATE``), then each sends what the
other lacks as ``PP_ENTRIES`` frames, then ``PP_END``. Frames are msgpack-ready
objects: the runtime seals them with ``TcpSession.seal_frame`` and feeds back
what ``TcpSession.feed`` decodes; the session never raises on peer input.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from p2phpo.core import dataset_xfer, health
from p2phpo.core.messages import PPEnd, PPEntries, PPState, decode_frame, to_wire
from p2phpo.core.wire_codec import DropReason, WireError

if TYPE_CHECKING:
    from p2phpo.core.gossip import GossipCore

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
MAX_BUCKETS = 128
SINGLE_BUCKET_ORIGINS = 48


def n_buckets(n_origins: int) -> int:
    """Buckets to use for a vv of ``n_origins`` (1 while a whole vv fits a probe)."""
    if n_origins <= SINGLE_BUCKET_ORIGINS:
        return 1
    nb = 2
    while nb * 16 < n_origins and nb < MAX_BUCKETS:
        nb *= 2
    return nb


def bucket_of(origin: int, nb: int) -> int:
    bits = nb.bit_length() - 1
    return ((origin * _GOLDEN) & _MASK) >> (64 - bits) if bits else 0


def bucket_hashes(vv: dict[int, int], nb: int) -> bytes:
    """4 bytes per bucket: XOR of blake2b terms of the (origin, seq) pairs in it."""
    acc = [0] * nb
    for origin, seq in vv.items():
        term = hashlib.blake2b(origin.to_bytes(8, "big") + seq.to_bytes(8, "big"), digest_size=4)
        acc[bucket_of(origin, nb)] ^= int.from_bytes(term.digest(), "big")
    return b"".join(h.to_bytes(4, "big") for h in acc)


def mismatched(mine: bytes, theirs: bytes) -> list[int]:
    return [i for i in range(len(mine) // 4) if mine[4 * i : 4 * i + 4] != theirs[4 * i : 4 * i + 4]]


def restrict(vv: dict[int, int], buckets: set[int], nb: int) -> dict[int, int]:
    """The part of ``vv`` whose origins fall in ``buckets``."""
    if nb == 1:
        return dict(vv)
    return {o: s for o, s in vv.items() if bucket_of(o, nb) in buckets}


def chunk_buckets(vv: dict[int, int], buckets: list[int], nb: int, room: int) -> list[list[int]]:
    """Group ``buckets`` so that each group's vv fits ``room`` bytes (~14 per origin)."""
    per: dict[int, int] = dict.fromkeys(buckets, 0)
    for o in vv:
        b = bucket_of(o, nb)
        if b in per:
            per[b] += 1
    groups: list[list[int]] = [[]]
    used = 0
    for b in buckets:
        cost = 8 + 14 * per[b]
        if groups[-1] and used + cost > room:
            groups.append([])
            used = 0
        groups[-1].append(b)
        used += cost
    return groups


class SyncSession:
    """One push-pull exchange with one peer over a stream of frames."""

    def __init__(self, core: GossipCore, *, initiator: bool, want_health: bool = False) -> None:
        self.core = core
        self.initiator = initiator
        self.want_health = want_health and initiator
        self.sent_end = False
        self.got_state = False
        self.got_end = False
        self.failed: DropReason | None = None
        self.merged = 0
        self.frames_in = 0

    @property
    def done(self) -> bool:
        return self.failed is not None or (self.sent_end and self.got_end)

    def start(self, now: float) -> list[Any]:
        """Frames to send first (the initiator opens with its state)."""
        if not self.initiator:
            return []
        return [*([health.request_frame()] if self.want_health else []), self._state_frame()]

    def _state_frame(self) -> list[Any]:
        ledger = self.core.ledger
        return to_wire(PPState(tuple(self.core.membership.records()), dict(ledger.vv)))

    def receive(self, frame: object, now: float) -> list[Any]:
        """Frames to send in answer to ``frame`` (a decoded frame object, as
        ``TcpSession.feed`` returns them); a bad frame fails the session."""
        if self.done:
            return []
        self.frames_in += 1
        try:
            if health.is_health(frame):
                return self._health(frame, now)  # type: ignore[arg-type]
            if dataset_xfer.is_dataset(frame):
                return self._dataset(frame)  # type: ignore[arg-type]
            msg = decode_frame(frame)
            return self._handle(msg, now)
        except WireError as e:
            self.failed = e.reason
            self.core.count_drop(e.reason)
            return []

    def _health(self, frame: list[Any], now: float) -> list[Any]:
        """Answer a health request (responder), or keep the answer (initiator)."""
        core = self.core
        if not self.initiator:
            if len(frame) != 1 or self.got_state:
                raise WireError(DropReason.BAD_SCHEMA, "bad health request")
            extra = core.health_extra() if core.health_extra is not None else None
            return [health.health_frame(core.node_id, health.core_health(core, extra))]
        if not self.want_health:
            raise WireError(DropReason.BAD_SCHEMA, "unasked health")
        node, report = health.decode_health(frame)
        core.peer_health[node] = (now, report)
        while len(core.peer_health) > health.MAX_LIST:
            del core.peer_health[next(iter(core.peer_health))]
        return []

    def _dataset(self, frame: list[Any]) -> list[Any]:
        """Serve one chunk of this node's dataset blob (responder only)."""
        if self.initiator:
            raise WireError(DropReason.BAD_SCHEMA, "unasked dataset frame")
        offset, length = dataset_xfer.decode_get(frame)
        serve = self.core.dataset_server
        if serve is None:
            return [dataset_xfer.none_frame("this node has no dataset to share", False)]
        return [serve(offset, length)]

    def _handle(self, msg: PPState | PPEntries | PPEnd, now: float) -> list[Any]:
        if isinstance(msg, PPState):
            if self.got_state:
                raise WireError(DropReason.BAD_SCHEMA, "second state frame")
            self.got_state = True
            self.core.apply_pushpull_members(msg.members, now)
            out = [] if self.initiator else [self._state_frame()]
            out += self.core.delta_frames(msg.vv)
            out.append(to_wire(PPEnd()))
            self.sent_end = True
            return out
        if not self.got_state:
            raise WireError(DropReason.BAD_SCHEMA, "entries before state")
        if isinstance(msg, PPEntries):
            self.merged += self.core.merge_raw(msg.raws, now, regossip=False)
            return []
        self.got_end = True
        return []
