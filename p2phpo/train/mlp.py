"""The built-in ``mnist-mlp`` objective: an MLP in pure JAX, trained with optax.

A trial runs in a *shape-class program* (``program.py``): its width is padded
up to a bucket (``width_buckets``) and its depth to a layer cap, the padding
masked so the network is mathematically the trial's own; activation and
optimizer are indices and learning rate, weight decay and dropout rate are
data, so one XLA compile serves every trial of a class (micro-batch, width,
layer cap; a step of batch size b runs as b / micro-batch passes). A trial
reuses an already compiled class that fits when the padding's extra compute,
at this process's measured speed, costs less than a compile; a new class is
made only as general (bucket width, 64-row passes) as costs the trial less
than a compile (``program.choose_class``). A trial whose class is not compiled
yet starts in a compiled class that fits while its own compiles on a
background thread, and moves in at an epoch boundary (``plan``); the worker
precompiles a fallback class as soon as its data is loaded (``precompile``).
Once the padding that a bucket's trials paid in wider classes adds up to a
compile, their own class compiles in the background (``rent``). A trial that no
compiled class fits runs its exact plain model instead of waiting for a class's
compile when that is cheaper (``plan``: the worker's first trial, the first trial
wider than every compiled class), compiled without XLA's optimizations when its
epochs are cheap (``_fast_pays``).
Programs are cached for the life of the process (the worker); JAX's
persistent cache, when configured, keeps them across restarts (the classes
repeat exactly, so it hits). One program call trains an epoch (a loop over
the steps, shuffled on the device) and measures the validation accuracy; the data is put on the device once per process, so no
step goes back to the host. :class:`Model` (``plain.py``) is the plain per-architecture
model (``buckets=None``), the reference the programs are tested against.

Parameters (the study's ``[space]``, docs/study-file.md) and their defaults when the space omits them:
``lr`` 1e-3, ``layers`` 2, ``width`` 256 (rounded to a multiple of
``width_step`` = 32), ``activation`` relu (gelu, tanh, silu, elu, sigmoid),
``dropout`` 0.0, ``optimizer`` adam (adamw, sgd with momentum 0.9),
``weight_decay`` 0.0 (coupled L2 for adam and sgd, decoupled for adamw),
``batch_size`` 128. Options (the study's ``[objective]`` table):
``dataset`` "mnist", ``data_dir``, ``max_epochs`` 20, ``seed`` 0,
``val_size``, ``split_seed`` 0 (the validation split), ``width_step`` 32,
``width_buckets`` [128, 256, 384, 512, 768, 1024] (an empty list compiles each exact architecture).
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import jax
import numpy as np

from p2phpo.train import program
from p2phpo.train.compiles import COMPILE_LOG, compile_count  # noqa: F401 (re-exported)
from p2phpo.train.config import ACTIVATIONS, OPTIMIZERS, PARAM_DEFAULTS, Config, round_width  # noqa: F401 (re-exported)
from p2phpo.train.data import Dataset, load_dataset
from p2phpo.train.plain import Model, TrainState, get_model, init_params  # noqa: F401 (re-exported)
from p2phpo.trial import TrialPruned

OPTION_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist", "data_dir": None, "max_epochs": 20, "seed": 0, "val_size": None,
    "split_seed": 0, "width_step": 32, "width_buckets": list(program.WIDTH_BUCKETS),
}

_PROGRAMS: dict[program.ShapeClass, program.Program] = {}
COST = program.CostModel()
_DEVICE_DATA: dict[str, tuple[jax.Array, ...]] = {}


def get_program(cls: program.ShapeClass) -> program.Program:
    if cls not in _PROGRAMS:
        _PROGRAMS[cls] = program.Program(cls)
    return _PROGRAMS[cls]


class _Background:
    """Compiles shape-class programs on one daemon thread while trials train: a trial
    whose own class is not compiled yet starts in a compiled class that fits and moves
    into its own at an epoch boundary once it is ready (``train``). The worker trains
    on one XLA thread, so on a 2-core host the compile takes the otherwise idle core.
    A finished program joins ``_PROGRAMS``; ``synchronous`` (tests) compiles at submit."""

    def __init__(self) -> None:
        self.pending: dict[program.ShapeClass, Future] = {}
        self.started: dict[program.ShapeClass, float] = {}  # monotonic submit time
        self.synchronous = False
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, prog: program.Program, args: tuple) -> Future:
        fut: Future = Future()
        self.pending[prog.cls] = fut
        self.started[prog.cls] = time.monotonic()
        if self.synchronous:
            self._compile(prog, args, fut)
            return fut
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="p2phpo-compile", daemon=True)
            self._thread.start()
        self._jobs.put((prog, args, fut))
        return fut

    def _loop(self) -> None:
        while True:
            self._compile(*self._jobs.get())

    def remaining(self, cls: program.ShapeClass) -> float:
        """Estimated seconds until ``cls`` is compiled: 0 when it is, a compile when it
        is neither compiled nor compiling."""
        if cls in _PROGRAMS:
            return 0.0
        if cls not in self.pending:
            return COST.compile_seconds
        return max(0.0, COST.compile_seconds - (time.monotonic() - self.started.get(cls, time.monotonic())))

    def _compile(self, prog: program.Program, args: tuple, fut: Future) -> None:
        t0 = time.perf_counter()
        try:
            prog.compile(*args)
        except Exception as exc:  # the trial keeps its fallback class; a later one retries
            self.pending.pop(prog.cls, None)
            fut.set_exception(exc)
            return
        COST.note_compile(time.perf_counter() - t0)
        _PROGRAMS[prog.cls] = prog
        self.pending.pop(prog.cls, None)
        fut.set_result(prog)


BACKGROUND = _Background()


def shape_class(cfg: Config, ds: Dataset, epochs: int, buckets: Sequence[int] | None,
                k: int = 1) -> program.ShapeClass:
    """The class this trial runs in: its natural bucket, or a compiled one (or one
    compiling in the background) that fits when the padding costs less than a compile
    (``program.choose_class``)."""
    if not buckets:
        return program.natural_class(cfg.batch_size, cfg.width, cfg.layers, ds.num_features,
                                     ds.num_classes, buckets, k)
    steps = ds.x_train.shape[0] // cfg.batch_size
    known = [*_PROGRAMS, *BACKGROUND.pending]
    return program.choose_class(cfg.batch_size, cfg.width, cfg.layers, ds.num_features,
                                ds.num_classes, buckets, steps, epochs, known, COST, k)


def plan(cfg: Config, ds: Dataset, epochs: int, buckets: Sequence[int]
         ) -> tuple[program.Program | Model, Future | None, program.ShapeClass | None]:
    """The program a trial starts in, the future of the one it moves into (None: it
    stays), and a class to compile in the background after its first epoch (None: none).
    Its own class when compiled; else, when a class that fits is compiled (or, when none
    is, compiling in the background: waiting for it is shorter than a second compile
    beside it) and starting there pays (``_fallback_pays``), that class while its own
    compiles in the background; else its own, compiled now (or awaited if compiling).
    A trial that reuses a wider compiled class moves into its own when that one is
    compiling (``rent`` starts such compiles). A trial that no compiled class fits runs
    its exact plain model instead of waiting when that costs less (``_exact_pays``)."""
    cls = shape_class(cfg, ds, epochs, buckets)
    steps = ds.x_train.shape[0] // cfg.batch_size
    if cls in _PROGRAMS:
        return _PROGRAMS[cls], BACKGROUND.pending.get(own_class(cfg, ds, epochs, buckets)), None
    fut = BACKGROUND.pending.get(cls)
    fallback = program.best_fit(cls, cfg.width, cfg.layers, list(_PROGRAMS), cfg.batch_size)
    compiled_fits = fallback is not None
    if fallback is None and fut is None:
        fallback = program.best_fit(cls, cfg.width, cfg.layers, list(BACKGROUND.pending), cfg.batch_size)
    start = None
    epochs_weighed = 1 if spare_cores() >= 1.0 else epochs
    if fallback is not None and _fallback_pays(fallback, cls, cfg, steps, epochs_weighed):
        start = fallback
    awaited = cls if start is None else start
    if EXACT_START and not compiled_fits and awaited not in EXACT_STARTS and _exact_pays(cfg, awaited, steps, epochs):
        EXACT_STARTS.add(awaited)  # the next trial that needs it waits: a compile at a time
        build = None
        if awaited not in BACKGROUND.pending:  # for later trials (this one pays no padding):
            mb = program.MICRO_BATCH if cfg.batch_size % program.MICRO_BATCH == 0 else cfg.batch_size
            build = dataclasses.replace(awaited, micro_batch=mb)  # every batch size's passes
            EXACT_STARTS.add(build)
            if BACKGROUND.pending:  # queued behind the compile running now, not beside the
                build_later(ds, build)  # plain one: it starts when that one ends
                build = None
        return get_model(cfg, ds.num_features, ds.num_classes), None, build
    ready = None if start is None else _ready(start)
    if ready is None:
        return (fut.result() if fut is not None else get_program(cls)), None, None
    if fut is None:
        prog = program.Program(cls)
        fut = BACKGROUND.submit(prog, prog.example_args(*device_data(ds)[:4]))
    return ready, fut, None


EXACT_START = True
"""Whether ``plan`` may start a trial in its exact plain model (unit tests of the classes
turn it off: tests/unit/conftest.py)."""
EXACT_STARTS: set[program.ShapeClass] = set()
"""Classes a trial did not wait for (it ran its exact model): at most one per class, so a
study's compiles stay bounded (a plain model serves only its own trial)."""


