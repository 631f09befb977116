"""A simulated node: the node driver users run, in a simulated process.

:class:`SimNode` is a shell around :class:`p2phpo.core.driver.NodeDriver`,
as ``p2phpo/runtime/node.py`` is for a real process: it feeds the driver
datagrams, push-pull completions and timer expiries at the virtual time it
is given, writes what the driver hands it to an in-memory :class:`Disk`
(confirming own entries, which are gossiped only then), runs trials of the
simulated objective by scheduling their reports, and tells its ``Observer``
(the simulation) everything the checkers need. It decides nothing itself.

A crash simply drops the object; the :class:`Disk` survives unless the
scenario loses it. A restart builds a new SimNode on the same Disk: the
ledger is reloaded, the restart counter and incarnation go up, and the search
core abandons its own trials that were still RUNNING.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2phpo.core.driver import Fatal, Incarnation, MayExit, NodeDriver, Note, Persist, StudyFound
from p2phpo.core.durability import GateConfig, Linger, RepairGate
from p2phpo.core.entries import Entry, Status
from p2phpo.core.gossip import GossipConfig, GossipCore, TcpRequest
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.member_sig import AliveVerifier
from p2phpo.core.messages import Addr
from p2phpo.core.profiles import Profile
from p2phpo.core.records import Verifier, decode_record
from p2phpo.core.search import (
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
    """A node's state dir: its identity, durable replica log, restart counter and incarnation.

    Ledgers sign and verify as real nodes do; ``verifier`` is shared by every
    simulated node, so each distinct record costs one signature check per run.
    """

    identity: Identity
    raws: list[bytes] = field(default_factory=list)
    restarts: int = 0
    incarnation: int = 0
    verifier: Verifier | None = None

    @property
    def node_id(self) -> int:
        return self.identity.node_id

    def load(self) -> Ledger:
        ledger = Ledger(identity=self.identity, verifier=self.verifier)
        ledger.merge([(decode_record(raw), raw) for raw in self.raws], trusted=True)
        return ledger


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """What every node of one simulation shares.

    Every node signs its Alive and checks everyone's, as ``p2phpo node`` does;
    ``alives`` is one memo of valid signatures for all of them, so each distinct
    Alive costs one Ed25519 check per run (as ``Disk.verifier`` for records).
    """

    seed: int
    profile: Profile
    objective: SimObjective
    search: SearchConfig
    cipher: Cipher = Cipher.NULL
    max_datagram: int = 1232
    alives: AliveVerifier = field(default_factory=lambda: AliveVerifier(cap=1 << 16))


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
    """One live process: the node driver, its disk, running trials and a timer."""

    def __init__(self, setup: NodeSetup, disk: Disk, addr: Addr, obs: Observer, *,
                 now: float, speed: float, skew: float, seeds: list[Addr],
                 local_study: tuple[dict, str] | None, life: int) -> None:
        self.setup, self.disk, self.addr, self.obs = setup, disk, addr, obs
        self.id = disk.node_id
        self.speed, self.skew, self.life = speed, skew, life
        self.running: dict[Any, Running] = {}
        self.busy: list[tuple[float, float]] = []
        self.done: str | None = None
        self.fatal: str | None = None
        self.may_exit: float | None = None  # when the driver said this node may exit
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.paused_until = 0.0
        self.stuck: float | None = None
        self._last_fire, self._spins = -1.0, 0
        self.ledger = disk.load()
        self._watch_merges()
        self.trial_rng = derive_rng(setup.seed, f"trials/{life}", self.id)
        wall = self.wall(now)
        gate = RepairGate(self.id, self.ledger, expect_peers=bool(seeds), now=now, start_wall=wall,
                          config=GateConfig.for_profile(setup.profile))
        # As `p2phpo node` (default --grace); a finished simulated node stays up (MayExit
        # is noted, not obeyed) so the checkers see every node to the end.
        self.driver = NodeDriver(self.id, self.ledger, self._make_gossip(), gate=gate,
                                 linger=Linger(30.0))
        self.driver.start(seeds, now, wall)
        # The simulated objective needs no loading: the worker is ready at once.
        self.driver.handle_worker_ready(setup.search, make_plan, local_study, now, wall)
        self._act(now)

    @property
    def gossip(self) -> GossipCore:
        return self.driver.gossip

    @property
    def search(self) -> SearchCore | None:
        return self.driver.search

    def _make_gossip(self) -> GossipCore:
        """The real gossip core, sealing with this life's epoch (restart counter + salt)
        and signing our Alive with the disk's identity."""
        setup, disk = self.setup, self.disk
        ring = Keyring([KEY], cipher=setup.cipher)
        salt = derive_rng(setup.seed, f"salt/{self.life}", self.id).getrandbits(64)
        sealer = Sealer(ring, self.id, disk.restarts, salt, LABEL, max_datagram=setup.max_datagram)
        opener = Opener(ring, [LABEL], max_datagram=setup.max_datagram)
        config = GossipConfig(profile=setup.profile, addr=self.addr, incarnation=disk.incarnation,
                              max_datagram=setup.max_datagram)
        rng = derive_rng(setup.seed, f"gossip/{self.life}", self.id)
        return GossipCore(self.id, config, rng, self.ledger, sealer, opener, meta={"ready": False},
                          identity=disk.identity, verifier=setup.alives)

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

    # -- inputs: each is one driver call, then its outputs ---------------------
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        self.driver.handle_datagram(data, addr, now, self.wall(now))
        self._act(now)

    def timer(self, now: float) -> None:
        self.timer_at = None
        self._spins = self._spins + 1 if now == self._last_fire else 0
        self._last_fire = now
        if self._spins > 1000:  # a core keeps asking for a timer at this instant
            self.stuck = now
            return
        self.driver.handle_timer(now, self.wall(now))
        self._act(now)

    def stream(self, now: float) -> None:
        """Push-pull frames were fed to one of this node's sessions."""
        self.driver.handle_stream(now, self.wall(now))
        self._act(now)

    def pushpull_done(self, peer: int, ok: bool, now: float) -> None:
        self.driver.handle_pushpull_done(peer, ok, now, self.wall(now))
        self._act(now)

    def warm(self, records: list[Any], now: float,
             study: tuple[bytes | None, tuple[bytes, ...]] = (None, ()), *, hold: bool = False) -> None:
        """Know ``records`` and ``study`` (tag, STUDY record) from the start (a
        warm-started benchmark); ``hold``: claim nothing before the roster comes."""
        self.driver.handle_warm_members(records, now, self.wall(now), study, hold=hold)
        self._act(now)

    def trial_step(self, trial: Any, now: float) -> None:
        run = self.running.get(trial)
        if run is None:
            return
        plan, k = run.plan, run.step
        value = plan.values[k]
        verdict = self.driver.handle_trial_report(trial, k + 1, value, now, self.wall(now))
        self._act(now)  # the report is written before the trial goes on, as in a real node
        if verdict is Verdict.PRUNE:
            self._finish(trial, Outcome(Status.PRUNED, value, duration=now - run.start), now)
        elif verdict is Verdict.STOP:
            self._finish(trial, None, now)
        elif k + 1 >= len(plan.values):
            outcome = (Outcome(Status.FAILED, error="simulated failure", duration=now - run.start)
                       if plan.fails else Outcome(Status.COMPLETE, plan.final, duration=now - run.start))
            self._finish(trial, outcome, now)
        else:
            run.step = k + 1
            self.obs.schedule(run.start + plan.step_times[k + 1], "trial", self.id, (self.life, trial))
        self._act(now)

    def leave(self, now: float) -> None:
        """Graceful exit: the driver abandons our trials, gossips LEAVE and asks for a
        final push-pull (the caller then stops the node)."""
        self.driver.handle_leave(now, self.wall(now))
        self._act(now)

    # -- trials ----------------------------------------------------------------
    def _start(self, cmd: StartTrial, now: float) -> None:
        plan = self.setup.objective.plan(cmd.params, self.trial_rng, self.speed)
        self.running[cmd.trial] = Running(plan, now)
        self.obs.on_trial(self, "start", cmd, now)
        self.obs.schedule(now + plan.step_times[0], "trial", self.id, (self.life, cmd.trial))

    def _finish(self, trial: Any, outcome: Outcome | None, now: float) -> None:
        """The simulated worker is done with ``trial`` (``None``: stopped, no result)."""
        run = self.running.pop(trial, None)
        if run is None:
            return
        self.busy.append((run.start, now))
        self.obs.on_trial(self, "end", trial, now)
        self.driver.handle_trial_finished(trial, outcome, now, self.wall(now))

    # -- outputs: after every driver call ----------------------------------------
    def pump(self, now: float) -> None:
        """Take the driver's outputs (kept for callers of the pre-driver name)."""
        self._act(now)

    def _act(self, now: float) -> None:
        driver = self.driver
        while actions := driver.take_actions():
            for a in actions:
                self._do(a, now)
        for data, addr in driver.datagrams_to_send(now):
            self.obs.send(self, data, addr, now)
        for req in driver.tcp_requests():
            self.obs.open_tcp(self, req, now)
        self._rearm(now)

    def _do(self, a: Any, now: float) -> None:
        t = type(a)
        if t is Persist:
            self.disk.raws.extend(self.ledger.raw(e.origin, e.seq) for e in a.entries)
            self.obs.on_held(self, a.entries, now)
            if a.own:  # written: only now may gossip see them
                self.driver.handle_persisted(now, self.wall(now))
        elif t is StartTrial:
            self._start(a, now)
        elif t is StopTrial:
            self._finish(a.trial, None, now)
        elif t is StudyDone:
            self.done = a.reason
        elif t is Incarnation:
            self.disk.incarnation = max(self.disk.incarnation, a.value)
        elif t is Fatal:
            self.fatal = a.message
        elif t is MayExit:
            self.may_exit = now
        elif t is Note or t is StudyFound:
            pass
        else:  # a membership event
            self.obs.on_member_event(self, a, now)

    def _rearm(self, now: float) -> None:
        t = self.driver.get_timer()
        t = None if t is None else max(t, now)
        if t is not None and t != self.timer_at and self.stuck is None:
            self.timer_at = t
            self.timer_gen += 1
            self.obs.schedule(t, "timer", self.id, (self.life, self.timer_gen))

    # -- inspection --------------------------------------------------------------
    def member_states(self) -> dict[int, tuple[str, int]]:
        return {m.node: (m.state.name, m.incarnation) for m in self.gossip.members()}


def new_identity(seed: int, index: int, life: int) -> Identity:
    """The identity of host ``index``'s ``life``-th fresh state dir (its id derives from it)."""
    return Identity(derive_rng(seed, "node-id", index * 1000 + life).randbytes(32))


def skew_of(seed: int, node: int, max_skew: float) -> float:
    return (derive_rng(seed, "skew", node).random() * 2 - 1) * max_skew


def speed_rng(seed: int) -> random.Random:
    return derive_rng(seed, "speed")
