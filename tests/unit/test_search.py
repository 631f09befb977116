"""The search core: budget slots, conflicts, orphans, retries, pruning, study checks."""

from __future__ import annotations

from dataclasses import dataclass

from p2phpo.core.budget import Ring
from p2phpo.core.entries import AbandonReason, Status
from p2phpo.core.hrw import hrw
from p2phpo.core.ledger import Ledger, TrialState
from p2phpo.core.search import (
    Exhausted,
    MemberView,
    Outcome,
    SearchConfig,
    SearchCore,
    StartTrial,
    StopTrial,
    StudyDone,
)
from p2phpo.trial import Verdict

SPEC = {"study": {"name": "t", "direction": "minimize"}, "space": {"x": {"type": "float"}}}


@dataclass
class FakePlan:
    fingerprint: str
    direction: str = "minimize"
    n_trials: int | None = 6
    timeout: float | None = None
    target: float | None = None
    grid: int | None = None

    def suggest(self, ledger, node_id, slot):
        if self.grid is not None and slot >= self.grid:
            raise Exhausted
        return {"x": float(slot) / 10}

    def should_report(self, step):
        return step in (1, 3)

    def should_prune(self, ledger, trial, step, value):
        return value > 0.5


def make_node(node_id: int, ledger: Ledger | None = None, spec=SPEC, fp="fp1", **plan_kw):
    plan_kw.setdefault("n_trials", 6)
    core = SearchCore(node_id, Ledger() if ledger is None else ledger, SearchConfig(claim_grace=1.0),
                      lambda study: FakePlan(study.fingerprint, **plan_kw),
                      local_study=None if spec is None else (spec, fp))
    core.ready = True
    return core


def genesis(core: SearchCore) -> None:
    """Let ``core`` write the STUDY entry without claiming a trial."""
    core.ready = False
    core.step(0.0, 0.0)
    core.ready = True


def sync(*cores: SearchCore) -> None:
    """Full anti-entropy between every pair."""
    for a in cores:
        for b in cores:
            if a is not b:
                b.ledger.merge(a.ledger.delta_since(b.ledger.vv))


def members(cores, dead=(), now=0.0):
    view = {c.node_id: MemberView("DEAD" if c.node_id in dead else "ALIVE", True, "fp1")
            for c in cores}
    for c in cores:
        if c.node_id not in dead:
            c.set_members(now, view)


def run_cluster(cores, speeds, until=200.0):
    """A tiny discrete loop: each node finishes its trial after `speed` seconds."""
    busy: dict[int, tuple[float, tuple]] = {}
    now = 0.0
    done = set()
    while now < until and len(done) < len(cores):
        for c in cores:
            if c.node_id in busy and busy[c.node_id][0] <= now:
                _, tid = busy.pop(c.node_id)
                c.finish(tid, Outcome(Status.COMPLETE, value=float(tid[1]), duration=1.0), wall=now)
            sync(*cores)
            for cmd in c.step(now, now):
                if isinstance(cmd, StartTrial):
                    busy[c.node_id] = (now + speeds[c.node_id], cmd.trial)
                elif isinstance(cmd, StopTrial):
                    busy.pop(c.node_id, None)
                elif isinstance(cmd, StudyDone):
                    done.add(c.node_id)
        now += 0.25
    return done


def test_single_node_runs_the_budget_then_is_done() -> None:
    core = make_node(1)
    done = run_cluster([core], {1: 1.0})
    assert done == {1}
    st = core.status()
    assert st["finished"] == 6 and st["overshoot"] == 0 and st["duplicates"] == 0
    assert sorted(v.slot for v in core.ledger.trials().values()) == list(range(6))


def test_three_nodes_of_different_speeds_share_the_budget_exactly() -> None:
    cores = [make_node(i, spec=SPEC if i == 1 else None, n_trials=30) for i in (1, 2, 3)]
    members(cores)
    done = run_cluster(cores, {1: 1.0, 2: 2.0, 3: 3.0})
    assert done == {1, 2, 3}
    for c in cores:
        st = c.status()
        assert st["finished"] == 30 and st["overshoot"] == 0 and st["duplicates"] == 0
    per_node = [sum(1 for t in cores[0].ledger.trials() if t[0] == c.node_id) for c in cores]
    assert per_node[0] > per_node[1] > per_node[2]  # faster nodes did more


