"""Anti-entropy: digests, the UDP Scuttlebutt exchange and the TCP push-pull.

:class:`AntiEntropy` owns one node's anti-entropy state and handlers. Every
PING and ACK carries a ``Digest`` (vv hash, origins, entries). A peer far
ahead (> ``far_behind`` entries) is asked for a TCP push-pull; a mismatch
seen on two exchanges in a row with one peer (or on two exchanges in a row
while our own vv did not move) starts a Scuttlebutt exchange of the vvs of
the mismatched buckets, after which each side sends the other's missing
entries, MTU-bounded and paced per gossip tick. The gossip core owns one and
hands it the digest messages; it sends through the small :class:`Link` the
core gives it, so this module never imports the gossip core.

Bucketed digests: past ~48 origins a whole vv no longer fits a
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
from collections import deque
from typing import Any, Protocol

from p2phpo.core import dataset_xfer, health
from p2phpo.core.entries import Entry, EntryError, encode_entry
from p2phpo.core.gossip_types import GossipConfig, InSync, TcpRequest
from p2phpo.core.ledger import Ledger
from p2phpo.core.membership import Membership, State
from p2phpo.core.messages import (
    Addr,
    Digest,
    EntryMsg,
    MemberRecord,
    Message,
    PPEnd,
    PPEntries,
    PPState,
    SyncReq,
    SyncVV,
    decode_frame,
    encode_message,
    to_wire,
)
from p2phpo.core.records import decode_record
from p2phpo.core.study_bind import BLANK, FOREIGN, OURS
from p2phpo.core.vv_index import BucketIndex, bucket_of
from p2phpo.core.wire_codec import DropReason, WireError

_INF = float("inf")

MAX_BUCKETS = 128
SINGLE_BUCKET_ORIGINS = 48
FETCH_BUCKETS = 4096
FILLER_EVERY = 4  # probe intervals between two asks for the records behind our LOST fillers
MAX_FILLER_ORIGINS = 32  # origins named in one such ask
"""Buckets of a fetch (``fetch_gaps``): fine enough that a bucket holds about one
origin, so the peer sends what we lack of the origins asked for, not of their bucket."""


def n_buckets(n_origins: int) -> int:
    """Buckets to use for a vv of ``n_origins`` (1 while a whole vv fits a probe)."""
    if n_origins <= SINGLE_BUCKET_ORIGINS:
        return 1
    nb = 2
    while nb * 16 < n_origins and nb < MAX_BUCKETS:
        nb *= 2
    return nb


def bucket_hashes(vv: dict[int, int], nb: int) -> bytes:
    """4 bytes per bucket: XOR of blake2b terms of the (origin, seq) pairs in it."""
    acc = [0] * nb
    for origin, seq in vv.items():
        acc[bucket_of(origin, nb)] ^= _term(origin, seq)
    return b"".join(h.to_bytes(4, "big") for h in acc)


def _term(origin: int, seq: int) -> int:
    term = hashlib.blake2b(origin.to_bytes(8, "big") + seq.to_bytes(8, "big"), digest_size=4)
    return int.from_bytes(term.digest(), "big")


class BucketHashes:
    """``bucket_hashes(vv, nb)`` of one growing vv, kept per bucket count and updated
    from the origins whose seq moved (a hash per origin per call was a millisecond at
    1,000 origins, on every SyncReq). Exact: XOR takes a term out as it put it in."""

    def __init__(self) -> None:
        self._by_nb: dict[int, tuple[list[int], dict[int, int], list[bytes]]] = {}

    def of(self, vv: dict[int, int], nb: int) -> bytes:
        got = self._by_nb.get(nb)
        if got is not None and got[1] == vv:
            return got[2][0]
        if got is None or not got[1].keys() <= vv.keys():  # (our vv never loses an origin)
            if len(self._by_nb) >= 8:  # peers choose nb: keep a few
                self._by_nb.clear()
            got = self._by_nb[nb] = ([0] * nb, {}, [b""])
        acc, seen, out = got
        if seen != vv or not out[0]:
            for origin, seq in vv.items():
                old = seen.get(origin)
                if old != seq:
                    b = bucket_of(origin, nb)
                    if old is not None:
                        acc[b] ^= _term(origin, old)
                    acc[b] ^= _term(origin, seq)
                    seen[origin] = seq
            out[0] = b"".join(h.to_bytes(4, "big") for h in acc)
        return out[0]


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
    return group_buckets(per, buckets, room)


def group_buckets(per: dict[int, int], buckets: list[int], room: int) -> list[list[int]]:
    """Group ``buckets`` (holding ``per[b]`` origins each) so each group's vv fits ``room``."""
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


