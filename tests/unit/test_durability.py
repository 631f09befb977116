"""A restarted node repairs its own history from peers before it writes, and lingers when done."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from p2phpo.core.durability import MAX_WAIT_FACTOR, GateConfig, Linger, RepairGate, seq_ranges
from p2phpo.core.entries import Abandon, AbandonReason, Claim, Report, Result, Status
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger, TrialState
from p2phpo.core.records import Verifier

ME = 0xA1
PEER = 0xB2
CFG = GateConfig(sync_wait=10.0, quiet=2.0)


def history(n_trials: int = 3, wall0: float = 100.0) -> list:
    """A node's own log: CLAIM, REPORT, RESULT per trial (seq 1..3n)."""
    led = Ledger()
    out = []
    for i in range(n_trials):
        c = led.new(ME, Claim, wall=wall0 + i, slot=i, params={"x": float(i)})
        r = led.new(ME, Report, wall=wall0 + i, trial=c.key, step=1, value=float(i))
        f = led.new(ME, Result, wall=wall0 + i, trial=c.key, status=Status.COMPLETE, value=float(i))
        out += [c, r, f]
    return out


def test_seq_ranges() -> None:
    assert seq_ranges([9, 3, 7, 8]) == "seq 3, 7-9"


def test_a_lone_node_opens_at_once_and_fills_what_nobody_holds() -> None:
    log = history()
    led = Ledger(max_pending=100)
    led.merge(log[:3] + log[4:])  # seq 4 (trial 2's CLAIM) was damaged on disk
    assert led.vv[ME] == 3 and led.held_seqs(ME) == list(range(5, 10))
    gate = RepairGate(ME, led, expect_peers=False, now=0.0, start_wall=1000.0, config=CFG)
    assert gate.due(0.0)
    fill = gate.open(1000.0)
    assert [(e.seq, e.reason) for e in fill] == [(4, AbandonReason.LOST)]
    assert led.vv[ME] == 9 and led.next_seq(ME) == 10  # never reuses a seq
    trials = led.trials()
    assert sorted(t[1] for t in trials) == [1, 7]  # only the damaged record's trial is lost
    assert all(v.state is TrialState.COMPLETE for v in trials.values())
    assert "1 entry of this node lost for good (seq 4" in gate.note and "seq 10" in gate.note


def test_a_cluster_node_waits_for_a_sync_and_takes_its_entries_back() -> None:
    log = history()
    led = Ledger()
    led.merge(log[:5])  # the tail was lost (torn)
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    assert not gate.due(5.0) and gate.timer() == 10.0
    stats = led.merge(log[5:])  # a peer's replica
    gate.merged(stats.added)
    assert gate.refused is None
    gate.synced(6.0)
    assert not gate.due(7.0)  # quiet: a live twin would show itself now
    assert gate.timer() == 8.0 and gate.due(8.0)
    assert gate.open(1001.0) == []
    assert led.next_seq(ME) == 10
    assert gate.note == ("repaired 4 entries from peers (4 of this node's own: seq 6-9); "
                         "continuing at seq 10")


def test_a_synced_node_with_nothing_to_repair_opens_at_the_sync() -> None:
    led = Ledger()
    led.merge(history())
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    gate.synced(1.0)
    assert gate.due(1.0)
    assert gate.open(1001.0) == [] and gate.note == ""


def test_nobody_reachable_means_going_on_alone_after_the_wait() -> None:
    led = Ledger()
    led.merge(history(1))
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    assert not gate.due(9.9) and gate.due(10.0)
    gate.open(1010.0)
    assert gate.note == "no peer reached within 10 s: going on alone; continuing at seq 4"
    assert gate.alone
    gate.synced(20.0)  # a peer showed up later
    assert not gate.alone