def build_later(ds: Dataset, cls: program.ShapeClass | None) -> None:
    """Compile ``cls`` in the background: after an exact start's first epoch (not beside
    its plain model's compile, which two compiles at once on a busy 2-core VM slowed 2x),
    or at once when another background compile runs (one thread: it waits for that one
    instead of idling until the epoch ends; in a quiet node run the next wide trial waited
    1.4 s for a class submitted after the 545-wide trial's first epoch)."""
    if cls is not None and cls not in _PROGRAMS and cls not in BACKGROUND.pending:
        prog = program.Program(cls)
        BACKGROUND.submit(prog, prog.example_args(*device_data(ds)[:4]))


def _exact_pays(cfg: Config, cls: program.ShapeClass, steps: int, epochs: int) -> bool:
    """Whether the trial's exact plain model (compiled now: ~1 s against ~3 s for a class
    on this VM, then its exact epochs) costs less than waiting for ``cls``'s compile and
    its epochs there. Only a trial that would wait: the worker's first trials (the fallback
    is compiling) and one that no compiled class fits (a new class compiles anyway)."""
    wait = BACKGROUND.remaining(cls)
    if wait <= 0:
        return False
    exact = program.ShapeClass(cfg.batch_size, cfg.width, cfg.layers, cls.n_features, cls.n_classes)
    mine = program.class_seconds(exact, cfg.batch_size, cfg.layers, steps, COST) * epochs
    there = program.class_seconds(cls, cfg.batch_size, cfg.layers, steps, COST) * epochs
    return COST.plain_compile_seconds + mine < wait + there


