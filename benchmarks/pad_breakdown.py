"""Where the padding goes: a node run's trials, each timed (steady epoch, CPU seconds of
this process, the worker's thread settings) in a ladder of programs from the class it ran
in down to its exact plain model, so the gap between "training as run" and the exact
models splits by cause:

1. ``as_run``: the class the trial ended in (replayed with ``mlp.train``: same rules; a
   trial that ran its exact plain model has no class and counts 0 here);
2. ``own``: 64-row passes (or its batch as one pass), its own width bucket, layer cap;
3. ``bs``: its batch size as one pass, its bucket, layer cap (2 -> 3: the micro-batch loop);
4. ``width``: its batch as one pass, its exact width, layer cap (3 -> 4: bucket padding);
5. ``depth``: as 4 at its own depth (4 -> 5: the layer cap's skipped layers);
6. ``exact``: the plain per-architecture model (5 -> 6: the class program's own overhead:
   masks, per-layer conds, the activation switch, the optimizer branch).

Each total is sum(steady epoch x epochs the trial ran in the node).

    PYTHONPATH=<checkout> python benchmarks/pad_breakdown.py RUN/timing.jsonl [--rungs as_run,own,bs,width,depth,exact]
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import class_padding  # noqa: E402 (benchmarks/, this script's folder)

from p2phpo.train import mlp, program  # noqa: E402

RUNGS = ("as_run", "own", "bs", "width", "depth", "exact")


class _Stop(Exception):
    pass


def steady(run, state, cfg: mlp.Config, data: tuple, seed: int = 0) -> float:
    """Fastest of epochs 2-3 (CPU seconds; epoch 1 may compile), with the trial's dropout."""
    return class_padding.steady(run, state, cfg, data, seed=seed, dropout=cfg.dropout, epochs=3)


def trials(log: str) -> list[tuple[dict, int]]:
    records = [json.loads(line) for line in open(log)]
    ran: dict[str, int] = {}
    for r in records:
        if r["event"] == "epoch":
            ran[r["trial"]] = ran.get(r["trial"], 0) + 1
    return [(r["params"], ran.get(r["trial"], 0)) for r in records if r["event"] == "start"]


def as_run_classes(ds, seq: list[tuple[dict, int]]) -> list[list[program.ShapeClass]]:
    """The classes each trial ran in, replaying the sequence through ``mlp.train``."""
    out: list[list[program.ShapeClass]] = []
    real_run = program.Program.run

    def run(self: program.Program, *a):  # record the class of every epoch
        if not out[-1] or out[-1][-1] != self.cls:
            out[-1].append(self.cls)
        return real_run(self, *a)

    program.Program.run = run
    try:
        for params, n in seq:
            out.append([])

            def stop(m: mlp.EpochMetrics, n: int = n) -> None:
                if m.epoch >= n:
                    raise _Stop()
            try:
                mlp.train(ds, params, epochs=5, on_epoch=stop)
            except _Stop:
                pass
    finally:
        program.Program.run = real_run
    for fut in list(mlp.BACKGROUND.pending.values()):
        fut.result()
    return out


def ladder(cfg: mlp.Config, ds, ran: program.ShapeClass | None) -> dict[str, program.ShapeClass]:
    f, c = ds.num_features, ds.num_classes
    cap = 0 if cfg.layers == 0 else program.LAYER_CAP
    mb = program.MICRO_BATCH if cfg.batch_size % program.MICRO_BATCH == 0 else cfg.batch_size
    bucket = program.bucket_width(cfg.width, program.WIDTH_BUCKETS)
    out = {"own": program.ShapeClass(mb, bucket, cap, f, c), "bs": program.ShapeClass(cfg.batch_size, bucket, cap, f, c),
           "width": program.ShapeClass(cfg.batch_size, cfg.width, cap, f, c),
           "depth": program.ShapeClass(cfg.batch_size, cfg.width, cfg.layers, f, c)}
    if ran is not None:
        out["as_run"] = ran
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--rungs", default=",".join(RUNGS))
    ap.add_argument("--dataset", default="mnist")
    args = ap.parse_args()
    rungs = args.rungs.split(",")
    mlp.prepare({"dataset": args.dataset})  # as a worker: calibrate, precompile the fallback
    ds = mlp.cached_dataset({"dataset": args.dataset})
    data = mlp.device_data(ds)[:4]
    seq = trials(args.log)
    ran = as_run_classes(ds, seq) if "as_run" in rungs else [None] * len(seq)
    progs: dict = {}
    totals = dict.fromkeys(rungs, 0.0)
    compile_cpu = 0.0
    for (params, n), classes in zip(seq, ran, strict=True):
        cfg = mlp.Config.from_params(params)
        row = {"trial": f"L{cfg.layers} W{cfg.width} bs{cfg.batch_size}", "epochs": n,
               "ran_in": [(k.micro_batch, k.width, k.layers) for k in classes or []]}
        for name, cls in ladder(cfg, ds, (classes or [None])[-1]).items():
            if name not in rungs:
                continue
            if cls not in progs:
                progs[cls] = program.Program(cls)
                t0 = time.process_time()
                progs[cls].compile(*progs[cls].example_args(*data))
                compile_cpu += time.process_time() - t0
            prog = progs[cls]
            state = prog.init_state(0, cfg.width, cfg.layers, program.GAIN[cfg.activation], cfg.lr,
                                    cfg.weight_decay, cfg.optimizer)
            row[name] = round(steady(prog.run, state, cfg, data), 4)
        if "exact" in rungs:
            model = mlp.get_model(cfg, ds.num_features, ds.num_classes)
            row["exact"] = round(steady(model.epoch, model.init_state(0, cfg), cfg, data), 4)
        for name in rungs:
            totals[name] += row.get(name, 0.0) * n
        print(json.dumps(row), flush=True)
    print(json.dumps({"totals_cpu_s": {k: round(v, 2) for k, v in totals.items()},
                      "class_compiles": len(progs), "class_compile_cpu_s": round(compile_cpu, 1),
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