def test_fresh_entries_of_ours_from_peers_mean_a_live_copy() -> None:
    led = Ledger()
    log = history(2)
    led.merge(log[:3])
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=104.0, config=CFG)
    gate.merged(led.merge(log[3:]).added)  # written at wall 101: before we started, a repair
    assert gate.refused is None
    twin = Claim(origin=ME, seq=7, wall=104.5, slot=5, params={})
    gate.merged(led.merge([twin]).added)
    assert gate.refused and "another live node runs with this node's identity" in gate.refused
    assert "sent seq 7 of this node" in gate.refused
    assert not gate.due(100.0)


def test_after_opening_any_entry_of_ours_from_a_peer_is_a_copy() -> None:
    led = Ledger()
    gate = RepairGate(ME, led, expect_peers=False, now=0.0, start_wall=1000.0, config=CFG)
    gate.open(1000.0)
    gate.merged([Claim(origin=PEER, seq=1, wall=1.0, slot=0, params={})])
    assert gate.refused is None
    gate.merged([Claim(origin=ME, seq=1, wall=1.0, slot=0, params={})])
    assert gate.refused is not None


def test_fillers_are_not_trials_and_do_not_count() -> None:
    led = Ledger()
    led.append(Abandon(origin=ME, seq=1, wall=0.0, trial=(ME, 1), reason=AbandonReason.LOST))
    assert led.trials() == {}


class Table:
    """A member table feeding a :class:`Linger` the way the driver does."""

    def __init__(self, lg: Linger) -> None:
        self.lg = lg
        self.members: dict[int, tuple[str, dict]] = {}

    def set(self, node: int, state: str, meta: dict) -> None:
        self.members[node] = (state, meta)
        self.lg.member(node, state, meta)

    def forget(self, node: int) -> None:  # reaped or evicted: no event
        del self.members[node]

    def may_exit(self, now: float) -> bool:
        return self.lg.may_exit(now, self.members.get)


def test_linger_until_peers_are_done_or_the_grace_ends() -> None:
    lg = Linger(grace=30.0)
    t = Table(lg)
    t.set(PEER, "ALIVE", {"ready": True, "study": "f"})
    assert not t.may_exit(0.0) and lg.timer() is None
    lg.done(10.0, t.members)
    assert not t.may_exit(11.0) and lg.timer() == 40.0
    t.set(PEER, "DEAD", {"ready": True, "study": "f"})
    assert not t.may_exit(11.0)
    t.set(PEER, "ALIVE", {"ready": True, "study": "f", "done": True})
    assert not t.may_exit(11.0)  # done, but not yet seen in sync with us
    lg.synced(PEER)
    assert t.may_exit(11.0)
    lg.changed()  # an entry arrived: it must confirm again
    assert not t.may_exit(11.0)
    t.set(PEER, "DEAD", {"study": "f", "done": True})
    assert t.may_exit(11.0)
    t.set(PEER, "LEFT", {"study": "f"})
    assert t.may_exit(11.0)
    t.set(0xC3, "ALIVE", {})
    assert t.may_exit(11.0)  # an observer
    t.set(PEER, "ALIVE", {"ready": False})
    assert not t.may_exit(11.0)  # it restarted: wait
    t.set(PEER, "DEAD", {"ready": False})
    t.forget(PEER)
    assert t.may_exit(11.0)  # reaped: no longer waited for
    t.set(PEER, "ALIVE", {"ready": False})
    assert not t.may_exit(11.0) and t.may_exit(40.0)
    forever = Linger(grace=30.0, forever=True)
    forever.done(0.0, {})
    assert not forever.may_exit(1e9, {}.get) and forever.timer() is None