FAST_SAVES = 0.75
"""Share of a plain model's compile that a fast one saves (``plain.FAST_COMPILE``; measured,
CPU s: 1.06-1.44 -> 0.23-0.33 for four models of the built-in space)."""
FAST_SLOWER = 2.5
"""How much longer a fast-compiled model's epochs take, as a share of the optimized ones
(measured: 2.5-4.3x the time)."""


def _fast_pays(cfg: Config, ds: Dataset, epochs: int) -> bool:
    """Whether an exact start compiles its plain model fast (``Model.run``): when the extra
    cost of all its epochs at ~3.5x the time stays below what the faster compile saves.
    The worker's first trial (its compile is on the critical path beside the fallback's)
    is usually such a one: a ~1 s shorter start for 5 x ~0.03 s."""
    steps = ds.x_train.shape[0] // cfg.batch_size
    exact = program.ShapeClass(cfg.batch_size, cfg.width, cfg.layers, ds.num_features, ds.num_classes)
    mine = program.class_seconds(exact, cfg.batch_size, cfg.layers, steps, COST) * epochs
    return FAST_SLOWER * mine < FAST_SAVES * COST.plain_compile_seconds


def own_class(cfg: Config, ds: Dataset, epochs: int, buckets: Sequence[int]) -> program.ShapeClass:
    """The trial's own class: its bucket's (``program.new_class`` without widening)."""
    steps = ds.x_train.shape[0] // cfg.batch_size
    return program.new_class(cfg.batch_size, cfg.width, cfg.layers, ds.num_features,
                             ds.num_classes, buckets, steps, epochs, COST, wider=False)


