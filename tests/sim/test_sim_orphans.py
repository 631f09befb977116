"""Orphans whose owner no node knows: the whole cluster restarts after a power loss,
one node does not come back, and its RUNNING trial must still be reclaimed.

On the virtual clock: three nodes run a study, all three crash at once, two restart
on their disks. Their fresh member tables never hold the third node, so its trial's
owner is no member at all (not DEAD): before the fix the slot stayed BUSY and the
study never finished.
"""

from __future__ import annotations

import pytest

from p2phpo.core.entries import Abandon, AbandonReason
from p2phpo.core.ledger import TrialState
from simulations.objective import SimObjective
from simulations.runner import converged
from simulations.sim import SimConfig, Simulation


def _running_trials(sim: Simulation, node: int) -> list:
    return sorted(sim.nodes[node].running)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_trial_of_a_node_that_never_came_back_is_reclaimed_after_a_full_restart(
        seed: int) -> None:
    sim = Simulation(SimConfig(nodes=3, seed=seed, n_trials=9,
                               objective=SimObjective(mean_duration=20.0)))
    sim.start()
    t = 2.0
    sim.run_until(t)  # every node booted (joins spread over the first second)
    ids = sorted(sim.nodes)
    assert len(ids) == 3
    while t < 60 and not all(_running_trials(sim, n) for n in ids):
        t += 0.5
        sim.run_until(t)
    lost_node = ids[2]
    (lost,) = _running_trials(sim, lost_node)
    for n in ids:
        sim.crash(n)  # power loss: everything at once
    t += 5.0
    sim.run_until(t)
    for n in ids[:2]:
        sim.restart(n)
    while t < 600 and not converged(sim):
        t += 1.0
        sim.run_until(t)
    assert converged(sim), f"the study did not finish by t={t}s"
    for node in sim.live():
        assert lost_node not in node.member_states()  # no survivor knows it: not DEAD, unknown
        view = node.ledger.trial(lost)
        assert view.state is TrialState.ABANDONED and view.abandon.reason is AbandonReason.DEAD
        abandons = [e for e in node.ledger if isinstance(e, Abandon) and e.trial == lost]
        assert len(abandons) == 1  # one node wrote it: no double reclaim
        counted = [v for v in node.ledger.trials().values() if v.state.counted]
        assert sorted(v.slot for v in counted) == list(range(9))  # every slot once
        assert any(v.retry_of == lost for v in counted)  # retried with the same params