@dataclass
class Rule:
    """The exit rule as one pass over every member, with its own record of the syncs
    (what ``Linger`` keeps incrementally)."""

    grace: float = 30.0
    done_at: float | None = None
    settled: bool = False
    workers: set[int] = field(default_factory=set)
    in_sync: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)

    def synced(self, peer: int) -> None:
        self.in_sync.add(peer)
        if self.settled:
            self.finished.add(peer)

    def done(self, now: float, settled: bool) -> None:
        self.done_at, self.settled = now, settled
        if settled:
            self.finished |= self.in_sync

    def may_exit(self, now: float, members: dict[int, tuple[str, dict]]) -> bool:
        self.workers.update(n for n, (_, meta) in members.items() if meta.get("study"))
        if self.done_at is None:
            return False
        if now >= self.done_at + self.grace:
            return True

        def ok(node: int, state: str, meta: dict) -> bool:
            if state == "LEFT":
                return True
            if not meta.get("done") and node not in self.finished:
                return False
            return state == "DEAD" or node in self.in_sync
        return all(ok(n, *members[n]) for n in self.workers if n in members)

    def crashed(self, members: dict[int, tuple[str, dict]]) -> list[int]:
        """Workers that are DEAD and not done: what a finished node waits for."""
        return sorted(n for n in self.workers if n in members and members[n][0] == "DEAD"
                      and not members[n][1].get("done") and n not in self.finished)


def test_linger_answers_what_a_scan_of_every_member_answers() -> None:
    rng = random.Random(7)
    metas = [{}, {"ready": False}, {"ready": True, "study": "f"}, {"ready": True, "study": "f", "done": True},
             {"study": "g", "done": True}, {"done": True}]
    seen = {True: 0, False: 0}  # answers before the grace ends
    for run in range(400):
        lg, rule = Linger(grace=30.0), Rule()
        t = Table(lg)
        nodes = list(range(1, rng.randint(2, 9)))
        done_at, settled = rng.randint(0, 40), run % 2 == 1
        for step in range(60):
            roll = rng.random()
            node = rng.choice(nodes)
            if roll < 0.5:
                t.set(node, rng.choice(["ALIVE", "SUSPECT", "DEAD", "LEFT"]), rng.choice(metas))
            elif roll < 0.6 and node in t.members and t.members[node][0] in ("DEAD", "LEFT"):
                t.forget(node)
            elif roll < 0.85:
                lg.synced(node)
                rule.synced(node)
            else:
                lg.changed()
                rule.in_sync.clear()
            if step == done_at:  # the driver asks at once (no member event in between)
                lg.done(float(step), t.members, settled=settled)
                rule.done(float(step), settled)
            if lg.done_at is not None:
                now = float(step) + rng.choice([0.0, 0.0, 0.0, 25.0])
                want = rule.may_exit(now, t.members)
                assert t.may_exit(now) == want, (run, step)
                if now < lg.done_at + lg.grace:  # (a reaped member may linger in the note)
                    assert [n for n in lg.crashed() if n in t.members] == rule.crashed(t.members), (run, step)
                if now < lg.done_at + lg.grace:
                    seen[want] += 1
    assert min(seen.values()) > 500, seen  # both answers were put to the test


def test_a_settled_node_counts_a_peer_found_in_sync_as_done_without_its_flag() -> None:
    lg = Linger(grace=30.0)
    t = Table(lg)
    t.set(PEER, "ALIVE", {"ready": True, "study": "f"})
    lg.synced(PEER)
    lg.done(10.0, t.members, settled=True)  # it was in sync: it holds the whole budget
    assert t.may_exit(11.0)
    lg.changed()
    assert not t.may_exit(11.0)  # a new entry of ours: it must confirm again
    t.set(PEER, "DEAD", {"ready": True, "study": "f"})
    assert t.may_exit(11.0)  # done before it died: not waited for
    other = Linger(grace=30.0)
    u = Table(other)
    u.set(PEER, "ALIVE", {"ready": True, "study": "f"})
    other.done(10.0, u.members, settled=False)  # e.g. a timeout on our own clock
    other.synced(PEER)
    assert not u.may_exit(11.0)  # in sync, but done only when it says so
    other.settle()  # then our ledger shows the budget counted: it holds that ledger too
    assert u.may_exit(11.0)