def test_double_claim_is_resolved_the_same_way_on_both_nodes() -> None:
    a, b = make_node(1, n_trials=1), make_node(2, spec=None, n_trials=1)
    genesis(a)
    sync(a, b)
    # Each believes it is alone: both claim the one slot without seeing the other.
    ca = [c for c in a.step(0.0, 0.0) if isinstance(c, StartTrial)][0]
    cb = [c for c in b.step(0.0, 0.0) if isinstance(c, StartTrial)][0]
    assert ca.slot == cb.slot == 0
    sync(a, b)
    stops = [c for c in a.step(1.0, 1.0) + b.step(1.0, 1.0) if isinstance(c, StopTrial)]
    assert len(stops) == 1
    sync(a, b)
    slot0 = [v.state.value for v in a.ledger.trials().values() if v.slot == 0]
    assert sorted(slot0) == ["RUNNING", "SUPERSEDED"]
    assert a.status()["counts"] == b.status()["counts"]


def test_orphan_of_a_dead_node_is_retried_with_the_same_params() -> None:
    cores = [make_node(i, spec=SPEC if i == 1 else None) for i in (1, 2, 3)]
    genesis(cores[0])
    sync(*cores)
    members(cores)
    starts = {c.node_id: [x for x in c.step(0.0, 0.0) if isinstance(x, StartTrial)] for c in cores}
    sync(*cores)
    victim = cores[2]
    lost = starts[victim.node_id][0]
    alive = cores[:2]
    members(cores, dead={victim.node_id}, now=5.0)
    for c in alive:  # no reclaim before an anti-entropy exchange after the death
        c.step(5.0, 5.0)
    assert cores[0].ledger.trial(lost.trial).state is TrialState.RUNNING
    for c in alive:
        c.synced_with(0, 6.0)
    for c in alive:
        c.step(6.0, 6.0)
    sync(*alive)
    view = cores[0].ledger.trial(lost.trial)
    assert view.state is TrialState.ABANDONED and view.abandon.reason is AbandonReason.DEAD
    # The survivors run their own ranges, then steal the dead node's: the reopened
    # slot is retried once, with the same params.
    retry = []
    for now in (7.0, 8.0, 9.0, 10.0):
        for c in alive:
            for tid in c.running:
                c.finish(tid, Outcome(Status.COMPLETE, value=0.1), now)
        sync(*alive)
        for c in alive:
            retry += [x for x in c.step(now, now) if isinstance(x, StartTrial) and x.retry_of == lost.trial]
            sync(*alive)
    assert len(retry) == 1 and retry[0].params == lost.params and retry[0].slot == lost.slot


def test_a_late_result_of_the_original_stops_its_retry() -> None:
    a, b = make_node(1), make_node(2, spec=None)
    genesis(a)
    sync(a, b)
    members([a, b])
    start_b = [x for x in b.step(0.0, 0.0) if isinstance(x, StartTrial)][0]
    sync(a, b)
    a.set_members(2.0, {1: MemberView("ALIVE", True, "fp1"), 2: MemberView("DEAD", True, "fp1")})
    a.synced_with(2, 3.0)
    a.step(3.0, 3.0)  # abandons b's trial
    retry: list[StartTrial] = []
    for now in (3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1):  # a's own range, then b's
        for tid in a.running:
            a.finish(tid, Outcome(Status.COMPLETE, value=0.2), now)
        retry = [x for x in a.step(now, now) if isinstance(x, StartTrial) and x.retry_of]
        if retry:
            break
    assert retry and retry[0].retry_of == start_b.trial
    # b was only slow: its RESULT arrives; RESULT beats ABANDON and a's retry stops.
    b.finish(start_b.trial, Outcome(Status.COMPLETE, value=0.3), 4.5)
    sync(a, b)
    stops = [x for x in a.step(5.0, 5.0) if isinstance(x, StopTrial)]
    assert [s.trial for s in stops] == [retry[0].trial]
    assert a.ledger.trial(start_b.trial).state is TrialState.COMPLETE
    assert a.ledger.trial(retry[0].trial).state is TrialState.SUPERSEDED


