"""Simulator benchmark: the cluster numbers at N = 10 / 100 / 1000 (targets in RESULTS.md).

    python benchmarks/simulation.py                    # N = 10 and 100, full studies
    python benchmarks/simulation.py --sizes 1000 --cap 20
    python benchmarks/simulation.py --sizes 1000 --warm --wall-cap 900 --idle 0 --detect 0 --speed-window 0

Each size runs real GossipCore + SearchCore + Ledger nodes in the simulator
(`lan` profile, 1 ms median latency, null cipher, 60 s trials with no pruner,
equal node speeds, ``--per-node`` trials per node). Phases: a busy study until
every node is done (or ``--cap`` simulated seconds), 20 s idle, then 10% of the
nodes crash and the rest run 40 s more. Reported: dissemination rounds of every
entry written after the joins (p50/p99; a round is one 200 ms gossip interval),
crash detection (first DEAD at each observer; and DEAD at every observer, per
crashed node), healthy nodes declared DEAD, bytes/s sent per node busy and
idle, the cluster busy fraction, speed-up over a one-node run of the same
budget (baseline measured in this process), and the simulator's own speed in
simulated seconds per wall second, null cipher vs AES-GCM over the same
capped window. The busy phase's speed is reported per wall second and per CPU
second (a loaded machine slows the first, not the second); ``--wall-cap`` stops a
large-N busy phase after that many wall seconds and reports what it reached.

``--steady N,N --steady-seeds K`` adds the budget table of issue 10: the
``steady`` scenario (node speeds 3x apart, ASHA, 4 trials per node) over K
seeds per size: superseded claims per slot, overshoot and duplicates in a
healthy cluster, busy fraction to study end and until the last claim, and the
simulator's speed.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _common import emit  # noqa: E402

from p2phpo.core.ledger import TrialState  # noqa: E402
from simulations.metrics import quantile  # noqa: E402
from simulations.objective import SimObjective  # noqa: E402
from simulations.runner import run_scenario  # noqa: E402
from simulations.sim import SimConfig, Simulation  # noqa: E402

WARM = 5.0


def _config(n: int, per_node: int, seed: int, cipher: str = "null") -> SimConfig:
    return SimConfig(nodes=n, seed=seed, objective=SimObjective(mean_duration=60.0, steps=9),
                     pruner="none", n_trials=per_node * n, join_spread=min(5.0, 0.5 + n / 200),
                     cipher=cipher)


def _run_until_done(sim: Simulation, cap: float, wall_cap: float = math.inf) -> float:
    t = 0.0
    wall0 = time.perf_counter()
    while t < cap and time.perf_counter() - wall0 < wall_cap:
        t += 1.0
        sim.run_until(t)
        sim.metrics.note_done(t)
        # What survived a simulated second (ledger replicas, member tables: GBs at
        # N = 1,000) leaves the collector's view: a full collection walked all of it
        # every ~20 simulated s (5-25 CPU s each). Cycles among them are not expected.
        gc.freeze()
        if sim.nodes and all(node.done for node in sim.live()):
            break
    return sim.heap.now


def _bytes(sim: Simulation) -> int:
    return sum(sim.net.traffic.bytes_sent.values())


def cluster(n: int, per_node: int, seed: int, cap: float, warm: bool,
            idle: float = 20.0, detect: float = 40.0, wall_cap: float = math.inf) -> dict:
    sim = Simulation(_config(n, per_node, seed))
    sim.metrics.spread_from = 0.0 if warm else WARM
    if warm:
        sim.start_warm()
    else:
        sim.start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    done_at = _run_until_done(sim, cap, wall_cap)
    busy_wall = time.perf_counter() - wall0
    busy_cpu = time.process_time() - cpu0
    b0 = _bytes(sim)
    sim.run_until(done_at + idle)
    idle_bps = (_bytes(sim) - b0) / idle / max(1, len(sim.nodes)) if idle else None
    m = sim.metrics
    busy_bps = b0 / max(done_at, 1e-9) / n
    victims = sorted(sim.nodes)[:: max(1, round(1 / 0.1))][: max(1, n // 10)]
    crash_at = sim.heap.now
    for v in victims:
        sim.crash(v)
    sim.run_until(crash_at + detect)
    everywhere = []
    for v in victims:
        times = [t for (obs, dead), t in m.detected.items() if dead == v]
        if len(times) == len(sim.nodes):
            everywhere.append(max(times))
    m.finish(sim.heap.now)
    rounds = [d / sim.setup.profile.gossip_interval for d in m.spread_done]
    finished = all(node.done for node in sim.live())
    return {
        "n": n, "study_done": finished, "makespan": done_at, "sim_seconds": sim.heap.now,
        "busy_phase_wall": busy_wall, "speed_busy": done_at / busy_wall,
        "busy_phase_cpu": busy_cpu, "speed_busy_cpu": done_at / max(busy_cpu, 1e-9),
        "rounds_p50": quantile(rounds, 0.5), "rounds_p99": quantile(rounds, 0.99),
        "entries_measured": len(rounds),
        "detect_first_p50": quantile(m.detections, 0.5), "detect_first_p99": quantile(m.detections, 0.99),
        "dead_everywhere_p50": quantile(everywhere, 0.5), "dead_everywhere_p99": quantile(everywhere, 0.99),
        "crashed": len(victims), "dead_everywhere_count": len(everywhere),
        "false_dead": len(m.false_dead),
        "bytes_per_s_busy": busy_bps, "bytes_per_s_idle": idle_bps,
        "busy_fraction": m.busy_fraction(m.study_done_at or done_at),
        "busy_until_last_claim": m.busy_fraction(m.last_claim),
        "counted": sum(1 for v in sim.live()[0].ledger.trials().values() if v.state.counted),
        "superseded": sum(1 for v in sim.live()[0].ledger.trials().values()
                          if v.state is TrialState.SUPERSEDED),
        "overshoot": max(0, sum(1 for v in sim.live()[0].ledger.trials().values()
                                if v.state.counted) - per_node * n),
        "trials_started": m.started,
    }


def one_node(per_node: int, n: int, seed: int) -> float:
    """Makespan of the same budget on one node (the speed-up baseline)."""
    sim = Simulation(replace(_config(1, per_node, seed), n_trials=per_node * n))
    sim.start()
    return _run_until_done(sim, 1e9)


def sim_speed(n: int, seed: int, window: float, cipher: str, warm: bool) -> float | None:
    if window <= 0:
        return None
    sim = Simulation(_config(n, 3, seed, cipher))
    if warm:
        sim.start_warm()
    else:
        sim.start()
    t0 = time.perf_counter()
    sim.run_until(window)
    return window / (time.perf_counter() - t0)


def steady(n: int, seeds: list[int]) -> dict:
    """The ``steady`` scenario at ``n`` nodes over ``seeds``: the budget's figures."""
    runs = [run_scenario("steady", nodes=n, seed=s) for s in seeds]
    ms = [r["metrics"] for r in runs]

    def span(key: str, scale: float = 1.0) -> list[float]:
        vals = [m[key] / scale for m in ms if m[key] is not None]
        return [round(min(vals), 3), round(max(vals), 3)] if vals else [None, None]

    return {
        "n": n, "seeds": seeds,
        "invariants_failed": sorted({k for r in runs for k, v in r["invariants"].items() if not v["ok"]}),
        "superseded_per_slot": span("superseded", ms[0]["n_trials"]),
        "overshoot": span("overshoot"), "duplicates": span("duplicates"),
        "busy_fraction": span("busy_fraction"),
        "busy_until_last_claim": span("busy_fraction_until_last_claim"),
        "dissemination_p99": span("dissemination_rounds_p99"),
        "speed_x_realtime": span("speed_x_realtime"),
        "runs": [{"seed": r["seed"], **r["metrics"]} for r in runs],
    }


