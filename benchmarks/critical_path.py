"""Where a node run of the built-in study spends its wall time, checkouts interleaved.

Runs ``p2phpo node`` with the built-in study (MNIST sample, 30 trials) once per entry of
``--order`` (e.g. ``main,after,after,main``: ABBA, so load that builds up hits both), each
with the named checkout first on ``PYTHONPATH`` (``benchmarks/train_study.run_node``), and
prints per run: node wall (spawn to the last trial's end), startup (spawn to the first
trial's start: node start, worker start, JAX import, data), the first epochs (they hold the
compiles and the waits for background compiles), the later epochs, the gaps between trials
(sampler, ledger, worker protocol), the worker's CPU seconds, compiles and best accuracy;
then, with ``--trials``, each trial's start and epoch times. The load average before and
after each run is printed with it. Raw logs stay in the printed directory.

    python benchmarks/critical_path.py --checkout main=/tmp/main --checkout after=. \\
        --order main,after,after,main [--trials]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import train_study


def timeline(run: dict) -> tuple[dict, list[str]]:
    """The run's pieces (seconds) and one line per trial."""
    records, t0 = run["records"], run["t0"]
    starts = [r for r in records if r["event"] == "start"]
    ends = [r for r in records if r["event"] == "end"]
    first = later = gaps = 0.0
    lines: list[str] = []
    last = prev_end = None
    epochs: list[float] = []
    for r in records:
        if r["event"] == "start":
            gaps += 0.0 if prev_end is None else r["t"] - prev_end
            last, epochs = r, []
            p = r["params"]
            head = f"{r['t'] - t0:7.2f} s  L{p['layers']} W{p['width']} bs{p['batch_size']}"
        elif r["event"] == "epoch" and last is not None:
            epochs.append(r["t"] - last["t"])
            last = r
        elif r["event"] == "end" and last is not None:
            prev_end = r["t"]
            first += epochs[0] if epochs else 0.0
            later += sum(epochs[1:])
            lines.append(f"{head}  epochs {[round(e, 3) for e in epochs]}  {r['status']}")
    out = {"wall_s": max(r["t"] for r in ends) - t0 if ends else None,
           "startup_s": starts[0]["t"] - t0 if starts else None,
           "first_epochs_s": first, "later_epochs_s": later, "gaps_s": gaps,
           "worker_cpu_s": records[-1]["cpu"] if records else None,
           "compiles": max((r["compiles"] for r in records), default=0), "trials": len(ends),
           "best": max((r["value"] for r in ends if r["status"] == "COMPLETE"), default=None)}
    return out, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", action="append", required=True, help="NAME=DIR (repeatable)")
    ap.add_argument("--order", required=True, help="comma list of NAMEs, e.g. main,after,after,main")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--budget", type=float, default=300.0, help="wall seconds per run at most")
    ap.add_argument("--trials", action="store_true", help="print each trial's line")
    args = ap.parse_args()
    dirs = {k: Path(v).resolve() for k, v in (c.split("=", 1) for c in args.checkout)}
    tmp = Path(tempfile.mkdtemp(prefix="p2phpo-critical-path-"))
    for i, name in enumerate(args.order.split(",")):
        load0 = os.getloadavg()[0]
        run = train_study.run_node(dirs[name], args.dataset, args.budget, 30, tmp / f"{i}-{name}")
        out, lines = timeline(run)
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
        print(f"{name} (run {i}, load {load0:.2f} -> {os.getloadavg()[0]:.2f}) {json.dumps(shown)}",
              flush=True)
        if args.trials:
            print("\n".join("    " + line for line in lines), flush=True)
    print(f"raw logs: {tmp}")


if __name__ == "__main__":
    main()
