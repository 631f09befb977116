"""The built-in ``mnist-mlp`` objective: an MLP in pure JAX, trained with optax.

Params are a pytree (a list of ``(w, b)`` per layer); one jitted
``train_step(state, batch, key) -> (state, metrics)`` is scanned over an
epoch whose order is shuffled on the device; the data is put on the device
once per process. Learning rate, weight decay and dropout rate are *data*
(``optax.inject_hyperparams`` and a scalar in the state), so trials that
share an architecture — layers, rounded width, activation, optimizer, batch
size, dropout on/off — reuse the compiled code: :class:`Model` objects are
cached per architecture for the life of the process (the worker), and JAX's
persistent cache, when configured, keeps them across restarts.

Parameters (DESIGN §10) and their defaults when the space omits them:
``lr`` 1e-3, ``layers`` 2, ``width`` 256 (rounded to a multiple of
``width_step`` = 32), ``activation`` relu (gelu, tanh, silu, elu, sigmoid),
``dropout`` 0.0, ``optimizer`` adam (adamw, sgd with momentum 0.9),
``weight_decay`` 0.0 (coupled L2 for adam and sgd, decoupled for adamw),
``batch_size`` 128. Options (the study's ``[objective]`` table):
``dataset`` "mnist", ``data_dir``, ``max_epochs`` 20, ``seed`` 0,
``val_size``, ``split_seed`` 0 (the validation split), ``width_step`` 32.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2phpo.train.data import Dataset, load_dataset
from p2phpo.trial import TrialPruned

PARAM_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "layers": 2, "width": 256, "activation": "relu", "dropout": 0.0,
    "optimizer": "adam", "weight_decay": 0.0, "batch_size": 128,
}
OPTION_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist", "data_dir": None, "max_epochs": 20, "seed": 0, "val_size": None,
    "split_seed": 0, "width_step": 32,
}
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
    "elu": jax.nn.elu, "sigmoid": jax.nn.sigmoid,
}
OPTIMIZERS = ("adam", "adamw", "sgd")


# -- compile counting (from JAX's own compile events, not timing) ---------------

class _CompileLog:
    """Counts XLA backend compiles and their seconds, process-wide."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    # Lowering and XLA compile; tracing is left out because nested traces
    # (a scan body inside a jitted function) would be counted twice.
    PHASES = ("/jax/core/compile/jaxpr_to_mlir_module_duration", EVENT)

    def __init__(self) -> None:
        self.compiles = 0
        self.seconds = 0.0
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration: float, **_: Any) -> None:
        if event in self.PHASES:
            with self._lock:
                self.seconds += duration
                self.compiles += event == self.EVENT


COMPILE_LOG = _CompileLog()


def compile_count() -> int:
    """Number of XLA compiles so far in this process."""
    return COMPILE_LOG.compiles


# -- configuration ------------------------------------------------------------------

