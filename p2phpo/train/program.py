"""Shape-class programs: one compiled XLA program serves many architectures.

A trial's hidden width is padded up to a *width bucket* and its depth up to a
*layer cap*; the padded units are masked (multiplied by zero after the
activation), so they stay exactly zero in the forward pass and receive zero
gradient, and the padded weights stay zero under every optimizer (their
gradient and their weight-decay term are both zero). Inactive hidden layers
are skipped with ``lax.cond``. Activation and optimizer are integer indices
chosen inside the program with ``lax.switch``; learning rate and weight decay
enter through ``optax.inject_hyperparams``, dropout rate, active width and
depth as data. Initialization draws the *true* shapes (scaled by the true
fan-in) on the host and zero-pads them, and all randomness derives from
``(seed, epoch)`` inside the program, so a bucketed trial follows the plain
model's loss curve for the same seed up to float rounding.

What stays in the shape class: batch size (it shapes every matmul and the
epoch's step count), the bucketed width, the layer cap, the data shapes and
the number of lanes ``k``. With ``k > 1`` the program trains ``k`` trials of
one class at once (``vmap`` over the lanes), each with its own
hyperparameters, seed and an ``active`` flag: a lane whose trial was pruned
or finished keeps its state frozen while the others go on.

One call of :meth:`Program.epoch` trains one epoch and measures the
validation accuracy, so a class costs exactly one XLA compile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
    "elu": jax.nn.elu, "sigmoid": jax.nn.sigmoid,
}
ACT_INDEX = {name: i for i, name in enumerate(ACTIVATION_FNS)}
OPTIMIZERS = ("adam", "adamw", "sgd")
OPT_INDEX = {name: i for i, name in enumerate(OPTIMIZERS)}
GAIN = {"relu": 2.0, "gelu": 2.0, "silu": 2.0, "elu": 2.0, "tanh": 1.0, "sigmoid": 1.0}
# Chosen by measurement (benchmarks/train.py --buckets, RESULTS.md "training"): on the
# MNIST sample a compile costs ~2-4 s while padding a width up to 2x costs milliseconds
# per epoch, so coarse buckets win; the reuse rule in ``pick_class`` refines this per trial.
WIDTH_BUCKETS = (128, 256, 512, 1024)
LAYER_CAP = 4


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
    """Zero-pad true layer arrays into a class's layout: first layer ``w0, b0``
    (features x width), the other ``layers - 1`` hidden layers stacked as
    ``wh, bh`` (scanned over), the output layer ``wo, bo``. True hidden layer
    ``j`` goes to slot ``j``; slots beyond the true depth stay all-zero."""
    *hidden, (w_out, b_out) = arrays
    n_in = hidden[0][0].shape[0]
    p = {"w0": np.zeros((n_in, width), np.float32), "b0": np.zeros(width, np.float32),
         "wh": np.zeros((layers - 1, width, width), np.float32),
         "bh": np.zeros((layers - 1, width), np.float32),
         "wo": np.zeros((width, w_out.shape[1]), np.float32), "bo": b_out.copy()}
    p["w0"][:, : hidden[0][0].shape[1]] = hidden[0][0]
    p["b0"][: hidden[0][1].shape[0]] = hidden[0][1]
    for j, (w, b) in enumerate(hidden[1:]):
        p["wh"][j, : w.shape[0], : w.shape[1]] = w
        p["bh"][j, : b.shape[0]] = b
    p["wo"][: w_out.shape[0]] = w_out
    return p


def zeros_like_tree(tree: Any) -> Any:
    """Host zeros with the shapes and dtypes of ``tree`` (arrays or ShapeDtypeStructs)."""
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)


# -- the optimizer: adam / adamw / sgd+momentum chosen by an index ------------------

class SwitchedState(NamedTuple):
    adam: optax.ScaleByAdamState
    trace: optax.TraceState


def switched_optimizer(learning_rate: jax.Array, weight_decay: jax.Array,
                       kind: jax.Array) -> optax.GradientTransformation:
    """optax's adam (coupled L2), adamw (decoupled) and sgd (momentum 0.9, coupled L2),
    chosen by ``kind`` (0, 1, 2) at run time, with optax's own update rules.

    Branch-free: both moment estimates are updated every step and the direction
    is selected, which keeps the program small (element-wise work on the
    parameters is cheap next to the matmuls); the unused state is never read.
    """
    adam, trace = optax.scale_by_adam(), optax.trace(decay=0.9)

    def init(params: Any) -> SwitchedState:
        return SwitchedState(adam.init(params), trace.init(params))

    def update(grads: Any, state: SwitchedState, params: Any = None) -> tuple[Any, SwitchedState]:
        tmap = jax.tree_util.tree_map
        coupled = (kind != 1).astype(jnp.float32) * weight_decay  # adamw decays after adam
        g = tmap(lambda g, p: g + coupled * p, grads, params)
        u_adam, s_adam = adam.update(g, state.adam)
        u_sgd, s_trace = trace.update(g, state.trace)
        decoupled = weight_decay - coupled

        def pick(ua: jax.Array, us: jax.Array, p: jax.Array) -> jax.Array:
            return -learning_rate * jnp.where(kind == 2, us, ua + decoupled * p)

        return tmap(pick, u_adam, u_sgd, params), SwitchedState(s_adam, s_trace)

    return optax.GradientTransformation(init, update)


def make_tx() -> optax.GradientTransformation:
    return optax.inject_hyperparams(switched_optimizer)(learning_rate=1e-3, weight_decay=0.0, kind=0)


# -- the shape class -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class ShapeClass:
    """Everything that shapes the compiled program."""

    batch_size: int
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


def step_flops(batch_size: int, active_layers: int, cls: ShapeClass) -> float:
    """Estimated FLOPs of one training step of one lane in ``cls``: the matmuls of the
    active layers at the class's padded width (forward + backward = 6 per weight per
    row) plus ~16 element-wise FLOPs per parameter of the class (optimizer, masking)."""
    s = [cls.n_features] + [cls.width] * active_layers + [cls.n_classes]
    active = sum(m * n for m, n in zip(s[:-1], s[1:], strict=True))
    return 6.0 * batch_size * active + 16.0 * cls.n_params()


def bucket_width(width: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= width; beyond the largest, multiples of it."""
    for b in sorted(buckets):
        if b >= width:
            return int(b)
    top = int(max(buckets))
    return top * math.ceil(width / top)


