"""Scenarios: a chaos phase, then a healed phase that must converge.

Every scenario boots ``nodes`` nodes (the first writes the STUDY, the others
join through it), lets the cluster settle for ``WARMUP`` seconds, schedules
its faults inside the chaos phase ``[WARMUP, WARMUP + chaos)``, then heals
everything it broke (the network, paused processes, crashed nodes it means
to bring back) and runs until the cluster converges — study done everywhere,
ledgers equal, membership agreed — or ``max_heal`` seconds pass. The
checkers then judge the end state and the recorded history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from simulations.clock import derive_rng
from simulations.network import majorities_ring, one_way, split
from simulations.sim import SimConfig, Simulation

WARMUP = 4.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    about: str
    chaos: Callable[[Simulation, float, float, random.Random], None]
    chaos_len: float = 20.0
    strict_budget: bool = False
    """Healthy cluster: the budget must be met with zero overshoot and duplicates."""
    speeds: tuple[float, float] = (1.0, 1.0)


def _ids(sim: Simulation) -> list[int]:
    return sorted(sim.nodes)


def _victims(sim: Simulation, rng: random.Random, k: int) -> list[int]:
    ids = _ids(sim)
    return sorted(rng.sample(ids, min(k, len(ids) - 1)))


def _steady(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    return None


def _kill(fraction: float) -> Callable[[Simulation, float, float, random.Random], None]:
    def chaos(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
        def act(s: Simulation) -> None:
            for v in _victims(s, rng, max(1, int(len(s.nodes) * fraction))):
                s.crash(v)
        sim.at(t0 + 2.0, "kill", act)
    return chaos


def _rolling(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    n = sim.config.nodes
    gap = (t1 - t0) / n
    for i in range(n):
        def act(s: Simulation, i: int = i) -> None:
            victim = _ids(s)[i % len(s.nodes)]
            s.crash(victim)
            s.at(s.heap.now + gap * 0.6, "restart", lambda s2, v=victim: s2.restart(v))
        sim.at(t0 + i * gap, "stop", act)


def _cut(kind: str) -> Callable[[Simulation, float, float, random.Random], None]:
    def chaos(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
        def act(s: Simulation) -> None:
            ids = _ids(s)
            rng.shuffle(ids)
            half = len(ids) // 2
            if kind == "split":
                s.net.add_cut(split("halves", ids[:half], ids[half:]))
            elif kind == "one-way":
                s.net.add_cut(one_way("one-way", ids[:half], ids[half:]))
            else:
                s.net.add_cut(majorities_ring("majorities-ring", ids))
        sim.at(t0, "partition", act)
    return chaos


def _lossy(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    sim.at(t0, "lossy", lambda s: s.net.set_model(loss=0.3, duplicate=0.05, reorder=0.2,
                                                  corrupt=0.02, jitter=0.8))


def _pause(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    sim.at(t0 + 1.0, "pause", lambda s: s.pause(_victims(s, rng, 1)[0], (t1 - t0) * 0.75))


def _churn(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    t = t0
    while t < t1:
        sim.at(t, "churn", lambda s: _churn_step(s, rng))
        t += 2.0 + rng.random() * 2.0


def _churn_step(sim: Simulation, rng: random.Random) -> None:
    down = [n for n in sorted(sim.down) if n not in sim.retired]
    roll = rng.random()
    if down and (roll < 0.4 or len(sim.nodes) <= 2):
        sim.restart(rng.choice(down))
    elif roll < 0.55 or len(sim.nodes) <= 2:
        sim.boot(max(sim.host.values()) + 1)
    elif roll < 0.7:
        sim.leave(_victims(sim, rng, 1)[0])
    else:
        sim.crash(_victims(sim, rng, 1)[0], lose_disk=rng.random() < 0.3)


def _late_join(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    n = sim.config.nodes
    for k in range(max(1, n // 4)):
        sim.at(t0 + (t1 - t0) * (0.3 + 0.1 * k), "join", lambda s, i=n + k: s.boot(i))


def _disk_loss(sim: Simulation, t0: float, t1: float, rng: random.Random) -> None:
    def act(s: Simulation) -> None:
        victim = _victims(s, rng, 1)[0]
        s.crash(victim, lose_disk=True)
        s.at(s.heap.now + 5.0, "rejoin", lambda s2: s2.restart(victim))
    sim.at(t0 + 2.0, "disk-loss", act)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("steady", "no faults; node speeds differ 3x", _steady, 10.0, True, (1.0, 3.0)),
    Scenario("kill-one", "one node crashes for good", _kill(0.0)),
    Scenario("kill-half", "half the nodes crash at once", _kill(0.5)),
    Scenario("rolling-restart", "every node restarts in turn, disk kept", _rolling, 30.0),
    Scenario("partition-heal", "two halves cut apart, then healed", _cut("split")),
    Scenario("one-way-partition", "one half cannot reach the other", _cut("one-way")),
    Scenario("majorities-ring", "each node sees a different majority", _cut("ring")),
    Scenario("lossy-30", "30% loss, duplicates, reordering, corruption", _lossy),
    Scenario("pause", "one process stopped (SIGSTOP) past its suspicion timeout", _pause),
    Scenario("churn", "random crashes, restarts, joins and leaves", _churn, 30.0),
    Scenario("late-join", "nodes join mid-study with an empty ledger", _late_join),
    Scenario("disk-loss", "a node loses its disk and rejoins as a new id", _disk_loss),
]}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None


def build(name: str, config: SimConfig) -> tuple[Simulation, Scenario, float]:
    """A started simulation with the scenario's faults scheduled; returns the heal time."""
    sc = scenario(name)
    if config.speeds == (1.0, 1.0) and sc.speeds != (1.0, 1.0):
        config = replace(config, speeds=sc.speeds)
    sim = Simulation(config)
    sim.metrics.spread_from = WARMUP
    sim.start()
    t1 = WARMUP + sc.chaos_len
    sc.chaos(sim, WARMUP, t1, derive_rng(config.seed, f"scenario/{name}"))
    sim.at(t1, "heal", lambda s: s.heal())
    return sim, sc, t1