def test_a_slot_abandoned_too_often_is_failed() -> None:
    core = make_node(1, n_trials=1)
    core.step(0.0, 0.0)
    for i in range(2):  # the original and two retries are abandoned
        core.leave(float(i))
        core.leaving = False
        cmds = core.step(float(i) + 0.5, float(i) + 0.5)
        assert any(isinstance(c, StartTrial) and c.retry_of for c in cmds)
    core.leave(3.0)
    core.leaving = False
    cmds = core.step(4.0, 4.0)  # a third abandonment: no retry, the trial is FAILED
    views = list(core.ledger.trials().values())
    failed = [v for v in views if v.state is TrialState.FAILED]
    assert len(failed) == 1 and "abandoned 3 times" in failed[0].error
    assert any(isinstance(c, StudyDone) for c in cmds + core.step(5.0, 5.0))


def test_a_different_study_is_refused_with_the_differing_fields() -> None:
    a = make_node(1)
    a.step(0.0, 0.0)
    other = {"study": {"name": "t", "direction": "maximize"}, "space": {"x": {"type": "float"}}}
    b = make_node(2, spec=other, fp="fp2")
    sync(a, b)
    assert b.step(0.0, 0.0) == []
    assert b.refused and "study.direction" in b.refused
    assert all(t[0] == a.node_id for t in b.ledger.trials())


def test_a_restart_with_another_study_file_names_its_own_state_dir() -> None:
    led = Ledger()
    make_node(1, ledger=led).step(0.0, 0.0)  # this node started the study in its state dir
    other = {"study": {"name": "t", "direction": "maximize"}, "space": {"x": {"type": "float"}}}
    again = make_node(1, ledger=led, spec=other, fp="fp2")
    assert [c for c in again.step(1.0, 1.0) if isinstance(c, StartTrial)] == []
    assert again.refused and "its state dir already runs" in again.refused
    assert "study.direction" in again.refused and "cluster" not in again.refused


def test_restart_abandons_own_running_trials() -> None:
    led = Ledger()
    a = make_node(1, ledger=led)
    start = [x for x in a.step(0.0, 0.0) if isinstance(x, StartTrial)][0]
    again = make_node(1, ledger=led)  # same ledger replayed from disk after a crash
    again.recover(10.0)
    view = led.trial(start.trial)
    assert view.state is TrialState.ABANDONED and view.abandon.reason is AbandonReason.RESTARTED
    retry = [x for x in again.step(11.0, 11.0) if isinstance(x, StartTrial)][0]
    assert retry.retry_of == start.trial


def test_reports_at_rungs_and_pruning_verdicts() -> None:
    a = make_node(1)
    start = [x for x in a.step(0.0, 0.0) if isinstance(x, StartTrial)][0]
    assert a.report(start.trial, 1, 0.2, 1.0) is Verdict.CONTINUE
    assert a.report(start.trial, 2, 0.3, 2.0) is Verdict.CONTINUE  # not a rung: no entry
    assert a.report(start.trial, 3, 0.9, 3.0) is Verdict.PRUNE
    a.finish(start.trial, Outcome(Status.PRUNED), 3.5)
    view = a.ledger.trial(start.trial)
    assert view.reports == {1: 0.2, 3: 0.9}
    assert view.state is TrialState.PRUNED and view.value == 0.9
    assert a.report((99, 1), 1, 0.1, 4.0) is Verdict.STOP  # not ours


def test_timeout_closes_claims_and_ends_the_study() -> None:
    a = make_node(1, n_trials=None, timeout=10.0)
    start = [x for x in a.step(0.0, 0.0) if isinstance(x, StartTrial)][0]
    a.finish(start.trial, Outcome(Status.COMPLETE, value=0.4), 11.0)
    cmds = a.step(11.0, 11.0)
    assert [type(c) for c in cmds] == [StudyDone] and cmds[0].reason == "timeout reached"


