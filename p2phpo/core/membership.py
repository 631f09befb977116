"""SWIM + Lifeguard membership state machine (pure, sans-IO).

This module owns the member table and its transitions; it does no probing
itself (``gossip.py`` decides whom to probe and feeds the outcomes back). It
takes ``now`` on every call, draws randomness only from the ``random.Random``
it is given, and iterates members in sorted id order wherever order matters.

Transitions (memberlist's rules; ``inc`` is the message's incarnation):

============  ==============================================================
ALIVE msg     new member → ALIVE (joined); known member only if inc is higher
SUSPECT msg   ALIVE → SUSPECT at inc = ours; SUSPECT: one more confirmation
DEAD msg      ALIVE/SUSPECT → DEAD at inc = ours
LEAVE msg     any but LEFT → LEFT at inc = ours
about us      SUSPECT/DEAD/LEAVE at inc = ours: refute (inc + 1, gossip ALIVE)
timer         SUSPECT → DEAD when the Lifeguard suspicion timeout expires
reap          DEAD/LEFT for ``reap_after`` → removed (a tombstone remembers its
              incarnation, so stale gossip cannot bring it back)
============  ==============================================================

The table is bounded (``max_members``, memberlist/Serf-style reaping of
DEAD and LEFT members): when it is full, a new member evicts the member
longest DEAD or LEFT, or is refused (counted in ``refused``).

Every ALIVE is signed by the node it names (``core.member_sig``; the caller
verifies before handing it here), so a member's incarnation is always that
of its latest signed ALIVE: a SUSPECT, DEAD or LEAVE naming a higher one is
ignored (nobody can push a node's incarnation up), and incarnations never
pass 2**64 - 1 (refuting at the ceiling keeps the ceiling; nothing raises).

Accepted updates go to ``outbox`` for the gossip core to piggyback, and user
visible changes to ``events``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from p2phpo.core.identity import Identity
from p2phpo.core.member_sig import U64, sign_alive
from p2phpo.core.messages import Addr, Alive, Dead, Leave, MemberRecord, State, Suspect
from p2phpo.core.profiles import Profile
from p2phpo.core.wire_crypto import Lru

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class MemberJoined:
    node: int
    addr: Addr
    incarnation: int
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    node: int
    incarnation: int
    by: int


@dataclass(frozen=True, slots=True)
class MemberDead:
    node: int
    incarnation: int
    by: int


@dataclass(frozen=True, slots=True)
class MemberLeft:
    node: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberRefuted:
    """``node`` refuted a suspicion (``node`` is this node when we refuted)."""

    node: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A DEAD or LEFT member is back."""

    node: int
    addr: Addr
    incarnation: int
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """An ALIVE member changed its address or metadata."""

    node: int
    addr: Addr
    incarnation: int
    meta: dict[str, Any]