RENT: dict[program.ShapeClass, float] = {}
"""Per class not compiled: the seconds trials of that class spent so far on the padding
of the wider compiled classes they reused (estimated share of their measured epochs)."""


def rent(ds: Dataset, cfg: Config, own: program.ShapeClass, ran: program.ShapeClass,
         seconds: float) -> Future | None:
    """Ski rental for classes: each epoch (``seconds``) a trial runs in a wider compiled
    class ``ran`` than its own (its padding cost it less than a compile, ``pick_class``)
    adds the padding's cost to ``own``'s rent; once the rent its
    trials paid reaches a compile, ``own`` compiles in the background (the trial moves in at
    an epoch boundary, later trials start there): at most twice the cost of the best choice
    in hindsight. The reuse rule alone weighs one trial at a time: on the MNIST sample it
    ran most of a study's trials in a 1,024-wide class at 3x their exact compute, each
    single trial's padding costing less than a compile. Returns the future of ``own``'s
    compile when one is running, else None."""
    if own == ran or own in _PROGRAMS:
        return None
    fut = BACKGROUND.pending.get(own)
    if fut is not None:
        return fut
    steps = ds.x_train.shape[0] // cfg.batch_size
    there = program.class_seconds(ran, cfg.batch_size, cfg.layers, steps, COST)
    mine = program.class_seconds(own, cfg.batch_size, cfg.layers, steps, COST)
    # the padding's share of the measured epoch, or the estimate if higher: a class past
    # the caches runs below the FLOP rate (a 585-wide trial's epoch in the 1,024-wide class
    # took 0.5 s, its exact model 0.11 s)
    RENT[own] = RENT.get(own, 0.0) + max(0.0, there - mine, seconds * (1.0 - mine / max(there, 1e-12)))
    if RENT[own] < COST.compile_seconds:
        return None
    prog = program.Program(own)
    return BACKGROUND.submit(prog, prog.example_args(*device_data(ds)[:4]))


def _fallback_pays(fallback: program.ShapeClass, own: program.ShapeClass, cfg: Config, steps: int,
                   epochs: int) -> bool:
    """Whether ``epochs`` epochs in ``fallback`` cost no more than waiting for ``own``'s
    compile and then as many epochs of its own (estimated). With a spare core the trial
    moves into its own class as soon as it is compiled, so one epoch is weighed; on a
    saturated CPU the padded epochs slow that compile down (measured: a trial ran five
    epochs 1,024 wide at 1.4-2.6 s each beside an 8 s compile of its own 0.04 s-epoch
    class), so all of them are."""
    def cost(c: program.ShapeClass) -> float:
        return program.class_seconds(c, cfg.batch_size, cfg.layers, steps, COST) * epochs

    return cost(fallback) <= COST.compile_seconds + cost(own)


SPARE_CORES: float | None = None
"""Overrides ``spare_cores`` (tests: decisions must not depend on the machine's load)."""


def spare_cores() -> float:
    """Cores left idle over the last minute: this process's CPUs minus the load average
    (which counts this worker's own training thread). Below one, a background compile
    takes CPU from the training, not from an idle core."""
    if SPARE_CORES is not None:
        return SPARE_CORES
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        return max(0.0, cpus - os.getloadavg()[0])
    except OSError:  # no load average on this platform
        return 1.0


def _ready(cls: program.ShapeClass) -> program.Program | None:
    """The compiled program of ``cls``, waiting for its background compile if it is
    still running; None if that compile failed."""
    fut = BACKGROUND.pending.get(cls)
    if fut is not None:
        try:
            return fut.result()
        except Exception:  # the background build failed: the trial compiles its own class now
            return None
    return _PROGRAMS.get(cls)


def device_data(ds: Dataset) -> tuple[jax.Array, ...]:
    """Train/val/test as float32 in [0, 1] on the default device (an accelerator when
    JAX sees one), once per dataset: every later step reads it there."""
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
    shape_class: program.ShapeClass | None = None  # the last epoch's; None: the plain model
    classes: tuple[program.ShapeClass, ...] = ()  # every class it ran in, in order


