"""Shape-class programs: one compiled XLA program serves many architectures.

A trial's hidden width is padded up to a *width bucket* and its depth up to a
*layer cap*; the padded units are masked (multiplied by zero after the
activation), so they stay exactly zero in the forward pass and receive zero
gradient, and the padded weights stay zero under every optimizer (their
gradient and their weight-decay term are both zero). Each hidden layer has
its own arrays; an inactive one is skipped with ``lax.cond`` in the forward
pass, the backward pass and the optimizer, so a shallow trial in a deep class
does no work for the missing layers. Activation and optimizer are integer
indices: the activation a ``lax.switch``, the optimizer one fused update per
array whose adam/adamw or sgd rule is a real branch (only the chosen one
runs); learning rate, weight decay, dropout rate (no mask is drawn at 0),
active width, depth and batch size are data. A step of batch size ``b`` runs
as ``b / micro_batch`` passes whose gradients are summed before the one
update (the same step), so batch sizes can share a class. Initialization
draws the *true* shapes (scaled by the true fan-in) on the host and
zero-pads them, and all randomness derives from ``(seed, epoch, step)``
inside the program, so a bucketed trial follows the plain model's loss curve
for the same seed up to float rounding.

What stays in the shape class: the micro-batch, the width, the layer cap, the
data shapes and the number of lanes ``k``. ``choose_class`` makes a new class
only as general as costs the trial less than a compile (measured costs), and
reuses a compiled one when its padding costs less than a compile. With
``k > 1`` the program trains ``k`` trials of one class at once (``vmap`` over
the lanes), each with its own hyperparameters, seed and an ``active`` flag: a
lane whose trial was pruned or finished keeps its state frozen while the
others go on (depth, activation and batch size are shared by the lanes).

One call of :meth:`Program.epoch` trains one epoch and measures the
validation accuracy, so a class costs exactly one XLA compile.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2phpo.train.optim import (  # noqa: F401 (re-exported: packed.py, tests)
    B1,
    B2,
    EPS,
    MOMENTUM,
    OPT_INDEX,
    OPTIMIZERS,
    Hyper,
    OptState,
    _leaf_update,
    accumulate,
    init_opt,
    layer_of,
    optimizer_step,
)

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
    "elu": jax.nn.elu, "sigmoid": jax.nn.sigmoid,
}
ACT_INDEX = {name: i for i, name in enumerate(ACTIVATION_FNS)}
GAIN = {"relu": 2.0, "gelu": 2.0, "silu": 2.0, "elu": 2.0, "tanh": 1.0, "sigmoid": 1.0}
# Chosen by measurement (RESULTS.md "training", "fifth pass"): padding costs more than its
# FLOPs once a class outgrows the caches (a 480-wide trial ran 5x its exact epoch in a
# 1,024-wide class, 1.3x in a 512-wide one), so the steps above 256 are 1.5x, not 2x;
# ``pick_class`` reuses a wider class per trial when that is cheaper than a compile, and
# ``mlp`` compiles a trial's own class once the padding its trials paid reaches a compile.
WIDTH_BUCKETS = (128, 256, 384, 512, 768, 1024)
LAYER_CAP = 4
# Batch sizes that are multiples of MICRO_BATCH can share one program (see ShapeClass,
# choose_class); each halving of the rows per pass cost ~15% (measured, RESULTS.md "training").
MICRO_BATCH = 64
MICRO_PENALTY = 0.15


# -- host-side initialization (no XLA compile) ------------------------------------

def init_arrays(seed: int, sizes: Sequence[int], gain: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """He/LeCun-normal weights for the true layer sizes, zero biases; float32, on the host."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x6D6C70])
    out = []
    for m, n in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.standard_normal((m, n), dtype=np.float32) * np.float32(math.sqrt(gain / m))
        out.append((w, np.zeros(n, np.float32)))
    return out


def pad_layers(arrays: list[tuple[np.ndarray, np.ndarray]], width: int, layers: int
               ) -> dict[str, np.ndarray]:
    """Zero-pad true layer arrays into a class's layout: hidden layer ``j`` as ``wj, bj``
    (``w0``: features x width, the others width x width) for j < ``layers``, the output
    layer ``wo, bo``. Layers beyond the true depth stay all-zero."""
    *hidden, (w_out, b_out) = arrays
    n_in = hidden[0][0].shape[0]
    p: dict[str, np.ndarray] = {}
    for j in range(layers):
        w = np.zeros((n_in if j == 0 else width, width), np.float32)
        b = np.zeros(width, np.float32)
        if j < len(hidden):
            w[: hidden[j][0].shape[0], : hidden[j][0].shape[1]] = hidden[j][0]
            b[: hidden[j][1].shape[0]] = hidden[j][1]
        p[f"w{j}"], p[f"b{j}"] = w, b
    wo = np.zeros((width, w_out.shape[1]), np.float32)
    wo[: w_out.shape[0]] = w_out
    p["wo"], p["bo"] = wo, b_out.copy()
    return p