def steady_table(sizes: list[int], n_seeds: int, first_seed: int, out: str) -> None:
    rows, raw = [], []
    for n in sizes:
        r = steady(n, list(range(first_seed, first_seed + n_seeds)))
        raw.append(r)
        rows.append([n, n_seeds, "/".join(map(str, r["superseded_per_slot"])),
                     "/".join(map(str, r["overshoot"])), "/".join(map(str, r["duplicates"])),
                     "/".join(map(str, r["busy_fraction"])),
                     "/".join(map(str, r["busy_until_last_claim"])),
                     "/".join(map(str, r["speed_x_realtime"])), ", ".join(r["invariants_failed"]) or "none"])
        print({k: v for k, v in r.items() if k != "runs"}, flush=True)
    emit(out + "_steady", "steady scenario: the budget (min/max over seeds)",
         ["N", "seeds", "superseded per slot", "overshoot", "duplicates", "busy fraction",
          "busy until last claim", "sim x real", "invariants failed"], rows, {"sizes": raw})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,48,100")
    ap.add_argument("--per-node", type=int, default=3, help="trials per node in the busy study")
    ap.add_argument("--cap", type=float, default=1200.0, help="cap on the busy phase, simulated s")
    ap.add_argument("--speed-window", type=float, default=20.0,
                    help="simulated seconds for the null vs AES-GCM speed runs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warm", action="store_true",
                    help="start with a converged membership (skip the join storm; large N)")
    ap.add_argument("--wall-cap", type=float, default=math.inf,
                    help="stop the busy phase after this many wall seconds (large N): the row "
                         "then shows a study that did not finish, and the simulator's speed")
    ap.add_argument("--idle", type=float, default=20.0, help="idle window after the study, s")
    ap.add_argument("--detect", type=float, default=40.0, help="window after the crashes, s")
    ap.add_argument("--out", default="simulation", help="name of the JSON under benchmarks/out/")
    ap.add_argument("--steady", default="", help="sizes for the steady-scenario budget table")
    ap.add_argument("--steady-seeds", type=int, default=5)
    ap.add_argument("--steady-first-seed", type=int, default=100)
    args = ap.parse_args()
    if args.steady:
        steady_table([int(x) for x in args.steady.split(",")], args.steady_seeds,
                     args.steady_first_seed, args.out)
    rows, raw = [], []
    for n in [int(x) for x in args.sizes.split(",") if x]:
        r = cluster(n, args.per_node, args.seed, args.cap, args.warm, args.idle, args.detect,
                    args.wall_cap)
        r["one_node_makespan"] = one_node(args.per_node, n, args.seed) if r["study_done"] else None
        r["speedup"] = (r["one_node_makespan"] / r["makespan"]) if r["one_node_makespan"] else None
        r["speed_null"] = sim_speed(n, args.seed, args.speed_window, "null", args.warm)
        r["speed_aes"] = sim_speed(n, args.seed, args.speed_window, "aes-gcm", args.warm)
        r["load_avg"] = os.getloadavg()  # the machine's load when the row finished (noisy speeds)
        raw.append(r)
        rows.append([n, r["rounds_p50"], r["rounds_p99"], r["detect_first_p50"], r["detect_first_p99"],
                     r["dead_everywhere_p50"], r["false_dead"],
                     None if r["bytes_per_s_idle"] is None else round(r["bytes_per_s_idle"]),
                     round(r["bytes_per_s_busy"]), r["busy_fraction"], r["busy_until_last_claim"],
                     round(r["superseded"] / (args.per_node * n), 3), r["overshoot"],
                     r["speedup"], round(r["speed_busy"], 2), round(r["speed_busy_cpu"], 2),
                     r["study_done"], r["speed_null"], r["speed_aes"]])
        print(r, flush=True)
    if rows:
        emit(args.out, "simulated cluster (lan, 60 s trials, null cipher)",
             ["N", "dissem p50 (rounds)", "dissem p99", "first DEAD p50 (s)", "first DEAD p99",
              "DEAD everywhere p50 (s)", "false DEAD", "B/s/node idle", "B/s/node busy",
              "busy fraction", "busy until last claim", "superseded per slot", "overshoot",
              "speed-up vs 1 node", "sim s / wall s (busy phase)", "sim s / CPU s (busy phase)",
              "study done", "sim x real (null, window)", "sim x real (AES-GCM, window)"], rows, {"runs": raw, "args": vars(args)})


if __name__ == "__main__":
    main()
