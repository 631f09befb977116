"""The node's gossip protocol core: SWIM probes, piggyback, anti-entropy.

Sans-IO in aioquic's shape. The runtime (or the simulator) calls
``receive_datagram(data, addr, now)`` for every datagram, sends what
``datagrams_to_send(now)`` returns, arms one timer from ``get_timer()`` and
calls ``handle_timer(now)`` when it fires, runs a TCP push-pull for every
``tcp_requests(now)`` item with a :class:`SyncSession`, and reads
``next_event()``. Nothing here reads a clock, opens a socket or draws entropy
except from the ``random.Random`` passed in; members and peers are visited in
sorted order so a seeded run replays exactly. Nothing a peer sends raises: a
bad datagram is dropped whole, counted by reason and reported as ``Dropped``.

Anti-entropy (digests on every PING and ACK, the UDP Scuttlebutt exchange,
push-pull wishes and sessions) lives in :class:`AntiEntropy`
(``gossip_sync.py``), which the core owns as ``self.ae`` and which sends
through the core's :class:`~p2phpo.core.gossip_sync.Link` methods. SWIM's
probes, relays and join/reconnect pings live likewise in :class:`Swim`
(``gossip_swim.py``, ``self.swim``).
"""

from __future__ import annotations

import random
from collections import deque
from itertools import compress, repeat
from operator import lt
from typing import Any

from p2phpo.core import study_bind
from p2phpo.core.entries import Entry, EntryError, encode_entry
from p2phpo.core.gossip_hearing import Hearing
from p2phpo.core.gossip_queue import PiggybackQueue
from p2phpo.core.gossip_swim import Swim
from p2phpo.core.gossip_sync import AntiEntropy, SyncSession
from p2phpo.core.gossip_types import (  # Dropped, ForeignStudy: re-exported for callers
    Dropped,  # noqa: F401
    EntriesMerged,
    Event,
    ForeignStudy,  # noqa: F401
    GossipConfig,
    TcpRequest,
)
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.member_sig import AliveVerifier
from p2phpo.core.membership import MemberInfo, Membership
from p2phpo.core.messages import (
    HAVES_HEAD,
    MAX_HAVES,
    Ack,
    Addr,
    Alive,
    Dead,
    Digest,
    EntryMsg,
    Have,
    Haves,
    Leave,
    Message,
    Nack,
    Ping,
    PingReq,
    State,
    Suspect,
    SyncReq,
    SyncVV,
    decode_messages,
    encode_message,
    have_item,
    pack_haves,
)
from p2phpo.core.records import decode_record
from p2phpo.core.study_bind import StudyBinding
from p2phpo.core.wire import (
    OVERHEAD,
    DropCounter,
    DropReason,
    Opener,
    Sealer,
    WireError,
)

_INF = float("inf")
_UNBOUND = (Ping, Alive)
"""What an unbound (first-contact) datagram may carry: replayed anywhere, it gets an Ack."""
_ANTI_ENTROPY = (Digest, SyncReq, SyncVV)