def test_grid_exhaustion_ends_the_study() -> None:
    a = make_node(1, n_trials=None, grid=2)
    done = run_cluster([a], {1: 1.0})
    assert done == {1} and a.status()["finished"] == 2 and a.done == "search space exhausted"


def test_nodes_not_ready_never_hold_work() -> None:
    a, b = make_node(1), make_node(2, spec=None)
    b.ready = False
    a.step(0.0, 0.0)
    sync(a, b)
    assert b.step(0.0, 0.0) == []
    assert all(t[0] == 1 for t in a.ledger.trials())


def owner_other_than(node: int) -> int:
    """A phantom member that holds the only slot of a one-trial study against ``node``."""
    return next(p for p in range(3, 100) if Ring(sorted([node, p]), 1).head(p, bytearray(b"\x01")) == 0)


def _one_slot_pair(cfg: SearchConfig) -> tuple[SearchCore, SearchCore]:
    """Nodes 1 and 2, both ready, holding a one-trial study (node 1 wrote it)."""
    plan = lambda s: FakePlan(s.fingerprint, n_trials=1)  # noqa: E731
    a = SearchCore(1, Ledger(), cfg, plan, (SPEC, "fp1"))
    b = SearchCore(2, Ledger(), cfg, plan, None)
    a.ready = b.ready = True
    genesis(a)
    sync(a, b)
    return a, b


def _double_fallback(cfg: SearchConfig) -> tuple[SearchCore, SearchCore]:
    """Two nodes that each believe the one slot of a one-trial study is a phantom's."""
    a, b = _one_slot_pair(cfg)
    alive = MemberView("ALIVE", True, "fp1")
    # Each believes the one slot belongs to a member the other does not know, and
    # that member never claims it: after claim_grace both fall back to it.
    a.set_members(0.0, {1: alive, owner_other_than(1): alive})
    b.set_members(0.0, {2: alive, owner_other_than(2): alive})
    assert a.step(0.0, 0.0) == [] and b.step(0.0, 0.0) == []  # not their slot: wait
    return a, b


def test_a_double_fallback_claim_of_trials_shorter_than_a_gossip_round_counts_once() -> None:
    a, b = _double_fallback(SearchConfig(claim_grace=1.0, grace_window=0.5))
    starts = [c for c in a.step(1.0, 1.0) + b.step(1.0, 1.0) if isinstance(c, StartTrial)]
    assert [s.slot for s in starts] == [0, 0]  # both claim slot 0 and run it at once
    for core, start in zip((a, b), starts, strict=True):  # both finish before the claims meet
        core.finish(start.trial, Outcome(Status.COMPLETE, value=0.5, duration=0.1), 1.1)
        assert core.step(1.1, 1.1) == [] and core.ledger.trial(start.trial).state is TrialState.RUNNING
    sync(a, b)
    a.step(1.6, 1.6)
    b.step(1.6, 1.6)  # the window closed: each writes its held outcome, or gives way
    sync(a, b)
    slot0 = sorted(v.state.value for v in a.ledger.trials().values() if v.slot == 0)
    assert slot0 == ["COMPLETE", "SUPERSEDED"]
    assert a.status()["overshoot"] == 0 and a.status()["duplicates"] == 0
    assert a.running == [] and b.running == []


def test_a_double_fallback_claim_stops_the_loser_while_it_runs() -> None:
    a, b = _double_fallback(SearchConfig(claim_grace=1.0, grace_window=0.5))
    a.step(1.0, 1.0)
    b.step(1.0, 1.0)
    sync(a, b)
    stops = [c for c in a.step(1.2, 1.2) + b.step(1.2, 1.2) if isinstance(c, StopTrial)]
    assert len(stops) == 1 and stops[0].reason == "lost a double claim"
    winner = a if stops[0].trial[0] == 2 else b
    (tid,) = winner.running
    winner.step(1.8, 1.8)
    winner.finish(tid, Outcome(Status.COMPLETE, value=0.5, duration=1.0), 2.0)  # past its window
    assert winner.ledger.trial(tid).state is TrialState.COMPLETE  # written at once