def round_width(width: float, step: int = 32) -> int:
    """Round to the nearest multiple of ``step`` (at least ``step``)."""
    return max(step, step * round(float(width) / step))


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """One trial's hyperparameters, validated, width already rounded."""

    lr: float
    layers: int
    width: int
    activation: str
    dropout: float
    optimizer: str
    weight_decay: float
    batch_size: int

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.layers < 0 or self.layers > 16:
            raise ValueError(f"layers must be in 0..16, got {self.layers}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], width_step: int = 32) -> Config:
        unknown = sorted(set(params) - set(PARAM_DEFAULTS) - {"seed"})
        if unknown:
            raise ValueError(f"mnist-mlp does not take the parameter(s) {', '.join(unknown)}; "
                             f"it takes {', '.join(PARAM_DEFAULTS)}")
        p = {**PARAM_DEFAULTS, **{k: v for k, v in params.items() if k != "seed"}}
        return cls(lr=float(p["lr"]), layers=int(p["layers"]),
                   width=round_width(p["width"], width_step), activation=str(p["activation"]),
                   dropout=float(p["dropout"]), optimizer=str(p["optimizer"]),
                   weight_decay=float(p["weight_decay"]), batch_size=int(p["batch_size"]))

    def arch(self) -> tuple:
        """What shapes the compiled code: trials with equal arch share it."""
        return (self.layers, self.width, self.activation, self.optimizer, self.batch_size,
                self.dropout > 0)


# -- the model --------------------------------------------------------------------

class TrainState(NamedTuple):
    params: list[tuple[jax.Array, jax.Array]]
    opt_state: Any
    dropout: jax.Array  # scalar rate, data so that a new rate does not recompile


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
    """Jitted functions for one architecture and data shape; built once, reused."""

    def __init__(self, cfg: Config, n_features: int, n_classes: int) -> None:
        self.sizes = [n_features] + [cfg.width] * cfg.layers + [n_classes]
        self.batch_size = cfg.batch_size
        self.use_dropout = cfg.dropout > 0
        self.act = ACTIVATIONS[cfg.activation]
        self.gain = 2.0 if cfg.activation in ("relu", "gelu", "silu", "elu") else 1.0
        self.tx = _make_tx(cfg.optimizer)
        self.init_state = jax.jit(self._init_state)
        self.train_step = jax.jit(self._train_step)
        self.train_epoch = jax.jit(self._train_epoch)
        self.accuracy = jax.jit(self._accuracy)

    def forward(self, params: list, x: jax.Array, key: jax.Array | None = None,
                rate: jax.Array | None = None) -> jax.Array:
        *hidden, (w_out, b_out) = params
        keys = jax.random.split(key, max(1, len(hidden))) if key is not None else None
        for i, (w, b) in enumerate(hidden):
            x = self.act(x @ w + b)
            if keys is not None and self.use_dropout:
                keep = jax.random.bernoulli(keys[i], 1.0 - rate, x.shape)
                x = jnp.where(keep, x / (1.0 - rate), 0.0)
        return x @ w_out + b_out

    def _init_state(self, key: jax.Array, lr: jax.Array, wd: jax.Array, rate: jax.Array) -> TrainState:
        params = init_params(key, self.sizes, self.gain)
        opt_state = self.tx.init(params)
        hyper = {**opt_state.hyperparams, "learning_rate": lr, "weight_decay": wd}
        return TrainState(params, opt_state._replace(hyperparams=hyper), rate)

    def _train_step(self, state: TrainState, batch: tuple[jax.Array, jax.Array],
                    key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y = batch

        def loss_fn(params: list) -> jax.Array:
            logits = self.forward(params, x, key, state.dropout)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.dropout), {"loss": loss}

    def _train_epoch(self, state: TrainState, x: jax.Array, y: jax.Array,
                     key: jax.Array) -> tuple[TrainState, jax.Array]:
        n_steps = x.shape[0] // self.batch_size
        perm_key, steps_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, x.shape[0])[: n_steps * self.batch_size]
        idx = perm.reshape(n_steps, self.batch_size)

        def body(st: TrainState, inp: tuple[jax.Array, jax.Array]) -> tuple[TrainState, jax.Array]:
            rows, k = inp
            st, metrics = self._train_step(st, (x[rows], y[rows]), k)
            return st, metrics["loss"]

        state, losses = jax.lax.scan(body, state, (idx, jax.random.split(steps_key, n_steps)))
        return state, losses.mean()

    def _accuracy(self, params: list, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(self.forward(params, x), axis=-1) == y)


_MODELS: dict[tuple, Model] = {}
_DEVICE_DATA: dict[str, tuple[jax.Array, ...]] = {}


def get_model(cfg: Config, n_features: int, n_classes: int) -> Model:
    key = (cfg.arch(), n_features, n_classes)
    if key not in _MODELS:
        _MODELS[key] = Model(cfg, n_features, n_classes)
    return _MODELS[key]


def device_data(ds: Dataset) -> tuple[jax.Array, ...]:
    """Train/val/test as float32 in [0, 1] on the default device, once per dataset."""
    if ds.fingerprint not in _DEVICE_DATA:
        _DEVICE_DATA.clear()  # one dataset per process at a time

        def put(x: np.ndarray) -> jax.Array:
            return jax.device_put(x)

        _DEVICE_DATA[ds.fingerprint] = (
            put(ds.x_train.astype(np.float32) / 255.0), put(ds.y_train),
            put(ds.x_val.astype(np.float32) / 255.0), put(ds.y_val),
            put(ds.x_test.astype(np.float32) / 255.0), put(ds.y_test))
    return _DEVICE_DATA[ds.fingerprint]


