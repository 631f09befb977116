"""The plain model: one jitted program per exact architecture, optax's own optimizers.

The reference the shape-class programs (``program.py``) are tested against (their loss
curves must equal its own for the same seed), and what ``mlp.train(..., buckets=None)``
and ``benchmarks/exact_epochs.py`` run. Moved out of ``mlp.py`` unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2phpo.train import program

if TYPE_CHECKING:
    from p2phpo.train.config import Config


class TrainState(NamedTuple):
    params: list[tuple[jax.Array, jax.Array]]
    opt_state: Any


def _make_tx(kind: str) -> optax.GradientTransformation:
    def make(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
        if kind == "adamw":
            return optax.adamw(learning_rate, weight_decay=weight_decay)
        inner = optax.adam(learning_rate) if kind == "adam" else optax.sgd(learning_rate, momentum=0.9)
        return optax.chain(optax.add_decayed_weights(weight_decay), inner)

    return optax.inject_hyperparams(make)(learning_rate=1e-3, weight_decay=0.0)


def init_params(key: jax.Array, sizes: list[int], gain: float) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n), jnp.float32) * jnp.sqrt(gain / m), jnp.zeros(n, jnp.float32))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)]


class Model:
    """The exact architecture, optax's own adam/adamw/sgd chains: the reference that
    bucketed programs (``program.py``) are tested against, and ``buckets=None``."""

    def __init__(self, cfg: Config, n_features: int, n_classes: int) -> None:
        self.sizes = [n_features] + [cfg.width] * cfg.layers + [n_classes]
        self.batch_size = cfg.batch_size
        self.use_dropout = cfg.dropout > 0
        self.act = program.ACTIVATION_FNS[cfg.activation]
        self.gain = program.GAIN[cfg.activation]
        self.tx = _make_tx(cfg.optimizer)
        self.epoch = jax.jit(self._epoch)
        self.evaluate = jax.jit(self._accuracy)
        self._exe: dict[bool, Any] = {}  # the epoch compiled ahead of time, by ``fast``

    def run(self, state: TrainState, lane: program.Lane, x: jax.Array, y: jax.Array,
            xv: jax.Array, yv: jax.Array, *, fast: bool = False
            ) -> tuple[TrainState, jax.Array, jax.Array]:
        """One epoch (``epoch``) through an ahead-of-time executable, compiled on the first
        call; ``fast`` compiles it without XLA's backend optimizations and fusion emitters
        (``FAST_COMPILE``: measured, CPU s, a 3-layer 46-wide batch-64 model's compile 1.44 ->
        0.33, its epoch 0.010 -> 0.043; a 2-layer 545-wide batch-512 one 1.28 -> 0.30, 0.079
        -> 0.196)."""
        exe = self._exe.get(fast)
        if exe is None:
            lowered = self.epoch.lower(state, lane, x, y, xv, yv)
            exe = self._exe[fast] = lowered.compile(FAST_COMPILE) if fast else lowered.compile()
        return exe(state, lane, x, y, xv, yv)

    def init_state(self, seed: int, cfg: Config) -> TrainState:
        params = program.init_arrays(seed, self.sizes, self.gain)
        opt = program.zeros_like_tree(jax.eval_shape(self.tx.init, params))
        hyper = {"learning_rate": np.float32(cfg.lr), "weight_decay": np.float32(cfg.weight_decay)}
        return TrainState(params, opt._replace(hyperparams=hyper))

    def forward(self, params: list, x: jax.Array, key: jax.Array | None = None,
                rate: jax.Array | None = None) -> jax.Array:
        *hidden, (w_out, b_out) = params
        for i, (w, b) in enumerate(hidden):
            x = self.act(x @ w + b)
            if key is not None and self.use_dropout:
                keep = program.dropout_mask(jax.random.fold_in(key, i), rate, x.shape[0], x.shape[1])
                x = jnp.where(keep, x / (1.0 - rate), 0.0)
        return x @ w_out + b_out

    def _epoch(self, state: TrainState, lane: program.Lane, x: jax.Array, y: jax.Array,
               xv: jax.Array, yv: jax.Array) -> tuple[TrainState, jax.Array, jax.Array]:
        n_steps = x.shape[0] // self.batch_size
        key = jax.random.fold_in(jax.random.key(lane.seed), lane.epoch)
        perm_key, steps_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, x.shape[0])[: n_steps * self.batch_size]
        idx = perm.reshape(n_steps, self.batch_size)

        def body(st: TrainState, inp: tuple[jax.Array, jax.Array]) -> tuple[TrainState, jax.Array]:
            rows, s = inp
            k = jax.random.fold_in(steps_key, s)

            def loss_fn(params: list) -> jax.Array:
                logits = self.forward(params, x[rows], k, lane.dropout)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[rows]).mean()

            loss, grads = jax.value_and_grad(loss_fn)(st.params)
            updates, opt_state = self.tx.update(grads, st.opt_state, st.params)
            return TrainState(optax.apply_updates(st.params, updates), opt_state), loss

        state, losses = jax.lax.scan(body, state, (idx, jnp.arange(n_steps)))
        return state, losses.mean(), self._accuracy(state.params, lane, xv, yv)

    def _accuracy(self, params: list, lane: program.Lane, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(self.forward(params, x), axis=-1) == y)


FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
"""XLA options of a ``fast`` compile (``Model.run``). The optimization level alone took a
compile to about half (0.72 CPU s for the 46-wide model, epoch 0.034 s); without the fusion
emitters as well, to a quarter (those alone, at full optimization: 0.92 s)."""

_MODELS: dict[tuple, Model] = {}


def get_model(cfg: Config, n_features: int, n_classes: int) -> Model:
    key = (cfg.arch(), n_features, n_classes)
    if key not in _MODELS:
        _MODELS[key] = Model(cfg, n_features, n_classes)
    return _MODELS[key]
