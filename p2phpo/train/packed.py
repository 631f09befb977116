"""Packed trials: K trials that share their data order trained as one network.

Measured on the 2-core VM (RESULTS.md, "batched trials"): one trial at a time
already runs its matmuls near this CPU's FLOP rate, and a ``vmap`` over K
lanes only turns K small matmuls into one batched matmul of the same FLOPs
(1.0x, identical or mixed members alike). What a batch *can* save is padding:
alone, a trial of width 70 runs in the 128-wide class of its bucket, because
a compile costs seconds. Packed, each member gets a *slot* of its own width
(a multiple of 32) and the batch costs one compile: the members' first layers
sit side by side in one ``features x sum(slots)`` matrix -- one wide matmul over
the shared minibatch, most of an MLP's FLOPs on 784 inputs -- and each slot's
hidden and output layers are plain 2-D matmuls of the slot's width (unrolled
over the slots: measured faster on this CPU than one batched ``dot_general``).

Members share the batch size, the depth, the activation and the data order
(the study's ``seed``: trials of a study all use it); each keeps its own
learning rate, weight decay, optimizer, dropout rate, width and init. Hidden
layers beyond the shared depth (up to the class's layer cap) are skipped by
``lax.cond`` in the forward pass *and* in the optimizer. A member's numbers
equal the same trial trained alone (float rounding aside). A member that stops
(pruned, finished) gets learning rate 0 and is no longer reported; the others
go on. A class with more or wider slots than a batch needs serves it (empty
slots train nothing), so a compiled class is reused when its padding costs
less than a compile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2phpo.train import program

SLOT_STEP = 32  # slot widths are multiples of this (the width_step of mnist-mlp)


@dataclasses.dataclass(frozen=True, slots=True)
class PackedClass:
    """Everything that shapes a packed program."""

    batch_size: int
    slots: tuple[int, ...]  # slot widths, widest first
    layers: int  # layer cap (>= 1)
    n_features: int
    n_classes: int

    @property
    def k(self) -> int:
        return len(self.slots)

    @property
    def total(self) -> int:
        return sum(self.slots)

    def step_flops(self, layers: int) -> float:
        """Cost of one step in FLOPs at this class's padded shapes: the matmuls (forward +
        backward) and the optimizer's update of the active layers (``program.OPT_FLOPS`` per
        parameter, as for a solo class)."""
        per_row = (self.n_features + self.n_classes) * self.total + (layers - 1) * sum(
            w * w for w in self.slots)
        biases = self.total * layers + self.n_classes * self.k
        return 6.0 * self.batch_size * per_row + program.OPT_FLOPS * (per_row + biases)

    def fits(self, need: PackedClass) -> bool:
        """Whether ``need``'s members fit here: same fixed shapes, and each of its slots
        (widest first) no wider than the slot it lands in."""
        return (self.batch_size, self.layers, self.n_features, self.n_classes) == (
            need.batch_size, need.layers, need.n_features, need.n_classes) and (
            self.k >= need.k and all(a >= b for a, b in zip(self.slots, need.slots, strict=False)))


def natural_class(batch_size: int, widths: Sequence[int], layers: int, n_features: int,
                  n_classes: int) -> PackedClass:
    """The tightest class of a batch: one slot per member, its width rounded up to
    ``SLOT_STEP``; the depth capped like a solo class."""
    if layers < 1:
        raise ValueError("a packed batch needs at least one hidden layer")
    slots = tuple(sorted((SLOT_STEP * math.ceil(w / SLOT_STEP) for w in widths), reverse=True))
    cap = program.LAYER_CAP * math.ceil(layers / program.LAYER_CAP)
    return PackedClass(batch_size, slots, cap, n_features, n_classes)


class Layout(NamedTuple):
    """Per-call data: the members' shared and per-slot values (a slot's axis is k)."""

    seed: jax.Array  # uint32, shared (the data order)
    epoch: jax.Array  # int32
    layers: jax.Array  # int32, shared true depth
    act: jax.Array  # int32, shared activation index
    width: jax.Array  # int32 (k,) true widths (0: an empty slot)
    dropout: jax.Array  # float32 (k,)
    lr: jax.Array  # float32 (k,), 0 for a member that stopped
    weight_decay: jax.Array  # float32 (k,)
    kind: jax.Array  # int32 (k,) optimizer index


class Moments(NamedTuple):
    """One leaf's optimizer state: adam's moments; sgd keeps its momentum in ``mu``
    (``program.OptState``'s layout)."""

    mu: jax.Array
    nu: jax.Array


def _unit_bits(key: jax.Array, rows: int, unit: jax.Array) -> jax.Array:
    """program.dropout_mask's 24 hash bits per (row, unit) before the rate is applied:
    the draws of a trial alone (they depend on the unit, not on the padded width).
    ``unit`` (1 x columns) is each column's unit within its member."""
    k = jax.random.bits(key, (2,), jnp.uint32)
    row = jax.lax.broadcasted_iota(jnp.uint32, (rows, unit.shape[1]), 0)
    h = program._mix32(program._mix32((unit.astype(jnp.uint32) * np.uint32(rows) + row) ^ k[0]) + k[1])
    return (h >> 8).astype(jnp.float32)


def _mask_bits(key: jax.Array, rows: int, units: int) -> jax.Array:
    return _unit_bits(key, rows, jax.lax.broadcasted_iota(jnp.int32, (1, units), 1))


def _leaf_update(g: jax.Array, p: jax.Array, st: Moments, lr: jax.Array, wd: jax.Array,
                 kind: jax.Array, c1: jax.Array, c2: jax.Array) -> tuple[jax.Array, Moments]:
    """program._leaf_update's rules (optax's adam, adamw, sgd with momentum) on one leaf,
    hyperparameters broadcast per slot, the rule selected per element (members of one
    leaf may differ): one fused pass over the parameter, its gradient and two moments."""
    coupled = jnp.where(kind == 1, 0.0, wd)
    g = g + coupled * p
    sgd = kind == 2
    mu = jnp.where(sgd, g + program.MOMENTUM * st.mu, (1 - program.B1) * g + program.B1 * st.mu)
    nu = jnp.where(sgd, st.nu, (1 - program.B2) * (g * g) + program.B2 * st.nu)
    adam = (mu / c1) / (jnp.sqrt(nu / c2) + program.EPS) + (wd - coupled) * p
    return (p - lr * jnp.where(sgd, mu, adam)).astype(p.dtype), Moments(mu, nu)


class PackedProgram:
    """The jitted epoch of one packed class (one XLA compile), with host-side packing."""

    def __init__(self, cls: PackedClass) -> None:
        self.cls = cls
        self.offsets = np.cumsum((0,) + cls.slots)
        col = np.repeat(np.arange(cls.k), cls.slots).astype(np.int32)
        self.col_slot = col  # the slot of each first-layer column
        self.col_unit = (np.arange(cls.total) - self.offsets[col]).astype(np.int32)  # its unit
        self.epoch = jax.jit(self._epoch)

    # -- host side --
    def check(self, widths: Sequence[int]) -> None:
        if len(widths) > self.cls.k or any(w > s for w, s in zip(widths, self.cls.slots, strict=False)):
            raise ValueError(f"widths {list(widths)} do not fit the packed class {self.cls}")

    def init_state(self, seeds: Sequence[int], widths: Sequence[int], layers: int,
                   gain: float) -> tuple[dict, dict]:
        """Params (each member's true-shape init, as alone) and zero optimizer state,
        on the host; member i sits in slot i (``widths`` widest first, 0: empty)."""
        c = self.cls
        self.check(widths)
        p: dict[str, Any] = {
            "w0": np.zeros((c.n_features, c.total), np.float32), "b0": np.zeros(c.total, np.float32),
            "wh": [[np.zeros((s, s), np.float32) for s in c.slots] for _ in range(c.layers - 1)],
            "bh": [[np.zeros(s, np.float32) for s in c.slots] for _ in range(c.layers - 1)],
            "wo": [np.zeros((s, c.n_classes), np.float32) for s in c.slots],
            "bo": [np.zeros(c.n_classes, np.float32) for _ in c.slots]}
        for i, (s, w) in enumerate(zip(seeds, widths, strict=True)):
            if w == 0:
                continue
            *hidden, (w_out, b_out) = program.init_arrays(
                s, [c.n_features] + [w] * layers + [c.n_classes], gain)
            off = self.offsets[i]
            p["w0"][:, off: off + w], p["b0"][off: off + w] = hidden[0]
            for j, (wj, bj) in enumerate(hidden[1:]):
                p["wh"][j][i][:w, :w], p["bh"][j][i][:w] = wj, bj
            p["wo"][i][:w], p["bo"][i][:] = w_out, b_out
        moments = jax.tree_util.tree_map(lambda a: Moments(np.zeros_like(a), np.zeros_like(a)), p)
        return p, (moments, np.int32(0))

    # -- traced --
    def forward(self, p: dict, x: jax.Array, lay: Layout, key: jax.Array | None) -> jax.Array:
        """Logits (k, rows, classes)."""
        c = self.cls
        rows = x.shape[0]
        bits = {} if key is None else {  # one draw per hidden layer, shared by the slots
            i: _mask_bits(jax.random.fold_in(key, i), rows, c.slots[0]) for i in range(1, c.layers)}

        def finish(i: int, z: jax.Array, s: int) -> jax.Array:  # activation, mask, dropout
            h = program._act(lay.act, z) * (jnp.arange(c.slots[s]) < lay.width[s]).astype(z.dtype)
            if key is None:
                return h
            rate = lay.dropout[s]
            return jnp.where(bits[i][:, : c.slots[s]] >= rate * np.float32(1 << 24), h / (1.0 - rate), 0.0)

        # every slot's first layer: one wide matmul, then activation, width mask and
        # dropout over all slots' columns at once (per-column width and rate)
        z = x @ p["w0"] + p["b0"]
        h = program._act(lay.act, z) * (self.col_unit < lay.width[self.col_slot]).astype(z.dtype)
        if key is not None:
            rate = lay.dropout[self.col_slot][None, :]
            keep = _unit_bits(jax.random.fold_in(key, 0), rows, self.col_unit[None, :]) >= rate * np.float32(1 << 24)
            h = jnp.where(keep, h / (1.0 - rate), 0.0)
        hs = [h[:, self.offsets[s]: self.offsets[s + 1]] for s in range(c.k)]
        for j in range(c.layers - 1):
            def layer(vs: list, j: int = j) -> list:
                return [finish(j + 1, v @ p["wh"][j][s] + p["bh"][j][s], s) for s, v in enumerate(vs)]
            hs = jax.lax.cond(j + 1 < lay.layers, layer, lambda vs: vs, hs)
        return jnp.stack([v @ p["wo"][s] + p["bo"][s] for s, v in enumerate(hs)])

    def _hyper(self, v: jax.Array) -> dict:
        """A per-slot value (k,) broadcast onto every parameter leaf."""
        col = v[self.col_slot]
        per = [v[s] for s in range(self.cls.k)]
        return {"w0": col[None, :], "b0": col, "wh": [per] * (self.cls.layers - 1),
                "bh": [per] * (self.cls.layers - 1), "wo": per, "bo": per}

    def _update(self, grads: dict, params: dict, opt: tuple[dict, jax.Array], lay: Layout
                ) -> tuple[dict, tuple[dict, jax.Array]]:
        moments, count = opt
        count = count + 1
        c1 = 1 - program.B1 ** count.astype(jnp.float32)
        c2 = 1 - program.B2 ** count.astype(jnp.float32)
        hyper = [self._hyper(v) for v in (lay.lr, lay.weight_decay, lay.kind)]
        flat = [jax.tree_util.tree_leaves(t) for t in (grads, params, *hyper)]
        leaves_opt = jax.tree_util.tree_leaves(moments, is_leaf=lambda t: isinstance(t, Moments))
        # leaf order: b0, bh[j][s], bo[s], w0, wh[j][s], wo[s] (dict keys sorted)
        hidden = self._hidden_leaves()
        args = [(*a, c1, c2) for a in zip(*flat[:2], leaves_opt, *flat[2:], strict=True)]
        out: list[Any] = [None] * len(args)
        for n, a in enumerate(args):  # the first and output layers: always
            if n not in hidden:
                out[n] = _leaf_update(*a)
        for j in sorted(set(hidden.values())):  # one branch per hidden layer: beyond the
            ns = [n for n, m in hidden.items() if m == j]  # depth it costs no optimizer work
            got = jax.lax.cond(j < lay.layers, lambda xs: [_leaf_update(*x) for x in xs],
                               lambda xs: [(x[1], x[2]) for x in xs], [args[n] for n in ns])
            for n, r in zip(ns, got, strict=True):
                out[n] = r
        treedef = jax.tree_util.tree_structure(params)
        return (treedef.unflatten([r[0] for r in out]),
                (treedef.unflatten([r[1] for r in out]), count))

    def _hidden_leaves(self) -> dict[int, int]:
        """Flat leaf index -> 1-based hidden layer number, for the hidden layers' leaves."""
        c = self.cls
        marks = {"w0": 0, "b0": 0, "wo": [0] * c.k, "bo": [0] * c.k,
                 "wh": [[j + 1] * c.k for j in range(c.layers - 1)],
                 "bh": [[j + 1] * c.k for j in range(c.layers - 1)]}
        return {n: m for n, m in enumerate(jax.tree_util.tree_leaves(marks)) if m}

    def _epoch(self, state: tuple[dict, dict], lay: Layout, x: jax.Array, y: jax.Array,
               xv: jax.Array, yv: jax.Array) -> tuple[tuple[dict, dict], jax.Array, jax.Array]:
        bs = self.cls.batch_size
        n_steps = x.shape[0] // bs
        key = jax.random.fold_in(jax.random.key(lay.seed), lay.epoch)  # as a trial alone
        perm_key, steps_key = jax.random.split(key)
        idx = jax.random.permutation(perm_key, x.shape[0])[: n_steps * bs].reshape(n_steps, bs)

        def body(st: tuple[dict, dict], inp: tuple[jax.Array, jax.Array]) -> tuple:
            rows, k = inp
            params, opt = st

            def loss_fn(params: dict) -> tuple[jax.Array, jax.Array]:
                logits = self.forward(params, x[rows], lay, k)
                yb = jnp.broadcast_to(y[rows][None, :], logits.shape[:2])
                lane = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(axis=1)
                return lane.sum(), lane  # slots' parameters are disjoint: each its own gradient

            (_, lane), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            return self._update(grads, params, opt, lay), lane

        state, losses = jax.lax.scan(body, state, (idx, jax.random.split(steps_key, n_steps)))
        logits = self.forward(state[0], xv, lay, None)
        acc = jnp.mean(jnp.argmax(logits, axis=-1) == yv[None, :], axis=1)
        return state, losses.mean(axis=0), acc