MemberEvent = (
    MemberJoined
    | MemberSuspected
    | MemberDead
    | MemberLeft
    | MemberRefuted
    | MemberAlive
    | MemberUpdated
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A read-only snapshot of one member (``Membership.members()``)."""

    node: int
    addr: Addr
    state: State
    incarnation: int
    meta: dict[str, Any]
    last_ack: float | None
    state_since: float


@dataclass(slots=True)
class _Member:
    node: int
    addr: Addr
    state: State
    incarnation: int
    meta: dict[str, Any]
    state_since: float
    last_ack: float | None = None
    boot: int = 0  # boot salt of its life, as its signed Alive says
    pub: bytes = b""  # the node's key and signature of (incarnation, addr, meta, boot)
    sig: bytes = b""
    record: MemberRecord | None = None  # push-pull record, as of its incarnation and state


@dataclass(slots=True)
class Suspicion:
    """Lifeguard suspicion: the timeout shrinks with independent confirmations."""

    start: float
    k: int
    lo: float
    hi: float
    first: int
    confirmers: set[int] = field(default_factory=set)

    def deadline(self) -> float:
        c = len(self.confirmers)
        if self.k < 1 or c >= self.k:
            return self.start + self.lo
        frac = math.log(c + 1) / math.log(self.k + 1)
        return self.start + max(self.lo, self.hi - (self.hi - self.lo) * frac)

    def confirm(self, sender: int) -> bool:
        """Count ``sender``'s confirmation; True if it is a new one."""
        if sender == self.first or sender in self.confirmers or len(self.confirmers) >= self.k:
            return False
        self.confirmers.add(sender)
        return True


# --------------------------------------------------------------------------- table


class Membership:
    """The member table of one node, with Lifeguard's Local Health Multiplier."""

    def __init__(
        self,
        node_id: int,
        addr: Addr,
        profile: Profile,
        rng: random.Random,
        *,
        incarnation: int = 0,
        meta: dict[str, Any] | None = None,
        identity: Identity | None = None,
        boot: int = 0,
        max_members: int = 8192,
    ) -> None:
        if identity is not None and identity.node_id != node_id:
            raise ValueError("the node id must be the identity's (node_id_of(public key))")
        self.node_id = node_id
        self.identity = identity
        self.boot = boot
        self.addr = addr
        self.profile = profile
        self.rng = rng
        self.incarnation = min(max(0, incarnation), U64)
        self.meta: dict[str, Any] = dict(meta or {})
        self._signed: Alive | None = None
        self.max_members = max_members
        self.refused = 0  # new members refused because the table was full
        self.twin: Alive | None = None  # a signed Alive of our id from another live life
        self._tombs: Lru[int, int] = Lru(max_members)  # reaped node -> its last incarnation
        self.leaving = False
        self.awareness = 0
        self._members: dict[int, _Member] = {}
        self._suspicions: dict[int, Suspicion] = {}
        self._probe_order: list[int] = []
        self._probe_idx = 0
        self.outbox: list[Alive | Suspect | Dead | Leave] = []
        self.events: list[MemberEvent] = []
        self._cache: dict[tuple[State, ...], list[int]] = {}

    def _changed(self) -> None:
        self._cache.clear()

    # -- queries -----------------------------------------------------------
    def get(self, node: int) -> _Member | None:
        return self._members.get(node)

    def ids(self, *states: State) -> list[int]:
        """Member ids (never ours) in the given states, sorted (a cached list: do not mutate)."""
        got = self._cache.get(states)
        if got is None:
            got = sorted(n for n, m in self._members.items() if not states or m.state in states)
            self._cache[states] = got
        return got

    def n_live(self) -> int:
        """ALIVE and SUSPECT members, counting this node."""
        return 1 + len(self.ids(State.ALIVE, State.SUSPECT))

    @property
    def joined(self) -> bool:
        return bool(self.ids(State.ALIVE, State.SUSPECT))

    def scale(self) -> int:
        """Local Health Multiplier: timeouts and intervals are multiplied by this."""
        return self.awareness + 1

    def adjust_awareness(self, delta: int) -> None:
        self.awareness = min(self.profile.awareness_max - 1, max(0, self.awareness + delta))

    def self_alive(self) -> Alive:
        """Our Alive, signed by our identity (re-signed only when a field changed)."""
        a = self._signed
        if a is None or (a.incarnation, a.addr, a.meta) != (self.incarnation, self.addr, self.meta):
            meta = dict(self.meta)
            if self.identity is None:  # bare membership tests: unsigned
                a = Alive(self.node_id, self.incarnation, self.addr, meta, self.boot)
            else:
                sig = sign_alive(self.identity, self.incarnation, self.addr, meta, self.boot)
                a = Alive(self.node_id, self.incarnation, self.addr, meta, self.boot, self.identity.public_key, sig)
            self._signed = a
        return a

    def members(self) -> list[MemberInfo]:
        """Every known member, this node first, then by id."""
        me = MemberInfo(
            self.node_id, self.addr, State.LEFT if self.leaving else State.ALIVE,
            self.incarnation, dict(self.meta), None, 0.0,
        )
        rest = [
            MemberInfo(m.node, m.addr, m.state, m.incarnation, dict(m.meta), m.last_ack, m.state_since)
            for m in (self._members[n] for n in sorted(self._members))
        ]
        return [me, *rest]

    def records(self) -> list[MemberRecord]:
        """State for a push-pull: us and every member, by id."""
        a = self.self_alive()
        me = MemberRecord(
            self.node_id, a.incarnation, State.LEFT if self.leaving else State.ALIVE,
            a.addr, dict(a.meta), a.boot, a.pub, a.sig,
        )
        return [me, *(self._record(self._members[n]) for n in sorted(self._members))]

    def _record(self, m: _Member) -> MemberRecord:
        """``m`` as a push-pull record, built once per (incarnation, state): its address,
        metadata and signature change only with its incarnation (``apply_alive``), and a
        record is immutable, so every push-pull of a big cluster reuses it."""
        held = m.record
        if held is not None and held.incarnation == m.incarnation and held.state == m.state:
            return held
        m.record = MemberRecord(m.node, m.incarnation, m.state, m.addr, dict(m.meta), m.boot, m.pub, m.sig)
        return m.record

    def holds(self, a: Any) -> bool:
        """Whether ``a`` (an Alive or a record) carries exactly the signed fields of the
        member we hold (so its signature was checked when we took it in)."""
        m = self._members.get(a.node)
        return (m is not None and m.sig == a.sig and m.incarnation == a.incarnation and bool(m.sig)
                and m.pub == a.pub and m.boot == a.boot and m.addr == a.addr and m.meta == a.meta)

    def dump(self) -> list[Any]:
        """Canonical, comparable state (tests, fuzz)."""
        rows = [[r.node, r.incarnation, int(r.state), list(r.addr), r.meta] for r in self.records()]
        sus = [[n, s.start, s.first, sorted(s.confirmers)] for n, s in sorted(self._suspicions.items())]
        return [rows, sus, self.awareness, self.leaving, self._probe_order, self._probe_idx]

    # -- local actions -----------------------------------------------------
    def set_meta(self, meta: dict[str, Any], now: float) -> None:
        """Change our metadata: bump the incarnation so the change wins everywhere."""
        self.meta = dict(meta)
        self.incarnation = min(self.incarnation + 1, U64)
        self.outbox.append(self.self_alive())

    def set_addr(self, addr: Addr) -> None:
        self.addr = addr

    def leave(self, now: float) -> Leave:
        self.leaving = True
        msg = Leave(self.node_id, self.incarnation)
        self.outbox.append(msg)
        return msg

    def refute(self, seen: int) -> None:
        self.incarnation = min(max(self.incarnation, seen) + 1, U64)
        self.adjust_awareness(1)
        self.outbox.append(self.self_alive())
        self.events.append(MemberRefuted(self.node_id, self.incarnation))

    def suspect(self, node: int, now: float) -> None:
        """Our probe of ``node`` failed."""
        m = self._members.get(node)
        if m is not None:
            self.apply_suspect(Suspect(node, m.incarnation, self.node_id), now)

    def record_ack(self, node: int, now: float) -> None:
        m = self._members.get(node)
        if m is not None:
            m.last_ack = now

    # -- remote updates ----------------------------------------------------
    def apply(self, msg: Alive | Suspect | Dead | Leave, now: float) -> None:
        if isinstance(msg, Alive):
            self.apply_alive(msg, now)
        elif isinstance(msg, Suspect):
            self.apply_suspect(msg, now)
        elif isinstance(msg, Dead):
            self.apply_dead(msg, now)
        else:
            self.apply_leave(msg, now)

    def _about_us(self, inc: int) -> None:
        # Above our incarnation is a forgery: only our own signed Alive raises it.
        if not self.leaving and inc == self.incarnation:
            self.refute(inc)

    def apply_alive(self, msg: Alive, now: float) -> None:
        if msg.node == self.node_id:
            # Our id, another boot salt, an incarnation our past lives never reached (we
            # start above the one persisted): another process holds our identity now.
            if msg.boot and msg.boot != self.boot and msg.incarnation >= self.incarnation:
                self.twin = self.twin or msg
            differs = msg.addr != self.addr or msg.meta != self.meta
            if not self.leaving and (msg.incarnation > self.incarnation or differs and msg.incarnation == self.incarnation):
                self.refute(msg.incarnation)
            return
        m = self._members.get(msg.node)
        if m is None:
            tomb = self._tombs.peek(msg.node)
            if (tomb is not None and msg.incarnation <= tomb) or not self._room():
                return
            self._tombs.pop(msg.node)
            self._members[msg.node] = _Member(
                msg.node, msg.addr, State.ALIVE, msg.incarnation, dict(msg.meta), now, None,
                msg.boot, msg.pub, msg.sig,
            )
            self._insert_probe(msg.node)
            self._changed()
            self.events.append(MemberJoined(msg.node, msg.addr, msg.incarnation, dict(msg.meta)))
            self.outbox.append(msg)
            return
        if msg.incarnation <= m.incarnation:
            return
        old = m.state
        m.incarnation, m.addr, m.meta = msg.incarnation, msg.addr, dict(msg.meta)
        m.boot, m.pub, m.sig = msg.boot, msg.pub, msg.sig
        self._suspicions.pop(msg.node, None)
        if old != State.ALIVE:
            m.state, m.state_since = State.ALIVE, now
            self._changed()
        if old == State.SUSPECT:
            self.events.append(MemberRefuted(msg.node, msg.incarnation))
        elif old in (State.DEAD, State.LEFT):
            self._insert_probe(msg.node)
            self.events.append(MemberAlive(msg.node, msg.addr, msg.incarnation, dict(msg.meta)))
        else:
            self.events.append(MemberUpdated(msg.node, msg.addr, msg.incarnation, dict(msg.meta)))
        self.outbox.append(msg)

    def apply_suspect(self, msg: Suspect, now: float) -> None:
        if msg.node == self.node_id:
            self._about_us(msg.incarnation)
            return
        m = self._members.get(msg.node)
        if m is None or msg.incarnation != m.incarnation or m.state >= State.DEAD:
            return
        if m.state == State.SUSPECT:
            sus = self._suspicions.get(msg.node)
            if sus is not None and sus.confirm(msg.sender):
                self.outbox.append(msg)
            return
        m.state, m.state_since = State.SUSPECT, now
        self._changed()
        self._suspicions[msg.node] = self._new_suspicion(msg.sender, now)
        self.events.append(MemberSuspected(msg.node, msg.incarnation, msg.sender))
        self.outbox.append(msg)

    def _new_suspicion(self, sender: int, now: float) -> Suspicion:
        n = self.n_live()
        lo, hi = self.profile.suspicion_bounds(n)
        k = self.profile.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        return Suspicion(start=now, k=k, lo=lo, hi=hi, first=sender)

    def apply_dead(self, msg: Dead, now: float) -> None:
        if msg.node == self.node_id:
            self._about_us(msg.incarnation)
            return
        m = self._members.get(msg.node)
        if m is None or msg.incarnation != m.incarnation or m.state >= State.DEAD:
            return
        m.state, m.state_since = State.DEAD, now
        self._changed()
        self._suspicions.pop(msg.node, None)
        self.events.append(MemberDead(msg.node, msg.incarnation, msg.sender))
        self.outbox.append(msg)

    def apply_leave(self, msg: Leave, now: float) -> None:
        if msg.node == self.node_id:
            self._about_us(msg.incarnation)
            return
        m = self._members.get(msg.node)
        if m is None or msg.incarnation != m.incarnation or m.state == State.LEFT:
            return
        m.state, m.state_since = State.LEFT, now
        self._changed()
        self._suspicions.pop(msg.node, None)
        self.events.append(MemberLeft(msg.node, msg.incarnation))
        self.outbox.append(msg)

    def apply_record(self, r: MemberRecord, now: float) -> None:
        """Merge one member of a peer's push-pull state (a remote DEAD only suspects)."""
        if r.state == State.LEFT:
            if r.node in self._members or r.node == self.node_id:
                self.apply_leave(Leave(r.node, r.incarnation), now)
            return
        m = self._members.get(r.node)
        if r.state == State.ALIVE and m is not None and r.incarnation <= m.incarnation:
            return  # what apply_alive would do with it (nothing), without building the Alive
        if m is None or r.state == State.ALIVE or r.node == self.node_id:
            self.apply_alive(r.alive(), now)
        if r.state != State.ALIVE:
            self.apply_suspect(Suspect(r.node, r.incarnation, 0), now)

    def _room(self) -> bool:
        """Room for one more member: evict the one longest DEAD or LEFT if full."""
        if len(self._members) < self.max_members:
            return True
        gone = self.ids(State.DEAD, State.LEFT)
        if not gone:
            self.refused += 1
            return False
        self._forget(min(gone, key=lambda n: self._members[n].state_since))
        return True

    def _forget(self, node: int) -> None:
        m = self._members.pop(node)
        self._tombs.put(node, m.incarnation)
        self._suspicions.pop(node, None)
        self._changed()

    def reap(self, now: float, after: float) -> list[int]:
        """Remove members DEAD or LEFT for ``after`` seconds; their ids."""
        gone = [n for n in self.ids(State.DEAD, State.LEFT) if now - self._members[n].state_since >= after]
        for node in gone:
            self._forget(node)
        return gone

    # -- timers ------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return min((s.deadline() for s in self._suspicions.values()), default=None)

    def expire(self, now: float) -> None:
        """Declare DEAD every suspect whose timeout has passed."""
        for node in sorted(self._suspicions):
            sus = self._suspicions.get(node)
            if sus is not None and sus.deadline() <= now:
                m = self._members[node]
                self.apply_dead(Dead(node, m.incarnation, self.node_id), now)

    # -- probe order -------------------------------------------------------
    def _insert_probe(self, node: int) -> None:
        try:  # already waiting for its turn (no copy of the order: it holds every member)
            self._probe_order.index(node, self._probe_idx)
            return
        except ValueError:
            pass
        self._probe_order.insert(self.rng.randint(self._probe_idx, len(self._probe_order)), node)

    def next_probe_target(self) -> int | None:
        """Round-robin over ALIVE and SUSPECT members, reshuffled each pass."""
        for _ in range(2):
            while self._probe_idx < len(self._probe_order):
                node = self._probe_order[self._probe_idx]
                self._probe_idx += 1
                m = self._members.get(node)
                if m is not None and m.state <= State.SUSPECT:
                    return node
            order = list(self.ids(State.ALIVE, State.SUSPECT))
            self.rng.shuffle(order)
            self._probe_order, self._probe_idx = order, 0
        return None