def train(ds: Dataset, params: Mapping[str, Any], *, epochs: int, seed: int = 0,
          width_step: int = 32, test: bool = False,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          buckets: Sequence[int] | None = program.WIDTH_BUCKETS) -> TrainResult:
    """Train one configuration for ``epochs`` epochs; ``on_epoch`` may raise to stop.

    With ``buckets`` (the default) the trial runs in a shared shape-class
    program, or in its exact plain model when that is cheaper than waiting for a
    class's compile (``plan``); ``buckets=None`` compiles the exact architecture
    (the reference).
    """
    cfg = Config.from_params(params, width_step)
    seed = int(params.get("seed", seed))
    x_tr, y_tr, x_va, y_va, x_te, y_te = device_data(ds)
    if cfg.batch_size > x_tr.shape[0]:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {x_tr.shape[0]} training rows")
    compiles0, seconds0 = COMPILE_LOG.compiles, COMPILE_LOG.seconds
    move: Future | None = None
    runner: program.Program | Model
    build: program.ShapeClass | None = None
    if buckets:
        runner, move, build = plan(cfg, ds, epochs, buckets)
        own = own_class(cfg, ds, epochs, buckets)
    else:
        runner = get_model(cfg, ds.num_features, ds.num_classes)
    exact = isinstance(runner, Model)
    fast = bool(buckets) and exact and _fast_pays(cfg, ds, epochs)
    state = (runner.init_state(seed, cfg) if exact else  # type: ignore[call-arg]
             runner.init_state(seed, cfg.width, cfg.layers, program.GAIN[cfg.activation],
                               cfg.lr, cfg.weight_decay, cfg.optimizer))
    history: list[EpochMetrics] = []
    classes = [] if exact else [runner.cls]
    n_steps = x_tr.shape[0] // cfg.batch_size
    for epoch in range(1, epochs + 1):
        if move is not None and move.done():  # its own class is ready: move in
            if move.exception() is None:
                runner = move.result()
                state = program.convert_state(state, runner.cls)
                classes.append(runner.cls)
            move = None
        t0, c0 = time.perf_counter(), COMPILE_LOG.mine()
        lane = program.lane_data(seed, epoch, cfg.width, cfg.layers, cfg.activation, cfg.dropout,
                                 batch_size=cfg.batch_size)
        state, loss, acc = (runner.run(state, lane, x_tr, y_tr, x_va, y_va, fast=fast) if exact
                            else runner.run(state, lane, x_tr, y_tr, x_va, y_va))
        loss, acc = float(loss), float(acc)
        seconds = time.perf_counter() - t0
        compiling = COMPILE_LOG.mine() - c0
        compute = max(seconds - compiling, 1e-9)  # samples/s without compiling
        if buckets and exact:
            if compiling > 0 and not fast:
                COST.note_plain_compile(compiling)
            build_later(ds, build)
            build = None
        elif buckets and not exact:
            _note_cost(cfg, runner.cls, n_steps, compute, compiling)
            if move is None:  # (a compile started after the last epoch serves later trials)
                move = rent(ds, cfg, own, runner.cls, compute)
        m = EpochMetrics(epoch, loss, acc, seconds, n_steps * cfg.batch_size / compute)
        history.append(m)
        if on_epoch is not None:
            on_epoch(m)
    test_acc = float(runner.evaluate(state.params, lane, x_te, y_te)) if test and history else None
    return TrainResult(cfg, history, history[-1].val_accuracy if history else float("nan"),
                       test_acc, COMPILE_LOG.seconds - seconds0, COMPILE_LOG.compiles - compiles0,
                       None if exact else runner.cls, tuple(classes))


def _note_cost(cfg: Config, cls: program.ShapeClass, n_steps: int, compute: float,
               compiling: float) -> None:
    if compiling > 0:
        COST.note_compile(compiling)
    else:
        COST.note_epoch(program.step_flops(cfg.batch_size, cfg.layers, cls) * n_steps
                        * program.micro_penalty(cfg.batch_size, cls.micro_batch), compute)