class Link(Protocol):
    """What anti-entropy needs from the gossip core that owns it."""

    def send(self, addr: Addr, head: list[Message], *, to: int, piggyback: bool = True) -> None:
        """Send to node ``to`` (its id: datagrams are bound to the receiver's life)."""

    def send_packed(self, addr: Addr, parts: list[bytes], *, to: int) -> None: ...

    def check_signed(self, alives: Any) -> None: ...

    def merge(self, pairs: list[tuple[Entry, bytes]], sender: int, *, regossip: bool) -> int: ...

    def emit(self, event: Any) -> None: ...

    def count_drop(self, reason: DropReason, addr: Addr | None = None) -> None: ...

    def flush_membership(self) -> None: ...

    @property
    def study_tag(self) -> bytes | None: ...

    def classify(self, tag: bytes | None, addr: Addr | None) -> str: ...

    def drop_foreign(self, pairs: list[tuple[Entry, bytes]], sender: int, addr: Addr | None) -> None: ...


class AntiEntropy:
    """One node's anti-entropy: digest comparison, UDP sync, push-pull wishes."""

    def __init__(self, node_id: int, ledger: Ledger, membership: Membership, config: GossipConfig,
                 budget: int, link: Link) -> None:
        self.node_id = node_id
        self.ledger = ledger
        self.index = BucketIndex(ledger.vv)  # our origins by bucket (fetches, UDP syncs)
        self.hashes = BucketHashes()  # our bucket hashes per bucket count (SyncReq)
        self.membership = membership
        self.config = config
        self.profile = config.profile
        self.budget = budget  # plaintext bytes per datagram
        self.link = link
        self.mismatch: dict[int, int] = {}
        self.agree: dict[int, bool] = {}  # peer -> its last digest equalled ours
        self.stuck: int | None = None  # our vv hash at the last mismatching exchange
        self.sync_at: dict[int, float] = {}
        self.gap_at: dict[int, float] = {}  # origin -> when we last asked for its gap
        self.wants: dict[int, tuple[int, int, Addr]] = {}  # origin -> (seq, announcer, addr)
        self.sync_out: dict[int, tuple[Addr, deque[bytes]]] = {}
        self.tcp_at: dict[object, float] = {}
        self.tcp_wanted: list[TcpRequest] = []
        self.filler_at = -_INF  # when we last asked a peer for the records behind our fillers
        self.filler_turn = 0  # round robin over the ALIVE members for those asks

    def far_behind(self) -> int:
        """Entries behind a peer past which we catch up over TCP: ``config.far_behind``,
        or twice the live members if more. In a busy cluster about one entry per member
        is in flight at any time (every node claims at once at a start), so a fixed 64
        would send every node of a 1,000-node cluster into a push-pull (each carrying
        the whole member table) at once."""
        return max(self.config.far_behind, 2 * self.membership.n_live())

    # -- digests and the UDP exchange ----------------------------------------------
    def digest(self) -> Digest:
        return Digest(self.ledger.vv_hash(), len(self.ledger.vv), len(self.ledger))

    def agreement(self) -> tuple[int, int]:
        """(peers whose last digest equalled ours, peers that sent one)."""
        return sum(self.agree.values()), len(self.agree)

    def on_digest(self, sender: int, d: Digest, addr: Addr, now: float) -> None:
        if self.membership.get(sender) is None:  # per-peer state only for members (bounded)
            return
        mine = self.ledger.vv_hash()
        self.agree[sender] = d.vv_hash == mine
        if d.vv_hash == mine:
            self.mismatch.pop(sender, None)
            self.stuck = None
            self.link.emit(InSync(sender))
            return
        if d.total > len(self.ledger) + self.far_behind():
            self.want_tcp(sender, addr, now)
            return
        # Persistent: this peer mismatched last time too, or the previous exchange
        # (with anyone) mismatched and nothing reached us since.
        stuck, self.stuck = self.stuck == mine, mine
        count = self.mismatch.get(sender, 0) + 1
        if count < 2 and not stuck:
            self.mismatch[sender] = count
            return
        self.mismatch.pop(sender, None)
        if now - self.sync_at.get(sender, -_INF) < self.profile.probe_interval:
            return
        self.sync_at[sender] = now
        vv = self.ledger.vv
        nb = n_buckets(max(d.n_origins, len(vv)))
        if nb == 1:
            self._send_vvs(sender, addr, 1, [0], reply=True)
        else:
            self.link.send(addr, [SyncReq(nb, self.hashes.of(vv, nb))], piggyback=False, to=sender)

    def fetch_gaps(self, sender: int, addr: Addr, origins: list[int], now: float) -> None:
        """``sender`` holds entries of ``origins`` that we lack (some wait here ahead of
        a gap, or it announced them with ``Have``): ask it for them now (our vv of
        their fine buckets), instead of waiting for a digest mismatch to persist. At
        most once per origin per gossip interval."""
        due = [o for o in origins if now - self.gap_at.get(o, -_INF) >= self.profile.gossip_interval]
        if not due or self.membership.get(sender) is None:
            return
        if len(self.gap_at) > 4096:  # keyed by peer-chosen ids: keep it bounded
            self.gap_at.clear()
        for o in due:
            self.gap_at[o] = now
        nb = FETCH_BUCKETS
        self._send_vvs(sender, addr, nb, sorted({bucket_of(o, nb) for o in due}), reply=False)

    def want(self, sender: int, addr: Addr, origin: int, seq: int) -> None:
        """``sender`` announced entry ``(origin, seq)`` (``Have``) and we lack it: fetch
        it at the next gossip tick unless gossip brings it first (lazy push, as in
        Plumtree: announcements cost bytes, not entries, and cover what pushes miss)."""
        if origin in self.wants or len(self.wants) < 4096:  # peer-chosen ids: bounded
            old = self.wants.get(origin)
            if old is None or old[0] < seq:
                self.wants[origin] = (seq, sender, addr)

    def _fetch_wanted(self, now: float) -> None:
        vv, by_peer = self.ledger.vv, {}
        for origin, (seq, sender, addr) in self.wants.items():
            if vv.get(origin, 0) < seq:
                by_peer.setdefault((sender, addr), []).append(origin)
        self.wants.clear()
        for (sender, addr), origins in sorted(by_peer.items()):
            self.fetch_gaps(sender, addr, sorted(origins), now)

    def _ask_for_originals(self, now: float) -> None:
        """We hold ABANDON(LOST) fillers (an origin's disk lost those seqs while the
        peers holding them were away; see ``core/ledger.py``): now and then ask one
        ALIVE member, in turn, for those origins from the filler's seq on, as if we
        lacked them. A member that holds the real records sends them and they take
        the fillers' place; vvs alone never show the difference."""
        fillers = self.ledger.fillers()
        alive = self.membership.ids(State.ALIVE)
        if not fillers or not alive:
            return
        self.filler_at = now
        peer = alive[self.filler_turn % len(alive)]
        self.filler_turn += 1
        member = self.membership.get(peer)
        assert member is not None
        nb, origins = FETCH_BUCKETS, sorted(fillers)[:MAX_FILLER_ORIGINS]
        buckets = sorted({bucket_of(o, nb) for o in origins})
        part = restrict(self.ledger.vv, set(buckets), nb)
        part.update({o: fillers[o] - 1 for o in origins})
        self.link.send(member.addr, [SyncVV(nb, tuple(buckets), part, False)], piggyback=False, to=peer)

    def on_sync_req(self, sender: int, m: SyncReq, addr: Addr) -> None:
        if self.membership.get(sender) is None:
            return
        diff = mismatched(self.hashes.of(self.ledger.vv, m.n_buckets), m.hashes)
        if diff:
            self._send_vvs(sender, addr, m.n_buckets, diff, reply=True)

    def _send_vvs(self, to: int, addr: Addr, nb: int, buckets: list[int], *, reply: bool) -> None:
        index = self.index
        for group in group_buckets(index.counts(buckets, nb), buckets, self.budget - 32):
            part = index.restrict(group, nb)
            self.link.send(addr, [SyncVV(nb, tuple(group), part, reply)], piggyback=False, to=to)

    def on_sync_vv(self, sender: int, m: SyncVV, addr: Addr, now: float) -> None:
        if self.membership.get(sender) is None:
            return
        nb, bset = m.n_buckets, set(m.buckets)
        # Their vv of the buckets they sent; of ours, only those buckets' origins can be
        # above it (the rest of ours counts as theirs): O(what they asked), not O(origins).
        vv, theirs = self.ledger.vv, m.vv
        if nb == 1:
            base = {o: theirs.get(o, 0) for o in vv} if 0 in bset else {}
        else:
            index = self.index.origins(nb)
            base = {o: theirs.get(o, 0) for b in sorted(bset) for o in index.get(b, ())}
        if sum(max(0, vv[o] - s) for o, s in base.items()) > self.far_behind():
            self.want_tcp(sender, addr, now)
        else:
            self._queue_delta(sender, addr, base, now)
            if not m.reply and sender in self.sync_out:  # a fetch, or the answer to our
                self._burst(sender)  # own vvs: its first burst now
        if m.reply:
            self._send_vvs(sender, addr, nb, sorted(bset), reply=False)

    def _queue_delta(self, sender: int, addr: Addr, base: dict[int, int], now: float) -> None:
        """Queue what we hold above ``base`` for its origins only (the others they hold)."""
        delta = self.ledger.delta_since(base, limit_bytes=self.config.sync_bytes, only=True)
        q: deque[bytes] = deque()
        for e in delta:
            raw = self.ledger.raw(e.origin, e.seq)
            msg = encode_message(EntryMsg(raw)) if raw is not None else b""
            if len(msg) + 8 > self.budget or not msg:
                self.want_tcp(sender, addr, now)
                break
            q.append(msg)
        if not q:
            return
        pending = self.sync_out.get(sender)
        if pending is not None:  # still sending an earlier delta to this peer: add to it
            merged = list(dict.fromkeys([*pending[1], *q]))  # each entry once, earlier first
            q = deque(merged[: self.config.sync_bytes // 64])  # bounded: the rest is re-asked
        self.sync_out[sender] = (addr, q)

    def tick(self, now: float) -> None:
        """A gossip tick: fetch what was announced and has not come, send the next paced
        burst of every pending UDP sync."""
        if self.wants:
            self._fetch_wanted(now)
        if now - self.filler_at >= FILLER_EVERY * self.profile.probe_interval:
            self._ask_for_originals(now)
        for node in sorted(self.sync_out):
            self._burst(node)

    def _burst(self, node: int) -> None:
        """Send up to ``sync_burst`` datagrams of the delta queued for ``node``."""
        addr, q = self.sync_out[node]
        for _ in range(self.config.sync_burst):
            if not q:
                break
            parts, room = [], self.budget - 3
            while q and len(q[0]) <= room:
                room -= len(q[0])
                parts.append(q.popleft())
            self.link.send_packed(addr, parts, to=node)
        if not q:
            del self.sync_out[node]

    # -- push-pull over TCP ----------------------------------------------------------
    def want_tcp(self, node: int, addr: Addr, now: float) -> None:
        key: object = node if node else addr
        if now - self.tcp_at.get(key, -_INF) < 10 * self.profile.probe_interval:
            return
        self.tcp_at[key] = now
        self.tcp_wanted.append(TcpRequest(node, addr))

    def tcp_requests(self) -> list[TcpRequest]:
        out, self.tcp_wanted = self.tcp_wanted, []
        return out

    def session(self, *, initiator: bool, host: Any = None,
                want_health: bool = False, peer: Addr | None = None) -> SyncSession:
        return SyncSession(self, initiator=initiator, host=host, want_health=want_health,
                           peer=peer)

    def state_frame(self) -> list[Any]:
        return to_wire(PPState(tuple(self.membership.records()), dict(self.ledger.vv),
                               self.link.study_tag or b""))

    def study_frames(self) -> list[list[Any]]:
        """Only our STUDY entry, for a peer of another study (so it can say what differs)."""
        study = self.ledger.study
        raw = None if study is None else self.ledger.raw(study.origin, study.seq)
        return [] if raw is None else [to_wire(PPEntries((raw,)))]

    def apply_members(self, records: tuple[MemberRecord, ...], now: float) -> None:
        """Merge a peer's member table (all or nothing: WireError on a bad signature)."""
        self.link.check_signed(records)
        for r in records:
            self.membership.apply_record(r, now)
        self.link.flush_membership()

    def delta_frames(self, vv: dict[int, int]) -> list[list[Any]]:
        """PP_ENTRIES frames holding every entry above ``vv``."""
        frames: list[list[Any]] = []
        batch: list[bytes] = []
        used = 0
        for e in self.ledger.delta_since(vv):
            raw = self.ledger.raw(e.origin, e.seq) or encode_entry(e)
            if batch and used + len(raw) + 8 > self.config.frame_bytes:
                frames.append(to_wire(PPEntries(tuple(batch))))
                batch, used = [], 0
            batch.append(raw)
            used += len(raw) + 8
        if batch:
            frames.append(to_wire(PPEntries(tuple(batch))))
        return frames

    def merge_raw(self, raws: tuple[bytes, ...], now: float, *, regossip: bool) -> int:
        """Merge entries from a push-pull frame (all or nothing); WireError on a bad one."""
        return self.link.merge(self._decode(raws), 0, regossip=regossip)

    def drop_raw(self, raws: tuple[bytes, ...], peer: Addr | None) -> None:
        """A push-pull frame of a peer whose ledger is not of our study: never merged."""
        self.link.drop_foreign(self._decode(raws), 0, peer)

    def _decode(self, raws: tuple[bytes, ...]) -> list[tuple[Entry, bytes]]:
        try:
            return [(decode_record(r), r) for r in raws if not self.ledger.has_raw(r)]
        except EntryError:
            raise WireError(DropReason.BAD_SCHEMA, "bad entry") from None

    def dump(self) -> list[Any]:
        return [sorted(self.mismatch.items()), self.stuck, sorted(self.sync_at.items()),
                [[n, len(q)] for n, (_, q) in sorted(self.sync_out.items())], len(self.tcp_wanted)]


class SyncSession:
    """One push-pull exchange with one peer over a stream of frames."""

    def __init__(self, ae: AntiEntropy, *, initiator: bool, host: Any = None,
                 want_health: bool = False, peer: Addr | None = None) -> None:
        self.ae = ae
        self.peer = peer  # the address we connected to (initiator), else None
        self.kind = BLANK  # the peer's ledger traffic, by the study tag of its state frame
        self.host = host  # the gossip core: health counters, peer health, the dataset server
        self.initiator = initiator
        self.want_health = want_health and initiator and host is not None
        self.sent_end = False
        self.got_state = False
        self.got_end = False
        self.failed: DropReason | None = None
        self.merged = 0
        self.frames_in = 0

    @property
    def done(self) -> bool:
        return self.failed is not None or (self.sent_end and self.got_end)

    @property
    def synced(self) -> bool:
        """Completed with a peer whose ledger is of our study (an anti-entropy exchange);
        a peer of another study exchanged members and its STUDY entry only."""
        return self.failed is None and self.sent_end and self.got_end and self.kind != FOREIGN

    def start(self, now: float) -> list[Any]:
        """Frames to send first (the initiator opens with its state)."""
        if not self.initiator:
            return []
        return [*([health.request_frame()] if self.want_health else []), self._state_frame()]

    def _state_frame(self) -> list[Any]:
        return self.ae.state_frame()

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
            self.ae.link.count_drop(e.reason)
            return []

    def _health(self, frame: list[Any], now: float) -> list[Any]:
        """Answer a health request (responder), or keep the answer (initiator)."""
        core = self.host
        if core is None:
            raise WireError(DropReason.BAD_SCHEMA, "health frame without a host")
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
        serve = getattr(self.host, "dataset_server", None)
        if serve is None:
            return [dataset_xfer.none_frame("this node has no dataset to share", False)]
        return [serve(offset, length)]

    def _handle(self, msg: PPState | PPEntries | PPEnd, now: float) -> list[Any]:
        if isinstance(msg, PPState):
            if self.got_state:
                raise WireError(DropReason.BAD_SCHEMA, "second state frame")
            self.got_state = True
            self.ae.apply_members(msg.members, now)
            self.kind = self.ae.link.classify(msg.tag or None, self.peer)
            out = [] if self.initiator else [self._state_frame()]
            foreign = self.kind == FOREIGN
            out += self.ae.study_frames() if foreign else self.ae.delta_frames(msg.vv)
            out.append(to_wire(PPEnd()))
            self.sent_end = True
            return out
        if not self.got_state:
            raise WireError(DropReason.BAD_SCHEMA, "entries before state")
        if isinstance(msg, PPEntries):
            if self.kind == OURS:
                self.merged += self.ae.merge_raw(msg.raws, now, regossip=False)
            else:
                self.ae.drop_raw(msg.raws, self.peer)
            return []
        self.got_end = True
        return []