# -- training -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_accuracy: float
    seconds: float
    samples_per_second: float


@dataclasses.dataclass(frozen=True, slots=True)
class TrainResult:
    config: Config
    epochs: list[EpochMetrics]
    val_accuracy: float
    test_accuracy: float | None
    compile_seconds: float
    compiles: int


def train(ds: Dataset, params: Mapping[str, Any], *, epochs: int, seed: int = 0,
          width_step: int = 32, test: bool = False,
          on_epoch: Callable[[EpochMetrics], None] | None = None) -> TrainResult:
    """Train one configuration for ``epochs`` epochs; ``on_epoch`` may raise to stop."""
    cfg = Config.from_params(params, width_step)
    seed = int(params.get("seed", seed))
    x_tr, y_tr, x_va, y_va, x_te, y_te = device_data(ds)
    if cfg.batch_size > x_tr.shape[0]:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {x_tr.shape[0]} training rows")
    model = get_model(cfg, ds.num_features, ds.num_classes)
    compiles0, seconds0 = COMPILE_LOG.compiles, COMPILE_LOG.seconds
    key, init_key = jax.random.split(jax.random.key(seed))
    f32 = np.float32
    state = model.init_state(init_key, f32(cfg.lr), f32(cfg.weight_decay), f32(cfg.dropout))
    history: list[EpochMetrics] = []
    n_seen = (x_tr.shape[0] // cfg.batch_size) * cfg.batch_size
    for epoch in range(1, epochs + 1):
        t0, c0 = time.perf_counter(), COMPILE_LOG.seconds
        key, epoch_key = jax.random.split(key)
        state, loss = model.train_epoch(state, x_tr, y_tr, epoch_key)
        acc = float(model.accuracy(state.params, x_va, y_va))
        seconds = time.perf_counter() - t0
        compute = max(seconds - (COMPILE_LOG.seconds - c0), 1e-9)  # samples/s without compiling
        m = EpochMetrics(epoch, float(loss), acc, seconds, n_seen / compute)
        history.append(m)
        if on_epoch is not None:
            on_epoch(m)
    test_acc = float(model.accuracy(state.params, x_te, y_te)) if test else None
    return TrainResult(cfg, history, history[-1].val_accuracy if history else float("nan"),
                       test_acc, COMPILE_LOG.seconds - seconds0, COMPILE_LOG.compiles - compiles0)


def mnist_mlp(trial: Any) -> float:
    """The built-in objective: reports validation accuracy after every epoch."""
    opts = {**OPTION_DEFAULTS, **trial.options}
    ds = cached_dataset(opts)

    def on_epoch(m: EpochMetrics) -> None:
        trial.report(m.val_accuracy, m.epoch)
        if trial.should_prune():
            raise TrialPruned()

    result = train(ds, trial.params, epochs=int(opts["max_epochs"]), seed=int(opts["seed"]),
                   width_step=int(opts["width_step"]), on_epoch=on_epoch)
    return result.val_accuracy


_DATASETS: dict[tuple, Dataset] = {}


def cached_dataset(options: Mapping[str, Any]) -> Dataset:
    """Load the dataset named in ``options`` once per process."""
    opts = {**OPTION_DEFAULTS, **options}
    key = (str(opts["dataset"]), opts["data_dir"], opts["val_size"], int(opts["split_seed"]),
           opts.get("label_column", "first"))
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = load_dataset(key[0], data_dir=key[1], val_size=key[2], seed=key[3],
                                      label_column=key[4])
    return _DATASETS[key]


def prepare(options: Mapping[str, Any]) -> dict[str, Any]:
    """Worker setup hook: load the data once; the node records its description."""
    return {"dataset": cached_dataset(options).describe()}


mnist_mlp.prepare = prepare  # type: ignore[attr-defined]
