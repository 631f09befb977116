"""Batched trials (``--batch K``): the driver hands K claims to the worker as one batch,
each member keeps its own reports, verdicts and result, the sampler fills a batch with
one shape class, and ``hp.optimize(batch=K)`` runs the exact budget."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

import p2phpo as hp
from p2phpo.core.driver import NodeDriver, Persist
from p2phpo.core.entries import Status
from p2phpo.core.gossip import GossipConfig, GossipCore
from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.core.search import Outcome, SearchConfig, StartTrial
from p2phpo.core.verdict import Verdict
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash
from p2phpo.study import StudySpec
from p2phpo.trial import TrialOutcome, TrialPruned, TrialStatus

RING = Keyring([bytes(32)], cipher=Cipher.NULL)
LABEL = label_hash("batch-test")
SPEC = {"study": {"name": "t", "direction": "minimize"}, "space": {"x": {"type": "float"}}}


@dataclass
class Plan:
    fingerprint: str
    direction: str = "minimize"
    n_trials: int | None = 6
    timeout: float | None = None
    target: float | None = None
    batches: list[list[dict]] = field(default_factory=list)

    def suggest(self, ledger: Ledger, node_id: int, slot: int, batch: Any = ()) -> dict[str, Any]:
        self.batches.append([dict(p) for p in batch])
        return {"x": slot / 10}

    def should_report(self, step: int) -> bool:
        return True

    def should_prune(self, ledger: Ledger, trial: Any, step: int, value: float) -> bool:
        return value > 100  # a report above 100 is pruned


def node(capacity: int, n_trials: int = 6, refill: bool = False) -> tuple[NodeDriver, Plan]:
    ledger = Ledger()
    gossip = GossipCore(7, GossipConfig(profile=LOCAL, addr=("127.0.0.1", 1)), random.Random(7),
                        ledger, Sealer(RING, 7, 0, 0, LABEL), Opener(RING, [LABEL]),
                        meta={"ready": False})
    d = NodeDriver(7, ledger, gossip)
    plan = Plan("fp", n_trials=n_trials)
    config = SearchConfig.for_profile(LOCAL)
    d.handle_worker_ready(SearchConfig(**{**{k: getattr(config, k) for k in config.__slots__},
                                          "capacity": capacity, "refill": refill}),
                          lambda entry: plan, (SPEC, "fp"), 0.0, 1000.0)
    return d, plan


def starts_of(d: NodeDriver, now: float = 0.0) -> list[list[StartTrial]]:
    """What a shell sees: each take_actions' StartTrials (one batch per list)."""
    out = []
    while actions := d.take_actions():
        if any(isinstance(a, Persist) and a.own for a in actions):
            d.handle_persisted(now, 1000.0 + now)
        batch = [a for a in actions if isinstance(a, StartTrial)]
        if batch:
            out.append(batch)
    return out


def test_a_node_with_capacity_4_starts_4_trials_as_one_batch_and_claims_again_after_all() -> None:
    d, plan = node(4)
    (batch,) = starts_of(d)
    assert [s.slot for s in batch] == [0, 1, 2, 3]
    # the sampler saw the batch so far, first claimed first
    assert plan.batches == [[], [{"x": 0.0}], [{"x": 0.0}, {"x": 0.1}],
                            [{"x": 0.0}, {"x": 0.1}, {"x": 0.2}]]
    t = [s.trial for s in batch]
    # each member's reports are its own; a member pruned early leaves, the others go on
    assert d.handle_trial_report(t[0], 1, 500.0, 1.0, 1001.0) is Verdict.PRUNE
    assert d.handle_trial_report(t[1], 1, 0.5, 1.0, 1001.0) is Verdict.CONTINUE
    d.handle_trial_finished(t[0], Outcome(Status.PRUNED, duration=1.0), 1.0, 1001.0)
    assert starts_of(d, 1.0) == []  # no claim while the batch still trains
    assert d.handle_trial_report(t[1], 2, 0.4, 2.0, 1002.0) is Verdict.CONTINUE
    for i, tid in enumerate(t[1:]):
        d.handle_trial_finished(tid, Outcome(Status.COMPLETE, 0.1 * i, duration=2.0), 2.0, 1002.0)
        later = starts_of(d, 2.0)
        assert later == [] if i < 2 else [[s.slot for s in later[0]]] == [[4, 5]]
    views = {v.id: v for v in d.ledger.trials().values()}
    assert views[t[0]].state.name == "PRUNED" and views[t[0]].value == 500.0
    assert list(views[t[1]].reports) == [1, 2] and views[t[1]].value == 0.0
    assert not views[t[2]].reports and views[t[3]].state.name == "COMPLETE"


