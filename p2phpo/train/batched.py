"""Batched trials: K trials of one shape class trained at once in one XLA program.

The members share the batch size (it shapes the program), their depth and
their activation (the program branches on them once for the batch; a
per-member activation under ``vmap`` computes all six and was measured 2.5x
slower); each member keeps its own learning rate, weight decay, optimizer,
dropout rate, width and init, and reports its own epochs. When ``on_epoch``
answers False for a member (pruned, stopped), it stops and the others go on,
in the same compiled program.

Two ways to run a batch:

- *packed* (``packed.py``), when the members share their seed (the data order;
  trials of a study all use the study's): a slot of each member's own width,
  the first layers side by side in one wide matmul. This is the fast path:
  on CPU one trial alone already runs near the FLOP rate, so a batch gains by
  removing the padding a trial alone pays to avoid compiles (RESULTS.md);
- *lanes*: a ``vmap`` over the shape-class program (``program.py``), every
  member padded to the widest member's bucket: for members with different seeds.

A member's numbers equal the same trial trained alone (float rounding aside).

    results = train_batch(ds, [params_a, params_b, ...], epochs=5,
                          on_epoch=lambda i, m: keep_going(i, m))
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from p2phpo.core.entries import cap_error
from p2phpo.train import mlp, packed, program
from p2phpo.train.data import Dataset
from p2phpo.trial import Trial, TrialOutcome, TrialPruned, TrialStatus, run_objective


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


_PACKED: dict[packed.PackedClass, packed.PackedProgram] = {}


def packed_program(cls: packed.PackedClass) -> packed.PackedProgram:
    if cls not in _PACKED:
        _PACKED[cls] = packed.PackedProgram(cls)
    return _PACKED[cls]


def packed_class(cfgs: Sequence[mlp.Config], ds: Dataset, epochs: int,
                 k: int | None = None) -> packed.PackedClass:
    """The batch's tightest packed class (``k`` slots at least: room for members to come),
    or an already compiled class that fits when its padding, at this process's measured
    FLOP rate, costs less than a compile."""
    batch_class(cfgs, ds)  # the shared batch size / depth / activation checks
    widths = [c.width for c in cfgs]
    if k is not None and k > len(widths):  # room for more: more slots of the widest width
        widths += [max(widths)] * (k - len(widths))
    need = packed.natural_class(cfgs[0].batch_size, widths, cfgs[0].layers, ds.num_features,
                                ds.num_classes)
    fits = [c for c in _PACKED if c.fits(need)]
    if need in _PACKED or not fits:
        return need
    layers = cfgs[0].layers
    best = min(fits, key=lambda c: c.step_flops(layers))
    steps = ds.x_train.shape[0] // need.batch_size
    extra = (best.step_flops(layers) - need.step_flops(layers)) * steps * epochs
    return best if extra / mlp.COST.flops_per_second < mlp.COST.compile_seconds else need


def train_batch(ds: Dataset, params: Sequence[Mapping[str, Any]], *, epochs: int, seed: int = 0,
                width_step: int = 32, buckets: Sequence[int] | None = program.WIDTH_BUCKETS,
                on_epoch: Callable[[int, mlp.EpochMetrics], bool] | None = None,
                k: int | None = None) -> list[mlp.TrainResult]:
    """Train the members together; ``on_epoch(i, metrics)`` returns False to stop member i.

    Members that share their seed (data order) and have hidden layers are *packed*
    (``packed.py``: one wide first layer, no per-member padding); otherwise the lanes
    of a ``vmap`` over the shape-class program. ``k`` (packed only) sizes the class for
    more members than given, so a short batch reuses a full batch's program."""
    cfgs = [mlp.Config.from_params(p, width_step) for p in params]
    seeds = [int(p.get("seed", seed)) for p in params]
    if len(cfgs) > 1 and len(set(seeds)) == 1 and cfgs[0].layers > 0 and buckets:
        return _train_packed(ds, cfgs, seeds[0], epochs, on_epoch, k)
    return _train_lanes(ds, cfgs, seeds, epochs, on_epoch, buckets)


