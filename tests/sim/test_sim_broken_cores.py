"""Deliberately broken cores must be caught by a checker (docs/simulator.md).

Each test breaks one rule of the real ledger, membership or search core
with ``monkeypatch`` (never in product code), runs a scenario that exercises
that rule, and asserts the checker that guards it fails.
"""

from __future__ import annotations

import pytest

from p2phpo.core.ledger import Ledger, TrialState, TrialView
from p2phpo.core.membership import MemberRefuted, Membership
from p2phpo.core.search import SearchCore
from simulations.runner import run_scenario
from simulations.sim import SimConfig


def _failing(name: str, seed: int = 0, max_heal: float = 90.0,
             config: SimConfig | None = None) -> dict[str, str]:
    result = run_scenario(name, nodes=8, seed=seed, max_heal=max_heal, config=config)
    return {k: v["detail"] for k, v in result["invariants"].items() if not v["ok"]}


def test_the_real_cores_pass_the_scenarios_used_below() -> None:
    for name in ("steady", "kill-one", "pause", "partition-heal"):
        assert _failing(name) == {}, name


def test_merge_dropping_out_of_order_entries_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Ledger, "_hold", lambda self, entry, raw, stats: None)
    failing = _failing("steady")
    assert "ahead of a gap" in failing["no_lost_entries"]


def test_no_orphan_reclaim_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SearchCore, "_reclaim_orphans", lambda self, now, wall: None)
    failing = _failing("kill-one", max_heal=60.0)
    assert "still RUNNING" in failing["trials_terminal"]
    assert "converged" in failing


def _abandon_wins(self: TrialView) -> None:
    if self.abandons:
        self.result, self.state = None, TrialState.ABANDONED
        self.abandon = min(self.abandons, key=lambda a: a.key)
    elif self.results:
        self.abandon = None
        self.result = min(self.results, key=lambda r: (r.status, r.origin, r.seq))
        self.state = TrialState[self.result.status.name]
    else:
        self.state = TrialState.RUNNING


def test_abandon_beating_result_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrialView, "_refresh", _abandon_wins)
    failing = _failing("pause")
    assert "shows ABANDONED" in failing["result_beats_abandon"]


def _refute_same_incarnation(self: Membership, seen: int) -> None:
    self.incarnation = max(self.incarnation, seen)  # the bug: no + 1
    self.outbox.append(self.self_alive())
    self.events.append(MemberRefuted(self.node_id, self.incarnation))


def test_refuting_without_a_higher_incarnation_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Membership, "refute", _refute_same_incarnation)
    # Whether a refutation races a suspicion during the cut depends on the seed:
    # the checker must catch the bug on one of the first few. The study outlasts
    # the heal (12 trials per node): a node whose study is done re-advertises its
    # metadata under a new incarnation, which would hide the bug. The nodes sign
    # their Alives (as real ones do): the broken refutation is a validly signed
    # Alive at the suspected incarnation, which peers ignore as stale.
    long_study = SimConfig(n_trials=96)
    caught = next((seed for seed in range(4) if "healthy_alive_everywhere"
                   in _failing("partition-heal", seed, 60.0, long_study)), None)
    assert caught is not None
    monkeypatch.undo()  # the real refutation, on the seed that caught the broken one
    assert "healthy_alive_everywhere" not in _failing("partition-heal", caught, 60.0, long_study)


def _blind_pick(self: SearchCore, now: float) -> int | None:
    nxt = getattr(self, "_blind_next", 0)
    if self.plan.n_trials is not None and nxt >= self.plan.n_trials:
        return None
    self._blind_next = nxt + 1
    return nxt


def test_claiming_without_checking_the_ledger_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SearchCore, "_pick_slot", _blind_pick)
    for seed in range(3):
        failing = _failing("steady", seed=seed, max_heal=60.0)
        assert "claims_efficient" in failing or "budget_met" in failing, seed
