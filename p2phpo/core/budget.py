"""Which budget slot an idle node takes next: its own rights, then work stealing.

Pure and sans-IO; :class:`~p2phpo.core.search.SearchCore` owns one
:class:`SlotPlanner` and asks it for a slot whenever the node is idle.

Rights (escrow). The *roster* is every member that ever advertised a ready
worker for this study, whatever its state now (ALIVE, SUSPECT, DEAD, LEFT).
Each roster member has ``POINTS`` points on a 64-bit ring (a hash of its
id); slot ``s`` of ``n`` sits at ``(2s + 1) / 2n`` of the ring and belongs to
the point at or after it. That is the member's share of the budget, agreed
without a message because every node derives it from the membership it
sees. An owner needs nobody's consent, so a healthy cluster claims its own
rights without conflicts.

Views disagree while members join (a ready flag is still in flight). A
missing member only moves the *far* end of a neighbour's arc, so each owner
runs its slots nearest below its points first: under a partial view its
first claims are still, nearly always, its own (``tests/unit/test_budget.py``
measures it). Ranks over the roster (``r*n/m``) would move every range start.

Why keep gone members in the roster: when a partition cuts the cluster in
two, each side sees the other side DEAD. If the roster shrank, each side
would re-split the *whole* budget and both sides would run the same slots.
Kept, a gone member's rights are only *stolen*, once a side has run out of
its own work, so a short cut costs few duplicates.

Stealing. A member with no rights left is a *thief*. Stealable are other
members' open slots, except an idle live owner's next one (it is about to
claim it); best first: live owners' slots (longest queue first, from the far
end of the queue), a busy live owner's next slot, then (after ``gone_wait``)
gone owners' slots. While some member is SUSPECT or gone, a live owner we have not heard
from lately (``quiet``: no change to its trials for ``heard_window``) may be
behind a cut that views have not caught up with, where thieves of its own side
rob it too, unseen: its slots come after those of owners we still hear, so
the two sides of a fresh cut mostly steal from their own side. A gone or quiet
owner's queue is taken from the middle: beyond a cut, the owner runs its near
end and its own side's thieves the far end.
Each candidate slot goes to its rendezvous winner among the thieves — idle
or busy, since whether a thief is idle is what views disagree on most (its
RESULT and next CLAIM travel together); thieves seen starting a trial
moments ago (``fresh``) do not compete. Two thieves that know each other
agree on every slot whatever else their views hold. A slot whose winner is
busy goes, once a thief has waited ``wait`` seconds, to the winner among the
idle thieves — preferably a slot that is not the busy winner's first (it would
take that one the moment it is idle, maybe before our claim reaches it). After ``claim_grace`` seconds without work a node takes a
candidate anyway (its result held back a little longer), so no view can stall it.

Conflicts still resolve by the one rule: lowest ``hrw(slot, origin)`` wins.
Most conflicts come from claims still in flight (a few gossip rounds at 100
nodes), so each claim also goes at once to :meth:`SlotPlanner.rivals`: the
slot's owner and the members first in line for it as thieves.
Without ``n_trials`` slots are open-ended and roster member ``r`` holds the
slots ``s`` with ``s % m == r``; nobody runs out, so nobody steals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from p2phpo.core.hrw import mix64

STEAL_SALT = 0x5EA1
RING_SALT = 0xB0D6E7
POINTS = 8
MASK64 = MAX64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Pick:
    """A slot to claim, and why: ``home`` (own range), ``steal``, ``grace`` (fallback)."""

    slot: int
    kind: str


class Ring:
    """The roster's budget rights: ``POINTS`` points per member on a 64-bit ring.

    Slot ``s`` sits at ``(2s + 1) * 2**63 / n``; the point at or after it (the
    ring wraps) holds it. Each point's arc is worked from the top (the slots
    nearest the point) down: a member missing from someone's view only ever
    moves the *bottom* of a neighbour's arc, so first claims never collide.
    """

    def __init__(self, roster: list[int], n: int) -> None:
        self.n = n
        ids = np.repeat(np.array(roster, dtype=np.uint64), POINTS)
        vs = np.tile(np.arange(POINTS, dtype=np.uint64), len(roster))
        pts = mix64(ids ^ np.uint64(RING_SALT), vs)
        order = np.lexsort((ids, pts))
        pts, ids = pts[order], ids[order]
        self.points: list[int] = pts.tolist()
        self.owners: list[int] = ids.tolist()
        # Slot s sits at (2s+1) * 2**63 / n: at or before an (integer) point p exactly
        # when its ceiling is, so sorted searches give what _count and the arcs say.
        at = _slot_ceilings(n)
        cuts = np.searchsorted(at, pts, side="right").tolist()  # _count of every point
        # arcs[i]: slots [lo, hi) of point i (the first arc also holds the wrapped top)
        self.arcs: list[list[tuple[int, int]]] = []
        lo = 0
        for hi in cuts:
            self.arcs.append([(lo, hi)] if hi > lo else [])
            lo = max(lo, hi)
        if cuts and cuts[-1] < n:
            self.arcs[0].append((cuts[-1], n))
        self.of: dict[int, list[int]] = {}
        for i, owner in enumerate(self.owners):
            self.of.setdefault(owner, []).append(i)
        # slot -> the member whose rights hold it: the first point at or after the slot
        first = np.searchsorted(pts, at, side="left") if len(pts) else np.zeros(n, dtype=np.int64)
        self.owner_of: list[int] = (ids[first % max(1, len(pts))].tolist() if len(pts)
                                    else [0] * n)

    def _count(self, point: int) -> int:
        """How many slots sit at or before ``point``."""
        return min(self.n, ((point * self.n >> 63) + 1) // 2)

    def _dist(self, i: int, slot: int) -> int:
        """How far below point ``i`` slot ``slot`` sits (mod 2**64)."""
        return (self.points[i] - (((2 * slot + 1) << 63) // self.n)) & MASK64

    def queue(self, member: int, is_open: bytearray) -> list[int]:
        """``member``'s open slots in the order it runs them: nearest below one of its
        points first (an arc's top is what a partial view is least likely to move)."""
        out: list[tuple[int, int]] = []
        for i in self.of.get(member, ()):
            for lo, hi in self.arcs[i]:
                j = is_open.find(1, lo, hi)
                while j >= 0:
                    out.append((self._dist(i, j), j))
                    j = is_open.find(1, j + 1, hi)
        out.sort()
        return [slot for _, slot in out]

    def head(self, member: int, is_open: bytearray) -> int | None:
        """The first slot of :meth:`queue`, without building it."""
        best: tuple[int, int] | None = None
        for i in self.of.get(member, ()):
            for lo, hi in self.arcs[i]:
                j = is_open.rfind(1, lo, hi)
                if j >= 0:
                    d = self._dist(i, j)
                    if best is None or d < best[0]:
                        best = (d, j)
        return None if best is None else best[1]


class SlotPlanner:
    """The open/closed state of every slot and the choice of the next one.

    ``is_open(slot)`` is the search core's view (FREE or REOPENED). For a
    bounded budget the planner also keeps a byte per slot (1 = open), updated
    by :meth:`mark`, so scanning an arc is a C-speed ``rfind``.
    """

    def __init__(self, n: int | None, is_open: Callable[[int], bool], wait: float = 0.0,
                 gone_wait: float = 0.0) -> None:
        self.n = n
        self.wait = wait
        self.gone_wait = gone_wait
        self.is_open = is_open
        self.open = bytearray(b"\x01") * n if n is not None else None
        self._ring: tuple[tuple[int, ...], Ring] | None = None
        self._queues: dict[int, list[int]] = {}  # member -> Ring.queue, until a slot of it changes
        self.contenders: list[int] = []  # live members out of own work at the last steal

    def mark(self, slot: int, is_open: bool) -> None:
        if self.open is not None and 0 <= slot < len(self.open):
            value = 1 if is_open else 0
            if self.open[slot] != value:
                self.open[slot] = value
                if self._ring is not None:
                    self._queues.pop(self._ring[1].owner_of[slot], None)

    def ring(self, roster: list[int]) -> Ring:
        key = tuple(roster)
        if self._ring is None or self._ring[0] != key:
            self._ring = (key, _ring(key, self.n))
            self._queues.clear()
        return self._ring[1]

    def queue(self, member: int, ring: Ring) -> list[int]:
        """``ring.queue(member, self.open)``, kept until one of its slots opens or closes
        (an idle node looks at every member's queue on every step)."""
        q = self._queues.get(member)
        if q is None:
            q = self._queues[member] = ring.queue(member, self.open)
        return q

    # -- home -----------------------------------------------------------------
    def home(self, me: int, roster: list[int], low: int) -> int | None:
        """The next open slot of ``me``'s own rights (None when it has none left)."""
        rank = _index(roster, me)
        if rank is None:
            return None
        if self.open is None:
            m = len(roster)
            slot = low + (rank - low) % m
            while not self.is_open(slot):
                slot += m
            return slot
        if len(roster) == 1:  # alone (hp.optimize): slots in order, trial numbers count up
            return self.any_open(low)
        return self.ring(roster).head(me, self.open)

    # -- stealing -------------------------------------------------------------
    def steal(self, me: int, roster: list[int], live: set[int], busy: set[int],
              fresh: set[int], waited: float, fallback: bool,
              quiet: set[int] | frozenset[int] = frozenset()) -> Pick | None:
        """A slot for ``me`` (out of own work) from others' ranges; see the module docstring."""
        if self.open is None:
            return None
        thieves, cands = self._candidates(me, roster, live, busy, fresh, quiet)
        if not fallback:
            # A gone or quiet owner may only be cut off, running its rights on the other
            # side: rob it only when owners we hear have nothing left to steal, and a gone
            # one only after a wait (a short cut then costs nothing).
            safe = [c for c in cands if c[0] in (0, 2)]
            cands = safe or [c for c in cands if c[0] == 1 or waited >= self.gone_wait]
        if not cands:
            return None
        slots = np.array([c[3] for c in cands], dtype=np.uint64)
        ids = np.array(thieves, dtype=np.uint64)
        weights = mix64(slots[:, None] ^ np.uint64(STEAL_SALT), ids[None, :])
        if fallback:  # our own pick among the best candidates: fallbacks rarely meet
            top = weights[: 2 * len(thieves), 0]
            return Pick(int(slots[int(np.argmin(top))]), "grace")
        first = np.argmin(weights, axis=1)
        hits = np.flatnonzero(first == 0)
        if len(hits):
            return Pick(int(slots[hits[0]]), "steal")
        if waited < self.wait:
            return None
        # Slots whose winner is busy go, after a wait, to the winner among idle thieves.
        idle = np.array([i == 0 or t not in busy for i, t in enumerate(thieves)])
        held = ~idle[first]
        masked = np.where(idle[None, :], weights, np.uint64(MAX64))
        hits = np.flatnonzero(held & (np.argmin(masked, axis=1) == 0))
        if not len(hits):
            return None
        # The busy winner takes its wins in order, one per trial, as soon as it is
        # idle (maybe before our claim reaches it): take a slot it would reach later.
        later = [h for h in hits if np.count_nonzero(first[:h] == first[h])]
        return Pick(int(slots[later[0] if later else hits[0]]), "steal2")

    def _candidates(self, me: int, roster: list[int], live: set[int], busy: set[int],
                    fresh: set[int], quiet: set[int] | frozenset[int] = frozenset(),
                    ) -> tuple[list[int], list[tuple[int, int, int, int]]]:
        """The thieves (``me`` first) and the stealable slots, best first.

        A thief seen starting a trial moments ago (``fresh``) will not be idle
        soon and does not compete; every other thief does, idle or not: whether
        a thief is idle is what views disagree on most (its RESULT and next
        CLAIM travel together), so it must not change who wins a slot. A
        victim's queue is taken from its far end, the owner's last claims; a
        gone or quiet victim's from the middle (see the module docstring)."""
        ring = self.ring(roster)
        thieves: list[int] = [me]
        self.contenders = [me]  # the thieves, fresh ones too (rivals of our steal)
        cands: list[tuple[int, int, int, int]] = []  # (tier, -queue length, from the end, slot)
        for member in roster:
            if member == me:
                continue
            queue = self.queue(member, ring)
            if not queue:
                if member in live:
                    self.contenders.append(member)
                    if member not in fresh:
                        thieves.append(member)
                continue
            k = len(queue)
            if member not in live:  # maybe cut off: it runs the near end, its side's
                cands += [(3, -k, abs(2 * i - k + 1), s) for i, s in enumerate(queue)]
                continue  # thieves the far end; the middle lasts longest
            if member in quiet:
                cands += [(1, -k, abs(2 * i - k), s) for i, s in enumerate(queue[1:], 1)]
            else:
                cands += [(0, -k, k - 1 - i, s) for i, s in enumerate(queue[1:], 1)]
            if member in busy:  # an idle owner is about to claim its next slot itself
                cands.append((2, -k, k - 1, queue[0]))
        cands.sort()
        return thieves, cands

    def rivals(self, slot: int, me: int, roster: list[int], alive: set[int], k: int,
               contenders: list[int] | None = None) -> list[int]:
        """The live members likeliest to claim ``slot`` too before they hear of our claim:
        its owner (it may be about to run it) and the first ``k`` by the steal weight
        (whoever wins it as a thief in a view that misses us or our claim).

        ``contenders``: for a stolen slot, the members out of own work in the steal's
        view (:attr:`contenders`): only they compete for it. Each of those ranked
        before us by the steal weight may be idle in its own view (we saw it busy, or
        starting a trial) and take the slot; so may the next ones (they may see us
        busy). They get the first ``k`` after us and all before us, up to ``2k``."""
        if self.open is None or k <= 0 or not 0 <= slot < (self.n or 0) or len(roster) < 2:
            return []
        pool = roster if contenders is None else contenders
        others = [m for m in pool if m != me and m in alive]
        owner = self.ring(roster).owner_of[slot]
        out: list[int] = []
        if others:
            ids = np.array(others + [me], dtype=np.uint64)
            order = np.argsort(mix64(np.uint64(slot) ^ np.uint64(STEAL_SALT), ids), kind="stable")
            ranked = [others[i] for i in order if i < len(others)]
            n = k if contenders is None else min(2 * k, int(np.flatnonzero(order == len(others))[0]) + k)
            out = ranked[:n]
        if owner != me and owner in alive and owner not in out:
            out.append(owner)
        return out

    def any_open(self, low: int) -> int | None:
        """The lowest open slot at or above ``low`` (bounded budgets), for the last fallback."""
        if self.open is None:
            return None
        found = self.open.find(1, low)
        return None if found < 0 else found


@functools.lru_cache(maxsize=8)
def _slot_ceilings(n: int) -> np.ndarray:
    """The ceiling of each slot's position on the ring, ``(2s + 1) * 2**63 / n``."""
    return np.array([-((-(2 * s + 1) << 63) // n) for s in range(n)], dtype=np.uint64)


@functools.lru_cache(maxsize=64)
def _ring(roster: tuple[int, ...], n: int) -> Ring:
    """The ring of ``roster`` (a pure function, never mutated once built): nodes that
    see the same roster share one (a simulator runs thousands of them in one process)."""
    return Ring(list(roster), n)


def _index(roster: list[int], member: int) -> int | None:
    from bisect import bisect_left

    i = bisect_left(roster, member)
    return i if i < len(roster) and roster[i] == member else None