def _run_epochs(cfgs: Sequence[mlp.Config], epochs: int, n_seen: int,
                on_epoch: Callable[[int, mlp.EpochMetrics], bool] | None,
                call: Callable[[int, list[bool]], tuple[Any, Any]]) -> list[list[mlp.EpochMetrics]]:
    """The epoch loop shared by both paths: one program call per epoch for all lanes,
    each lane's metrics reported on its own; a lane stops when ``on_epoch`` says so."""
    active = [True] * len(cfgs)
    history: list[list[mlp.EpochMetrics]] = [[] for _ in cfgs]
    for epoch in range(1, epochs + 1):
        if not any(active):
            break
        t0, c0 = time.perf_counter(), mlp.COMPILE_LOG.seconds
        loss, acc = call(epoch, active)
        loss, acc = np.atleast_1d(loss), np.atleast_1d(acc)  # one transfer per epoch, all lanes
        seconds = time.perf_counter() - t0
        compute = max(seconds - (mlp.COMPILE_LOG.seconds - c0), 1e-9)
        for i in [i for i, a in enumerate(active) if a]:
            m = mlp.EpochMetrics(epoch, float(loss[i]), float(acc[i]), seconds, n_seen / compute)
            history[i].append(m)
            if on_epoch is not None and not on_epoch(i, m):
                active[i] = False
    return history


