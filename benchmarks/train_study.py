"""The built-in study on one real node, before and after, in one run.

For each dataset (the MNIST sample; full Fashion-MNIST) and each checkout
(``--before DIR``: a checkout of the old code, e.g. ``git worktree add
/tmp/before main``; and this one), start ``p2phpo node`` on 127.0.0.1 with
the built-in study (its space, TPE, ASHA, 5 epochs, 30 trials) whose
objective is ``benchmarks/timed_objective.py`` (the built-in mnist-mlp of
that checkout, timed). Runs alternate before/after so load from other jobs
hits both. Per run:

- node wall: from spawning the node to the end of its last trial (or the
  wall budget, when the run is stopped there);
- exact steady epoch time of a trial: the fastest epoch after the first of the
  EXACT, unpadded model of its parameters (the plain per-architecture program,
  ``benchmarks/exact_epochs.py``), timed after the node runs in the node's worker
  environment (one XLA thread, nice 10, pinned), once per distinct architecture;
- useful compute share = sum(exact steady epoch time x epochs run) / node wall
  (the honest share: padding, masking and any other per-step overhead of the
  run count against it, not for it);
- as-run steady epoch time (the share's old numerator, ``as-run share``): the
  trial's fastest epoch in the node that traced and compiled nothing; for a
  trial whose every epoch compiled, its epoch time minus the seconds JAX
  reported for tracing, lowering and compiling (for code that pads, this is
  the padded epoch, so it overstates the useful work);
- breakdown of the node wall: startup (spawn to the first trial's start:
  process, imports, dataset, worker), compile (trace + lower + XLA compile
  seconds in the worker), as-run steady training, between trials (one trial's
  end to the next one's start: sampler, ledger, worker protocol) and the rest
  (per-epoch overhead beyond the steady epoch: first-epoch work, reporting,
  load noise); and, from the worker's own ``/proc`` scheduler counters, its CPU
  seconds and the seconds its threads were ready but waited for a core;
- trials per hour = finished trials / node wall x 3600;
- compiles in the worker (JAX's compile events);
- best validation accuracy of a COMPLETE trial by time T, for T = the
  shorter run's wall (same wall time for both).

    python benchmarks/train.py --study --before /tmp/before [--budget 600]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
STUDY = REPO / "p2phpo" / "default_study.toml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_text(dataset: str, n_trials: int) -> str:
    text = STUDY.read_text()
    text = text.replace('name = "mnist-mlp"              # or', 'name = "timed_objective:mnist_mlp_timed" #')
    text = text.replace('dataset = "mnist"', f'dataset = "{dataset}"')
    return text.replace("n_trials = 30", f"n_trials = {n_trials}")


def run_node(checkout: Path, dataset: str, budget: float, n_trials: int, tmp: Path) -> dict:
    """One node run of the built-in study; returns the timing log and the wall times."""
    tmp.mkdir(parents=True)
    study = tmp / "study.toml"
    study.write_text(study_text(dataset, n_trials))
    log = tmp / "timing.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{BENCH}", "P2PHPO_TIMING_LOG": str(log),
           "P2PHPO_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp / "cache")}
    cmd = [sys.executable, "-m", "p2phpo", "node", "--study", str(study), "--bind",
           f"127.0.0.1:{free_port()}", "--state-dir", str(tmp / "state"), "--grace", "0", "--no-ui"]
    t0 = time.monotonic()
    with open(tmp / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout=budget)
            stopped = False
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"t0": t0, "records": records, "stopped": stopped, "exit": proc.returncode,
            "budget": budget}


def steady_times(records: list[dict]) -> dict[str, tuple[float, int]]:
    """trial -> (steady epoch seconds, epochs run)."""
    out: dict[str, tuple[float, int]] = {}
    last: dict[str, dict] = {}
    epochs: dict[str, list[tuple[float, bool, float]]] = {}
    for r in records:
        tid = r["trial"]
        if r["event"] == "start":
            last[tid], epochs[tid] = r, []
        elif r["event"] == "epoch" and tid in last:
            prev = last[tid]
            clean = r["compiles"] == prev["compiles"] and r["overhead"] - prev["overhead"] < 1e-3
            epochs[tid].append((r["t"] - prev["t"], clean, r["overhead"] - prev["overhead"]))
            last[tid] = r
    for tid, eps in epochs.items():
        if not eps:
            continue
        clean = [s for s, ok, _ in eps if ok]
        steady = min(clean) if clean else min(max(s - o, 0.0) for s, _, o in eps)
        out[tid] = (steady, len(eps))
    return out


def exact_steady(checkout: Path, dataset: str, records: list[dict], epochs: int) -> dict[str, float]:
    """trial -> the exact model's steady epoch seconds (``exact_epochs.py`` of ``checkout``,
    in the node's worker environment)."""
    starts = [r for r in records if r["event"] == "start"]
    if not starts:
        return {}
    sys.path.insert(0, str(REPO))
    from p2phpo.train.worker import worker_env  # the node's own worker settings

    env = worker_env(max(1, (os.cpu_count() or 2) - 1), None)
    env.update(PYTHONPATH=f"{checkout}{os.pathsep}{BENCH}", P2PHPO_OFFLINE="1")
    job = json.dumps({"dataset": dataset, "epochs": epochs, "params": [r["params"] for r in starts]})
    out = subprocess.run([sys.executable, str(BENCH / "exact_epochs.py")], input=job, env=env,
                         capture_output=True, text=True, check=True)
    by_arch = {json.dumps(a["arch"]): a["seconds"] for a in json.loads(out.stdout)}
    arch_of = json.loads(subprocess.run(
        [sys.executable, "-c", "import json,sys; from p2phpo.train.mlp import Config; "
         "print(json.dumps([list(Config.from_params(p).arch()) for p in json.load(sys.stdin)]))"],
        input=json.dumps([r["params"] for r in starts]), env=env, capture_output=True, text=True,
        check=True).stdout)
    return {r["trial"]: by_arch[json.dumps(a)] for r, a in zip(starts, arch_of, strict=True)}