def test_a_finished_node_asks_the_peers_it_waits_for_one_per_interval_in_turn() -> None:
    lg = Linger(grace=30.0)
    t = Table(lg)
    for node in (5, 3, 9):
        t.set(node, "ALIVE", {"ready": True, "study": "f"})
    t.set(7, "ALIVE", {"ready": True, "study": "f", "done": True})
    assert lg.to_ask(0.0, 0.2) == []  # not done
    lg.done(10.0, t.members, settled=True)
    assert lg.to_ask(10.0, 0.2) == [3] and lg.timer() == 10.2
    assert lg.to_ask(10.1, 0.2) == []  # one per interval
    lg.synced(5)
    assert lg.to_ask(10.2, 0.2) == [7]  # 5 is in sync: skipped
    assert lg.to_ask(10.4, 0.2) == [9] and lg.to_ask(10.6, 0.2) == [3]  # round robin
    for node in (3, 7, 9):
        lg.synced(node)
    assert t.may_exit(10.7) and lg.to_ask(10.8, 0.2) == [] and lg.timer() == 40.0
    lg.changed()  # a late entry: every peer must confirm again
    assert lg.to_ask(11.0, 0.2) == [5]  # on from the last one asked (3)
    unsettled = Linger(grace=30.0)  # done on its own clock: a peer is done when it says so
    u = Table(unsettled)
    u.set(5, "ALIVE", {"ready": True, "study": "f"})
    u.set(7, "DEAD", {"ready": True, "study": "f", "done": True})
    unsettled.done(10.0, u.members)
    assert unsettled.to_ask(10.0, 0.2) == []  # 5 is not done: a sync would not release it
    many = Linger(grace=30.0)
    m = Table(many)
    for node in range(1, 201):
        m.set(node, "ALIVE", {"ready": True, "study": "f", "done": True})
    many.done(0.0, m.members)
    assert many.to_ask(0.0, 0.2) == []  # 200 asks take 40 s: the grace decides anyway
    for node in range(1, 101):
        many.synced(node)
    assert many.to_ask(0.4, 0.2) == [101]  # 100 left fit in the 29.6 s left


def test_entries_of_other_nodes_lost_from_the_log_are_said_to_be_repaired() -> None:
    theirs = [Claim(origin=PEER, seq=i, wall=1.0, slot=i, params={}) for i in range(1, 5)]
    led = Ledger()
    led.merge(theirs[:1] + theirs[2:])
    assert led.gaps() == {PEER: [2]}
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    gate.merged(led.merge(theirs).added)
    gate.synced(1.0)
    assert gate.due(1.0) and gate.open(1001.0) == []
    assert gate.note == "repaired 1 entry from peers; continuing at seq 1"


def test_live_peers_without_a_sync_are_waited_for_longer_but_not_forever() -> None:
    led = Ledger()
    led.merge(history(1))
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    assert not gate.due(10.0, peers_alive=True)  # a busy cluster: digests rarely match
    assert gate.timer() == 40.0
    assert not gate.due(39.0, peers_alive=True) and gate.due(40.0, peers_alive=True)
    gate.open(1040.0)
    assert gate.note.startswith("no sync with the live peers within 40 s: going on without one")


def test_entries_held_on_disk_are_not_counted_as_repaired() -> None:
    log = history()
    led = Ledger()
    led.merge(log[:3] + log[4:])  # seq 4 damaged; 5..9 held on disk
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    gate.merged(led.merge(log).added)  # a peer sends 4; 5..9 drain with it
    gate.synced(1.0)
    assert gate.due(3.0) and gate.open(1003.0) == []
    assert gate.note == ("repaired 1 entry from peers (1 of this node's own: seq 4); "
                         "continuing at seq 10")


def test_a_node_missing_entries_of_its_own_waits_longer_before_filling_them() -> None:
    log = history()
    led = Ledger(max_pending=100)
    led.merge(log[:3] + log[4:])  # seq 4 damaged: a peer that answers late holds it
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    assert not gate.due(10.0) and gate.timer() == 40.0  # filling it now would fork the log
    stats = led.merge(log[3:4])  # the slow peer answers after all
    gate.merged(stats.added)
    gate.synced(25.0)
    assert gate.due(27.0) and gate.open(1027.0) == []  # nothing filled, nothing reused
    assert led.next_seq(ME) == 10
    lone = Ledger(max_pending=100)
    lone.merge(log[:3] + log[4:])
    gate = RepairGate(ME, lone, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG)
    assert not gate.due(39.9) and gate.due(40.0)  # bounded: then it goes on alone
    assert [e.seq for e in gate.open(1040.0)] == [4]
    assert gate.note.startswith("no peer reached within 40 s: going on alone")


