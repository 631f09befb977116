"""The node driver: persist-then-gossip, anti-entropy completion, leave, metadata, gate.

Each test drives one real :class:`NodeDriver` (real gossip and search cores,
null cipher) through its ``handle_*`` surface; a peer is a second sealer
whose datagrams are fed in as if they came off the wire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from p2phpo.core.driver import Fatal, MayExit, NodeDriver, Note, Persist
from p2phpo.core.durability import GateConfig, Linger, RepairGate
from p2phpo.core.entries import Abandon, AbandonReason, Claim, Result, Status, StudyEntry
from p2phpo.core.gossip import GossipConfig, GossipCore
from p2phpo.core.gossip_types import TcpRequest
from p2phpo.core.ledger import Ledger
from p2phpo.core.messages import Alive, Dead, Leave, encode_message
from p2phpo.core.profiles import LOCAL
from p2phpo.core.search import Outcome, SearchConfig, StartTrial, StopTrial, StudyDone
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash

RING = Keyring([bytes(32)], cipher=Cipher.NULL)
LABEL = label_hash("driver-test")
A, B, C = 11, 22, 33
ADDR = {A: ("127.0.0.1", 1), B: ("127.0.0.1", 2), C: ("127.0.0.1", 3)}
SPEC = {"study": {"name": "t", "direction": "minimize"}, "space": {"x": {"type": "float"}}}
FP = "fp1"


@dataclass
class Plan:
    fingerprint: str
    direction: str = "minimize"
    n_trials: int | None = 2
    timeout: float | None = None
    target: float | None = None

    def suggest(self, ledger: Ledger, node_id: int, slot: int) -> dict[str, Any]:
        return {"x": slot / 10}

    def should_report(self, step: int) -> bool:
        return True

    def should_prune(self, ledger: Ledger, trial: Any, step: int, value: float) -> bool:
        return False


def make(node: int = A, ledger: Ledger | None = None, **kw: Any) -> NodeDriver:
    ledger = ledger if ledger is not None else Ledger()
    gossip = GossipCore(node, GossipConfig(profile=LOCAL, addr=ADDR[node]), random.Random(node),
                        ledger, Sealer(RING, node, 0, 0, LABEL), Opener(RING, [LABEL]),
                        meta={"ready": False})
    return NodeDriver(node, ledger, gossip, **kw)


def ready(d: NodeDriver, now: float = 0.0, n_trials: int = 2, study: bool = True) -> None:
    d.handle_worker_ready(SearchConfig.for_profile(LOCAL),
                          lambda entry: Plan(entry.fingerprint, n_trials=n_trials),
                          (SPEC, FP) if study else None, now, 1000.0 + now)


def persist_all(d: NodeDriver, now: float = 0.0) -> list[Any]:
    """What a shell does: write every Persist, confirm, repeat until nothing is left."""
    seen: list[Any] = []
    while actions := d.take_actions():
        seen += actions
        if any(isinstance(a, Persist) and a.own for a in actions):
            d.handle_persisted(now, 1000.0 + now)
    return seen


class Peer:
    """Another node, as far as its datagrams go."""

    def __init__(self, node: int) -> None:
        self.node = node
        self.sealer = Sealer(RING, node, 0, 0, LABEL)

    def send(self, d: NodeDriver, msgs: list[Any], now: float) -> None:
        to = (d.node_id, d.gossip.sealer.epoch.salt)  # bound to this receiver's life
        data = self.sealer.seal_packed([encode_message(m) for m in msgs], to)
        d.handle_datagram(data, ADDR[self.node], now, 1000.0 + now)


def queued_entries(d: NodeDriver) -> set[tuple[int, int]]:
    return {(k[1], k[2]) for k in d.gossip.queue._items if k[0] == "e"}


def test_own_entries_reach_gossip_only_after_the_shell_confirms_them_durable() -> None:
    d = make()
    ready(d)
    actions = d.take_actions()
    persist = [a for a in actions if isinstance(a, Persist)]
    assert [type(e) for e in persist[0].entries] == [StudyEntry, Claim] and persist[0].own
    start = next(a for a in actions if isinstance(a, StartTrial))  # alone: no confirmation delay
    assert start.slot == 0
    assert queued_entries(d) == set()  # written to the ledger, not yet to anyone else
    d.handle_persisted(0.0, 1000.0)
    assert queued_entries(d) == {(A, 1), (A, 2)}


def test_a_report_and_a_result_go_through_the_same_hand_off() -> None:
    d = make()
    ready(d)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    d.handle_trial_report(start.trial, 1, 0.3, 1.0, 1001.0)
    (report,) = [a for a in d.take_actions() if isinstance(a, Persist)]
    assert report.own and queued_entries(d) == {(A, 1), (A, 2)}
    d.handle_persisted(1.0, 1001.0)
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.3, duration=1.0), 2.0, 1002.0)
    actions = persist_all(d, 2.0)
    assert Note("finished", A, start.trial, "COMPLETE 0.3") in actions
    nxt = [a for a in actions if isinstance(a, StartTrial)]
    assert [a.slot for a in nxt] == [1]  # the worker is free again: next slot


def test_a_peer_that_leaves_with_a_running_trial_is_reclaimed_after_a_pushpull_only() -> None:
    d = make()
    ready(d, n_trials=3)
    persist_all(d)
    b = Peer(B)
    b_claim = d.ledger.new(B, Claim, wall=1.0, slot=2, params={"x": 0.2})  # B's running trial
    b.send(d, [Alive(B, 0, ADDR[B], {"ready": True, "study": FP})], 1.0)
    persist_all(d, 1.0)
    b.send(d, [Leave(B, 0)], 2.0)
    actions = persist_all(d, 2.0)
    assert any(type(a).__name__ == "MemberLeft" for a in actions)
    assert d.tcp_requests() == []  # nobody else alive to push-pull with
    trial = d.ledger.trial(b_claim.key)
    assert trial is not None and trial.state.name == "RUNNING"  # no sync since B left
    d.handle_pushpull_done(B, False, 2.5, 1002.5)  # a failed push-pull is no sync
    assert d.ledger.trial(b_claim.key).state.name == "RUNNING"
    d.handle_pushpull_done(B, True, 3.0, 1003.0)
    persist_all(d, 3.0)
    abandon = d.ledger.trial(b_claim.key).abandon
    assert abandon is not None and abandon.origin == A and abandon.reason is AbandonReason.LEFT


def test_a_members_death_asks_for_a_pushpull_with_someone_alive() -> None:
    d = make()
    ready(d)
    persist_all(d)
    b = Peer(B)
    third = 33
    ADDR[third] = ("127.0.0.1", 3)
    b.send(d, [Alive(B, 0, ADDR[B], {}), Alive(third, 0, ADDR[third], {})], 1.0)
    d.tcp_requests()
    b.send(d, [Leave(third, 0)], 2.0)
    assert d.tcp_requests() == [TcpRequest(B, ADDR[B])]


def test_after_the_study_only_a_death_that_leaves_a_trial_behind_asks_for_a_pushpull() -> None:
    d = make()
    ready(d, n_trials=1)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    b, c, e = Peer(B), 33, 44
    ADDR[c], ADDR[e] = ("127.0.0.1", 3), ("127.0.0.1", 4)
    b.send(d, [Alive(n, 0, ADDR[n], {"ready": True, "study": FP}) for n in (B, c, e)], 1.0)
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.1), 1.5, 1001.5)
    assert StudyDone("budget of 1 trials used") in persist_all(d, 1.5)
    d.ledger.new(e, Claim, wall=1.0, slot=0, params={"x": 0.0})  # e's loser, still running
    d.tcp_requests()
    b.send(d, [Leave(c, 0)], 2.0)
    assert d.tcp_requests() == []  # nothing of c's to recover: no push-pull of the member table
    b.send(d, [Leave(e, 0)], 3.0)
    assert [r.node for r in d.tcp_requests()] == [B]  # e's running trial must be reclaimed


def test_leave_abandons_then_gossips_leave_once_the_abandon_is_durable() -> None:
    d = make()
    ready(d)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    b = Peer(B)
    b.send(d, [Alive(B, 0, ADDR[B], {})], 1.0)
    persist_all(d, 1.0)
    inc = d.gossip.incarnation
    d.handle_leave(2.0, 1002.0)
    actions = d.take_actions()
    (stop,) = [a for a in actions if isinstance(a, StopTrial)]
    assert (stop.trial, stop.verdict.name, stop.reason) == (start.trial, "STOP", "node leaving")
    (abandon,) = [a for a in actions if isinstance(a, Persist)]
    assert [type(e) for e in abandon.entries] == [Abandon]
    assert not d.leaving and d.tcp_requests() == []  # LEAVE waits for the ABANDON on disk
    d.handle_persisted(2.0, 1002.0)
    assert d.leaving and d.tcp_requests() == [TcpRequest(B, ADDR[B])]  # the final push-pull
    d.handle_timer(3.0, 1003.0)
    assert d.gossip.incarnation == inc  # no Alive (a metadata change) to undo the LEAVE


def test_metadata_says_ready_with_the_study_and_done_when_not_the_ledger_says_so() -> None:
    d = make(linger=Linger(5.0))
    assert d.gossip.membership.meta == {"ready": False}
    ready(d, n_trials=1)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    assert d.gossip.membership.meta == {"ready": True, "study": FP}
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.1), 1.0, 1001.0)
    actions = persist_all(d, 1.0)
    assert StudyDone("budget of 1 trials used") in actions
    assert d.gossip.membership.meta == {"ready": True, "study": FP}  # the ledger says it: no flag
    assert MayExit() in actions  # no peer ran the study: nobody to wait for
    t = make(linger=Linger(5.0))
    t.handle_worker_ready(SearchConfig.for_profile(LOCAL),
                          lambda entry: Plan(entry.fingerprint, n_trials=None, timeout=2.0),
                          (SPEC, FP), 0.0, 1000.0)
    running = next(a for a in persist_all(t) if isinstance(a, StartTrial))
    t.handle_timer(3.0, 1003.0)
    t.handle_trial_finished(running.trial, Outcome(Status.COMPLETE, 0.1), 3.0, 1003.0)
    assert any(isinstance(a, StudyDone) for a in persist_all(t, 3.0))
    assert t.gossip.membership.meta == {"ready": True, "study": FP, "done": True}  # its own clock


def test_a_finished_node_waits_for_peers_that_ran_the_study_up_to_the_grace() -> None:
    d = make(linger=Linger(5.0))
    ready(d, n_trials=1)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {"ready": True, "study": FP})], 0.5)
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.1), 1.0, 1001.0)
    assert MayExit() not in persist_all(d, 1.0)
    assert d.get_timer() is not None and d.get_timer() <= 6.0
    d.handle_timer(6.0, 1006.0)
    assert MayExit() in persist_all(d, 6.0)


def test_a_finished_node_says_once_that_it_waits_for_a_crashed_peer() -> None:
    d = make(linger=Linger(5.0))
    ready(d, n_trials=1)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {"ready": True, "study": FP})], 0.5)
    Peer(C).send(d, [Alive(C, 0, ADDR[C], {}), Dead(B, 0, C)], 0.6)  # C found B dead
    assert d.gossip.membership.get(B).state.name == "DEAD"
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.1), 1.0, 1001.0)
    notes = [a for a in persist_all(d, 1.0) if isinstance(a, Note) and a.kind == "lingering"]
    assert len(notes) == 1 and f"{B:016x}" in notes[0].detail and "5 s" in notes[0].detail
    d.handle_timer(3.0, 1003.0)
    acts = persist_all(d, 3.0)
    assert MayExit() not in acts and not [a for a in acts if isinstance(a, Note)]  # said once
    d.handle_timer(6.0, 1006.0)
    assert MayExit() in persist_all(d, 6.0)


def test_a_finished_node_exits_once_a_peer_is_found_in_sync_after_the_budget_is_counted() -> None:
    d = make(linger=Linger(5.0))
    ready(d, n_trials=1)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {"ready": True, "study": FP})], 0.5)
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.1), 1.0, 1001.0)
    assert MayExit() not in persist_all(d, 1.0)  # B has not shown it holds the result
    d.handle_pushpull_done(B, True, 2.0, 1002.0)  # now it does: it is done too, no flag needed
    assert MayExit() in persist_all(d, 2.0)


def test_the_gate_holds_every_write_until_a_peer_was_synced() -> None:
    ledger = Ledger()
    gate = RepairGate(A, ledger, expect_peers=True, now=0.0, start_wall=1000.0,
                      config=GateConfig(sync_wait=10.0, quiet=1.0))
    d = make(ledger=ledger, gate=gate)
    ready(d)
    assert persist_all(d) == [] and d.search is None  # nothing written, nothing started
    d.handle_pushpull_done(B, True, 1.0, 1001.0)
    assert any(isinstance(a, StartTrial) for a in persist_all(d, 1.0))


def test_a_live_twin_of_this_node_is_refused() -> None:
    ledger = Ledger()
    gate = RepairGate(A, ledger, expect_peers=False, now=0.0, start_wall=1000.0)
    d = make(ledger=ledger, gate=gate)
    ready(d)
    persist_all(d)
    twin = Ledger()
    twin.merge(d.ledger.delta_since({}))
    late = twin.new(A, Result, wall=1001.0, trial=(A, 2), status=Status.COMPLETE, value=1.0)
    d.gossip.ae.merge_raw((twin.raw(A, late.seq),), 1.0, regossip=False)
    d.handle_stream(1.0, 1001.0)
    fatal = [a for a in d.take_actions() if isinstance(a, Fatal)]
    assert fatal and "another live node runs with this node's identity" in fatal[0].message


def test_a_node_joining_by_seed_with_other_data_is_told_what_differs() -> None:
    d = make()
    ledger_study = d.ledger.new(B, StudyEntry, wall=1.0, spec=SPEC, fingerprint="other")
    assert ledger_study.fingerprint == "other"
    d.handle_worker_ready(SearchConfig(), lambda e: Plan(e.fingerprint), (SPEC, FP), 1.0, 1001.0,
                          from_cluster=True)
    (fatal,) = [a for a in d.take_actions() if isinstance(a, Fatal)]
    assert fatal.code == 2 and "dataset differs" in fatal.message and d.search is None


def test_alone_a_trial_of_a_node_never_met_is_reclaimed_after_the_fallback() -> None:
    d = make()
    ghost = 44
    running = d.ledger.new(ghost, Claim, wall=1.0, slot=0, params={"x": 0.0})  # from a past life
    ready(d, n_trials=1)
    persist_all(d)
    assert d.ledger.trial(running.key).state.name == "RUNNING"  # not at once
    fallback = SearchConfig.for_profile(LOCAL).reclaim_fallback
    assert d.get_timer() is not None and d.get_timer() <= fallback
    d.handle_timer(fallback, 1000.0 + fallback)
    actions = persist_all(d, fallback)
    assert d.ledger.trial(running.key).state.name == "ABANDONED"
    assert any(isinstance(a, StartTrial) and a.retry_of == running.key for a in actions)


def test_with_a_live_peer_a_stranger_s_trial_is_left_alone() -> None:
    d = make()
    running = d.ledger.new(44, Claim, wall=1.0, slot=0, params={"x": 0.0})
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {"ready": True, "study": FP})], 0.0)
    ready(d, n_trials=1)
    persist_all(d)
    d.handle_timer(100.0, 1100.0)
    persist_all(d, 100.0)
    assert d.ledger.trial(running.key).state.name == "RUNNING"


def test_a_worker_held_after_its_trial_claims_nothing_until_it_is_free() -> None:
    # hp.optimize runs its callbacks on the recorded trial before the next claim.
    d = make()
    ready(d)
    start = next(a for a in persist_all(d) if isinstance(a, StartTrial))
    d.handle_trial_finished(start.trial, Outcome(Status.COMPLETE, 0.3, duration=1.0), 1.0, 1001.0,
                            worker_free=False)
    actions = persist_all(d, 1.0)
    assert d.ledger.trial(start.trial).state.name == "COMPLETE"
    assert not [a for a in actions if isinstance(a, StartTrial)]
    d.handle_timer(5.0, 1005.0)
    assert not [a for a in persist_all(d, 5.0) if isinstance(a, StartTrial)]
    d.handle_worker_free(6.0, 1006.0)
    assert [a.slot for a in persist_all(d, 6.0) if isinstance(a, StartTrial)] == [1]
