"""The shape-class programs' optimizer: adam / adamw / sgd+momentum chosen by an index
(optax's formulas, one fused update per array), and the micro-batch gradient sum, both
skipping the hidden layers a trial does not use (a real branch per layer: no work).

Split out of ``program.py`` (which re-exports every name here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def layer_of(name: str) -> int | None:
    """The hidden layer a parameter belongs to (``w2`` -> 2), None for the output layer."""
    return None if name[1:] == "o" else int(name[1:])


def _by_layer(names: list[str] | dict) -> dict[int | None, list[str]]:
    out: dict[int | None, list[str]] = {}
    for name in names:
        out.setdefault(layer_of(name), []).append(name)
    return out


def _active_layers(names: dict, layers: jax.Array, work: Callable[[list], list],
                   idle: Callable[[list], list], args: Callable[[str], tuple]) -> dict[str, Any]:
    """``work`` on the arrays of the output layer, the first hidden layer and every
    hidden layer below ``layers``; ``idle`` on the others (a real branch per layer: an
    inactive layer costs nothing). ``args(name)``: one array's operands."""
    out: dict[str, Any] = {}
    for j, group in _by_layer(names).items():
        xs = [args(n) for n in group]
        done = work(xs) if j is None or j == 0 else jax.lax.cond(j < layers, work, idle, xs)
        out.update(zip(group, done, strict=True))
    return out


# -- the optimizer: adam / adamw / sgd+momentum chosen by an index ------------------

OPTIMIZERS = ("adam", "adamw", "sgd")
OPT_INDEX = {name: i for i, name in enumerate(OPTIMIZERS)}
B1, B2, EPS, MOMENTUM = 0.9, 0.999, 1e-8, 0.9


class Hyper(NamedTuple):
    """A trial's optimizer settings, as data (a new value never recompiles)."""

    lr: jax.Array  # float32
    weight_decay: jax.Array  # float32
    kind: jax.Array  # int32 index into OPTIMIZERS


class OptState(NamedTuple):
    """Adam's moments ``mu``/``nu``; sgd keeps its momentum buffer in ``mu``."""

    mu: dict[str, jax.Array]
    nu: dict[str, jax.Array]
    count: jax.Array  # int32 steps taken
    hyper: Hyper


def _leaf_update(h: Hyper, c1: jax.Array, c2: jax.Array, p: jax.Array, g: jax.Array,
                 m: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One parameter array's step with optax's formulas: adam (coupled L2), adamw
    (decoupled) or sgd (momentum 0.9, coupled L2). Only the chosen rule runs (a real
    branch; under ``vmap`` with per-lane optimizers both run and one is selected)."""
    coupled = jnp.where(h.kind == 1, 0.0, h.weight_decay)  # adamw decays after adam
    decoupled = h.weight_decay - coupled

    def adam(ops: tuple) -> tuple:
        p, g, m, v = ops
        g = g + coupled * p
        m = (1 - B1) * g + B1 * m
        v = (1 - B2) * (g * g) + B2 * v
        return p - h.lr * ((m / c1) / (jnp.sqrt(v / c2) + EPS) + decoupled * p), m, v

    def sgd(ops: tuple) -> tuple:
        p, g, m, v = ops
        m = (g + coupled * p) + MOMENTUM * m
        return p - h.lr * m, m, v

    return jax.lax.cond(h.kind == 2, sgd, adam, (p, g, m, v))


def optimizer_step(params: dict, grads: dict, opt: OptState, layers: jax.Array
                   ) -> tuple[dict, OptState]:
    """Update every parameter of the ``layers`` active hidden layers and the output layer;
    an inactive layer's arrays pass through untouched (a real branch: no work)."""
    count = opt.count + 1
    c1 = 1 - B1 ** count.astype(jnp.float32)
    c2 = 1 - B2 ** count.astype(jnp.float32)
    out = _active_layers(params, layers, lambda xs: [_leaf_update(opt.hyper, c1, c2, *a) for a in xs],
                         lambda xs: [(a[0], a[2], a[3]) for a in xs],
                         lambda n: (params[n], grads[n], opt.mu[n], opt.nu[n]))
    new_p = {n: pmv[0] for n, pmv in out.items()}
    new_m = {n: pmv[1] for n, pmv in out.items()}
    new_v = {n: pmv[2] for n, pmv in out.items()}
    return new_p, OptState(new_m, new_v, count, opt.hyper)


def init_opt(params: dict, lr: float, weight_decay: float, optimizer: str) -> OptState:
    """Zero moments on the host (no compile)."""
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    return OptState(zeros, {k: np.zeros_like(v) for k, v in params.items()}, np.int32(0),
                    Hyper(np.float32(lr), np.float32(weight_decay), np.int32(OPT_INDEX[optimizer])))


def accumulate(acc: dict, grads: dict, layers: jax.Array) -> dict:
    """``acc + grads`` for the arrays of the ``layers`` active hidden layers and the
    output layer; an inactive layer's accumulator passes through (its gradient is zero).
    Summing every array of a deep, wide class per micro-batch cost a 1-layer, 800-wide,
    batch-512 trial in a 1,024-wide class 35% of its epoch (8 passes per step)."""
    return _active_layers(acc, layers, lambda xs: [u + v for u, v in xs], lambda xs: [u for u, _ in xs],
                          lambda n: (acc[n], grads[n]))