def breakdown(run: dict, wall: float, steady_s: float) -> dict:
    """Where the node's wall time went (seconds)."""
    records, t0 = run["records"], run["t0"]
    starts = [r["t"] for r in records if r["event"] == "start"]
    ends = [r["t"] for r in records if r["event"] == "end"]
    startup = (min(starts) - t0) if starts else wall
    between = sum(max(0.0, s - max((e for e in ends if e <= s), default=s)) for s in starts)
    compile_s = max((r["overhead"] for r in records), default=0.0)
    tail = max(0.0, wall - (max(ends) - t0)) if ends else 0.0
    sched = [r for r in records if "runq_wait" in r]  # (older checkouts' logs lack it)
    return {"startup": startup, "compile": compile_s, "steady_as_run": steady_s,
            "between_trials": between, "tail": tail,
            "rest": wall - startup - compile_s - steady_s - between - tail,
            # first trial start to last record: the worker's threads on a CPU, and ready
            # but waiting for one (other processes had it)
            "worker_cpu": sched[-1]["cpu"] - sched[0]["cpu"] if sched else None,
            "runq_wait": sched[-1]["runq_wait"] - sched[0]["runq_wait"] if sched else None}


def summarize(run: dict, horizon: float | None = None, exact: dict[str, float] | None = None) -> dict:
    records, t0 = run["records"], run["t0"]
    ends = [r for r in records if r["event"] == "end"]
    wall = (max(r["t"] for r in ends) - t0) if ends and not run["stopped"] else run["budget"]
    steady = steady_times(records)
    as_run = sum(s * n for s, n in steady.values())
    exact = exact or {}
    useful = sum(exact[t] * n for t, (_, n) in steady.items() if t in exact)
    horizon = wall if horizon is None else horizon
    done = [r for r in ends if r["t"] - t0 <= horizon]
    best = max((r["value"] for r in done if r["status"] == "COMPLETE" and r["value"] is not None),
               default=None)
    return {"wall_s": wall, "trials": len(ends), "epochs": sum(n for _, n in steady.values()),
            "steady_s": useful, "useful_share": useful / wall if wall > 0 else 0.0,
            "steady_as_run_s": as_run, "as_run_share": as_run / wall if wall > 0 else 0.0,
            "padding_overhead": as_run / useful if useful > 0 else None,
            "breakdown": breakdown(run, wall, as_run),
            "trials_per_hour": len(ends) / wall * 3600 if wall > 0 else 0.0,
            "compiles": max((r["compiles"] for r in records), default=0),
            "horizon_s": horizon, "trials_by_horizon": len(done), "best_val_by_horizon": best,
            "stopped_at_budget": run["stopped"]}


def compare(checkouts: dict[str, Path], datasets: list[str], budget: float, n_trials: int,
            reps: int, exact_epochs: int = 3) -> dict:
    """One node run per checkout (``{"before": dir, "after": REPO}``), alternating,
    ``reps`` times per dataset, the order rotated each repetition (the last run of a
    round meets the load the others built up: 3-8% slower in RESULTS "fifth pass");
    then the exact models' epoch times of every run's trials, all timed with this
    checkout's plain model."""
    out: dict = {}
    tmp = tempfile.mkdtemp(prefix="p2phpo-train-study-")  # kept: the timing logs are the raw data
    out["runs_dir"] = tmp
    for dataset in datasets:
        rows = []
        for rep in range(reps):
            order = list(checkouts)
            order = order[rep % len(order):] + order[:rep % len(order)]  # load builds up: rotate
            done = {name: run_node(checkouts[name], dataset, budget, n_trials,
                                   Path(tmp) / f"{dataset}-{name}-{rep}") for name in order}
            runs = {name: done[name] for name in checkouts}
            horizon = min(summarize(r)["wall_s"] for r in runs.values())
            row = {}
            for name, r in runs.items():
                exact = exact_steady(REPO, dataset, r["records"], exact_epochs)
                row[name] = {**summarize(r, exact=exact), "at_same_wall": summarize(r, horizon)}
            rows.append(row)
        out[dataset] = rows
    return out
