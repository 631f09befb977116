"""Batched trials: K trials of one shape class trained at once in one XLA program.

The members share the batch size (it shapes the program), their depth and
their activation (so the program branches on them once for the batch; a
per-member activation under ``vmap`` computes all six and was measured 2.5x
slower); width is padded to the widest member's bucket and masked per
member, and every member keeps its own learning rate, weight decay,
optimizer, dropout rate, width and seed (lanes of a ``vmap``). Each member reports its own epochs; when ``on_epoch`` answers
False for a member (pruned, stopped) its lane is frozen and the others go
on, so the batch keeps its compiled shape. A lane's numbers equal the same
trial trained alone (float rounding aside).

    results = train_batch(ds, [params_a, params_b, ...], epochs=5,
                          on_epoch=lambda i, m: keep_going(i, m))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from p2phpo.train import mlp, program
from p2phpo.train.data import Dataset


def batch_class(cfgs: Sequence[mlp.Config], ds: Dataset,
                buckets: Sequence[int] | None = program.WIDTH_BUCKETS) -> program.ShapeClass:
    """The class that holds every member: shared batch size, widest bucket, deepest cap."""
    sizes = {c.batch_size for c in cfgs}
    if len(sizes) != 1:
        raise ValueError(f"batched trials must share a batch size, got {sorted(sizes)}")
    if len(cfgs) > 1 and len({(c.layers, c.activation) for c in cfgs}) > 1:
        raise ValueError("batched trials must share their depth and activation")
    width = max(c.width for c in cfgs)
    layers = max(c.layers for c in cfgs)
    if layers and min(c.layers for c in cfgs) == 0:
        raise ValueError("a linear model (layers 0) cannot share a batch with hidden layers")
    nat = program.natural_class(sizes.pop(), width, layers, ds.num_features, ds.num_classes,
                                buckets or (width,), k=len(cfgs))
    return nat if buckets else program.ShapeClass(nat.micro_batch, width, nat.layers, nat.n_features,
                                                  nat.n_classes, nat.k)


def train_batch(ds: Dataset, params: Sequence[Mapping[str, Any]], *, epochs: int, seed: int = 0,
                width_step: int = 32, buckets: Sequence[int] | None = program.WIDTH_BUCKETS,
                on_epoch: Callable[[int, mlp.EpochMetrics], bool] | None = None
                ) -> list[mlp.TrainResult]:
    """Train the members together; ``on_epoch(i, metrics)`` returns False to stop member i."""
    cfgs = [mlp.Config.from_params(p, width_step) for p in params]
    seeds = [int(p.get("seed", seed)) for p in params]
    x_tr, y_tr, x_va, y_va, _, _ = mlp.device_data(ds)
    cls = batch_class(cfgs, ds, buckets)
    compiles0, seconds0 = mlp.COMPILE_LOG.compiles, mlp.COMPILE_LOG.seconds
    prog = mlp.get_program(cls)

    def one(items: list) -> Any:  # k = 1: the program has no lane axis
        return items[0]

    state = (program.stack if cls.k > 1 else one)([
        prog.init_state(s, c.width, c.layers, program.GAIN[c.activation], c.lr, c.weight_decay,
                        c.optimizer) for c, s in zip(cfgs, seeds, strict=True)])
    active = [True] * len(cfgs)
    history: list[list[mlp.EpochMetrics]] = [[] for _ in cfgs]
    n_seen = (x_tr.shape[0] // cfgs[0].batch_size) * cfgs[0].batch_size
    for epoch in range(1, epochs + 1):
        if not any(active):
            break
        lanes = (program.stack_lanes if cls.k > 1 else one)([
            program.lane_data(s, epoch, c.width, c.layers, c.activation, c.dropout, a,
                              batch_size=c.batch_size)
            for c, s, a in zip(cfgs, seeds, active, strict=True)])
        t0, c0 = time.perf_counter(), mlp.COMPILE_LOG.seconds
        state, loss, acc = prog.epoch(state, lanes, x_tr, y_tr, x_va, y_va)
        loss, acc = np.atleast_1d(loss), np.atleast_1d(acc)  # one transfer per epoch, all lanes
        seconds = time.perf_counter() - t0
        compute = max(seconds - (mlp.COMPILE_LOG.seconds - c0), 1e-9)
        for i in [i for i, a in enumerate(active) if a]:
            m = mlp.EpochMetrics(epoch, float(loss[i]), float(acc[i]), seconds, n_seen / compute)
            history[i].append(m)
            if on_epoch is not None and not on_epoch(i, m):
                active[i] = False
    compiles, compile_s = mlp.COMPILE_LOG.compiles - compiles0, mlp.COMPILE_LOG.seconds - seconds0
    return [mlp.TrainResult(c, h, h[-1].val_accuracy if h else math.nan, None, compile_s, compiles, cls)
            for c, h in zip(cfgs, history, strict=True)]
