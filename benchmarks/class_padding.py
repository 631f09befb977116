"""What padding costs: a trial's steady epoch in shape classes of several sizes vs its
exact (unpadded) model, in CPU seconds of this process (one XLA thread, as the worker),
and each class program's compile CPU seconds. CPU time, not wall time, so that other
jobs on a shared machine move the numbers less.

For a few architectures of the built-in study on the MNIST sample, the classes are:
``tight`` (the trial's batch size as one pass, its width, layer cap 4), ``tightL`` (same,
its own depth), ``bs,bkt`` (its batch size, its width bucket), ``64,bkt`` (64-row passes,
its bucket: the general class), ``64,1024`` (the widest general class).

    python benchmarks/class_padding.py      # prints JSON lines, writes benchmarks/out/class_padding.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

from p2phpo.train import mlp, program  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "class_padding.json"
BASE = {"lr": 1e-3, "dropout": 0.0, "optimizer": "adam", "weight_decay": 0.0}
CASES = [dict(layers=2, width=494, activation="gelu", batch_size=64),
         dict(layers=2, width=545, activation="gelu", batch_size=512),
         dict(layers=3, width=451, activation="gelu", batch_size=64),
         dict(layers=2, width=1020, activation="gelu", batch_size=128),
         dict(layers=1, width=426, activation="gelu", batch_size=512),
         dict(layers=2, width=266, activation="tanh", batch_size=64)]


def steady(run, state, cfg: mlp.Config, data: tuple, *, seed: int = 0, dropout: float = 0.0,
           epochs: int = 4) -> float:
    """Fastest steady epoch of ``epochs`` (the first may compile), in CPU seconds."""
    best = float("inf")
    for epoch in range(1, epochs + 1):
        lane = program.lane_data(seed, epoch, cfg.width, cfg.layers, cfg.activation, dropout,
                                 batch_size=cfg.batch_size)
        t0 = time.process_time()
        state, _, acc = run(state, lane, *data)
        float(acc)
        if epoch > 1:
            best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ds = mlp.cached_dataset({"dataset": "mnist"})
    data = mlp.device_data(ds)[:4]
    progs: dict = {}
    rows = []
    for case in CASES:
        cfg = mlp.Config.from_params({**BASE, **case})
        model = mlp.get_model(cfg, ds.num_features, ds.num_classes)
        exact = steady(model.epoch, model.init_state(0, cfg), cfg, data)
        row = {"case": f"L{cfg.layers} W{cfg.width} bs{cfg.batch_size}", "exact_s": exact}
        bucket = program.bucket_width(cfg.width, program.WIDTH_BUCKETS)
        for name, (mb, width, cap) in {"tight": (cfg.batch_size, cfg.width, 4),
                                       "tightL": (cfg.batch_size, cfg.width, cfg.layers),
                                       "bs,bkt": (cfg.batch_size, bucket, 4), "64,bkt": (64, bucket, 4),
                                       "64,1024": (64, 1024, 4)}.items():
            cls = program.ShapeClass(mb, width, cap, ds.num_features, ds.num_classes)
            if cls not in progs:
                prog = program.Program(cls)
                t0 = time.process_time()
                prog.compile(*prog.example_args(*data))
                progs[cls] = (prog, time.process_time() - t0)
            prog, compile_s = progs[cls]
            state = prog.init_state(0, cfg.width, cfg.layers, program.GAIN[cfg.activation], cfg.lr,
                                    0.0, cfg.optimizer)
            seconds = steady(prog.run, state, cfg, data)
            row[name] = {"epoch_s": seconds, "x_exact": seconds / exact, "compile_s": compile_s}
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