def zeros_like_tree(tree: Any) -> Any:
    """Host zeros with the shapes and dtypes of ``tree`` (arrays or ShapeDtypeStructs)."""
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)


# -- the shape class -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class ShapeClass:
    """Everything that shapes the compiled program. A step of a trial's batch size
    ``b`` runs as ``b / micro_batch`` micro-batches whose gradients are summed before
    the one optimizer update (the same step: the mean loss's gradient is the mean of
    the parts'), so trials of every batch size that ``micro_batch`` divides share it."""

    micro_batch: int  # rows per forward/backward pass
    width: int  # bucketed hidden width
    layers: int  # layer cap (0: a linear model)
    n_features: int
    n_classes: int
    k: int = 1  # lanes trained at once

    def sizes(self) -> list[int]:
        return [self.n_features] + [self.width] * self.layers + [self.n_classes]

    def n_params(self) -> int:
        s = self.sizes()
        return sum(m * n + n for m, n in zip(s[:-1], s[1:], strict=True))


OPT_FLOPS = 150.0
"""One step's optimizer cost per parameter of the active layers, in matmul FLOPs (measured,
one thread: a 64-row step of a 2-layer trial in a 1,024-wide class took 8.5 ms, 6 of them
matmuls; the update is memory-bound once a class outgrows the caches). With 16 a 1,024-wide
class looked 3x a 512-wide one's cost for a 480-wide trial; it was 5x."""


def step_flops(batch_size: int, active_layers: int, cls: ShapeClass) -> float:
    """Estimated cost of one training step of one lane in ``cls``, in FLOPs: the matmuls
    of the active layers at the class's padded width (forward + backward = 6 per weight
    per row) plus the optimizer's update of those layers' padded arrays (``OPT_FLOPS`` per
    parameter; inactive layers are skipped)."""
    s = [cls.n_features] + [cls.width] * active_layers + [cls.n_classes]
    active = sum(m * n for m, n in zip(s[:-1], s[1:], strict=True))
    return 6.0 * batch_size * active + OPT_FLOPS * (active + sum(s[1:]))


