"""Run one scenario for one seed and summarize it as the ``simulate --json`` object.

    from simulations.runner import run_scenario
    result = run_scenario("partition-heal", nodes=8, seed=3)
    result["invariants"]["ledgers_equal"]["ok"], result["trace_hash"]

The result (docs/formats.md): ``{"scenario", "nodes", "seed", "invariants":
{name: {"ok", "detail"}}, "metrics": {...}, "trace_hash"}``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from simulations.checkers import run_checks
from simulations.metrics import quantile
from simulations.scenarios import WARMUP, build
from simulations.sim import SimConfig, Simulation

MAX_HEAL = 240.0
"""Seconds of healed phase after which a cluster that has not converged fails (at the
default budget of 4 trials per node; see :func:`heal_cap`)."""


def heal_cap(cfg: SimConfig) -> float:
    """:data:`MAX_HEAL`, plus three times the extra work of a budget above 4 trials per
    node (``--trials``): 200 trials on 8 nodes is 21 mean trial lengths per node, and
    after ``kill-half`` four nodes run them."""
    extra = max(0, cfg.budget - 4 * cfg.nodes) * cfg.objective.mean_duration / max(1, cfg.nodes)
    return MAX_HEAL + 3.0 * extra / max(1, cfg.capacity)


def converged(sim: Simulation) -> bool:
    """Study done everywhere, no trial running, ledgers equal, membership agreed."""
    nodes = sim.live()
    if not nodes or any(n.done is None or n.running for n in nodes):
        return False
    if len({(n.ledger.vv_hash(), len(n.ledger)) for n in nodes}) != 1:
        return False
    live = [n.id for n in nodes]
    down = sim.expected_down()
    for node in nodes:
        table = node.member_states()
        if any(table.get(other, ("?", 0))[0] != "ALIVE" for other in live):
            return False
        if any(table.get(gone, ("DEAD", 0))[0] not in ("DEAD", "LEFT") for gone in down):
            return False
    return True


def run_scenario(name: str, nodes: int = 8, seed: int = 0, *, config: SimConfig | None = None,
                 max_heal: float | None = None, step: float = 1.0) -> dict[str, Any]:
    """Run ``name`` and return the JSON-ready result (invariants, metrics, trace hash)."""
    base = config or SimConfig()
    cfg = replace(base, nodes=nodes, seed=seed)
    started = time.perf_counter()
    sim, sc, heal_at = build(name, cfg)
    max_heal = heal_cap(cfg) if max_heal is None else max_heal
    sim.run_until(heal_at)
    t = heal_at
    ok = False
    while t < heal_at + max_heal:
        t += step
        sim.run_until(t)
        sim.metrics.note_done(t)
        if converged(sim):
            ok = True
            break
    wall = time.perf_counter() - started
    sim.metrics.finish(sim.heap.now)
    invariants, budget = run_checks(sim, sc.strict_budget, ok)
    return {
        "scenario": name,
        "nodes": nodes,
        "seed": seed,
        "invariants": invariants,
        "metrics": summarize(sim, budget, heal_at, wall),
        "trace_hash": sim.trace_hash(),
    }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def summarize(sim: Simulation, budget: dict[str, int], heal_at: float, wall: float) -> dict[str, Any]:
    m, t = sim.metrics, sim.net.traffic
    end = sim.heap.now
    gossip = sim.setup.profile.gossip_interval
    rounds = [d / gossip for d in m.spread_done]
    n_hosts = max(1, len(m.up))
    up_time = sum(min(b, end) - a for spans in m.up.values() for a, b in spans)
    done_at = m.study_done_at or end
    return {
        "simulated_seconds": _r(end, 2),
        "wall_seconds": _r(wall, 3),
        "speed_x_realtime": _r(end / wall if wall > 0 else None, 1),
        "events": sim.heap.processed,
        "heal_at": heal_at,
        "converged_at": _r(end, 2),
        "study_done_at": _r(m.study_done_at, 2),
        "trials_started": m.started,
        **budget,
        "best_value": _r(m.best_curve[-1][1], 6) if m.best_curve else None,
        "best_over_time": [[_r(a, 2), _r(b, 6)] for a, b in m.best_curve],
        "busy_fraction": _r(m.busy_fraction(done_at), 4),
        "busy_fraction_until_last_claim": _r(m.busy_fraction(m.last_claim), 4),
        "dissemination_rounds_p50": _r(quantile(rounds, 0.5), 2),
        "dissemination_rounds_p99": _r(quantile(rounds, 0.99), 2),
        "detection_seconds_p50": _r(quantile(m.detections, 0.5), 2),
        "detection_seconds_p99": _r(quantile(m.detections, 0.99), 2),
        "false_dead": len(m.false_dead),
        "suspicions": m.suspicions,
        "pushpull_syncs": m.syncs,
        "datagrams": t.datagrams,
        "bytes_per_second_per_node": _r((sum(t.bytes_sent.values())) / max(up_time, 1e-9), 1),
        "max_datagram": t.max_datagram_seen,
        "dropped": dict(sorted(t.dropped.items())),
        "tcp_streams": t.tcp_streams,
        "tcp_failed": t.tcp_failed,
        "hosts": n_hosts,
    }


def run_sweep(names: list[str], nodes: int, seeds: list[int], config: SimConfig | None = None
              ) -> list[dict[str, Any]]:
    return [run_scenario(n, nodes, s, config=config) for n in names for s in seeds]


__all__ = ["run_scenario", "run_sweep", "converged", "summarize", "WARMUP"]
