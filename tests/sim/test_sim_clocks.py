"""No decision compares one node's wall clock with another's.

The study ``timeout`` runs on each node's own monotonic clock from when it
adopted the study, so nodes whose wall clocks are an hour apart behave as
nodes whose clocks agree: nobody quits at once, nobody idles through the study.
"""

from __future__ import annotations

from simulations.objective import SimObjective
from simulations.sim import SimConfig, Simulation

TIMEOUT = 40.0


def _run(max_skew: float) -> tuple[Simulation, dict[int, str | None], dict[int, int]]:
    sim = Simulation(SimConfig(nodes=6, seed=3, n_trials=1000, timeout=TIMEOUT, max_skew=max_skew,
                               objective=SimObjective(mean_duration=5.0), pruner="none"))
    sim.start()
    t = 0.0
    while t < 120.0 and not (sim.nodes and all(n.done for n in sim.live())):
        t += 1.0
        sim.run_until(t)
    led = sim.live()[0].ledger
    per_node: dict[int, int] = {}
    for view in led.trials().values():
        per_node[view.origin] = per_node.get(view.origin, 0) + 1
    return sim, {n.id: n.done for n in sim.live()}, per_node


def test_an_hour_of_clock_skew_changes_nothing_about_the_study_timeout() -> None:
    _, done_even, trials_even = _run(0.0)
    sim, done_skewed, trials_skewed = _run(3600.0)
    skews = [n.skew for n in sim.live()]
    assert max(skews) - min(skews) > 3600  # clocks really are an hour or more apart
    assert set(done_skewed.values()) == set(done_even.values()) == {"timeout reached"}
    assert len(trials_skewed) == len(trials_even) == 6  # every node ran trials
    for node, count in trials_even.items():
        # ~8 trials of ~5 s each in 40 s; the same on every node, skewed or not
        assert count >= 4 and abs(trials_skewed[node] - count) <= 2
    assert sim.heap.now < TIMEOUT + 30.0  # everybody stopped soon after the timeout