def bucket_width(width: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= width; beyond the largest, multiples of it."""
    for b in sorted(buckets):
        if b >= width:
            return int(b)
    top = int(max(buckets))
    return top * math.ceil(width / top)


def natural_class(batch_size: int, width: int, layers: int, n_features: int, n_classes: int,
                  buckets: Sequence[int] | None, k: int = 1, micro_batch: int | None = None
                  ) -> ShapeClass:
    """The class a trial gets when nothing compiled fits: bucketed width, layer cap, its
    batch size as one pass (or ``micro_batch``, which must divide it)."""
    if not buckets:  # bucketing off: the exact architecture
        return ShapeClass(batch_size, width, layers, n_features, n_classes, k)
    mb = batch_size if micro_batch is None else micro_batch
    if batch_size % mb:
        raise ValueError(f"micro-batch {mb} does not divide the batch size {batch_size}")
    cap = 0 if layers == 0 else LAYER_CAP * math.ceil(layers / LAYER_CAP)
    return ShapeClass(mb, bucket_width(width, buckets), cap, n_features, n_classes, k)


def micro_penalty(batch_size: int, micro_batch: int) -> float:
    """Measured slowdown of a step run as batch_size / micro_batch passes: ~15% per halving
    of the rows per pass (RESULTS.md "training": 512 as 8 x 64 ran 1.3-1.5x, 256 as 2 x 128
    ~1.1-1.2x on this CPU)."""
    return 1.0 + MICRO_PENALTY * math.log2(batch_size / micro_batch)


@dataclasses.dataclass(slots=True)
class CostModel:
    """This process's measured compile cost and training speed (priors until measured)."""

    compile_seconds: float = 3.0
    flops_per_second: float = 2e10
    plain_compile_seconds: float = 1.0  # a trial's exact plain model (``plain.Model``)

    def note_compile(self, seconds: float) -> None:
        self.compile_seconds = 0.5 * self.compile_seconds + 0.5 * max(seconds, 0.1)

    def note_plain_compile(self, seconds: float) -> None:
        self.plain_compile_seconds = 0.5 * self.plain_compile_seconds + 0.5 * max(seconds, 0.05)

    def note_epoch(self, flops: float, seconds: float) -> None:
        if seconds > 0 and flops > 0:
            self.flops_per_second = 0.5 * self.flops_per_second + 0.5 * flops / seconds


def class_seconds(c: ShapeClass, batch_size: int, layers: int, steps: int, cost: CostModel) -> float:
    """Estimated seconds of ``steps`` steps of a trial in class ``c`` (FLOPs x the
    micro-batch penalty, at the measured FLOP rate)."""
    flops = step_flops(batch_size, layers, c) * micro_penalty(batch_size, c.micro_batch)
    return flops * steps / cost.flops_per_second


def best_fit(natural: ShapeClass, width: int, layers: int, compiled: Sequence[ShapeClass],
             batch_size: int) -> ShapeClass | None:
    """The cheapest class of ``compiled`` that can run the trial: as wide and deep, its
    micro-batch dividing ``batch_size``, the same data shapes and lanes; None if none."""
    fits = [c for c in compiled if batch_size % c.micro_batch == 0 and c.k == natural.k
            and c.n_features == natural.n_features and c.n_classes == natural.n_classes
            and c.width >= width and c.layers >= layers and (c.layers == 0) == (layers == 0)]
    cost = CostModel(flops_per_second=1.0)
    return min(fits, key=lambda c: class_seconds(c, batch_size, layers, 1, cost), default=None)


def pick_class(natural: ShapeClass, width: int, layers: int, steps: int, epochs: int,
               compiled: Sequence[ShapeClass], cost: CostModel, batch_size: int | None = None
               ) -> ShapeClass:
    """Reuse a compiled class that fits when its extra compute costs less than a compile.

    A class fits when it is at least as wide and deep and its micro-batch divides
    the trial's ``batch_size`` (default: the natural class's micro-batch). The
    extra compute is the class's estimated step time (FLOPs x the micro-batch
    penalty) minus the natural class's, over ``steps`` x ``epochs`` steps, at the
    measured FLOP rate.
    """
    bs = natural.micro_batch if batch_size is None else batch_size
    best = best_fit(natural, width, layers, compiled, bs)  # natural itself when compiled and cheapest
    if best is None:
        return natural
    extra = (class_seconds(best, bs, layers, steps * epochs, cost)
             - class_seconds(natural, bs, layers, steps * epochs, cost))
    return best if extra < cost.compile_seconds else natural


def choose_class(batch_size: int, width: int, layers: int, n_features: int, n_classes: int,
                 buckets: Sequence[int], steps: int, epochs: int, compiled: Sequence[ShapeClass],
                 cost: CostModel, k: int = 1) -> ShapeClass:
    """The class a trial runs in: a compiled one when its padding costs less than a
    compile (``pick_class``); else a new one (``new_class``; as wide as is cheap when no
    compiled class fits the trial at all)."""
    fits = best_fit(ShapeClass(batch_size, width, layers, n_features, n_classes, k), width, layers,
                    compiled, batch_size)
    natural = new_class(batch_size, width, layers, n_features, n_classes, buckets, steps, epochs,
                        cost, k, wider=fits is None)
    return pick_class(natural, width, layers, steps, epochs, compiled, cost, batch_size)


def new_class(batch_size: int, width: int, layers: int, n_features: int, n_classes: int,
              buckets: Sequence[int], steps: int, epochs: int, cost: CostModel, k: int = 1,
              wider: bool = True) -> ShapeClass:
    """The class to compile for a trial: as general as costs it less than one compile
    (``MICRO_BATCH``-row passes; the width padded, with ``wider``, to the widest bucket
    that cheap, else its own), down to its exact width and one pass per step. A trial
    that no compiled class fits so builds the class most later ones fit (on the MNIST
    sample a 545-wide trial compiled a 768-wide class, the next, 980 wide, another); a
    bucket's own class comes once its trials' padding has cost a compile (``mlp.rent``)."""
    mb = MICRO_BATCH if batch_size % MICRO_BATCH == 0 else batch_size
    cap = 0 if layers == 0 else LAYER_CAP * math.ceil(layers / LAYER_CAP)
    own = bucket_width(width, buckets)
    widths = sorted({own, *(b for b in buckets if b > own and wider)}, reverse=True)
    tight = ShapeClass(batch_size, width, cap, n_features, n_classes, k)

    def seconds(c: ShapeClass) -> float:
        return class_seconds(c, batch_size, layers, steps * epochs, cost)

    candidates = [dataclasses.replace(tight, micro_batch=m, width=w)  # most general first
                  for w in widths for m in dict.fromkeys([mb, batch_size])]
    candidates += [dataclasses.replace(tight, micro_batch=mb), tight]
    return next((c for c in candidates if seconds(c) - seconds(tight) < cost.compile_seconds), tight)


# -- the program -----------------------------------------------------------------------

class Lane(NamedTuple):
    """Per-trial data of a program call (a leading axis of k when k > 1)."""

    seed: jax.Array  # uint32
    epoch: jax.Array  # int32, 1-based
    width: jax.Array  # int32, true width
    layers: jax.Array  # int32, true depth
    act: jax.Array  # int32 index into ACTIVATION_FNS
    dropout: jax.Array  # float32 rate
    active: jax.Array  # bool: train this lane this epoch
    batch_size: jax.Array  # int32, a multiple of the class's micro-batch


class State(NamedTuple):
    params: dict[str, jax.Array]
    opt_state: Any


@jax.custom_vjp
def _act(index: jax.Array, z: jax.Array) -> jax.Array:
    """The activation chosen by ``index``. Its derivative is taken in the same switch as
    the value (forward-mode, one switch), so the backward pass needs no switch of its own:
    a smaller program, a shorter compile."""
    return jax.lax.switch(index, [lambda v, f=f: f(v) for f in ACTIVATION_FNS.values()], z)


def _act_fwd(index: jax.Array, z: jax.Array) -> tuple[jax.Array, tuple]:
    branches = [lambda v, f=f: jax.jvp(f, (v,), (jnp.ones_like(v),)) for f in ACTIVATION_FNS.values()]
    y, dy = jax.lax.switch(index, branches, z)
    return y, (dy, index)


def _act_bwd(res: tuple, g: jax.Array) -> tuple:
    dy, index = res
    return np.zeros(np.shape(index), jax.dtypes.float0), g * dy


_act.defvjp(_act_fwd, _act_bwd)


def _mix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a cheap bijection that scrambles every bit."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def dropout_mask(key: jax.Array, rate: jax.Array, rows: int, units: int,
                 row0: jax.Array | int = 0, total_rows: jax.Array | int | None = None) -> jax.Array:
    """Keep-mask (rows x units) with P(keep) = 1 - rate: rows ``row0 ..`` of a batch of
    ``total_rows`` (default ``rows``), so a micro-batch draws its part of the step's mask.

    Two words from the JAX key seed a counter hash over (unit, row): ~10 integer
    ops per draw instead of threefry's ~100 (measured: threefry made dropout
    cost as much as the matmuls of a 256-wide layer on CPU). The counter is
    ``unit * total_rows + row``, so unit j's draws do not depend on the padded width.
    """
    k = jax.random.bits(key, (2,), jnp.uint32)
    total = jnp.asarray(rows if total_rows is None else total_rows).astype(jnp.uint32)
    unit = jax.lax.broadcasted_iota(jnp.uint32, (rows, units), 1)
    row = jax.lax.broadcasted_iota(jnp.uint32, (rows, units), 0) + jnp.asarray(row0).astype(jnp.uint32)
    h = _mix32(_mix32((unit * total + row) ^ k[0]) + k[1])
    return (h >> 8).astype(jnp.float32) >= rate * np.float32(1 << 24)