def mnist_mlp(trial: Any) -> float:
    """The built-in objective: reports validation accuracy after every epoch."""
    opts = {**OPTION_DEFAULTS, **trial.options}
    ds = cached_dataset(opts)

    def on_epoch(m: EpochMetrics) -> None:
        trial.report(m.val_accuracy, m.epoch)
        if trial.should_prune():
            raise TrialPruned()

    result = train(ds, trial.params, epochs=int(opts["max_epochs"]), seed=int(opts["seed"]),
                   width_step=int(opts["width_step"]), buckets=_buckets(opts["width_buckets"]),
                   on_epoch=on_epoch)
    return result.val_accuracy


def _buckets(value: Any) -> tuple[int, ...] | None:
    """The ``width_buckets`` option: a list of widths; empty or false turns bucketing off."""
    if not value:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"width_buckets must be a list of positive widths, got {value!r}")
    return tuple(sorted(value))


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
    """Worker setup hook: load the data once, start compiling a fallback class in the
    background (``precompile``); the node records the data's description."""
    device = jax.devices()[0]  # an accelerator when JAX sees one; the data goes there once
    opts = {**OPTION_DEFAULTS, **options}
    ds = cached_dataset(opts)
    device_data(ds)
    calibrate()
    precompile(ds, _buckets(opts["width_buckets"]))
    return {"dataset": ds.describe(), "device": device.platform}


FALLBACK_WIDTH = 512


def calibrate(cost: program.CostModel | None = None) -> float:
    """Set the FLOP-rate prior of ``cost`` (default: this process's ``COST``) from a
    float32 matmul timed on this CPU (about 20 ms): half its rate (measured on this 2-core
    VM: numpy's one-thread matmul 130 GFLOP/s, a 512-wide class's epoch about that in
    ``step_flops``; half leaves room for load). The fixed prior of 2e10 was 3-7x below
    the measured rates, so a worker's first decisions rejected fallbacks and padding that
    were in fact cheap. Every epoch then refines it (``CostModel.note_epoch``)."""
    cost = COST if cost is None else cost
    a = np.ones((256, 784), np.float32)
    b = np.ones((784, 512), np.float32)
    a @ b  # warm the BLAS
    best = math.inf
    for _ in range(16):  # the fastest of many short runs: one preempted run read 3 GFLOP/s
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    cost.flops_per_second = 0.5 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / max(best, 1e-6)
    return cost.flops_per_second


def fallback_class(ds: Dataset, buckets: Sequence[int] | None) -> program.ShapeClass | None:
    """The class a worker precompiles (``precompile``) so that most trials can start
    before their own class is ready: 64-row passes (every batch size of the built-in
    space), the layer cap, and the widest bucket up to ``FALLBACK_WIDTH`` (512 holds 80%
    of the built-in space's log-uniform 32..1024 widths). Not wider: a 1,024-wide
    fallback (taken with a spare core before) cost 5-11x the exact epoch of the trials
    up to 544 wide (CPU seconds, RESULTS.md "fifth pass"), and the reuse rule then kept
    them there. None when bucketing is off."""
    if not buckets:
        return None
    width = max([b for b in buckets if b <= FALLBACK_WIDTH], default=min(buckets))
    return program.ShapeClass(program.MICRO_BATCH, width, program.LAYER_CAP, ds.num_features,
                              ds.num_classes)


def precompile(ds: Dataset, buckets: Sequence[int] | None) -> program.ShapeClass | None:
    """Start compiling ``fallback_class`` in the background (worker start). The first
    trial waits for it when nothing compiled fits (``plan``) instead of compiling its own
    class beside it: two compiles at once on a loaded 2-core VM took 9-12 s each."""
    cls = fallback_class(ds, buckets)
    if cls is not None and cls not in _PROGRAMS and cls not in BACKGROUND.pending:
        prog = program.Program(cls)
        BACKGROUND.submit(prog, prog.example_args(*device_data(ds)[:4]))
    return cls


mnist_mlp.prepare = prepare  # type: ignore[attr-defined]


def run_batch(trials: Sequence[Any]) -> list[Any]:
    """Several trials at once (the worker's ``run_batch``): ``batched.run_trials``."""
    from p2phpo.train import batched  # batched imports this module

    return batched.run_trials(trials)


mnist_mlp.batch = run_batch  # type: ignore[attr-defined]
