"""Replay a node run's trials in one process and count the CPU seconds: the same
parameters in the same order, each stopped after the epochs it ran in the node, through
``mlp.train`` (shape classes, background compiles, reuse and rent rules) of the checkout
first on ``PYTHONPATH``. The worker's settings (one XLA thread, one BLAS thread). Unlike a
node run, the trials and their epochs are fixed, and CPU seconds move less with other
jobs' load than wall seconds, so two checkouts (or the spare-core rules forced on and off,
``--spare``) can be compared on one trial sequence.

    PYTHONPATH=<checkout> python benchmarks/replay_trials.py RUN/timing.jsonl [--spare 0|1] [--verbose]

``RUN/timing.jsonl``: a run directory of ``benchmarks/train.py --study``. Prints one JSON
line: CPU and wall seconds, compiles, the classes compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

from p2phpo.train import mlp  # noqa: E402


class _Stop(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--spare", type=float, default=None, help="force mlp.SPARE_CORES")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.spare is not None and hasattr(mlp, "SPARE_CORES"):
        mlp.SPARE_CORES = args.spare
    records = [json.loads(line) for line in open(args.log)]
    ran: dict[str, int] = {}
    for r in records:
        if r["event"] == "epoch":
            ran[r["trial"]] = ran.get(r["trial"], 0) + 1
    cpu0, wall0 = time.process_time(), time.perf_counter()
    mlp.prepare({"dataset": args.dataset})
    ds = mlp.cached_dataset({"dataset": args.dataset})
    for r in (r for r in records if r["event"] == "start"):
        n, seconds = ran.get(r["trial"], 0), []

        def on_epoch(m: mlp.EpochMetrics, n: int = n, seconds: list = seconds) -> None:
            seconds.append(round(m.seconds, 3))
            if m.epoch >= n:
                raise _Stop()

        try:
            mlp.train(ds, r["params"], epochs=5, on_epoch=on_epoch)
        except _Stop:
            pass
        if args.verbose:
            p = r["params"]
            print(f"L{p['layers']} W{p['width']} bs{p['batch_size']} epochs {seconds}", flush=True)
    for fut in list(mlp.BACKGROUND.pending.values()):
        fut.result()
    print(json.dumps({"cpu_s": round(time.process_time() - cpu0, 2),
                      "wall_s": round(time.perf_counter() - wall0, 2), "compiles": mlp.compile_count(),
                      "classes": sorted((c.micro_batch, c.width, c.layers) for c in mlp._PROGRAMS),
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