class Program:
    """The jitted epoch of one shape class (one XLA compile), with host-side init."""

    def __init__(self, cls: ShapeClass) -> None:
        self.cls = cls
        # k lanes: activation and depth are shared by the batch, so their switch and
        # conds stay real branches under vmap (a batched index would run every branch)
        lane_axes = Lane(0, 0, 0, None, None, 0, 0, None)
        fn = self._epoch if cls.k == 1 else jax.vmap(self._epoch, in_axes=(0, lane_axes, None, None, None, None))
        self.epoch = jax.jit(fn)
        ev = self._accuracy if cls.k == 1 else jax.vmap(self._accuracy, in_axes=(0, lane_axes, None, None))
        self.evaluate = jax.jit(ev)
        self._exe: Any = None  # the epoch compiled ahead of time (``compile``)
        self._lock = threading.Lock()

    def compile(self, *args: Any) -> None:
        """Compile the epoch for arguments shaped like ``args`` (arrays or
        ``jax.ShapeDtypeStruct``s), once; safe to call from a background thread."""
        with self._lock:
            if self._exe is None:
                self._exe = self.epoch.lower(*args).compile()

    @property
    def compiled(self) -> bool:
        return self._exe is not None

    def run(self, state: State, lane: Lane, x: jax.Array, y: jax.Array, xv: jax.Array,
            yv: jax.Array) -> tuple[State, jax.Array, jax.Array]:
        """One epoch (``epoch``) through the ahead-of-time executable, compiled on the
        first call unless ``compile`` ran already."""
        self.compile(state, lane, x, y, xv, yv)
        return self._exe(state, lane, x, y, xv, yv)

    def example_args(self, x: jax.Array, y: jax.Array, xv: jax.Array, yv: jax.Array) -> tuple:
        """Arguments shaped like a call's, for ``compile`` before any trial runs here."""
        c = self.cls
        layers = min(c.layers, 1)
        lanes = [lane_data(0, 1, c.width, layers, "relu", 0.0, batch_size=c.micro_batch)] * c.k
        states = [self.init_state(0, c.width, layers, 1.0, 1e-3, 0.0, "adam")] * c.k
        one = (lambda v: v[0]) if c.k == 1 else stack
        return one(states), (stack_lanes(lanes) if c.k > 1 else lanes[0]), x, y, xv, yv

    # -- host side --
    def init_state(self, seed: int, width: int, layers: int, gain: float, lr: float,
                   weight_decay: float, optimizer: str) -> State:
        """One lane's initial state: true-shape init, zero-padded, on the host."""
        c = self.cls
        true = init_arrays(seed, [c.n_features] + [width] * layers + [c.n_classes], gain)
        params = pad_layers(true, c.width, c.layers) if c.layers else {"wo": true[0][0], "bo": true[0][1]}
        return State(params, init_opt(params, lr, weight_decay, optimizer))

    # -- traced --
    def forward(self, params: dict, x: jax.Array, lane: Lane, key: jax.Array | None,
                row0: jax.Array | int = 0) -> jax.Array:
        """Logits of ``x``: rows ``row0 ..`` of a training step (``key``: dropout), or an
        evaluation (``key`` None)."""
        mask = (jnp.arange(self.cls.width) < lane.width).astype(x.dtype)

        def drop(h: jax.Array, i: jax.Array) -> jax.Array:  # inverted dropout of layer i
            keep = dropout_mask(jax.random.fold_in(key, i), lane.dropout, h.shape[0], h.shape[1],
                                row0, lane.batch_size)
            return jnp.where(keep, h / (1.0 - lane.dropout), 0.0)

        def layer(i: jax.Array, h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
            h = _act(lane.act, h @ w + b) * mask
            if key is None:
                return h
            # no mask is drawn at rate 0 (a real branch; a per-lane rate under vmap selects)
            return jax.lax.cond(lane.dropout > 0, drop, lambda h, i: h, h, i)

        h = x
        for j in range(self.cls.layers):  # layer 0 always runs; an inactive one is skipped
            w, b, i = params[f"w{j}"], params[f"b{j}"], jnp.int32(j)
            h = layer(i, h, w, b) if j == 0 else jax.lax.cond(
                i < lane.layers, lambda v, w=w, b=b, i=i: layer(i, v, w, b), lambda v: v, h)
        return h @ params["wo"] + params["bo"]

    def _epoch(self, state: State, lane: Lane, x: jax.Array, y: jax.Array, xv: jax.Array,
               yv: jax.Array) -> tuple[State, jax.Array, jax.Array]:
        mb = self.cls.micro_batch
        parts = lane.batch_size // mb  # micro-batches per step
        n_steps = x.shape[0] // lane.batch_size
        key = jax.random.fold_in(jax.random.key(lane.seed), lane.epoch)
        perm_key, steps_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, x.shape[0])

        def part_grad(params: dict, s: jax.Array, part: jax.Array) -> tuple[jax.Array, dict]:
            """Loss and gradient of micro-batch ``part`` of step ``s`` (its share of the
            step's mean loss)."""
            rows = jax.lax.dynamic_slice_in_dim(perm, (s * parts + part) * mb, mb)
            k = jax.random.fold_in(steps_key, s)

            def loss_fn(params: dict) -> jax.Array:
                logits = self.forward(params, x[rows], lane, k, part * mb)
                ce = optax.softmax_cross_entropy_with_integer_labels(logits, y[rows])
                return ce.sum() / lane.batch_size.astype(jnp.float32)

            return jax.value_and_grad(loss_fn)(params)

        def step(s: jax.Array, carry: tuple[State, jax.Array]) -> tuple[State, jax.Array]:
            """One step: the first part's gradient, the other parts' added (a loop that
            runs 0 times at one pass per step), one update. Loops whose trip counts are
            data, no branch around the update: the earlier scan over micro-batches with a
            ``lax.cond`` around the update (and one around rows past the last step) took
            5-25% longer per steady epoch (RESULTS.md, "trainfast")."""
            st, loss_sum = carry
            first = part_grad(st.params, s, jnp.int32(0))

            def more(part: jax.Array, acc: tuple) -> tuple:
                loss, g = part_grad(st.params, s, part)
                return acc[0] + loss, accumulate(acc[1], g, lane.layers)

            loss, g = jax.lax.fori_loop(1, parts, more, first)
            params, opt = optimizer_step(st.params, g, st.opt_state, lane.layers)
            return State(params, opt), loss_sum + loss

        new, loss_sum = jax.lax.fori_loop(0, n_steps, step, (state, jnp.float32(0)))
        loss = loss_sum / n_steps
        if self.cls.k > 1:  # a lane whose trial ended keeps its state (a select: measured
            # 1.6x faster than a lax.cond, which under vmap runs both branches anyway)
            new = jax.tree_util.tree_map(lambda n, o: jnp.where(lane.active, n, o), new, state)
        return new, loss, self._accuracy(new.params, lane, xv, yv)

    def _accuracy(self, params: dict, lane: Lane, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(self.forward(params, x, lane, None), axis=-1) == y)