def natural_class(batch_size: int, width: int, layers: int, n_features: int, n_classes: int,
                  buckets: Sequence[int] | None, k: int = 1) -> ShapeClass:
    """The class a trial gets when nothing compiled fits: bucketed width, layer cap."""
    if not buckets:  # bucketing off: the exact architecture
        return ShapeClass(batch_size, width, layers, n_features, n_classes, k)
    cap = 0 if layers == 0 else LAYER_CAP * math.ceil(layers / LAYER_CAP)
    return ShapeClass(batch_size, bucket_width(width, buckets), cap, n_features, n_classes, k)


@dataclasses.dataclass(slots=True)
class CostModel:
    """This process's measured compile cost and training speed (priors until measured)."""

    compile_seconds: float = 3.0
    flops_per_second: float = 2e10

    def note_compile(self, seconds: float) -> None:
        self.compile_seconds = 0.5 * self.compile_seconds + 0.5 * max(seconds, 0.1)

    def note_epoch(self, flops: float, seconds: float) -> None:
        if seconds > 0 and flops > 0:
            self.flops_per_second = 0.5 * self.flops_per_second + 0.5 * flops / seconds


def pick_class(natural: ShapeClass, width: int, layers: int, steps: int, epochs: int,
               compiled: Sequence[ShapeClass], cost: CostModel) -> ShapeClass:
    """Reuse a compiled class that fits when its extra compute costs less than a compile.

    The extra compute is the padded class's estimated FLOPs minus the natural
    class's, over ``steps`` x ``epochs`` steps, at the measured FLOP rate.
    """
    if natural in compiled:
        return natural
    fits = [c for c in compiled if c.batch_size == natural.batch_size and c.k == natural.k
            and c.n_features == natural.n_features and c.n_classes == natural.n_classes
            and c.width >= width and c.layers >= layers and (c.layers == 0) == (layers == 0)]
    if not fits:
        return natural
    best = min(fits, key=lambda c: step_flops(natural.batch_size, layers, c))
    extra = (step_flops(natural.batch_size, layers, best)
             - step_flops(natural.batch_size, layers, natural)) * steps * epochs
    return best if extra / cost.flops_per_second < cost.compile_seconds else natural


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


def dropout_mask(key: jax.Array, rate: jax.Array, rows: int, units: int) -> jax.Array:
    """Keep-mask (rows x units) with P(keep) = 1 - rate.

    Two words from the JAX key seed a counter hash over (unit, row): ~10 integer
    ops per draw instead of threefry's ~100 (measured: threefry made dropout
    cost as much as the matmuls of a 256-wide layer on CPU). The counter is
    ``unit * rows + row``, so unit j's draws do not depend on the padded width.
    """
    k = jax.random.bits(key, (2,), jnp.uint32)
    unit = jax.lax.broadcasted_iota(jnp.uint32, (rows, units), 1)
    row = jax.lax.broadcasted_iota(jnp.uint32, (rows, units), 0)
    h = _mix32(_mix32((unit * np.uint32(rows) + row) ^ k[0]) + k[1])
    return (h >> 8).astype(jnp.float32) >= rate * np.float32(1 << 24)


