"""Sampler benchmark: our TPE vs Optuna's TPESampler vs random search, same process.

1. Latency of one suggestion with 100 / 1,000 / 5,000 finished trials in the
   history (ours: ``suggest`` on the column frame, plus the incremental frame
   update for one new trial; Optuna: ``study.ask`` with the same
   distributions, which is what one suggestion costs there).
2. Quality: best value after 50 and 200 trials on six functions with mixed
   float / log / int / categorical parameters, over many seeds; the mean rank
   among {ours, Optuna TPE, random} per function and overall (1 = best).
3. ASHA vs no pruning on a multi-fidelity function: epochs spent until a
   completed trial reaches the target.
4. Same history: the mean value of many suggestions drawn from one fixed
   history by each TPE (isolates the algorithm from seed-to-seed noise).

    python benchmarks/samplers.py                # defaults: 30 seeds
    python benchmarks/samplers.py --seeds 5 --skip-latency   # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import p2phpo as hp  # noqa: E402
from p2phpo.core.entries import Claim, Result, Status  # noqa: E402
from p2phpo.core.frame import FrameBuilder, Row, RowState  # noqa: E402
from p2phpo.core.ledger import Ledger  # noqa: E402
from p2phpo.samplers import SamplerContext, get_sampler, sampler_rng  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
console = Console()

# -- test functions (all minimized) -------------------------------------------------

_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def sphere(p: dict) -> float:
    xs = [p[f"x{i}"] - 1.3 for i in range(4)] + [p["k"] - 2]
    return float(sum(v * v for v in xs) + (math.log10(p["scale"]) + 1.5) ** 2)


def rosenbrock(p: dict) -> float:
    x = [p[f"x{i}"] for i in range(4)]
    return float(sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3)))


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


def styblinski_tang(p: dict) -> float:
    x = [p["x0"], p["x1"], p["x2"], p["n0"], p["n1"]]
    return float(sum(v ** 4 - 16 * v ** 2 + 5 * v for v in x) / 2)


def mixed(p: dict) -> float:
    """A made-up validation loss over typical training hyperparameters."""
    v = (math.log10(p["lr"]) + 2.5) ** 2 + 0.5 * (math.log2(p["width"]) - 8) ** 2 / 4
    v += 0.3 * abs(p["layers"] - 3) + 4 * (p["dropout"] - 0.15) ** 2
    v += {"relu": 0.2, "gelu": 0.0, "tanh": 0.6}[p["act"]]
    v += {"adam": 0.0, "adamw": 0.05, "sgd": 0.5}[p["opt"]]
    return float(v + 0.1 * abs(math.log2(p["batch"]) - 7))


FUNCTIONS: dict[str, tuple[Callable[[dict], float], hp.Space]] = {
    "sphere": (sphere, hp.Space(**{f"x{i}": hp.Float(-5, 5) for i in range(4)},
                                k=hp.Int(-5, 5), scale=hp.Float(1e-4, 1.0, log=True))),
    "rosenbrock": (rosenbrock, hp.Space(**{f"x{i}": hp.Float(-2, 2) for i in range(4)})),
    "branin": (branin, hp.Space(x1=hp.Float(-5, 10), x2=hp.Float(0, 15))),
    "hartmann6": (hartmann6, hp.Space(**{f"x{i}": hp.Float(0, 1) for i in range(6)})),
    "styblinski_tang": (styblinski_tang, hp.Space(
        x0=hp.Float(-5, 5), x1=hp.Float(-5, 5), x2=hp.Float(-5, 5, step=0.1),
        n0=hp.Int(-5, 5), n1=hp.Int(-5, 5))),
    "mixed": (mixed, hp.Space(
        lr=hp.Float(1e-5, 1e-1, log=True), width=hp.Int(16, 2048, log=True),
        layers=hp.Int(1, 6), dropout=hp.Float(0, 0.5), act=hp.Choice(["relu", "gelu", "tanh"]),
        opt=hp.Choice(["adam", "adamw", "sgd"]), batch=hp.Choice([32, 64, 128, 256, 512]))),
}


# -- optuna glue --------------------------------------------------------------------

def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(space: hp.Space) -> dict:
    d = _optuna().distributions
    out = {}
    for name, p in space.params.items():
        if isinstance(p, hp.Choice):
            out[name] = d.CategoricalDistribution(list(p.values))
        elif isinstance(p, hp.Int):
            out[name] = d.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = d.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def run_optuna(fn, space, n, seed) -> list[float]:
    optuna = _optuna()
    dists = optuna_distributions(space)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    values = []
    for _ in range(n):
        t = study.ask(dists)
        v = fn(t.params)
        study.tell(t, v)
        values.append(v)
    return values


def run_ours(fn, space, n, seed, sampler) -> list[float]:
    r = hp.optimize(lambda t: fn(t.params), space, n_trials=n, sampler=sampler, seed=seed)
    return [t.value for t in r.trials]


# -- 1. latency ---------------------------------------------------------------------

def _history(space, fn, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.decode(rng.random(len(space))) for _ in range(n)]


def latency(sizes: list[int], reps: int) -> list[dict]:
    optuna = _optuna()
    fn, space = FUNCTIONS["mixed"]
    dists = optuna_distributions(space)
    rows = []
    for n in sizes:
        params = _history(space, fn, n)
        b = FrameBuilder(space, "minimize")
        for i, p in enumerate(params):
            b.put(Row(p, RowState.COMPLETE, fn(p), None, float(i), (1, i + 1), i))
        frame = b.snapshot()
        row = {"trials": n}
        for label, opts in (("ours", {}), ("ours_univariate", {"multivariate": False})):
            s = get_sampler("tpe", opts)
            ctx = SamplerContext(space, "minimize", 1, n, None, opts, 0)
            s.suggest(ctx, frame, sampler_rng(0, n))
            times = []
            for r in range(max(reps, 30)):
                t0 = time.perf_counter()
                s.suggest(ctx, frame, sampler_rng(0, n + r))
                times.append(time.perf_counter() - t0)
            row[f"{label}_ms"] = 1e3 * statistics.median(times)
            row[f"{label}_min_ms"] = 1e3 * min(times)
        row["frame_update_ms"] = 1e3 * _frame_update_cost(space, fn, params)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=fn(p))
                          for p in params])
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            t = study.ask(dists)
            times.append(time.perf_counter() - t0)
            study.tell(t, fn(t.params))
        row["optuna_ms"] = 1e3 * statistics.median(times)
        row["optuna_min_ms"] = 1e3 * min(times)
        row["speedup"] = row["optuna_ms"] / row["ours_ms"]
        rows.append(row)
        console.print(f"latency n={n}: {row}")
    return rows


def _frame_update_cost(space, fn, params) -> float:
    """Median cost of folding one new CLAIM+RESULT into a synced frame via the ledger."""
    led = Ledger()
    b = FrameBuilder(space, "minimize")
    for i, p in enumerate(params):
        c = led.new(1, Claim, wall=float(i), slot=i, params=p)
        led.new(1, Result, wall=float(i) + 0.5, trial=c.key, status=Status.COMPLETE,
                value=fn(p), duration=0.5)
    b.sync(led)
    times = []
    for j in range(20):
        p = params[j]
        c = led.new(1, Claim, wall=1e6 + j, slot=len(params) + j, params=p)
        led.new(1, Result, wall=1e6 + j + 0.5, trial=c.key, status=Status.COMPLETE,
                value=fn(p), duration=0.5)
        t0 = time.perf_counter()
        b.sync(led)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- 2. quality ---------------------------------------------------------------------

METHODS = ("ours_tpe", "optuna_tpe", "random")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def quality(seeds: int, checkpoints: list[int], offset: int = 0) -> dict:
    n = max(checkpoints)
    out: dict = {}
    for name, (fn, space) in FUNCTIONS.items():
        t0 = time.perf_counter()
        bests = {m: {c: [] for c in checkpoints} for m in METHODS}
        secs = dict.fromkeys(METHODS, 0.0)
        for seed in range(offset, offset + seeds):
            runs = {}
            for m in METHODS:
                t1 = time.perf_counter()
                if m == "optuna_tpe":
                    runs[m] = run_optuna(fn, space, n, seed)
                else:
                    runs[m] = run_ours(fn, space, n, seed, "tpe" if m == "ours_tpe" else "random")
                secs[m] += time.perf_counter() - t1
            for m in METHODS:
                for c in checkpoints:
                    bests[m][c].append(min(runs[m][:c]))
        ranks = {m: {} for m in METHODS}
        for c in checkpoints:
            per_seed = [_ranks([bests[m][c][i] for m in METHODS]) for i in range(seeds)]
            for k, m in enumerate(METHODS):
                ranks[m][c] = statistics.mean(r[k] for r in per_seed)
        out[name] = {"best_mean": {m: {c: statistics.mean(bests[m][c]) for c in checkpoints}
                                   for m in METHODS},
                     "best_median": {m: {c: statistics.median(bests[m][c]) for c in checkpoints}
                                     for m in METHODS},
                     "mean_rank": ranks, "seconds": secs}
        console.print(f"{name}: ranks {ranks} in {time.perf_counter() - t0:.0f}s")
    return out


# -- 3. ASHA on a multi-fidelity function ----------------------------------------------

def pruning(seeds: int, n_trials: int = 60, max_epochs: int = 27) -> dict:
    fn, space = FUNCTIONS["mixed"]
    target = 0.6
    res: dict = {}
    for label, pruner in (("asha", "asha"), ("none", None)):
        spent_to_target, reached, total = [], 0, []
        for seed in range(seeds):
            log: list[tuple[int, float | None]] = []

            def objective(trial, log=log):
                p = trial.params
                final = fn(p)
                speed = 2.0 + 3.0 * (math.log10(p["lr"]) + 5) / 4  # faster with larger lr
                epochs = 0
                for e in range(1, max_epochs + 1):
                    epochs = e
                    trial.report(final + 3.0 * math.exp(-speed * e / max_epochs), e)
                    if trial.should_prune():
                        log.append((epochs, None))
                        raise hp.TrialPruned()
                log.append((epochs, final + 3.0 * math.exp(-speed)))
                return log[-1][1]

            hp.optimize(objective, space, n_trials=n_trials, pruner=pruner, seed=seed,
                        pruner_options={"max_resource": max_epochs} if pruner else None)
            cum = np.cumsum([e for e, _ in log])
            hit = [i for i, (_, v) in enumerate(log) if v is not None and v <= target]
            total.append(int(cum[-1]))
            if hit:
                reached += 1
                spent_to_target.append(int(cum[hit[0]]))
        res[label] = {"reached": reached, "seeds": seeds,
                      "median_epochs_to_target": statistics.median(spent_to_target)
                      if spent_to_target else None,
                      "mean_epochs_total": statistics.mean(total)}
    res["target"] = target
    res["n_trials"] = n_trials
    res["max_epochs"] = max_epochs
    return res


# -- 4. same history, same algorithm? ----------------------------------------------------

def same_history(n_hist: int = 40, draws: int = 600) -> dict:
    """Mean objective value of suggestions made from one fixed history, ours vs Optuna.

    Best-of-n comparisons carry seed noise; this isolates the sampler: the same
    history, many independent suggestions, compared with their standard errors.
    """
    optuna = _optuna()
    out = {}
    for name in ("styblinski_tang", "rosenbrock", "mixed"):
        fn, space = FUNCTIONS[name]
        rng = np.random.default_rng(11)
        hist = [space.decode(rng.random(len(space))) for _ in range(n_hist)]
        vals = [fn(p) for p in hist]
        b = FrameBuilder(space, "minimize")
        for i, (p, v) in enumerate(zip(hist, vals, strict=True)):
            b.put(Row(p, RowState.COMPLETE, v, None, float(i), (1, i + 1), i))
        frame, s = b.snapshot(), get_sampler("tpe", {})
        ours = [fn(s.suggest(SamplerContext(space), frame, sampler_rng(0, i)))
                for i in range(draws)]
        dists = optuna_distributions(space)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=v)
                          for p, v in zip(hist, vals, strict=True)])
        theirs = []
        for _ in range(draws):
            t = study.ask(dists)  # then FAIL it: failed trials do not enter the model
            theirs.append(fn(t.params))
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        out[name] = {m: {"mean": float(np.mean(v)), "se": float(np.std(v) / math.sqrt(draws))}
                     for m, v in (("ours", ours), ("optuna", theirs))}
        console.print(f"same history {name}: {out[name]}")
    return out


# -- main -------------------------------------------------------------------------------

def _print(lat, qual, same, prune, checkpoints):
    if lat:
        t = Table(title="TPE suggestion latency, mixed space (7 params): median (min) ms")
        for c in ("trials", "ours (multivariate)", "ours univariate", "frame update",
                  "optuna TPE", "speed-up (median)"):
            t.add_column(c)
        for r in lat:
            t.add_row(str(r["trials"]), f"{r['ours_ms']:.2f} ({r['ours_min_ms']:.2f})",
                      f"{r['ours_univariate_ms']:.2f} ({r['ours_univariate_min_ms']:.2f})",
                      f"{r['frame_update_ms']:.2f}",
                      f"{r['optuna_ms']:.1f} ({r['optuna_min_ms']:.1f})", f"{r['speedup']:.0f}x")
        console.print(t)
    if qual:
        _print_quality(qual, checkpoints)
    _print_other(same, prune)


def _print_quality(qual, checkpoints):
    if qual:
        t = Table(title="Mean rank among {ours TPE, Optuna TPE, random} (1 = best)")
        t.add_column("function")
        for c in checkpoints:
            for m in METHODS:
                t.add_column(f"{m} @{c}")
        overall = {m: {c: [] for c in checkpoints} for m in METHODS}
        for name, q in qual.items():
            cells = []
            for c in checkpoints:
                for m in METHODS:
                    cells.append(f"{q['mean_rank'][m][c]:.2f}")
                    overall[m][c].append(q["mean_rank"][m][c])
            t.add_row(name, *cells)
        t.add_row("overall", *[f"{statistics.mean(overall[m][c]):.2f}"
                               for c in checkpoints for m in METHODS])
        console.print(t)
        t = Table(title="Mean best value")
        t.add_column("function")
        for c in checkpoints:
            for m in METHODS:
                t.add_column(f"{m} @{c}")
        for name, q in qual.items():
            t.add_row(name, *[f"{q['best_mean'][m][c]:.4g}" for c in checkpoints for m in METHODS])
        console.print(t)


def _print_other(same, prune):
    if same:
        t = Table(title="Same 40-trial history: mean value of 600 suggestions (± s.e.)")
        for c in ("function", "ours TPE", "Optuna TPE"):
            t.add_column(c)
        for name, r in same.items():
            t.add_row(name, *[f"{r[m]['mean']:.3f} ± {r[m]['se']:.3f}" for m in ("ours", "optuna")])
        console.print(t)
    if prune:
        t = Table(title=f"ASHA vs no pruning: epochs until a trial reaches {prune['target']}")
        for c in ("pruner", "reached", "median epochs to target", "mean epochs in total"):
            t.add_column(c)
        for label in ("asha", "none"):
            r = prune[label]
            t.add_row(label, f"{r['reached']}/{r['seeds']}", str(r["median_epochs_to_target"]),
                      f"{r['mean_epochs_total']:.0f}")
        console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed of the quality runs")
    ap.add_argument("--checkpoints", default="50,200")
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--reps", type=int, default=7, help="Optuna asks timed per size")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-pruning", action="store_true")
    args = ap.parse_args()
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    t0 = time.perf_counter()
    lat = [] if args.skip_latency else latency([int(s) for s in args.sizes.split(",")], args.reps)
    qual = {} if args.skip_quality else quality(args.seeds, checkpoints, args.seed_offset)
    same = {} if args.skip_quality else same_history()
    prune = {} if args.skip_pruning else pruning(args.seeds)
    _print(lat, qual, same, prune, checkpoints)
    import optuna

    OUT.mkdir(exist_ok=True)
    payload = {"benchmark": "samplers", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": platform.platform(), "optuna": optuna.__version__,
               "seeds": args.seeds, "seed_offset": args.seed_offset, "checkpoints": checkpoints, "latency": lat, "quality": qual,
               "same_history": same, "pruning": prune, "seconds": time.perf_counter() - t0}
    (OUT / "samplers.json").write_text(json.dumps(payload, indent=1))
    console.print(f"wrote {OUT / 'samplers.json'} in {payload['seconds']:.0f}s")


if __name__ == "__main__":
    main()