def test_a_node_alone_starts_its_claim_without_the_confirmation_delay() -> None:
    cfg = SearchConfig(grace_window=0.5)
    a = SearchCore(1, Ledger(), cfg, lambda s: FakePlan(s.fingerprint), (SPEC, "fp1"))
    a.ready = True
    assert [type(c) for c in a.step(0.0, 0.0)] == [StartTrial]


def test_the_timer_never_points_into_the_past() -> None:
    cores = [make_node(i, spec=SPEC if i == 1 else None) for i in (1, 2, 3)]
    genesis(cores[0])
    sync(*cores)
    members(cores)
    for c in cores:
        c.step(0.0, 0.0)
    sync(*cores)
    members(cores, dead={3}, now=1.0)
    for now in (1.0, 40.0, 80.0):  # long past the reclaim fallback for node 3's trial
        for c in cores[:2]:
            c.step(now, now)
            timer = c.get_timer(now, now)
            assert timer is None or timer > now


# -- orphans of owners that are no member (reaped, or never seen) ---------------------------


def _stranger_running(stranger: int = 99):
    """Nodes 1 and 2 (members of each other) and a RUNNING trial of ``stranger``, a node
    neither knows as a member: returns (cores, the stranger's ledger, its trial id)."""
    cores = [make_node(i, spec=SPEC if i == 1 else None) for i in (1, 2)]
    genesis(cores[0])
    gone = Ledger()
    gone.merge(cores[0].ledger.delta_since({}))
    from p2phpo.core.entries import Claim
    claim = gone.new(stranger, Claim, wall=0.0, slot=5, params={"x": 0.5})
    for c in cores:
        c.ledger.merge(gone.delta_since(c.ledger.vv))
    members(cores)
    return cores, gone, claim.key


def _abandons(core: SearchCore, tid) -> list:
    from p2phpo.core.entries import Abandon
    return [e for e in core.ledger if isinstance(e, Abandon) and e.trial == tid]


def test_a_running_trial_of_an_owner_that_is_no_member_is_reclaimed_once() -> None:
    cores, _, tid = _stranger_running()
    wait = cores[0].config.reclaim_fallback
    for now in (0.0, wait / 2, wait - 0.01):
        for c in cores:
            c.step(now, now)
    sync(*cores)
    assert cores[0].ledger.trial(tid).state is TrialState.RUNNING  # not before the wait
    for c in cores:
        c.synced_with(0, wait / 2)  # an anti-entropy exchange since: its member table too
    timers = {c.get_timer(wait - 0.01, 0.0) for c in cores}
    assert timers == {wait}  # the nodes wake for it on their own
    for c in cores:
        c.step(wait, wait)
    sync(*cores)
    views = [c.ledger.trial(tid) for c in cores]
    assert all(v.state is TrialState.ABANDONED for v in views)
    assert views[0].abandon.reason is AbandonReason.DEAD
    assert len(_abandons(cores[0], tid)) == 1  # one rendezvous winner wrote it


def test_unsynced_a_stranger_waits_twice_as_long_and_its_new_entries_restart_the_wait() -> None:
    from p2phpo.core.entries import Report
    cores, gone, tid = _stranger_running()
    wait = cores[0].config.reclaim_fallback
    for c in cores:
        c.step(0.0, 0.0)
    for c in cores:
        c.step(1.5 * wait, 1.5 * wait)  # no sync: not yet
    assert not _abandons(cores[0], tid) and not _abandons(cores[1], tid)
    # The stranger reports: it is alive (its Alive has not reached us yet).
    gone.new(99, Report, wall=1.0, trial=tid, step=1, value=0.3)
    for c in cores:
        c.ledger.merge(gone.delta_since(c.ledger.vv))
        c.step(1.9 * wait, 1.9 * wait)
    for c in cores:
        c.step(2.5 * wait, 2.5 * wait)  # 2x since the start, 0.6x since the report
    assert not _abandons(cores[0], tid) and not _abandons(cores[1], tid)
    # It becomes a member, ALIVE: never reclaimed, however long it runs.
    view = {c.node_id: MemberView("ALIVE", True, "fp1") for c in cores}
    view[99] = MemberView("ALIVE", True, "fp1")
    for c in cores:
        c.set_members(2.6 * wait, view)
        c.synced_with(0, 3 * wait)
        c.step(10 * wait, 10 * wait)
    assert not _abandons(cores[0], tid) and not _abandons(cores[1], tid)