def _records(led: Ledger) -> list:
    return [(e, led.raw(e.origin, e.seq)) for e in led]


def _view(led: Ledger) -> tuple:
    return (dict(led.vv), sorted((tid, v.state, v.value) for tid, v in led.trials().items()),
            [led.raw(o, s) for o, s in sorted((e.origin, e.seq) for e in led)])


def test_a_filler_yields_to_the_real_record_a_returning_peer_held() -> None:
    """The peer holding a node's lost own entry was away past the wait, so the node
    filled the seq with ABANDON(LOST) and went on; when the peer returns, every
    replica ends with the real record (one split history would otherwise last forever)."""
    me = Identity(bytes(range(32)))
    node = Ledger(identity=me)
    for e in history():
        node.append(_mine(e, me.node_id))
    peer = Ledger(verifier=Verifier())
    peer.merge(_records(node))
    restarted = Ledger(identity=me, max_pending=100)
    restarted.merge([r for r in _records(node) if r[0].seq != 4], trusted=True)  # seq 4 damaged
    gate = RepairGate(me.node_id, restarted, expect_peers=False, now=0.0, start_wall=1000.0, config=CFG)
    assert [e.reason for e in gate.open(1000.0)] == [AbandonReason.LOST]
    restarted.new(me.node_id, Claim, wall=1001.0, slot=3, params={"x": 3.0})  # it goes on (seq 10)
    assert (me.node_id, 4) not in restarted.trials()  # its CLAIM is what was lost
    late = Ledger(verifier=Verifier())  # a third replica that saw the filler first
    late.merge(_records(restarted))
    assert restarted.fillers() == late.fillers() == {me.node_id: 4}

    peer.merge(_records(late))  # the peer is back; the filler reaches it: it keeps the real record
    stats = restarted.merge(_records(peer))  # and the real record reaches the node
    assert stats.replaced == 1 and restarted.fillers() == {}
    gate.merged(stats.added)  # the node's own old record, back: no sign of a twin
    assert gate.refused is None and "came back from a peer (seq 4)" in gate.take_returned()
    late.merge(_records(peer))
    assert _view(restarted) == _view(peer) == _view(late)
    assert restarted.trials()[(me.node_id, 4)].state is TrialState.COMPLETE
    assert peer.counts["conflicts"] == 1 and restarted.counts["replaced_fillers"] == 1


def _mine(e, origin: int):
    """Entry ``e`` of ``history()`` rewritten as ``origin``'s."""
    fields = {k: getattr(e, k) for k in e.__dataclass_fields__}
    fields["origin"] = origin
    if "trial" in fields:
        fields["trial"] = (origin, fields["trial"][1])
    return type(e)(**fields)


def test_a_damaged_last_record_that_may_be_ours_is_waited_for_then_filled_not_reused() -> None:
    log = history()
    led = Ledger()
    led.merge(log[:8])  # seq 9, the newest record, was whole but damaged on disk
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG, tail_own=True)
    assert not gate.due(CFG.sync_wait)  # a peer may hold it: the longer wait
    assert gate.due(MAX_WAIT_FACTOR * CFG.sync_wait)
    assert [(e.seq, e.reason) for e in gate.open(1000.0)] == [(9, AbandonReason.LOST)]
    assert led.next_seq(ME) == 10 and "seq 9" in gate.note

    led = Ledger()
    led.merge(log[:8])
    gate = RepairGate(ME, led, expect_peers=True, now=0.0, start_wall=1000.0, config=CFG, tail_own=True)
    gate.merged(led.merge(log[8:]).added)  # a peer gives it back
    gate.synced(3.0)
    assert gate.due(3.0 + CFG.quiet) and gate.open(1000.0) == [] and led.next_seq(ME) == 10