class GossipCore(Hearing):
    """One node's SWIM + Lifeguard + ledger dissemination state machine."""

    def __init__(
        self,
        node_id: int,
        config: GossipConfig,
        rng: random.Random,
        ledger: Ledger,
        sealer: Sealer,
        opener: Opener,
        meta: dict[str, Any] | None = None,
        *,
        identity: Identity | None = None,
        verifier: AliveVerifier | None = None,
    ) -> None:
        """``identity`` signs our Alive; with it, every Alive received must be signed
        by the node it names (nodes always have one; bare protocol tests may not)."""
        self.node_id = node_id
        self.identity = identity
        self.verifier = verifier if verifier is not None else AliveVerifier()
        self.config = config
        self.profile = config.profile
        self.rng = rng
        self.ledger = ledger
        self.sealer = sealer
        self.opener = opener
        opener.bind(node_id, sealer.epoch.salt)
        self.membership = Membership(
            node_id, config.addr, config.profile, rng, incarnation=config.incarnation, meta=meta,
            identity=identity, boot=sealer.epoch.salt, max_members=config.max_members,
        )
        self._reap_after = config.reap_after if config.reap_after is not None else 10 * self.profile.gossip_to_dead
        self.queue = PiggybackQueue(config.queue_bytes)
        self.haves = PiggybackQueue(config.queue_bytes // 8)  # lazy push: Have(origin, seq)
        self.news = PiggybackQueue(config.queue_bytes // 4)  # membership changes: sent first
        self.dropped = DropCounter()
        self.drops_by_addr: dict[Addr, dict[str, int]] = {}
        self.stats = dict.fromkeys(
            ("bytes_in", "bytes_out", "datagrams_in", "datagrams_out", "accepted", "entries_in"), 0
        )
        self.seeds: list[Addr] = []
        self.seed_heard: dict[Addr, float] = {}  # seed address -> when it last got through
        self.seed_nodes: dict[Addr, int] = {}  # seed address -> the node that answered there
        self.study = StudyBinding()  # the study our ledger belongs to (core/study_bind.py)
        self.want_health = False  # ask push-pull peers for their health (observers)
        self.peer_health: dict[int, tuple[float, dict[str, Any]]] = {}  # node -> (when, health)
        self.health_extra: Any = None  # () -> dict: what the node adds to its own health
        self.dataset_server: Any = None  # (offset, length) -> DS frame: shares the dataset blob
        self.started = False
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        self._replying: tuple[int, int] | None = None  # (sender, boot salt) being answered
        self._t = dict.fromkeys(("probe", "gossip", "reconnect", "pushpull", "join"), _INF)
        self._budget = min(config.max_datagram - OVERHEAD, sealer.plaintext_budget())
        self.ae = AntiEntropy(node_id, ledger, self.membership, config, self._budget, self)
        self.swim = Swim(node_id, self.membership, config, rng, self.ae, self)

    # ------------------------------------------------------------------ API
    def start(self, now: float) -> None:
        """Arm the timers (staggered by the rng). Idempotent."""
        if self.started:
            return
        self.started = True
        p = self.profile
        self._t["probe"] = now + self.rng.random() * p.probe_interval
        self._t["gossip"] = now + self.rng.random() * p.gossip_interval
        self._t["reconnect"] = now + p.reconnect_interval * (0.5 + self.rng.random())
        self._t["pushpull"] = now + p.pushpull_interval * (0.5 + self.rng.random())

    def join(self, seeds: list[Addr], now: float) -> None:
        """Contact ``seeds`` now and again every two probe intervals until joined."""
        self.start(now)
        self.seeds = [tuple(s) for s in seeds if tuple(s) != self.config.addr]  # type: ignore[misc]
        self.seed_heard = {a: t for a, t in self.seed_heard.items() if a in self.seeds}
        self._t["join"] = now if self.seeds else _INF

    def assume_joined(self, now: float, tag: bytes | None = None, raws: tuple[bytes, ...] = ()) -> None:
        """Start as a node that joined long ago (a warm-started benchmark, whose member
        tables are filled out of band): the seeds we hold as members count as answered,
        so no join round pings them and no join push-pull follows; with ``tag`` (the
        study's tag) and ``raws`` (its STUDY record, as a seed's push-pull would bring
        it), the study is ours already."""
        by_addr = {m.addr: m.node for m in self.membership.members()}
        for addr in self.seeds:
            if addr in by_addr:
                self.seed_heard[addr] = now
                self.seed_nodes[addr] = by_addr[addr]
        if tag is not None and self.study.tag is None:
            self.bind_study(tag)
        if raws:
            self.ae.merge_raw(raws, now, regossip=False)
        self._flush_membership()

    def leave(self, now: float) -> None:
        """Gossip a graceful LEAVE right away (the runtime then does a final push-pull)."""
        self.membership.leave(now)
        self._flush_membership()
        live = self.membership.ids(State.ALIVE, State.SUSPECT)
        for node in self._sample(live, 2 * self.profile.gossip_nodes):
            self._send(self._addr_of(node), [], to=node)
        self._t["probe"] = self._t["join"] = self._t["reconnect"] = _INF
        self.swim.stop()

    def set_meta(self, meta: dict[str, Any], now: float) -> None:
        """Advertise new metadata (ready worker, study fingerprint...) to the cluster."""
        self.membership.set_meta(meta, now)
        self._flush_membership()

    def set_addr(self, addr: Addr) -> None:
        self.membership.set_addr(addr)

    def append_local(self, entries: list[Entry]) -> None:
        """Disseminate entries this node just appended to the ledger."""
        for e in entries:
            raw = self.ledger.raw(e.origin, e.seq) or encode_entry(e)
            self._queue_entry(e, raw)

    def push_own(self, seq: int, nodes: list[int]) -> None:
        """Send our own log up to ``seq`` (its newest entries, as many as one datagram
        holds) to live members ``nodes`` now, besides the gossip rounds: a claim its
        rivals must see before they pick the same slot (``SearchCore.push_to``). The
        entries before it come along so the claim is not held behind a gap."""
        parts: list[bytes] = []
        room = self._budget - 3
        for k in range(seq, 0, -1):
            raw = self.ledger.raw(self.node_id, k)
            msg = None if raw is None else encode_message(EntryMsg(raw))
            if msg is None or len(msg) > room:
                break
            parts.append(msg)
            room -= len(msg)
        parts.reverse()
        for node in nodes if parts else ():
            m = self.membership.get(node)
            dest = self._bound_to(node)
            if m is not None and m.state in (State.ALIVE, State.SUSPECT) and dest is not None:
                self._send_packed(m.addr, parts, dest)

    def members(self) -> list[MemberInfo]:
        return self.membership.members()

    @property
    def incarnation(self) -> int:
        """Our current incarnation (persist it; start the next life above it)."""
        return self.membership.incarnation

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def tcp_requests(self, now: float) -> list[TcpRequest]:
        """Peers the runtime should push-pull with over TCP now."""
        return self.ae.tcp_requests()

    def pushpull_peer(self) -> TcpRequest | None:
        """A random live member for a push-pull (the final one before exit)."""
        live = self.membership.ids(State.ALIVE)
        if not live:
            return None
        node = self.rng.choice(live)
        return TcpRequest(node, self._addr_of(node))

    def sync_session(self, *, initiator: bool, peer: Addr | None = None) -> SyncSession:
        """A push-pull session; ``peer``: the address we connect to (initiator only)."""
        return self.ae.session(initiator=initiator, host=self, want_health=self.want_health,
                               peer=peer)

    def agreement(self) -> tuple[int, int]:
        """(peers whose last digest equalled ours, peers that sent one)."""
        return self.ae.agreement()

    def counters(self) -> dict[str, Any]:
        return {
            **self.stats,
            "dropped": self.dropped.as_dict(),
            "queue_items": len(self.queue),
            "queue_bytes": self.queue.nbytes + self.news.nbytes,
            "queue_forgotten": self.queue.forgotten,
        }

    # ------------------------------------------------------------------ timers
    def get_timer(self) -> float | None:
        ts = list(self._t.values())
        self.swim.deadlines(ts)
        d = self.membership.next_deadline()
        if d is not None:
            ts.append(d)
        t = min(ts, default=_INF)
        return None if t == _INF else t

    def handle_timer(self, now: float) -> None:
        self.membership.expire(now)
        self._reap(now)
        swim = self.swim
        swim.probe_timers(now)
        swim.relay_timers(now)
        t = self._t
        if now >= t["probe"]:
            swim.start_probe(now)
            t["probe"] = now + self.profile.probe_interval * self.membership.scale()
        if now >= t["gossip"]:
            self._gossip_round(now)
            t["gossip"] = now + self.profile.gossip_interval
        if t["join"] == _INF and self.seeds and not self.membership.joined and not self.membership.leaving:
            t["join"] = now  # everyone else is gone: go back to the seeds
        if now >= t["join"]:
            self._join_round(now)
        if now >= t["reconnect"]:
            swim.reconnect(now)
            t["reconnect"] = now + self.profile.reconnect_interval
        if now >= t["pushpull"]:
            peer = self.pushpull_peer()
            if peer is not None:
                self.ae.want_tcp(peer.node, peer.addr, now)
            t["pushpull"] = now + self.profile.pushpull_every(self.membership.n_live())
        swim.expire_pings(now)
        self._flush_membership()

    def _reap(self, now: float) -> None:
        """Forget long-gone members and every per-peer record of nodes no longer members."""
        ae = self.ae
        if not self.membership.reap(now, self._reap_after) and len(ae.agree) <= self.config.max_members:
            return
        known = self.membership.get
        for table in (ae.agree, ae.mismatch, ae.sync_at):
            for node in [n for n in table if known(n) is None]:
                del table[node]
        horizon = 10 * self.profile.probe_interval
        for key in [k for k, t in ae.tcp_at.items() if now - t >= horizon]:
            del ae.tcp_at[key]

    def _gossip_round(self, now: float) -> None:
        m = self.membership
        if len(self.queue) or len(self.haves) or len(self.news):
            dead = [n for n in m.ids(State.DEAD) if now - m.get(n).state_since < self.profile.gossip_to_dead]  # type: ignore[union-attr]
            live = m.ids(State.ALIVE, State.SUSPECT)  # sorted already
            targets = sorted(live + dead) if dead else live
            fanout = self.profile.gossip_nodes
            if self.queue.nbytes > fanout * self._budget:
                fanout *= 2  # a backlog (a busy cluster): twice the datagrams, still within budget
            for node in self._sample(targets, fanout):
                self._send(self._addr_of(node), [], to=node)
        self.ae.tick(now)

    def _join_round(self, now: float) -> None:
        """Contact the seeds until joined *and* one of them answered: nodes that found
        each other before any seed did would otherwise stay a cluster of their own."""
        step = 2 * self.profile.probe_interval
        if not self.seeds or self.membership.leaving:
            self._t["join"] = _INF if self.membership.leaving else now + step
            return
        joined = self.membership.joined
        if joined and self._seed_answered():
            self._t["join"] = now + step
            return
        for addr in self.seeds:
            seq = self.swim.ping("join", now + step)
            self._send(addr, [self.membership.self_alive(), Ping(seq, 0)])  # unbound: first contact
        self._t["join"] = now + (5 * step if joined else step)

    # ------------------------------------------------------------------ receive
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram from ``addr``; bad ones are dropped and counted."""
        self.stats["bytes_in"] += len(data)
        self.stats["datagrams_in"] += 1
        try:
            dg = self.opener.open(data, now, commit=False)
            msgs = decode_messages(dg.messages)
            if not dg.bound and any(type(m) not in _UNBOUND for m in msgs):
                raise WireError(DropReason.BAD_SCHEMA, "an unbound datagram carries only Ping and Alive")
            self.check_signed(m for m in msgs if type(m) is Alive)
            entries = self._decode_entries(msgs, self.ledger.has_raw)
            self.opener.accept(dg, vouched=self._vouched(dg.sender, dg.epoch.salt, msgs))
        except WireError as e:
            self.count_drop(e.reason, addr)
            return
        self.stats["accepted"] += 1
        if dg.sender == self.node_id:
            return
        if addr in self.seeds:
            self.seed_heard[addr] = now
            self.seed_nodes[addr] = dg.sender
        kind = self.classify(dg.study, addr, dg.sender)
        self._replying = (dg.sender, dg.epoch.salt)  # replies go to the life that asked
        try:
            self._dispatch(dg.sender, msgs, entries, addr, now, kind)
        finally:
            self._replying = None
        self._flush_membership()

    def _vouched(self, sender: int, salt: int, msgs: list[Message]) -> bool:
        """Does ``sender``'s own signed Alive (known, or in this datagram) name boot ``salt``?"""
        if self.identity is None:
            return True
        m = self.membership.get(sender)
        if m is not None and m.boot == salt:
            return True
        return any(type(a) is Alive and a.node == sender and a.boot == salt for a in msgs)

    def check_signed(self, alives: Any) -> None:
        """WireError(BAD_SIGNATURE) at the first Alive (or member record) not signed by
        the node it names."""
        if self.identity is None:
            return
        check, holds = self.verifier.check, self.membership.holds
        for a in alives:
            if not holds(a) and not check(a):  # what we hold was checked when it came
                raise WireError(DropReason.BAD_SIGNATURE, f"alive of {a.node:016x}")

    @staticmethod
    def _decode_entries(msgs: list[Message], known: Any = None) -> list[tuple[Entry, bytes]]:
        """Decode every entry, or raise; ``known(raw)`` marks copies we already hold,
        which need no decode (byte-identical to an applied entry)."""
        out = []
        known = known or (lambda raw: False)
        for m in msgs:
            if type(m) is EntryMsg and not known(m.raw):  # held copies need no decode
                try:
                    out.append((decode_record(m.raw), m.raw))
                except EntryError:
                    raise WireError(DropReason.BAD_SCHEMA, "bad entry") from None
        return out

    def _dispatch(
        self, sender: int, msgs: list[Message], entries: list[tuple[Entry, bytes]], addr: Addr,
        now: float, kind: str = study_bind.OURS,
    ) -> None:
        known = self.membership.get(sender)
        stranger = known is None or known.state != State.ALIVE
        for m in msgs:
            if type(m) in (Alive, Suspect, Dead, Leave):
                self.membership.apply(m, now)  # type: ignore[arg-type]
        swim = self.swim
        for m in msgs:
            t = type(m)
            if kind == study_bind.FOREIGN and t in _ANTI_ENTROPY:
                continue  # another study's ledger: never compared, never synced
            if t is Ping:
                swim.on_ping(sender, m, addr, stranger)  # type: ignore[arg-type]
            elif t is PingReq:
                swim.on_ping_req(sender, m, addr, now)  # type: ignore[arg-type]
            elif t is Ack:
                swim.on_ack(sender, m.seq, addr, now)  # type: ignore[union-attr]
            elif t is Nack:
                swim.on_nack(sender, m.seq)  # type: ignore[union-attr]
            elif t is Digest:
                self.ae.on_digest(sender, m, addr, now)  # type: ignore[arg-type]
            elif t is SyncReq:
                self.ae.on_sync_req(sender, m, addr)  # type: ignore[arg-type]
            elif t is SyncVV:
                self.ae.on_sync_vv(sender, m, addr, now)  # type: ignore[arg-type]
        if entries and kind != study_bind.OURS:
            self.drop_foreign(entries, sender, addr)
        elif entries:
            self._merge(entries, sender, regossip=True)
        vv = self.ledger.vv
        if entries:  # entries held ahead of a gap: fetch the gap from the sender now
            gaps = sorted({e.origin for e, _ in entries if vv.get(e.origin, 0) < e.seq})
            if gaps:
                self.ae.fetch_gaps(sender, addr, gaps, now)
        want = self.ae.want
        for m in msgs:
            t = type(m)
            if t is Haves:
                pairs = m.pairs  # type: ignore[union-attr]
                origins, seqs = pairs[0::2], pairs[1::2]
                lacking = list(map(lt, map(vv.get, origins, repeat(0)), seqs))  # C speed:
                if True in lacking:  # a busy node already holds nearly every entry announced
                    for origin, seq in compress(zip(origins, seqs, strict=False), lacking):
                        want(sender, addr, origin, seq)
            elif t is Have and vv.get(m.origin, 0) < m.seq:  # type: ignore[union-attr]
                want(sender, addr, m.origin, m.seq)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ Link (for self.ae)
    def send(self, addr: Addr, head: list[Message], *, to: int, piggyback: bool = True) -> None:
        """Send to member ``to``, bound to its current life (see ``_send``)."""
        self._send(addr, head, piggyback=piggyback, to=to)

    def send_packed(self, addr: Addr, parts: list[bytes], *, to: int) -> None:
        """Entries go only bound to a life of ``to`` we know (else they are not sent)."""
        dest = self._bound_to(to)
        if dest is not None:
            self._send_packed(addr, parts, dest)

    def merge(self, pairs: list[tuple[Entry, bytes]], sender: int, *, regossip: bool) -> int:
        return self._merge(pairs, sender, regossip=regossip)

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def flush_membership(self) -> None:
        self._flush_membership()

    # ------------------------------------------------------------------ merging
    def _merge(self, pairs: list[tuple[Entry, bytes]], sender: int, *, regossip: bool) -> int:
        stats = self.ledger.merge(pairs)
        if stats.bad_signature:
            self.count_drop_n(DropReason.BAD_SIGNATURE, stats.bad_signature)
        if stats.unknown_key:
            self.count_drop_n(DropReason.UNKNOWN_KEY, stats.unknown_key)
        if stats.added:
            self.stats["entries_in"] += len(stats.added)
            self._events.append(EntriesMerged(list(stats.added), sender))
            if regossip:
                for e in stats.added:
                    self._queue_entry(e, self.ledger.raw(e.origin, e.seq) or encode_entry(e))
        return len(stats.added)

    # ------------------------------------------------------------------ sending
    def _queue_entry(self, e: Entry, raw: bytes) -> None:
        msg = encode_message(EntryMsg(raw))
        if len(msg) + 64 <= self._budget:
            key = ("e", e.origin, e.seq)
            self.queue.put(key, msg, self.config.eager_sends)
            self.haves.put(key, have_item(e.origin, e.seq))  # sent in a Haves

    def _flush_membership(self) -> None:
        m = self.membership
        for msg in m.outbox:
            self.news.put(("m", msg.node), encode_message(msg))
        m.outbox.clear()
        if m.refused:
            self.dropped.add(DropReason.OVER_LIMIT, m.refused)
            m.refused = 0
        self._events.extend(m.events)
        m.events.clear()
        if m.joined and self._t["join"] != _INF and self._seed_answered():
            self._t["join"] = _INF

    def _seed_answered(self) -> bool:
        return any(a in self.seed_heard for a in self.seeds)

    def _bound_to(self, node: int) -> tuple[int, int] | None:
        """(node, boot salt of its current life) or None while unknown: the salt its latest
        authenticated datagram carried (a reply goes to the life that asked), else the
        one its signed Alive names."""
        if not node:
            return None
        if self._replying is not None and self._replying[0] == node:
            return self._replying
        salt = self.opener.peer_salt(node)
        if salt is None:
            m = self.membership.get(node)
            salt = m.boot if m is not None and m.boot else None
        return None if salt is None else (node, salt)

    def _send(self, addr: Addr, head: list[Message], *, piggyback: bool = True, to: int = 0) -> None:
        """Send ``head`` (plus piggybacked gossip) to node ``to`` at ``addr``, bound to its
        current life; unbound (Ping and Alive only, nothing piggybacked) while its life
        is unknown or ``to`` is 0."""
        dest = self._bound_to(to)
        if dest is None:
            head = [m for m in head if type(m) in _UNBOUND]
            piggyback = False
        parts = [encode_message(m) for m in head]
        if piggyback:
            parts += self._piggyback(self._budget - 3 - sum(len(p) for p in parts))
        if parts:
            self._send_packed(addr, parts, dest)

    def _piggyback(self, room: int) -> list[bytes]:
        """Queued updates for ``room`` bytes: membership changes first (as in SWIM: a
        busy ledger must not starve them, or members stay unknown to part of a large
        cluster), then whole entries (each sent whole ``eager_sends`` times at most),
        then, in a share of the room they cannot crowd out, announcements of entries,
        all in one ``Haves`` message (lazy push: see ``AntiEntropy.want``)."""
        limit = self.profile.retransmit_limit(self.membership.n_live())
        haves = self.haves
        reserve = min(room // 4, haves.nbytes + HAVES_HEAD) if len(haves) else 0
        parts = self.news.take(room - reserve, limit) if len(self.news) else []
        used = sum(len(p) for p in parts)
        parts += self.queue.take(room - reserve - used, limit)
        if len(haves):
            left = room - sum(len(p) for p in parts) - HAVES_HEAD
            pairs = haves.take(min(left, 2 * MAX_HAVES), limit)  # a pair packs to >= 2 bytes
            if pairs:
                parts.append(pack_haves(pairs))  # one message for all: one decode
        return parts

    def _send_packed(self, addr: Addr, parts: list[bytes], dest: tuple[int, int] | None) -> None:
        data = self.sealer.seal_packed(parts, dest)
        self.stats["bytes_out"] += len(data)
        self.stats["datagrams_out"] += 1
        self._out.append((data, addr))

    def _addr_of(self, node: int) -> Addr:
        m = self.membership.get(node)
        assert m is not None
        return m.addr

    def _sample(self, pool: list[int], k: int) -> list[int]:
        return self.rng.sample(pool, min(k, len(pool)))

    # ------------------------------------------------------------------ inspection
    def dump(self) -> list[Any]:
        """Canonical protocol state (no counters, no events) for equality checks."""
        return [
            self.node_id, self.membership.dump(), sorted(self.ledger.vv.items()), self.queue.dump(),
            self.haves.dump(), self.news.dump(),
            *self.swim.dump(), *self.ae.dump(),
            sorted(self._t.items()), self.swim.seq, self.started, self.seeds,
        ]