def test_a_reaped_dead_owner_does_not_break_the_reclaim() -> None:
    cores, _, tid = _stranger_running()
    view = {c.node_id: MemberView("ALIVE", True, "fp1") for c in cores}
    for c in cores:
        c.set_members(0.0, {**view, 99: MemberView("DEAD", True, "fp1")})
        c.ready = False  # no worker yet: nobody reclaims while it is DEAD
        c.step(1.0, 1.0)
        c.set_members(2.0, view)  # reaped: no member any more
        c.ready = True
        c.synced_with(0, 3.0)
        c.step(3.0, 3.0)
    sync(*cores)
    assert cores[0].ledger.trial(tid).state is TrialState.ABANDONED


def test_each_claim_names_the_members_to_tell_at_once() -> None:
    cores = [SearchCore(i, Ledger(), SearchConfig(claim_grace=1.0, push_rivals=1),
                        lambda s: FakePlan(s.fingerprint, n_trials=12),
                        (SPEC, "fp1") if i == 1 else None) for i in (1, 2, 3, 4)]
    for c in cores:
        c.ready = True
    genesis(cores[0])
    sync(*cores)
    members(cores)
    for c in cores:
        (start,) = [x for x in c.step(0.0, 0.0) if isinstance(x, StartTrial)]
        rivals = c.push_to[start.trial[1]]
        assert c.node_id not in rivals and 1 <= len(rivals) <= 2 and set(rivals) <= {1, 2, 3, 4}


# -- result windows: they grow with the roster; home claims get one while it is young ------


def _with_roster(size: int, cfg: SearchConfig, now: float = 0.0) -> SearchCore:
    """Node 1 with a study and ``size`` ready live members (itself included)."""
    core = SearchCore(1, Ledger(), cfg, lambda s: FakePlan(s.fingerprint, n_trials=4 * size),
                      (SPEC, "fp1"))
    genesis(core)
    core.ready = True
    core.set_members(now, {m: MemberView("ALIVE", True, "fp1") for m in range(1, size + 1)})
    core._update_roster(now)
    return core


LAN = SearchConfig(steal_window=0.4, grace_window=0.6, window_growth=0.2, young_roster=4.0)


def test_result_windows_grow_with_the_cluster() -> None:
    # A claim takes longer to reach every node of a bigger cluster (at 200 nodes rival
    # claims were measured meeting up to ~2 s apart): a fixed 2-round window let one
    # slot count twice there.
    small, big = _with_roster(8, LAN), _with_roster(200, LAN)
    for kind in ("steal", "steal2", "grace"):
        assert big.result_window(kind, 10.0) > small.result_window(kind, 10.0) > 0
    assert small.result_window("steal", 10.0) == 0.4 + 0.2 * 3
    assert big.result_window("steal", 10.0) >= 1.9
    assert big.result_window("grace", 10.0) > big.result_window("steal", 10.0)
    alone = _with_roster(1, LAN)
    assert alone.result_window("steal", 10.0) == alone.result_window("grace", 10.0) == 0.0


def test_home_claims_wait_only_while_the_roster_is_young() -> None:
    core = _with_roster(200, LAN, now=0.0)
    assert core.result_window("home", 1.0) == core.result_window("steal", 1.0) > 0
    assert core.result_window("home", 4.5) == 0.0  # settled: home slots are agreed
    core.set_members(5.0, {m: MemberView("ALIVE", True, "fp1") for m in range(1, 202)})
    core._update_roster(5.0)  # a member joins late: its own roster is young, ours is not
    assert core.result_window("home", 5.5) == 0.0