def _train_packed(ds: Dataset, cfgs: Sequence[mlp.Config], seed: int, epochs: int,
                  on_epoch: Callable[[int, mlp.EpochMetrics], bool] | None,
                  k: int | None) -> list[mlp.TrainResult]:
    x_tr, y_tr, x_va, y_va, _, _ = mlp.device_data(ds)
    cls = packed_class(cfgs, ds, epochs, k)
    compiles0, seconds0 = mlp.COMPILE_LOG.compiles, mlp.COMPILE_LOG.seconds
    prog = packed_program(cls)
    order = sorted(range(len(cfgs)), key=lambda i: -cfgs[i].width)  # slot s holds member order[s]
    slot_cfgs = [cfgs[i] for i in order]
    pad = cls.k - len(cfgs)  # empty slots (width 0, learning rate 0)
    widths = [c.width for c in slot_cfgs] + [0] * pad
    c0 = cfgs[0]
    box = [prog.init_state([seed] * cls.k, widths, c0.layers, program.GAIN[c0.activation])]

    def per_slot(values: list, fill: Any, dtype: Any) -> np.ndarray:
        return np.array([values[i] for i in order] + [fill] * pad, dtype)

    def call(epoch: int, active: list[bool]) -> tuple[Any, Any]:
        lay = packed.Layout(
            np.uint32(seed & 0xFFFFFFFF), np.int32(epoch), np.int32(c0.layers),
            np.int32(program.ACT_INDEX[c0.activation]), np.array(widths, np.int32),
            per_slot([c.dropout for c in cfgs], 0.0, np.float32),
            per_slot([c.lr * a for c, a in zip(cfgs, active, strict=True)], 0.0, np.float32),
            per_slot([c.weight_decay for c in cfgs], 0.0, np.float32),
            per_slot([program.OPT_INDEX[c.optimizer] for c in cfgs], 0, np.int32))
        box[0], loss, acc = prog.epoch(box[0], lay, x_tr, y_tr, x_va, y_va)
        back = np.argsort(order)  # slot values -> member order
        return np.asarray(loss)[back], np.asarray(acc)[back]

    n_seen = (x_tr.shape[0] // cls.batch_size) * cls.batch_size
    history = _run_epochs(cfgs, epochs, n_seen, on_epoch, call)
    compiles, compile_s = mlp.COMPILE_LOG.compiles - compiles0, mlp.COMPILE_LOG.seconds - seconds0
    return [mlp.TrainResult(c, h, h[-1].val_accuracy if h else math.nan, None, compile_s, compiles, cls)
            for c, h in zip(cfgs, history, strict=True)]


def _train_lanes(ds: Dataset, cfgs: Sequence[mlp.Config], seeds: Sequence[int], epochs: int,
                 on_epoch: Callable[[int, mlp.EpochMetrics], bool] | None,
                 buckets: Sequence[int] | None) -> list[mlp.TrainResult]:
    x_tr, y_tr, x_va, y_va, _, _ = mlp.device_data(ds)
    cls = batch_class(cfgs, ds, buckets)
    compiles0, seconds0 = mlp.COMPILE_LOG.compiles, mlp.COMPILE_LOG.seconds
    prog = mlp.get_program(cls)

    def one(items: list) -> Any:  # k = 1: the program has no lane axis
        return items[0]

    box = [(program.stack if cls.k > 1 else one)([
        prog.init_state(s, c.width, c.layers, program.GAIN[c.activation], c.lr, c.weight_decay,
                        c.optimizer) for c, s in zip(cfgs, seeds, strict=True)])]

    def call(epoch: int, active: list[bool]) -> tuple[Any, Any]:
        lanes = (program.stack_lanes if cls.k > 1 else one)([
            program.lane_data(s, epoch, c.width, c.layers, c.activation, c.dropout, a,
                              batch_size=c.batch_size)
            for c, s, a in zip(cfgs, seeds, active, strict=True)])
        box[0], loss, acc = prog.run(box[0], lanes, x_tr, y_tr, x_va, y_va)
        return loss, acc

    n_seen = (x_tr.shape[0] // cfgs[0].batch_size) * cfgs[0].batch_size
    history = _run_epochs(cfgs, epochs, n_seen, on_epoch, call)
    compiles, compile_s = mlp.COMPILE_LOG.compiles - compiles0, mlp.COMPILE_LOG.seconds - seconds0
    return [mlp.TrainResult(c, h, h[-1].val_accuracy if h else math.nan, None, compile_s, compiles, cls)
            for c, h in zip(cfgs, history, strict=True)]


# -- the built-in objective, K trials at once (the worker's ``run_batch``) ---------------

def run_trials(trials: Sequence[Trial]) -> list[TrialOutcome]:
    """``mnist-mlp`` for several trials at once, each with its own reports, verdicts and
    outcome (the rules of ``p2phpo.trial.run_objective``). Trials that share a batch size,
    depth, activation and seed train packed together; a trial alone in its group, or one
    whose parameters are invalid, runs (or fails) on its own. Never raises but for Ctrl-C."""
    if not trials:
        return []
    opts = {**mlp.OPTION_DEFAULTS, **trials[0].options}
    out: list[TrialOutcome | None] = [None] * len(trials)
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(trials):
        try:
            cfg = mlp.Config.from_params(t.params, int(opts["width_step"]))
            seed = int(t.params.get("seed", opts["seed"]))
        except (ValueError, TypeError) as exc:
            out[i] = TrialOutcome(TrialStatus.FAILED, None, cap_error(f"{type(exc).__name__}: {exc}"),
                                  0.0, None)
            continue
        groups.setdefault((cfg.batch_size, cfg.layers, cfg.activation, seed), []).append(i)
    for members in groups.values():
        if len(members) == 1 or not _packing_pays([trials[i] for i in members], opts):
            for i in members:
                out[i] = run_objective(mlp.mnist_mlp, trials[i], print_traceback=True)
            continue
        for i, o in zip(members, _run_group([trials[i] for i in members], opts), strict=True):
            out[i] = o
    for o in out:
        if o is not None and o.status is not TrialStatus.FAILED:
            SURVIVAL.note(o.last_step or 0)
    return [o for o in out if o is not None]


PACKED_COST = program.CostModel(compile_seconds=0.0, flops_per_second=0.0)
"""What packed programs cost here: the build per slot (trace, lower and compile: its
first epoch's time beyond its later ones, over its slots; measured 2.5-4 solo compiles
for 4 slots) and the FLOP rate of their steady epochs. Until measured: one solo compile
per slot and the solo programs' rate. On a GPU a step is bound by kernel launches, not
FLOPs, and a packed step launches each member's layers: its measured rate is what
tells the gate so."""


class Survival:
    """How many epochs this worker's batched trials ran before the pruner (or the last
    epoch) ended them: under ASHA most stop after one, and a packed batch runs until its
    longest member ends (a stopped member's columns keep computing)."""

    MIN_SEEN = 4  # until then, every trial is expected to run all its epochs

    def __init__(self) -> None:
        self.runs: list[int] = []

    def note(self, epochs: int) -> None:
        self.runs.append(max(0, int(epochs)))

    def known(self) -> bool:
        return len(self.runs) >= self.MIN_SEEN

    def expected(self, epochs: int, k: int = 1) -> float:
        """Expected epochs of the longest of ``k`` trials (one trial's for k = 1), from
        the trials seen so far, each epoch e counted with P(some member runs >= e)."""
        if not self.known():
            return float(epochs)
        n = len(self.runs)
        return sum(1.0 - (1.0 - sum(r >= e for r in self.runs) / n) ** k for e in range(1, epochs + 1))


SURVIVAL = Survival()


def packing_pays(cfgs: Sequence[mlp.Config], ds: Dataset, epochs: int,
                 buckets: Sequence[int] | None) -> bool:
    """Whether training ``cfgs`` packed beats training them one after another: the packed
    class's steps over the expected epochs of its longest member, plus its build (none
    when a compiled class serves), against each member's solo class steps (padding
    included) over one trial's expected epochs (``SURVIVAL``), plus the solo classes not
    yet compiled, at this process's measured FLOP rates (the packed steps' own once
    measured) and compile costs. On a small dataset an epoch is milliseconds and a new
    program seconds: the members then run alone. A new packed program is not built before
    ``SURVIVAL`` knows how long trials run here (a node's first batch of 4 spent 20 s
    building one on the MNIST sample, for members ASHA stopped after an epoch)."""
    if not buckets:
        return True
    layers, bs = cfgs[0].layers, cfgs[0].batch_size
    work = ds.x_train.shape[0] // bs / mlp.COST.flops_per_second  # seconds per FLOP/step, one epoch
    cls = packed_class(cfgs, ds, epochs)
    if cls not in _PACKED and not SURVIVAL.known():
        return False  # no new program's build is risked before this worker saw how long trials run
    build = (PACKED_COST.compile_seconds or mlp.COST.compile_seconds) * cls.k
    packed_s = (cls.step_flops(layers) * work * mlp.COST.flops_per_second
                / (PACKED_COST.flops_per_second or mlp.COST.flops_per_second)
                * SURVIVAL.expected(epochs, len(cfgs))
                + (0.0 if cls in _PACKED else build))
    solo = [mlp.shape_class(c, ds, epochs, buckets) for c in cfgs]
    solo_s = sum(program.step_flops(bs, layers, sc) * program.micro_penalty(bs, sc.micro_batch)
                 for sc in solo) * work * SURVIVAL.expected(epochs)
    solo_s += len({sc for sc in solo if sc not in mlp._PROGRAMS}) * mlp.COST.compile_seconds
    return packed_s < solo_s


def _packing_pays(trials: Sequence[Trial], opts: Mapping[str, Any]) -> bool:
    cfgs = [mlp.Config.from_params(t.params, int(opts["width_step"])) for t in trials]
    if cfgs[0].layers == 0:
        return True  # (the lanes path: no packed program to weigh)
    return packing_pays(cfgs, mlp.cached_dataset(opts), int(opts["max_epochs"]),
                        mlp._buckets(opts["width_buckets"]))


def note_rate(flops: float, seconds: float) -> None:
    """A steady packed epoch's FLOPs and seconds into ``PACKED_COST``'s rate."""
    if flops <= 0 or seconds <= 0:
        return
    if PACKED_COST.flops_per_second:
        PACKED_COST.note_epoch(flops, seconds)
    else:
        PACKED_COST.flops_per_second = flops / seconds


def _run_group(trials: Sequence[Trial], opts: Mapping[str, Any]) -> list[TrialOutcome]:
    t0 = time.perf_counter()
    ended: dict[int, float] = {}  # member -> when it stopped early
    pruned: set[int] = set()
    n_packed = len(_PACKED)
    k = len(trials)
    epoch_s: list[float] = []

    def on_epoch(i: int, m: mlp.EpochMetrics) -> bool:
        if len(epoch_s) < m.epoch:
            epoch_s.append(m.seconds)
        try:
            trials[i].report(m.val_accuracy, m.epoch)
        except TrialPruned:  # the node stopped it (study over, slot lost)
            pass
        if trials[i].should_prune():
            pruned.add(i)
            ended[i] = time.perf_counter() - t0
            return False
        return True

    ds = mlp.cached_dataset(opts)
    cfgs = [mlp.Config.from_params(t.params, int(opts["width_step"])) for t in trials]
    cls = packed_class(cfgs, ds, int(opts["max_epochs"]))
    try:
        results = train_batch(ds, [t.params for t in trials],
                              epochs=int(opts["max_epochs"]), seed=int(opts["seed"]),
                              width_step=int(opts["width_step"]),
                              buckets=mlp._buckets(opts["width_buckets"]), on_epoch=on_epoch)
    except Exception as exc:  # the whole batch failed: every member says why
        traceback.print_exc(file=sys.stderr)
        error = cap_error(f"{type(exc).__name__}: {exc}")
        return [TrialOutcome(TrialStatus.FAILED, None, error, time.perf_counter() - t0, t.last_step)
                for t in trials]
    if len(_PACKED) > n_packed and len(epoch_s) > 1:  # a new packed program was built
        per_slot = (epoch_s[0] - min(epoch_s[1:])) / k
        if PACKED_COST.compile_seconds:
            PACKED_COST.note_compile(per_slot)
        else:
            PACKED_COST.compile_seconds = max(per_slot, 0.1)
    if len(epoch_s) > 1:  # the packed steps' own rate (all slots compute every epoch)
        note_rate(cls.step_flops(cfgs[0].layers) * (ds.x_train.shape[0] // cls.batch_size),
                  min(epoch_s[1:]))
    done = time.perf_counter() - t0
    outcomes = []
    for i, (t, r) in enumerate(zip(trials, results, strict=True)):
        last = t.last_step
        if i in pruned:
            outcomes.append(TrialOutcome(TrialStatus.PRUNED, None if last is None else t.reports[last],
                                         None, ended[i], last, t.verdict))
        elif math.isfinite(r.val_accuracy):
            outcomes.append(TrialOutcome(TrialStatus.COMPLETE, r.val_accuracy, None, done, last))
        else:
            outcomes.append(TrialOutcome(TrialStatus.FAILED, None, f"objective returned {r.val_accuracy}",
                                         done, last))
    return outcomes
