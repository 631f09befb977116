"""The budget at scale: N = 48 in the default run, bigger sweeps behind ``-m slow``.

What a user of a 48-node cluster would notice: a healthy cluster runs exactly
``n_trials`` counted trials with next to no superseded claims (the goal:
at most 5% of the slots) and no node idles while work is left (busy at least
95% of the time until the last claim); a partition costs at most a few extra results; and
every invariant of the simulator still holds when half the cluster dies or
members come and go.
"""

from __future__ import annotations

import pytest

from simulations.runner import run_scenario
from simulations.scenarios import SCENARIOS


def _failures(result: dict) -> list[str]:
    return [f"{name}: {v['detail']}" for name, v in result["invariants"].items() if not v["ok"]]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_healthy_48_node_cluster_wastes_at_most_5_percent_of_its_slots(seed: int) -> None:
    result = run_scenario("steady", nodes=48, seed=seed)
    m = result["metrics"]
    assert not _failures(result)
    assert m["counted"] == m["n_trials"] == 192 and m["overshoot"] == m["duplicates"] == 0
    assert m["superseded"] <= 0.05 * m["n_trials"]
    assert m["busy_fraction_until_last_claim"] >= 0.95


@pytest.mark.parametrize("name", ["partition-heal", "kill-half", "churn"])
def test_48_nodes_keep_every_invariant_under_faults(name: str) -> None:
    result = run_scenario(name, nodes=48, seed=0)
    assert not _failures(result)
    if name == "partition-heal":
        m = result["metrics"]
        assert m["overshoot"] <= 0.05 * m["n_trials"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_at_48_nodes_over_five_seeds(name: str) -> None:
    failures = [f"seed {seed}: {f}" for seed in range(5)
                for f in _failures(run_scenario(name, nodes=48, seed=seed))]
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_a_healthy_100_node_cluster_runs_the_exact_budget() -> None:
    result = run_scenario("steady", nodes=100, seed=0)
    m = result["metrics"]
    assert not _failures(result)
    assert m["overshoot"] == m["duplicates"] == 0
    assert m["superseded"] <= 0.05 * m["n_trials"]
    assert m["busy_fraction_until_last_claim"] >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [100, 101])
def test_a_healthy_200_node_cluster_counts_every_slot_once(seed: int) -> None:
    # Seed 100 counted one slot twice with a fixed 2-round result window and no window
    # on home claims: two members that did not know each other yet both claimed it as
    # their own during the join and both finished (pruned at the first rung) before
    # their claims met, 1.6 s after the first.
    result = run_scenario("steady", nodes=200, seed=seed)
    m = result["metrics"]
    assert not _failures(result)
    assert m["counted"] == m["n_trials"] == 800 and m["overshoot"] == m["duplicates"] == 0
    assert m["busy_fraction_until_last_claim"] >= 0.95