class Program:
    """The jitted epoch of one shape class (one XLA compile), with host-side init."""

    def __init__(self, cls: ShapeClass) -> None:
        self.cls = cls
        self.tx = make_tx()
        # k lanes: activation and depth are shared by the batch, so their switch and
        # conds stay real branches under vmap (a batched index would run every branch)
        lane_axes = Lane(0, 0, 0, None, None, 0, 0)
        fn = self._epoch if cls.k == 1 else jax.vmap(self._epoch, in_axes=(0, lane_axes, None, None, None, None))
        self.epoch = jax.jit(fn)
        ev = self._accuracy if cls.k == 1 else jax.vmap(self._accuracy, in_axes=(0, lane_axes, None, None))
        self.evaluate = jax.jit(ev)

    # -- host side --
    def init_state(self, seed: int, width: int, layers: int, gain: float, lr: float,
                   weight_decay: float, optimizer: str) -> State:
        """One lane's initial state: true-shape init, zero-padded, on the host."""
        c = self.cls
        true = init_arrays(seed, [c.n_features] + [width] * layers + [c.n_classes], gain)
        params = pad_layers(true, c.width, c.layers) if c.layers else {"wo": true[0][0], "bo": true[0][1]}
        opt = zeros_like_tree(jax.eval_shape(self.tx.init, params))
        hyper = {"learning_rate": np.float32(lr), "weight_decay": np.float32(weight_decay),
                 "kind": np.int32(OPT_INDEX[optimizer])}
        return State(params, opt._replace(hyperparams=hyper))

    # -- traced --
    def forward(self, params: dict, x: jax.Array, lane: Lane, key: jax.Array | None) -> jax.Array:
        mask = (jnp.arange(self.cls.width) < lane.width).astype(x.dtype)

        if key is not None:  # all layers' keep-masks in one draw; at rate 0 all keep, and
            # h / (1 - 0) is h exactly, so no branch is needed (the hash costs ~nothing)
            layers = 1 + (params["wh"].shape[0] if "wh" in params else 0)
            keep = jax.vmap(lambda i: dropout_mask(jax.random.fold_in(key, i), lane.dropout,
                                                   x.shape[0], self.cls.width))(jnp.arange(layers))

        def layer(i: jax.Array, h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
            h = _act(lane.act, h @ w + b) * mask
            if key is None:
                return h
            return jnp.where(keep[i], h / (1.0 - lane.dropout), 0.0)

        if "w0" not in params:  # a linear model
            return x @ params["wo"] + params["bo"]
        h = layer(jnp.int32(0), x, params["w0"], params["b0"])

        def hidden(h: jax.Array, inp: tuple) -> tuple[jax.Array, None]:
            i, w, b = inp
            return jax.lax.cond(i < lane.layers, lambda v: layer(i, v, w, b), lambda v: v, h), None

        n = params["wh"].shape[0]
        h, _ = jax.lax.scan(hidden, h, (jnp.arange(1, n + 1), params["wh"], params["bh"]))
        return h @ params["wo"] + params["bo"]

    def _epoch(self, state: State, lane: Lane, x: jax.Array, y: jax.Array, xv: jax.Array,
               yv: jax.Array) -> tuple[State, jax.Array, jax.Array]:
        bs = self.cls.batch_size
        n_steps = x.shape[0] // bs
        key = jax.random.fold_in(jax.random.key(lane.seed), lane.epoch)
        perm_key, steps_key = jax.random.split(key)
        idx = jax.random.permutation(perm_key, x.shape[0])[: n_steps * bs].reshape(n_steps, bs)

        def body(st: State, inp: tuple[jax.Array, jax.Array]) -> tuple[State, jax.Array]:
            rows, k = inp

            def loss_fn(params: dict) -> jax.Array:
                logits = self.forward(params, x[rows], lane, k)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[rows]).mean()

            loss, grads = jax.value_and_grad(loss_fn)(st.params)
            updates, opt_state = self.tx.update(grads, st.opt_state, st.params)
            return State(optax.apply_updates(st.params, updates), opt_state), loss

        def run(st: State) -> tuple[State, jax.Array]:
            st, losses = jax.lax.scan(body, st, (idx, jax.random.split(steps_key, n_steps)))
            return st, losses.mean()

        new, loss = run(state)
        if self.cls.k > 1:  # a lane whose trial ended keeps its state (a select: measured
            # 1.6x faster than a lax.cond, which under vmap runs both branches anyway)
            new = jax.tree_util.tree_map(lambda n, o: jnp.where(lane.active, n, o), new, state)
        return new, loss, self._accuracy(new.params, lane, xv, yv)

    def _accuracy(self, params: dict, lane: Lane, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(self.forward(params, x, lane, None), axis=-1) == y)


def lane_data(seed: int, epoch: int, width: int, layers: int, activation: str, dropout: float,
              active: bool = True) -> Lane:
    return Lane(np.uint32(int(seed) & 0xFFFFFFFF), np.int32(epoch), np.int32(width),
                np.int32(layers), np.int32(ACT_INDEX[activation]), np.float32(dropout),
                np.bool_(active))


def stack_lanes(lanes: Sequence[Lane]) -> Lane:
    """k lanes -> one Lane with a leading axis, but for the shared depth and activation."""
    if len({int(v.layers) for v in lanes}) > 1 or len({int(v.act) for v in lanes}) > 1:
        raise ValueError("batched trials must share their depth and activation")
    out = stack(lanes)
    return out._replace(layers=lanes[0].layers, act=lanes[0].act)


def stack(items: Sequence[Any]) -> Any:
    """Stack k host pytrees along a new leading lane axis."""
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(v) for v in xs]), *items)
