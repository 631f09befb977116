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
- steady epoch time of a trial: its fastest epoch that traced and compiled
  nothing; for a trial whose every epoch compiled, its epoch time minus the
  seconds JAX reported for tracing, lowering and compiling;
- useful compute share = sum(steady epoch time x epochs run) / node wall;
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


def summarize(run: dict, horizon: float | None = None) -> dict:
    records, t0 = run["records"], run["t0"]
    ends = [r for r in records if r["event"] == "end"]
    wall = (max(r["t"] for r in ends) - t0) if ends and not run["stopped"] else run["budget"]
    steady = steady_times(records)
    useful = sum(s * n for s, n in steady.values())
    horizon = wall if horizon is None else horizon
    done = [r for r in ends if r["t"] - t0 <= horizon]
    best = max((r["value"] for r in done if r["status"] == "COMPLETE" and r["value"] is not None),
               default=None)
    return {"wall_s": wall, "trials": len(ends), "epochs": sum(n for _, n in steady.values()),
            "steady_s": useful, "useful_share": useful / wall if wall > 0 else 0.0,
            "trials_per_hour": len(ends) / wall * 3600 if wall > 0 else 0.0,
            "compiles": max((r["compiles"] for r in records), default=0),
            "horizon_s": horizon, "trials_by_horizon": len(done), "best_val_by_horizon": best,
            "stopped_at_budget": run["stopped"]}


def compare(before: Path, datasets: list[str], budget: float, n_trials: int, reps: int) -> dict:
    """Before and after, alternating, ``reps`` times per dataset."""
    out: dict = {}
    tmp = tempfile.mkdtemp(prefix="p2phpo-train-study-")  # kept: the timing logs are the raw data
    out["runs_dir"] = tmp
    if True:
        for dataset in datasets:
            rows = []
            for rep in range(reps):
                runs = {}
                for name, checkout in (("before", before), ("after", REPO)):
                    runs[name] = run_node(checkout, dataset, budget, n_trials,
                                          Path(tmp) / f"{dataset}-{name}-{rep}")
                horizon = min(summarize(r)["wall_s"] for r in runs.values())
                rows.append({name: {**summarize(r), "at_same_wall": summarize(r, horizon)}
                             for name, r in runs.items()})
            out[dataset] = rows
    return out
