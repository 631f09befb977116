"""A simulated node: the real GossipCore, SearchCore and Ledger of one process.

:class:`SimNode` is what ``p2phpo/runtime`` is to a real process, minus the
sockets: it feeds the cores datagrams, TCP frames and timer expiries at the
virtual time it is given, persists entries to an in-memory :class:`Disk`
(own entries before they are gossiped, like ``p2phpo/storage.py``), runs
trials of the simulated objective by scheduling their reports, and reports
everything the checkers need to its ``Observer`` (the simulation).

A crash simply drops the object; the :class:`Disk` survives unless the
scenario loses it. A restart builds a new SimNode on the same Disk: the
ledger is reloaded, the restart counter and incarnation go up, and the search
core abandons its own trials that were still RUNNING.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2phpo.core.entries import Entry, Status, decode_entry
from p2phpo.core.gossip import EntriesMerged, GossipConfig, GossipCore, TcpRequest
from p2phpo.core.ledger import Ledger
from p2phpo.core.membership import MemberDead, MemberLeft
from p2phpo.core.messages import Addr
from p2phpo.core.profiles import Profile
from p2phpo.core.search import (
    MemberView,
    Outcome,
    SearchConfig,
    SearchCore,
    StartTrial,
    StopTrial,
    StudyDone,
)
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash
from p2phpo.trial import Verdict
from simulations.clock import derive_rng
from simulations.objective import SimObjective, TrialPlan
from simulations.plan import make_plan

KEY = bytes(range(32))
LABEL = label_hash("p2phpo-sim")
WALL0 = 1_800_000_000.0


@dataclass(slots=True)
class Disk:
    """A node's state dir: its durable replica log, restart counter and incarnation."""

    node_id: int
    raws: list[bytes] = field(default_factory=list)
    restarts: int = 0
    incarnation: int = 0

    def load(self) -> Ledger:
        ledger = Ledger()
        ledger.merge([(decode_entry(raw), raw) for raw in self.raws])
        return ledger


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """What every node of one simulation shares."""

    seed: int
    profile: Profile
    objective: SimObjective
    search: SearchConfig
    cipher: Cipher = Cipher.NULL
    max_datagram: int = 1232


class Observer(Protocol):
    """What a node tells the simulation (the checkers' ground truth)."""

    def on_held(self, node: SimNode, entries: list[Entry], now: float) -> None: ...
    def on_merge(self, node: SimNode, items: list[Any], before: dict[int, int]) -> None: ...
    def on_member_event(self, node: SimNode, event: Any, now: float) -> None: ...
    def on_trial(self, node: SimNode, kind: str, trial: Any, now: float) -> None: ...
    def schedule(self, time: float, kind: str, node: int, payload: Any) -> None: ...
    def send(self, node: SimNode, data: bytes, addr: Addr, now: float) -> None: ...
    def open_tcp(self, node: SimNode, req: TcpRequest, now: float) -> None: ...


@dataclass(slots=True)
class Running:
    plan: TrialPlan
    start: float
    step: int = 0


