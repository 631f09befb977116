"""Does filling batches by shape class hurt the search? K = 1 vs K = 4 on the sampler
benchmark's functions (``benchmarks/samplers.py``: sphere, Rosenbrock, Branin,
Hartmann-6, Styblinski-Tang, a mixed "training" function), same seeds, one process.

Methods (all ``hp.optimize`` with our TPE, one node):

- ``k1``: one trial at a time (the baseline);
- ``k4``: 4 trials claimed at once, each drawn freely (``batch_keys=()``): the cost
  of batching alone (members 2-4 do not see member 1's result);
- ``k4_class``: 4 at once, members 2-4 drawn with the first member's values of the
  function's discrete parameters fixed (the stand-in for a shape class: ``k`` of
  sphere, ``n0``/``n1`` of Styblinski-Tang, ``batch``/``layers``/``act`` of mixed; the
  other functions have none, so ``k4_class`` is ``k4`` there);
- ``random``: random search, K = 1 (the floor).

Reported: the mean (and median) best value after each checkpoint over the seeds,
and the mean rank of the four methods per seed (1 = best).

    python benchmarks/batch_quality.py --seeds 20 --checkpoints 50 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from samplers import FUNCTIONS, _ranks  # noqa: E402

import p2phpo as hp  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CLASS_KEYS = {"sphere": ["k"], "styblinski_tang": ["n0", "n1"], "mixed": ["batch", "layers", "act"]}
METHODS = ("k1", "k4", "k4_class", "random")


def run(method: str, name: str, n: int, seed: int) -> list[float]:
    fn, space = FUNCTIONS[name]
    kw: dict = {"sampler": "random"} if method == "random" else {}
    if method.startswith("k4"):
        kw.update(batch=4, batch_keys=CLASS_KEYS.get(name, []) if method == "k4_class" else [])
    r = hp.optimize(lambda t: fn(t.params), space, n_trials=n, seed=seed, **kw)
    return [t.value for t in r.trials]  # slot order = claim order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--out", default=str(OUT / "batch_quality.json"))
    args = ap.parse_args()
    n = max(args.checkpoints)
    result: dict = {"args": vars(args), "functions": {}}
    for name in FUNCTIONS:
        t0 = time.perf_counter()
        best = {m: {c: [] for c in args.checkpoints} for m in METHODS}
        for seed in range(args.seeds):
            for m in METHODS:
                values = run(m, name, n, seed)
                for c in args.checkpoints:
                    best[m][c].append(min(values[:c]))
        ranks = {m: {} for m in METHODS}
        for c in args.checkpoints:
            per_seed = [_ranks([best[m][c][i] for m in METHODS]) for i in range(args.seeds)]
            for j, m in enumerate(METHODS):
                ranks[m][c] = statistics.mean(r[j] for r in per_seed)
        result["functions"][name] = {
            "mean": {m: {c: statistics.mean(best[m][c]) for c in args.checkpoints} for m in METHODS},
            "median": {m: {c: statistics.median(best[m][c]) for c in args.checkpoints} for m in METHODS},
            "mean_rank": ranks, "seconds": time.perf_counter() - t0}
        row = result["functions"][name]
        for c in args.checkpoints:
            print(f"{name:>16} n={c:<4} " + "  ".join(
                f"{m}: {row['mean'][m][c]:.4g} (rank {row['mean_rank'][m][c]:.2f})" for m in METHODS),
                flush=True)
    overall = {m: {c: statistics.mean(f["mean_rank"][m][c] for f in result["functions"].values())
                   for c in args.checkpoints} for m in METHODS}
    result["overall_mean_rank"] = overall
    print("overall mean rank: " + "  ".join(
        f"{m}: " + "/".join(f"{overall[m][c]:.2f}" for c in args.checkpoints) for m in METHODS))
    OUT.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