def layout(cls: ShapeClass) -> dict[str, tuple[int, ...]]:
    """The parameter arrays of a class and their shapes (``pad_layers``' layout)."""
    if cls.layers == 0:
        return {"wo": (cls.n_features, cls.n_classes), "bo": (cls.n_classes,)}
    out: dict[str, tuple[int, ...]] = {}
    for j in range(cls.layers):
        out[f"w{j}"] = (cls.n_features if j == 0 else cls.width, cls.width)
        out[f"b{j}"] = (cls.width,)
    return {**out, "wo": (cls.width, cls.n_classes), "bo": (cls.n_classes,)}


def convert_state(state: State, to: ShapeClass) -> State:
    """A trial's state (k = 1) moved into class ``to``, on the host: every array cut or
    zero-padded to ``to``'s shape. Exact when ``to`` fits the trial (as wide and as deep):
    what is cut is padding, which is zero in the parameters and both moments."""
    shapes = layout(to)

    def fit(tree: dict) -> dict:
        out = {}
        for name, shape in shapes.items():
            a = np.asarray(tree[name]) if name in tree else np.zeros(0, np.float32)
            new = np.zeros(shape, np.float32)
            if a.ndim == len(shape):
                keep = tuple(slice(0, min(m, n)) for m, n in zip(a.shape, shape, strict=True))
                new[keep] = a[keep]
            out[name] = new
        return out

    opt = state.opt_state
    return State(fit(state.params), opt._replace(mu=fit(opt.mu), nu=fit(opt.nu),
                                                 count=np.asarray(opt.count),
                                                 hyper=jax.tree_util.tree_map(np.asarray, opt.hyper)))


def lane_data(seed: int, epoch: int, width: int, layers: int, activation: str, dropout: float,
              active: bool = True, *, batch_size: int) -> Lane:
    return Lane(np.uint32(int(seed) & 0xFFFFFFFF), np.int32(epoch), np.int32(width),
                np.int32(layers), np.int32(ACT_INDEX[activation]), np.float32(dropout),
                np.bool_(active), np.int32(batch_size))


def stack_lanes(lanes: Sequence[Lane]) -> Lane:
    """k lanes -> one Lane with a leading axis, but for the shared depth, activation and
    batch size (the program branches on them once for all lanes)."""
    if len({int(v.layers) for v in lanes}) > 1 or len({int(v.act) for v in lanes}) > 1:
        raise ValueError("batched trials must share their depth and activation")
    if len({int(v.batch_size) for v in lanes}) > 1:
        raise ValueError("batched trials must share a batch size")
    out = stack(lanes)
    return out._replace(layers=lanes[0].layers, act=lanes[0].act, batch_size=lanes[0].batch_size)


def stack(items: Sequence[Any]) -> Any:
    """Stack k host pytrees along a new leading lane axis."""
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(v) for v in xs]), *items)
