"""Steady epoch seconds of the EXACT (unpadded) model: the honest numerator of the
useful compute share in ``benchmarks/train.py --study``.

Reads ``{"dataset": name, "params": [...], "epochs": n}`` (JSON) on stdin. For
each distinct architecture among the parameter sets (``Config.arch()``: what
shapes the plain model's compiled code) it trains the plain per-architecture
model of the checkout first on ``PYTHONPATH`` (``buckets=None``; code from
before shape classes has no such argument and is plain anyway) for ``n``
epochs and takes the fastest epoch after the first (the first one compiles).
Epoch time here is what it is in the node: the epoch's training scan plus its
validation pass. Prints ``[{"arch": [...], "seconds": s}, ...]`` in the order
of the input's distinct architectures. ``train_study.py`` runs it in the
node's worker environment (XLA thread cap, nice, CPU pinning).
"""

from __future__ import annotations

import inspect
import json
import os
import sys


def main() -> None:
    job = json.load(sys.stdin)
    from p2phpo.train import mlp, worker

    os.nice(int(os.environ.get("P2PHPO_WORKER_NICE", "10")))
    try:  # the worker process's own module (older checkouts: worker.py)
        from p2phpo.train import worker_proc as proc
    except ImportError:
        proc = worker
    pin = getattr(proc, "_pin_threads", None)
    if pin is not None:
        pin(os.environ.get("P2PHPO_WORKER_CPUS", ""))
    ds = mlp.cached_dataset({"dataset": job["dataset"]})
    plain = {"buckets": None} if "buckets" in inspect.signature(mlp.train).parameters else {}
    seen: dict[tuple, dict] = {}
    for params in job["params"]:
        seen.setdefault(mlp.Config.from_params(params).arch(), params)
    out = []
    for arch, params in seen.items():
        r = mlp.train(ds, params, epochs=int(job["epochs"]), **plain)
        out.append({"arch": list(arch), "seconds": min(e.seconds for e in r.epochs[1:])})
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