def test_with_refill_a_member_that_ends_frees_its_place_for_a_new_claim_at_once() -> None:
    d, plan = node(4, n_trials=7, refill=True)  # worker lanes: members run on their own
    (batch,) = starts_of(d)
    t = [s.trial for s in batch]
    assert [s.slot for s in batch] == [0, 1, 2, 3]
    assert d.handle_trial_report(t[0], 1, 500.0, 1.0, 1001.0) is Verdict.PRUNE
    d.handle_trial_finished(t[0], Outcome(Status.PRUNED, duration=1.0), 1.0, 1001.0)
    (more,) = starts_of(d, 1.0)  # while the other three still train
    assert [s.slot for s in more] == [4]
    assert plan.batches[-1] == [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}]  # the trials it runs beside
    for i, tid in enumerate(t[1:3]):
        d.handle_trial_finished(tid, Outcome(Status.COMPLETE, 0.1 * i, duration=2.0), 2.0, 1002.0)
    assert [[s.slot for s in b] for b in starts_of(d, 2.0)] == [[5, 6]]  # two places freed
    assert starts_of(d, 3.0) == []  # 4 running, and the budget of 7 is all claimed
    views = {v.id: v for v in d.ledger.trials().values()}
    assert views[t[0]].state.name == "PRUNED" and views[t[1]].state.name == "COMPLETE"


def test_capacity_1_is_unchanged_one_trial_at_a_time_with_no_batch_given() -> None:
    d, plan = node(1, n_trials=2)
    (batch,) = starts_of(d)
    assert len(batch) == 1 and plan.batches == [[]]


def test_leaving_mid_batch_abandons_every_member_for_reclaim() -> None:
    d, _ = node(3)
    (batch,) = starts_of(d)
    d.handle_leave(1.0, 1001.0)
    stops = [a for a in d.take_actions() if type(a).__name__ == "StopTrial"]
    assert sorted(s.trial for s in stops) == sorted(s.trial for s in batch)
    states = {v.id: v.state.name for v in d.ledger.trials().values()}
    assert sorted(states.values()) == ["ABANDONED"] * 3


BUILTIN = StudySpec.load(hp.__path__[0] + "/default_study.toml")


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_batch_members_share_the_first_member_s_shape_class(sampler: str) -> None:
    spec = BUILTIN.__class__.from_dict({**BUILTIN.to_dict(), "sampler": {"name": sampler}})
    plan = spec.plan()
    ledger = Ledger()
    lead = plan.suggest(ledger, 1, 0)
    assert lead == spec.plan().suggest(ledger, 1, 0)  # the first member is drawn freely
    members = [plan.suggest(ledger, 1, s, batch=[lead]) for s in range(1, 8)]
    for m in members:
        assert {k: m[k] for k in ("batch_size", "layers", "activation")} == \
            {k: lead[k] for k in ("batch_size", "layers", "activation")}
        assert spec.space.contains(m)
    assert len({m["lr"] for m in members}) == 7  # the rest is drawn as usual


def test_tpe_after_its_startup_scores_candidates_within_the_leader_s_class() -> None:
    def fn(t):
        return (t.params["x"] - 0.3) ** 2 + {"a": 0.0, "b": 1.0}[t.params["k"]]

    space = hp.Space(x=hp.Float(0, 1), k=hp.Choice(["a", "b"]))
    r = hp.optimize(fn, space, n_trials=24, batch=4, batch_keys=["k"], seed=3)
    assert len(r.trials) == 24 and r.best_params["k"] == "a"
    by_slot = sorted(r.trials, key=lambda v: v.slot)
    for i in range(0, 24, 4):  # one node, 4 at a time: each batch is one class
        assert len({v.params["k"] for v in by_slot[i:i + 4]}) == 1


def test_a_function_objective_ignores_shape_classes_unless_batch_keys_are_given() -> None:
    space = hp.Space(x=hp.Float(0, 1), k=hp.Choice(["a", "b", "c"]))
    free = hp.optimize(lambda t: t.params["x"], space, n_trials=12, batch=4, sampler="random")
    plain = hp.optimize(lambda t: t.params["x"], space, n_trials=12, sampler="random")
    assert [v.params for v in free.trials] == [v.params for v in plain.trials]


def test_optimize_with_a_batch_hook_trains_members_together_with_their_own_verdicts() -> None:
    calls: list[int] = []

    def objective(trial):
        raise AssertionError("the batch hook runs every batch of more than one trial")

    def hook(trials):
        calls.append(len(trials))
        live, out = list(trials), {}
        for step in (1, 2, 3):
            for t in list(live):
                try:
                    t.report(t.params["x"] * 1000 if step == 1 else t.params["x"], step)
                except TrialPruned:
                    pass
                if t.should_prune():
                    live.remove(t)
                    out[t.trial_id] = TrialOutcome(TrialStatus.PRUNED, None, None, 0.0, step, t.verdict)
        for t in live:
            out[t.trial_id] = TrialOutcome(TrialStatus.COMPLETE, t.params["x"], None, 0.0, 3)
        return [out[t.trial_id] for t in trials]

    objective.batch = hook
    r = hp.optimize(objective, hp.Space(x=hp.Float(0, 1)), n_trials=10, batch=4, sampler="random",
                    pruner="median", pruner_options={"n_startup_trials": 1, "n_warmup_steps": 0})
    assert calls == [4, 4, 2] and len(r.trials) == 10
    states = {v.state.name for v in r.trials}
    assert "COMPLETE" in states and "PRUNED" in states
    for v in r.trials:  # a member's reports are its own: x*1000 first, then x
        assert v.reports[1] == pytest.approx(v.params["x"] * 1000)
        if v.state.name == "COMPLETE":
            assert list(v.reports) == [1, 2, 3] and v.value == v.params["x"]
