"""Ground truth recorded while a simulation runs, for the checkers and the report.

Nothing here decides anything: it watches what nodes hold and see. What a
node ever held is kept as a per-origin high-water mark (logs are gap-free
prefixes, so that is exact and small); the first bytes seen for each
``(origin, seq)`` are kept to prove entries immutable; membership events
give detection times, false DEADs and incarnation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2phpo.core.entries import Entry, Result, Status
from p2phpo.core.ledger import TrialState
from p2phpo.core.membership import MemberDead, MemberSuspected

if TYPE_CHECKING:
    from simulations.node import SimNode
    from simulations.sim import Simulation


@dataclass(slots=True)
class _Spread:
    created: float
    target: int
    holders: int = 0


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass(slots=True)
class Metrics:
    sim: Simulation
    held_vv: dict[int, dict[int, int]] = field(default_factory=dict)
    raw_of: dict[tuple[int, int], bytes] = field(default_factory=dict)
    mutated: list[tuple[int, int, int]] = field(default_factory=list)
    spread: dict[tuple[int, int], _Spread] = field(default_factory=dict)
    spread_done: list[float] = field(default_factory=list)
    spread_from: float = 0.0
    """Only entries created from this time on count for dissemination (after joins)."""
    detections: list[float] = field(default_factory=list)
    detected: dict[tuple[int, int], float] = field(default_factory=dict)
    false_dead: list[tuple[float, int, int]] = field(default_factory=list)
    suspicions: int = 0
    inc_seen: dict[tuple[int, int, int], int] = field(default_factory=dict)
    inc_decreases: list[tuple[int, int, int, int]] = field(default_factory=list)
    up: dict[int, list[list[float]]] = field(default_factory=dict)
    busy: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    paused: dict[int, tuple[float, float]] = field(default_factory=dict)
    best: dict[int, tuple[float, tuple[int, int]]] = field(default_factory=dict)
    best_worse: list[tuple[float, int, str]] = field(default_factory=list)
    best_curve: list[tuple[float, float]] = field(default_factory=list)
    pending: dict[int, dict[tuple[int, int], float]] = field(default_factory=dict)
    lost_held: list[tuple[int, int, int]] = field(default_factory=list)
    started: int = 0
    last_claim: float = 0.0
    syncs: int = 0
    study_done_at: float | None = None
    own_inc: dict[int, int] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------------
    def node_up(self, node: SimNode, now: float) -> None:
        self.up.setdefault(node.id, []).append([now, math.inf])
        prev = self.own_inc.get(node.id, -1)
        inc = node.gossip.membership.incarnation
        if inc < prev:
            self.inc_decreases.append((node.id, node.id, prev, inc))
        vv = self.held_vv.setdefault(node.id, {})
        for origin, seq in node.ledger.vv.items():
            vv[origin] = max(vv.get(origin, 0), seq)

    def node_down(self, node: SimNode, now: float) -> None:
        self.pending.pop(node.id, None)  # memory is gone; only the disk survives a crash
        self.up[node.id][-1][1] = now
        self.own_inc[node.id] = node.gossip.membership.incarnation
        spans = self.busy.setdefault(node.id, [])
        spans.extend(node.busy)
        spans.extend((run.start, now) for run in node.running.values())
        node.busy, node.running = [], {}

    def finish(self, now: float) -> None:
        for node in self.sim.live():
            self.up[node.id][-1][1] = now
            spans = self.busy.setdefault(node.id, [])
            spans.extend(node.busy)
            spans.extend((run.start, now) for run in node.running.values())

    # -- entries -----------------------------------------------------------------------
    def merged(self, node: SimNode, items: list[Any], before: dict[int, int]) -> None:
        """Entries received ahead of a gap must apply once the gap fills, never vanish."""
        led = node.ledger
        if led.counts["dropped_pending"]:
            self.pending.pop(node.id, None)  # over the per-origin cap: dropping is the design
            return
        pend = self.pending.setdefault(node.id, {})
        for item in items:
            e = item[0] if isinstance(item, tuple) else item
            if e.seq > before.get(e.origin, 0) + 1 and e.seq > led.vv.get(e.origin, 0):
                # a record of a writer whose key is not known yet is dropped by design
                if not led.signed or led.key_of(e.origin) is not None:
                    pend[(e.origin, e.seq)] = self.sim.heap.now
        if not pend:
            return
        for key in [k for k in pend if k[0] in before]:
            origin, seq = key
            have = led.vv.get(origin, 0)
            if have >= seq:
                del pend[key]
            elif have >= seq - 1:
                self.lost_held.append((node.id, origin, seq))
                del pend[key]

    def held(self, node: SimNode, entries: list[Entry], now: float) -> None:
        vv = self.held_vv.setdefault(node.id, {})
        led = node.ledger
        for e in entries:
            key = (e.origin, e.seq)
            if vv.get(e.origin, 0) < e.seq:
                vv[e.origin] = e.seq
            raw = led.raw(e.origin, e.seq)
            first = self.raw_of.get(key)
            if first is None:
                self.raw_of[key] = raw
                if now >= self.spread_from:
                    self.spread[key] = _Spread(now, len(self.sim.nodes))
                if isinstance(e, Result):
                    self._curve(e, now)
            elif first != raw:
                self.mutated.append((node.id, e.origin, e.seq))
            sp = self.spread.get(key)
            if sp is not None:
                sp.holders += 1
                if sp.holders >= sp.target:
                    self.spread_done.append(now - sp.created)
                    del self.spread[key]
        self._track_best(node, entries, now)

    def _curve(self, e: Result, now: float) -> None:
        if e.status is Status.COMPLETE and e.value is not None:
            if not self.best_curve or e.value < self.best_curve[-1][1]:
                self.best_curve.append((now, e.value))

    def _track_best(self, node: SimNode, entries: list[Entry], now: float) -> None:
        led = node.ledger
        cur = self.best.get(node.id)
        if cur is not None:
            view = led.trial(cur[1])
            if view is not None and view.eclipsed and view.state is TrialState.SUPERSEDED:
                # A retry whose original's RESULT surfaced (its owner persisted it, then
                # crashed before gossiping it): the slot counts the original now. Not a
                # regression of the search: the best is what the ledger's views say.
                self.best.pop(node.id)
                cur = min(((v.value, v.id) for v in led.trials().values()
                           if v.state is TrialState.COMPLETE and v.value is not None), default=None)
            elif view is None or view.state is not TrialState.COMPLETE or view.value != cur[0]:
                state = "gone" if view is None else view.state.value
                self.best_worse.append((now, node.id, f"best trial became {state}"))
                self.best.pop(node.id)
                cur = None
        for e in entries:
            if isinstance(e, Result):
                view = led.trial(e.trial)
                if view is not None and view.state is TrialState.COMPLETE and view.value is not None:
                    if cur is None or (view.value, view.id) < cur:
                        cur = (view.value, view.id)
        if cur is not None:
            self.best[node.id] = cur

    # -- membership ------------------------------------------------------------------------
    def member_event(self, node: SimNode, ev: Any, now: float) -> None:
        inc = getattr(ev, "incarnation", None)
        if inc is not None:
            key = (node.id, node.life, ev.node)
            prev = self.inc_seen.get(key, -1)
            if inc < prev:
                self.inc_decreases.append((node.id, ev.node, prev, inc))
            else:
                self.inc_seen[key] = inc
        if isinstance(ev, MemberSuspected):
            self.suspicions += 1
        if not isinstance(ev, MemberDead):
            return
        crashed = self.sim.down.get(ev.node)
        if crashed is not None and ev.node not in self.sim.nodes:
            if (node.id, ev.node) not in self.detected:
                self.detected[(node.id, ev.node)] = now - crashed
                self.detections.append(now - crashed)
        elif self._healthy(ev.node, now):
            self.false_dead.append((now, node.id, ev.node))

    def _healthy(self, node_id: int, now: float) -> bool:
        """Up, not paused, and no cut in force or lifted within the longest suspicion timeout."""
        net = self.sim.net
        _, longest = self.sim.setup.profile.suspicion_bounds(max(2, len(self.sim.nodes)))
        if node_id not in self.sim.nodes or net.cuts or now < net.cut_lifted + longest:
            return False
        pause = self.paused.get(node_id)
        return pause is None or now > pause[1] + longest

    # -- trials ----------------------------------------------------------------------------
    def trial(self, node: SimNode, kind: str, trial: Any, now: float) -> None:
        if kind == "start":
            self.started += 1
            self.last_claim = now
        if node.done is not None and self.study_done_at is None:
            self.study_done_at = now

    def note_done(self, now: float) -> None:
        if self.study_done_at is None and any(n.done for n in self.sim.live()):
            self.study_done_at = now

    # -- summaries -------------------------------------------------------------------------
    def busy_fraction(self, t_end: float) -> float | None:
        """Time spent running trials / time nodes were up, over [0, t_end] (a node
        running a batch of trials side by side is busy once, not once per member)."""
        busy = up = 0.0
        for spans in self.up.values():
            up += sum(max(0.0, min(b, t_end) - a) for a, b in spans)
        for spans in self.busy.values():
            busy += sum(max(0.0, min(b, t_end) - a) for a, b in _union(spans))
        return busy / up if up > 0 else None


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans merged where they overlap."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