class SimNode:
    """One live process: cores, disk, running trials and a timer."""

    def __init__(self, setup: NodeSetup, disk: Disk, addr: Addr, obs: Observer, *,
                 now: float, speed: float, skew: float, seeds: list[Addr],
                 local_study: tuple[dict, str] | None, life: int) -> None:
        self.setup, self.disk, self.addr, self.obs = setup, disk, addr, obs
        self.id = disk.node_id
        self.speed, self.skew, self.life = speed, skew, life
        self.running: dict[Any, Running] = {}
        self.busy: list[tuple[float, float]] = []
        self.done: str | None = None
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.paused_until = 0.0
        self._meta_sent: dict[str, Any] | None = None
        self._seen_len = -1
        self._search_timer: float | None = None
        self.poke = True  # the search core has a new input the ledger does not show
        self.stuck: float | None = None
        self._views: dict[int, MemberView] = {}
        self._last_fire, self._spins = -1.0, 0
        restarted = bool(disk.raws) or disk.restarts > 0
        self.ledger = disk.load()
        self._watch_merges()
        self.trial_rng = derive_rng(setup.seed, f"trials/{life}", self.id)
        self.gossip = self._make_gossip()
        self.search = SearchCore(self.id, self.ledger, setup.search, make_plan, local_study)
        self.search.ready = True
        if restarted:
            self.search.recover(self.wall(now))
        self.gossip.join(seeds, now)
        self.pump(now)

    def _make_gossip(self) -> GossipCore:
        """The real gossip core, sealing with this life's epoch (restart counter + salt)."""
        setup, disk = self.setup, self.disk
        ring = Keyring([KEY], cipher=setup.cipher)
        salt = derive_rng(setup.seed, f"salt/{self.life}", self.id).getrandbits(64)
        sealer = Sealer(ring, self.id, disk.restarts, salt, LABEL, max_datagram=setup.max_datagram)
        opener = Opener(ring, [LABEL], max_datagram=setup.max_datagram)
        config = GossipConfig(profile=setup.profile, addr=self.addr, incarnation=disk.incarnation,
                              max_datagram=setup.max_datagram)
        rng = derive_rng(setup.seed, f"gossip/{self.life}", self.id)
        return GossipCore(self.id, config, rng, self.ledger, sealer, opener, meta={"ready": False})

    def _watch_merges(self) -> None:
        """Let the observer see every entry handed to ``merge`` (held ones included)."""
        ledger, merge = self.ledger, self.ledger.merge

        def watched(entries: Any) -> Any:
            items = list(entries)
            before = {item[0].origin if isinstance(item, tuple) else item.origin: 0 for item in items}
            for origin in before:
                before[origin] = ledger.vv.get(origin, 0)
            stats = merge(items)
            self.obs.on_merge(self, items, before)
            return stats

        ledger.merge = watched  # type: ignore[method-assign]

    # -- time ----------------------------------------------------------------
    def wall(self, now: float) -> float:
        return WALL0 + now + self.skew

    # -- inputs ----------------------------------------------------------------
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        self.gossip.receive_datagram(data, addr, now)
        self.pump(now)

    def timer(self, now: float) -> None:
        self.timer_at = None
        self._spins = self._spins + 1 if now == self._last_fire else 0
        self._last_fire = now
        if self._spins > 1000:  # a core keeps asking for a timer at this instant
            self.stuck = now
            return
        self.gossip.handle_timer(now)
        self.pump(now)

    def synced(self, peer: int, now: float) -> None:
        self.search.synced_with(peer, now)
        self.poke = True
        self.pump(now)

    def trial_step(self, trial: Any, now: float) -> None:
        run = self.running.get(trial)
        if run is None:
            return
        plan, k = run.plan, run.step
        value = plan.values[k]
        wall = self.wall(now)
        self.poke = True
        verdict = self.search.report(trial, k + 1, value, wall)
        if verdict is Verdict.PRUNE:
            self._finish(trial, Outcome(Status.PRUNED, value, duration=now - run.start), now)
        elif verdict is Verdict.STOP:
            self._end(trial, now)
        elif k + 1 >= len(plan.values):
            outcome = (Outcome(Status.FAILED, error="simulated failure", duration=now - run.start)
                       if plan.fails else Outcome(Status.COMPLETE, plan.final, duration=now - run.start))
            self._finish(trial, outcome, now)
        else:
            run.step = k + 1
            self.obs.schedule(run.start + plan.step_times[k + 1], "trial", self.id, (self.life, trial))
        self.pump(now)

    def leave(self, now: float) -> None:
        """Graceful exit: abandon own trials, gossip LEAVE (the caller then stops the node)."""
        self.search.leave(self.wall(now))
        self.poke = True
        for trial in list(self.running):
            self._end(trial, now)
        self.gossip.leave(now)
        peer = self.gossip.pushpull_peer()  # the final push-pull before exiting
        if peer is not None:
            self.obs.open_tcp(self, peer, now)
        self.pump(now)

    # -- trials ----------------------------------------------------------------
    def _start(self, cmd: StartTrial, now: float) -> None:
        plan = self.setup.objective.plan(cmd.params, self.trial_rng, self.speed)
        self.running[cmd.trial] = Running(plan, now)
        self.obs.on_trial(self, "start", cmd, now)
        self.obs.schedule(now + plan.step_times[0], "trial", self.id, (self.life, cmd.trial))

    def _finish(self, trial: Any, outcome: Outcome, now: float) -> None:
        self.search.finish(trial, outcome, self.wall(now))
        self._end(trial, now)

    def _end(self, trial: Any, now: float) -> None:
        run = self.running.pop(trial, None)
        if run is not None:
            self.busy.append((run.start, now))
            self.obs.on_trial(self, "end", trial, now)

    # -- the pump: after every input -------------------------------------------
    def pump(self, now: float) -> None:
        wall = self.wall(now)
        members_changed = self._drain_events(now)
        if members_changed or self._meta_sent is None:
            self.search.set_members(now, self._views)
        if self._search_due(now, members_changed):
            self._step_search(now, wall)
        self._flush_own(now)
        self._advertise(now)
        for data, addr in self.gossip.datagrams_to_send(now):
            self.obs.send(self, data, addr, now)
        for req in self.gossip.tcp_requests(now):
            self.obs.open_tcp(self, req, now)
        self._rearm(now, wall)

    def _search_due(self, now: float, members_changed: bool) -> bool:
        """Whether the search core's inputs changed (or a timer of its is due).

        ``step`` is a pure function of the ledger, the member views, the sync
        time and the clock (whose effects it announces with ``get_timer``), so
        calling it only then is exact and keeps the simulator fast.
        """
        due = self._search_timer is not None and now >= self._search_timer
        changed = len(self.ledger) != self._seen_len or self.poke
        return due or changed or members_changed

    def _step_search(self, now: float, wall: float) -> None:
        self.poke = False
        for cmd in self.search.step(now, wall):
            if isinstance(cmd, StartTrial):
                self._start(cmd, now)
            elif isinstance(cmd, StopTrial):
                self._end(cmd.trial, now)
            elif isinstance(cmd, StudyDone):
                self.done = cmd.reason
        self._seen_len = len(self.ledger)
        t = self.search.get_timer(now, wall)
        # A deadline that is already past after a step means nothing more is due
        # until an input changes (e.g. another node is the one to act on it);
        # re-arming it would spin at one instant.
        self._search_timer = t if t is not None and t > now else None

    def _drain_events(self, now: float) -> bool:
        changed = False
        while (ev := self.gossip.next_event()) is not None:
            if isinstance(ev, EntriesMerged):
                self.disk.raws.extend(self.ledger.raw(e.origin, e.seq) for e in ev.entries)
                self.obs.on_held(self, ev.entries, now)
                continue
            if hasattr(ev, "node"):
                changed = True
                self._update_view(ev.node)
                self.obs.on_member_event(self, ev, now)
                if isinstance(ev, MemberDead | MemberLeft):
                    peer = self.gossip.pushpull_peer()  # sync soon so orphans can be reclaimed
                    if peer is not None:
                        self.obs.open_tcp(self, peer, now)
        self.disk.incarnation = max(self.disk.incarnation, self.gossip.membership.incarnation)
        return changed

    def _flush_own(self, now: float) -> None:
        own = self.search.take_new_entries()
        if own:
            self.disk.raws.extend(self.ledger.raw(e.origin, e.seq) for e in own)  # fsync first
            self.obs.on_held(self, own, now)
            self.gossip.append_local(own)

    def _advertise(self, now: float) -> None:
        plan = self.search.plan
        meta = {"ready": bool(self.search.ready and plan is not None and not self.search.leaving),
                "study": plan.fingerprint if plan is not None else None}
        if meta != self._meta_sent:
            self._meta_sent = meta
            self.gossip.set_meta(meta, now)

    def _update_view(self, node: int) -> None:
        """Refresh the search core's view of one member after a membership event."""
        m = self.gossip.membership.get(node)
        if m is None:
            self._views.pop(node, None)
            return
        meta = m.meta or {}
        self._views[node] = MemberView(m.state.name, bool(meta.get("ready")), meta.get("study"))

    def _rearm(self, now: float, wall: float) -> None:
        times = [t for t in (self.gossip.get_timer(), self._search_timer) if t is not None]
        t = max(min(times), now) if times else None
        if t is not None and t != self.timer_at and self.stuck is None:
            self.timer_at = t
            self.timer_gen += 1
            self.obs.schedule(t, "timer", self.id, (self.life, self.timer_gen))

    # -- inspection --------------------------------------------------------------
    def member_states(self) -> dict[int, tuple[str, int]]:
        return {m.node: (m.state.name, m.incarnation) for m in self.gossip.members()}


def new_node_id(seed: int, index: int, life: int) -> int:
    return derive_rng(seed, "node-id", index * 1000 + life).getrandbits(63) | 1


def skew_of(seed: int, node: int, max_skew: float) -> float:
    return (derive_rng(seed, "skew", node).random() * 2 - 1) * max_skew


def speed_rng(seed: int) -> random.Random:
    return derive_rng(seed, "speed")