def _two_owners(cfg: SearchConfig) -> tuple[SearchCore, SearchCore]:
    """Nodes 1 and 2 that each see the other as unknown and their own roster owning
    slot 0 (views of a cluster still joining: each knows a different third member)."""
    a, b = _one_slot_pair(cfg)
    alive = MemberView("ALIVE", True, "fp1")
    for core in (a, b):
        me = core.node_id
        other = next(p for p in range(3, 100) if Ring(sorted([me, p]), 1).head(me, bytearray(b"\x01")) == 0)
        core.set_members(0.0, {me: alive, other: alive})
    return a, b


def test_two_home_claims_under_young_rosters_count_once() -> None:
    a, b = _two_owners(LAN)
    starts = [c for c in a.step(0.0, 0.0) + b.step(0.0, 0.0) if isinstance(c, StartTrial)]
    assert [s.slot for s in starts] == [0, 0]  # both think slot 0 is their own
    for core, start in zip((a, b), starts, strict=True):  # a pruned trial, ended early
        core.finish(start.trial, Outcome(Status.PRUNED, value=0.7, duration=0.5), 0.5)
        core.step(0.5, 0.5)
    sync(a, b)  # the claims meet 0.8 s after they were made: inside the window
    for now in (0.8, 5.0):
        a.step(now, now)
        b.step(now, now)
        sync(a, b)
    slot0 = sorted(v.state.value for v in a.ledger.trials().values() if v.slot == 0)
    assert slot0 == ["PRUNED", "SUPERSEDED"]
    assert a.status()["duplicates"] == 0 and a.running == [] and b.running == []


def test_a_held_outcome_keeps_the_worker_until_its_window_closes() -> None:
    # Others see the held trial RUNNING: a node that claimed more meanwhile would be the
    # busy member whose slots they rob (measured at 200 nodes: more superseded steals),
    # and trials shorter than a window would pile up claims.
    a = _with_roster(2, SearchConfig(steal_window=5.0, young_roster=100.0))  # 8 slots
    (first,) = [c for c in a.step(1.0, 1.0) if isinstance(c, StartTrial)]
    a.finish(first.trial, Outcome(Status.COMPLETE, value=0.1, duration=0.1), 1.1)
    assert [c for c in a.step(1.1, 1.1) if isinstance(c, StartTrial)] == []
    assert a.ledger.trial(first.trial).state is TrialState.RUNNING and a.running == [first.trial]
    assert a.get_timer(1.1, 1.1) == 6.0  # the window's end wakes it
    (second,) = [c for c in a.step(6.0, 6.0) if isinstance(c, StartTrial)]
    assert a.ledger.trial(first.trial).state is TrialState.COMPLETE and second.slot != first.slot


def test_the_winner_of_a_double_claim_names_the_loser_to_tell_at_once() -> None:
    # The loser may not hear of the winning claim for seconds in a big cluster (it
    # would write its result when its window closes): the winner, which has seen the
    # loser's claim, sends its own straight to the loser's owner.
    a, b = _two_owners(LAN)
    (sa,) = [c for c in a.step(0.0, 0.0) if isinstance(c, StartTrial)]
    (sb,) = [c for c in b.step(0.0, 0.0) if isinstance(c, StartTrial)]
    winner, loser = (a, b) if min([sa.trial, sb.trial], key=lambda t: (hrw(0, t[0]), t)) == sa.trial else (b, a)
    winner.ledger.merge(loser.ledger.delta_since(winner.ledger.vv))  # one way only
    winner.tell.clear()
    assert [c for c in winner.step(0.3, 0.3) if isinstance(c, StopTrial)] == []
    (own,) = winner.running
    assert winner.tell == [(own[1], [loser.node_id])]
    winner.tell.clear()
    winner.step(0.4, 0.4)
    assert winner.tell == []  # told once
