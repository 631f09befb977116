"""Shape-class programs: a bucketed trial is the plain model, and a study compiles little."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from p2phpo.inprocess import run_local
from p2phpo.runtime.node import DEFAULT_STUDY
from p2phpo.study import StudySpec
from p2phpo.train import data, mlp, program
from p2phpo.train import plain as plain_models

pytestmark = pytest.mark.usefixtures("offline")  # tests/unit/conftest.py


@pytest.mark.parametrize("params", [
    # width 96 padded to 128 and 2 layers run in a 4-layer class; coupled L2 adam
    {"layers": 2, "width": 96, "batch_size": 128, "lr": 3e-3, "optimizer": "adam",
     "weight_decay": 1e-3},
    # sigmoid(0) = 0.5: the mask, not the activation, keeps padded units at zero; dropout
    {"layers": 1, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw",
     "weight_decay": 1e-2, "activation": "sigmoid", "dropout": 0.2},
    {"layers": 3, "width": 160, "batch_size": 256, "lr": 0.05, "optimizer": "sgd",
     "weight_decay": 1e-3, "activation": "gelu", "dropout": 0.3},
])
def test_bucketed_trial_follows_the_plain_models_curve(sample: data.Dataset, params: dict) -> None:
    plain = mlp.train(sample, params, epochs=3, seed=5, buckets=None)
    bucketed = mlp.train(sample, params, epochs=3, seed=5)
    cls = bucketed.shape_class
    assert cls is not None and plain.shape_class is None
    assert cls.width > params["width"] and cls.layers == 4  # it really was padded
    np.testing.assert_allclose([e.train_loss for e in bucketed.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-4)
    np.testing.assert_allclose([e.val_accuracy for e in bucketed.epochs],
                               [e.val_accuracy for e in plain.epochs], atol=0.0021)  # 1 of 500
    assert plain.epochs[-1].train_loss < plain.epochs[0].train_loss


def test_a_step_run_as_micro_batches_is_the_plain_models_step(sample: data.Dataset) -> None:
    """Batch 256 as 4 passes of 64 rows (gradients summed, one update; dropout drawn per
    row of the whole step) follows the plain model's curve; so does batch 64 in that class."""
    prog = program.Program(program.ShapeClass(64, 256, 4, 784, 10))
    x, y, xv, yv, _, _ = mlp.device_data(sample)
    for bs in (256, 64):
        params = {"layers": 2, "width": 224, "batch_size": bs, "lr": 3e-3, "optimizer": "adamw",
                  "weight_decay": 1e-2, "activation": "tanh", "dropout": 0.25}
        plain = mlp.train(sample, params, epochs=2, seed=7, buckets=None)
        state, losses = prog.init_state(7, 224, 2, 1.0, 3e-3, 1e-2, "adamw"), []
        for epoch in (1, 2):
            lane = program.lane_data(7, epoch, 224, 2, "tanh", 0.25, batch_size=bs)
            state, loss, acc = prog.epoch(state, lane, x, y, xv, yv)
            losses.append(float(loss))
        np.testing.assert_allclose(losses, [e.train_loss for e in plain.epochs], rtol=1e-4)
        np.testing.assert_allclose(float(acc), plain.epochs[-1].val_accuracy, atol=0.0021)


def test_padded_units_stay_zero_and_trials_of_a_class_share_one_compile(sample: data.Dataset) -> None:
    prog = program.Program(program.ShapeClass(64, 128, 4, 784, 10))
    state = prog.init_state(3, 40, 2, 2.0, 1e-2, 1e-3, "adamw")
    x, y, xv, yv, _, _ = mlp.device_data(sample)
    for epoch in (1, 2):
        lane = program.lane_data(3, epoch, 40, 2, "sigmoid", 0.1, batch_size=64)
        state, loss, acc = prog.epoch(state, lane, x, y, xv, yv)
    p = {k: np.asarray(v) for k, v in state.params.items()}
    assert np.all(p["w0"][:, 40:] == 0) and np.all(p["b0"][40:] == 0) and np.any(p["w0"][:, :40])
    w1 = p["w1"]
    assert np.all(w1[40:] == 0) and np.all(w1[:, 40:] == 0) and np.any(w1) and np.all(p["wo"][40:] == 0)
    assert not any(np.any(p[k]) for k in ("w2", "b2", "w3", "b3"))  # layers 3 and 4 are inactive
    assert 0.5 < float(acc) < 1.0
    before = mlp.compile_count()
    other = prog.init_state(4, 120, 4, 1.0, 1e-1, 0.0, "sgd")
    prog.epoch(other, program.lane_data(4, 1, 120, 4, "tanh", 0.0, batch_size=192), x, y, xv, yv)
    assert mlp.compile_count() == before  # another width, depth, activation, optimizer


def test_pick_class_reuses_a_compiled_class_only_when_padding_is_cheaper() -> None:
    cost = program.CostModel(compile_seconds=2.0, flops_per_second=1e10)
    big = program.ShapeClass(64, 1024, 4, 784, 10)
    nat = program.natural_class(128, 96, 2, 784, 10, program.WIDTH_BUCKETS)
    assert nat == program.ShapeClass(128, 128, 4, 784, 10)  # one pass of 128 rows per step
    assert program.natural_class(128, 96, 2, 784, 10, program.WIDTH_BUCKETS, micro_batch=64
                                 ) == program.ShapeClass(64, 128, 4, 784, 10)
    # batch 128 runs in the 64-row class as 2 passes
    assert program.pick_class(nat, 96, 2, steps=4, epochs=1, compiled=[big], cost=cost,
                              batch_size=128) == big
    # 430 steps x 20 epochs of 1024-wide padding cost more than a compile
    assert program.pick_class(nat, 96, 2, steps=430, epochs=20, compiled=[big], cost=cost,
                              batch_size=128) == nat
    # a new class is made general (64-row passes) only when that costs the trial little
    assert program.choose_class(256, 96, 2, 784, 10, program.WIDTH_BUCKETS, 4, 1, [], cost
                                ).micro_batch == 64
    big_trial = program.choose_class(256, 96, 2, 784, 10, program.WIDTH_BUCKETS, 2000, 20, [], cost)
    assert (big_trial.micro_batch, big_trial.width) == (256, 96)  # exact: padding would cost more
    free = dataclasses.replace(cost, compile_seconds=0.0)  # compiles cost nothing: exact shapes
    assert program.choose_class(256, 96, 2, 784, 10, program.WIDTH_BUCKETS, 4, 1, [], free
                                ).width == 96
    other_batch = dataclasses.replace(big, micro_batch=256)
    assert program.pick_class(nat, 96, 2, 4, 1, [other_batch], cost, batch_size=128) == nat
    assert program.natural_class(64, 1100, 6, 784, 10, (256, 1024)).width == 2048
    assert program.natural_class(64, 100, 0, 784, 10, (256, 1024)).layers == 0


def _fallback_setup(monkeypatch) -> tuple[program.ShapeClass, program.CostModel]:
    """A compiled 1024-wide class, and a cost model under which a 64-wide trial of 3
    epochs should get its own class (1024-wide padding for 3 epochs costs more than a
    compile) but may start in the wide one (one padded epoch costs no more than a compile)."""
    wide = program.ShapeClass(64, 1024, 4, 784, 10)
    monkeypatch.setattr(mlp, "_PROGRAMS", {wide: program.Program(wide)})
    monkeypatch.setattr(mlp.BACKGROUND, "pending", {})
    cost = _FixedCost(compile_seconds=1.0, flops_per_second=1e10)
    cost.compile_seconds = program.class_seconds(wide, 128, 1, 4000 // 128, cost)
    monkeypatch.setattr(mlp, "COST", cost)
    return wide, cost


def test_a_trial_starts_in_a_compiled_class_and_moves_into_its_own_on_the_plain_curve(
        sample, monkeypatch) -> None:
    wide, _ = _fallback_setup(monkeypatch)
    params = {"layers": 1, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw",
              "weight_decay": 1e-3, "dropout": 0.2, "activation": "tanh"}
    got = mlp.train(sample, params, epochs=3, seed=2)
    assert got.classes[0] == wide and len(got.classes) == 2  # compiled at submit (test mode)
    own = got.classes[1]
    assert own.width < wide.width and own in mlp._PROGRAMS and got.shape_class == own
    plain = mlp.train(sample, params, epochs=3, seed=2, buckets=None)
    np.testing.assert_allclose([e.train_loss for e in got.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-4)
    np.testing.assert_allclose(got.val_accuracy, plain.val_accuracy, atol=0.0021)
    again = mlp.train(sample, {**params, "lr": 1e-2}, epochs=1, seed=3)
    assert again.classes == (own,) and again.compiles == 0  # the next one starts there


def test_the_background_thread_compiles_while_the_trial_trains(sample, monkeypatch) -> None:
    wide, _ = _fallback_setup(monkeypatch)
    monkeypatch.setattr(mlp.BACKGROUND, "synchronous", False)
    params = {"layers": 1, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "sgd"}
    got = mlp.train(sample, params, epochs=3, seed=4)
    for fut in list(mlp.BACKGROUND.pending.values()):
        fut.result(timeout=300)
    assert got.classes[0] == wide and len(mlp._PROGRAMS) == 2 and not mlp.BACKGROUND.pending
    plain = mlp.train(sample, params, epochs=3, seed=4, buckets=None)  # wherever it moved
    np.testing.assert_allclose([e.train_loss for e in got.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-4)


def test_the_worker_precompiles_a_512_wide_fallback_that_most_trials_can_start_in(
        sample, monkeypatch) -> None:
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    monkeypatch.setattr(mlp.BACKGROUND, "pending", {})
    monkeypatch.setattr(mlp, "COST", _FixedCost(compile_seconds=30.0, flops_per_second=2e10))
    cls = mlp.precompile(sample, program.WIDTH_BUCKETS)
    assert (cls.micro_batch, cls.width, cls.layers) == (64, 512, 4) and cls in mlp._PROGRAMS
    got = mlp.train(sample, {"batch_size": 512, "width": 500, "layers": 4}, epochs=1)
    assert got.classes == (cls,) and got.compiles == 0
    narrow = mlp.train(sample, {"batch_size": 64, "width": 40, "layers": 1}, epochs=1)
    assert narrow.classes == (cls,) and narrow.compiles == 0  # its padding costs less than a compile
    # 512 wide whatever the load: 1,024 wide (taken with a spare core before) cost narrow
    # trials 5-11x their exact epochs, and the reuse rule kept them there
    for spare in (0.0, 1.0):
        monkeypatch.setattr(mlp, "SPARE_CORES", spare)
        assert mlp.fallback_class(sample, program.WIDTH_BUCKETS).width == 512
    assert mlp.precompile(sample, None) is None and mlp.fallback_class(sample, None) is None


def test_once_trials_paid_a_compile_in_padding_their_own_class_compiles(sample, monkeypatch) -> None:
    """Ski rental: every trial's padding in the wide class costs it less than a compile, so
    each one alone reuses it; once the padding paid by the bucket's trials reaches a compile,
    their class compiles, the trial moves in on the plain model's curve, the next starts there."""
    wide = program.ShapeClass(64, 1024, 4, 784, 10)
    monkeypatch.setattr(mlp, "_PROGRAMS", {wide: program.Program(wide)})
    monkeypatch.setattr(mlp.BACKGROUND, "pending", {})
    monkeypatch.setattr(mlp, "RENT", {})
    cost = _FixedCost(compile_seconds=1.0, flops_per_second=1e8)  # estimates above any measured epoch
    own = program.ShapeClass(64, 128, 4, 784, 10)
    steps = 4000 // 128
    extra = (program.class_seconds(wide, 128, 1, steps, cost)
             - program.class_seconds(own, 128, 1, steps, cost))  # one epoch's padding
    cost.compile_seconds = 2.5 * extra
    monkeypatch.setattr(mlp, "COST", cost)
    params = {"layers": 1, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "adam",
              "dropout": 0.1, "activation": "gelu"}
    first = mlp.train(sample, params, epochs=2, seed=1)
    assert first.classes == (wide,) and list(mlp._PROGRAMS) == [wide]  # (compiled on first use)
    second = mlp.train(sample, {**params, "width": 90}, epochs=2, seed=2)
    assert second.classes == (wide, own) and own in mlp._PROGRAMS
    plain = mlp.train(sample, {**params, "width": 90}, epochs=2, seed=2, buckets=None)
    np.testing.assert_allclose([e.train_loss for e in second.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-4)
    third = mlp.train(sample, {**params, "width": 120}, epochs=2, seed=3)
    assert third.classes == (own,) and third.compiles == 0


def test_with_nothing_compiled_a_trial_waits_for_the_class_compiling_in_the_background(
        sample, monkeypatch) -> None:
    """A worker's first trial: the precompiled fallback is still compiling. The trial waits
    for it (and then moves into its own class) instead of compiling its own beside it
    (here its exact plain model's compile is dear: ``plain_compile_seconds``)."""
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    monkeypatch.setattr(mlp.BACKGROUND, "pending", {})
    wide = program.ShapeClass(64, 1024, 4, 784, 10)
    cost = _FixedCost(compile_seconds=1.0, flops_per_second=1e10, plain_compile_seconds=1e3)
    cost.compile_seconds = program.class_seconds(wide, 128, 1, 4000 // 128, cost)
    monkeypatch.setattr(mlp, "COST", cost)
    prog, fut = program.Program(wide), Future()
    mlp.BACKGROUND.pending[wide] = fut

    def finish() -> None:
        prog.compile(*prog.example_args(*mlp.device_data(sample)[:4]))
        mlp._PROGRAMS[wide] = prog
        mlp.BACKGROUND.pending.pop(wide)
        fut.set_result(prog)

    worker = threading.Thread(target=finish)
    worker.start()
    params = {"layers": 1, "width": 64, "batch_size": 128, "lr": 3e-3, "dropout": 0.1}
    got = mlp.train(sample, params, epochs=3, seed=5)
    worker.join()
    assert got.classes[0] == wide and got.shape_class.width < wide.width
    plain = mlp.train(sample, params, epochs=3, seed=5, buckets=None)
    np.testing.assert_allclose([e.train_loss for e in got.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-4)
    # no spare core: three padded epochs would cost more than the compile, which they
    # would slow down; a trial of a new class compiles its own at once
    monkeypatch.setattr(mlp, "SPARE_CORES", 0.0)
    other = mlp.train(sample, {**params, "width": 200}, epochs=3, seed=5)
    assert other.classes == (other.shape_class,) and other.shape_class.width < wide.width


def test_a_trial_that_would_wait_for_a_compile_runs_its_exact_model_instead(
        sample, monkeypatch) -> None:
    """The worker's first trial (its fallback still compiling) and a trial that no compiled
    class fits run their exact plain model when its compile (~1 s) and exact epochs cost less
    than the wait and the padded epochs; the new class compiles in the background after the
    trial's first epoch, so the next trial that fits it starts there without a compile. One
    exact start per awaited class: the next trial that needs it waits."""
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    monkeypatch.setattr(mlp.BACKGROUND, "pending", {})
    monkeypatch.setattr(mlp.BACKGROUND, "synchronous", False)
    monkeypatch.setattr(mlp, "EXACT_START", True)
    monkeypatch.setattr(mlp, "EXACT_STARTS", set())
    monkeypatch.setattr(mlp, "COST", _FixedCost(compile_seconds=30.0, flops_per_second=2e10))
    fallback = mlp.precompile(sample, program.WIDTH_BUCKETS)  # 512 wide, compiling
    params = {"layers": 3, "width": 46, "batch_size": 64, "lr": 1e-2, "optimizer": "sgd",
              "dropout": 0.2}
    first = mlp.train(sample, params, epochs=2, seed=1)
    assert first.shape_class is None and first.classes == () and first.compiles == 1
    plain = mlp.train(sample, params, epochs=2, seed=1, buckets=None)
    # its epochs are cheap, so it compiled without XLA's optimizations: the same
    # model, float rounding apart
    np.testing.assert_allclose([e.train_loss for e in first.epochs],
                               [e.train_loss for e in plain.epochs], rtol=1e-5)
    assert [e.val_accuracy for e in first.epochs] == [e.val_accuracy for e in plain.epochs]
    mlp.BACKGROUND.pending[fallback].result(timeout=300)
    wide = {"layers": 2, "width": 545, "batch_size": 512, "lr": 3e-3}  # no compiled class fits
    second = mlp.train(sample, wide, epochs=1, seed=2)
    assert second.shape_class is None and second.compiles == 1
    for fut in list(mlp.BACKGROUND.pending.values()):
        fut.result(timeout=300)
    assert len(mlp._PROGRAMS) == 2 and all(c.width > 545 for c in mlp._PROGRAMS if c != fallback)
    third = mlp.train(sample, {**wide, "width": 600, "lr": 1e-3}, epochs=1, seed=3)
    assert third.shape_class in mlp._PROGRAMS and third.compiles == 0
    # a second trial while a class it needs is still compiling waits for it
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    mlp.precompile(sample, program.WIDTH_BUCKETS)
    fourth = mlp.train(sample, {**params, "width": 50}, epochs=1, seed=4)
    assert fourth.shape_class is not None


def test_an_exact_start_with_cheap_epochs_compiles_fast(sample, monkeypatch) -> None:
    """An exact start whose epochs cost little compiles its plain model without XLA's
    backend optimizations (a quarter of the compile, epochs ~3.5x as long): the worker's
    first trial starts sooner. One whose epochs cost more, or that runs many, does not."""
    monkeypatch.setattr(mlp, "COST", _FixedCost(flops_per_second=6e10, plain_compile_seconds=1.2))
    tiny = mlp.Config.from_params({"layers": 3, "width": 46, "batch_size": 64})
    wide = mlp.Config.from_params({"layers": 2, "width": 545, "batch_size": 512})
    assert mlp._fast_pays(tiny, sample, epochs=5)
    assert not mlp._fast_pays(tiny, sample, epochs=200)
    assert not mlp._fast_pays(wide, sample, epochs=5)
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    monkeypatch.setattr(mlp, "EXACT_START", True)
    monkeypatch.setattr(mlp, "EXACT_STARTS", set())
    monkeypatch.setattr(plain_models, "_MODELS", {})
    params = {"layers": 3, "width": 46, "batch_size": 64, "lr": 1e-2, "dropout": 0.2}
    got = mlp.train(sample, params, epochs=2, seed=1)
    model = plain_models.get_model(mlp.Config.from_params(params), 784, 10)
    assert got.shape_class is None and set(model._exe) == {True}  # its exact model, fast
    ref = mlp.train(sample, params, epochs=2, seed=1, buckets=None)  # the reference: optimized
    assert set(model._exe) == {True, False}
    np.testing.assert_allclose([e.train_loss for e in got.epochs], [e.train_loss for e in ref.epochs],
                               rtol=1e-5)


def test_calibrate_sets_the_flop_rate_prior_from_this_cpu() -> None:
    cost = program.CostModel()
    rate = mlp.calibrate(cost)
    assert cost.flops_per_second == rate and 1e9 < rate < 1e14


class _FixedCost(program.CostModel):
    def note_compile(self, seconds: float) -> None:
        pass

    def note_epoch(self, flops: float, seconds: float) -> None:
        pass


def test_built_in_study_of_30_trials_compiles_at_most_8_times(sample, monkeypatch) -> None:
    """The built-in study (TPE, ASHA, its space) on 1,000 rows of the MNIST sample, 2 epochs
    a trial; a fixed cost model (2 s per compile, 20 GFLOP/s) so the count does not depend
    on the machine's load. Compiles are counted from JAX's compile events."""
    small = dataclasses.replace(sample, x_train=sample.x_train[:1000], y_train=sample.y_train[:1000])
    monkeypatch.setattr(mlp, "cached_dataset", lambda options: small)
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    monkeypatch.setattr(mlp, "EXACT_START", True)  # as in a node
    monkeypatch.setattr(mlp, "EXACT_STARTS", set())
    monkeypatch.setattr(plain_models, "_MODELS", {})  # exact starts (``mlp.plan``) compile plain models
    monkeypatch.setattr(mlp, "COST", _FixedCost(compile_seconds=2.0, flops_per_second=2e10))
    spec = StudySpec.load(DEFAULT_STUDY)
    spec = dataclasses.replace(spec, target=None, objective_options={
        **spec.objective_options, "dataset": "mnist", "max_epochs": 2})
    before = mlp.compile_count()
    ledger = run_local(spec, mlp.mnist_mlp, node_id=77)
    compiles = mlp.compile_count() - before
    views = [v for v in ledger.trials().values() if v.state.counted]
    widths = {v.params["width"] for v in views}
    assert len(views) == 30 and len(widths) > 20  # TPE drew many different widths
    assert sum(v.state.name == "COMPLETE" for v in views) >= 5
    assert 1 <= compiles <= 8, compiles
    assert len(mlp._PROGRAMS) + len(plain_models._MODELS) == compiles


def test_batched_lanes_equal_solo_trials_and_a_pruned_member_leaves_alone(sample) -> None:
    from p2phpo.train import batched

    members = [  # one batch size, depth and activation; the rest differs
        {"layers": 2, "width": 96, "batch_size": 128, "lr": 3e-3, "optimizer": "adam",
         "activation": "gelu"},
        {"layers": 2, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw",
         "weight_decay": 1e-2, "activation": "gelu", "dropout": 0.2},
        {"layers": 2, "width": 200, "batch_size": 128, "lr": 0.05, "optimizer": "sgd",
         "activation": "gelu", "dropout": 0.3, "seed": 9},
    ]
    seen: list[tuple[int, int]] = []

    def on_epoch(i: int, m: mlp.EpochMetrics) -> bool:
        seen.append((i, m.epoch))
        return not (i == 1 and m.epoch == 1)  # member 1 is pruned after its first epoch

    results = batched.train_batch(sample, members, epochs=2, seed=5, on_epoch=on_epoch)
    assert results[0].shape_class.k == 3 and results[0].compiles <= 1
    assert sorted(seen) == [(0, 1), (0, 2), (1, 1), (2, 1), (2, 2)]
    assert [len(r.epochs) for r in results] == [2, 1, 2]
    for params, got in zip(members, results, strict=True):
        solo = mlp.train(sample, params, epochs=len(got.epochs), seed=5, buckets=None)
        np.testing.assert_allclose([e.train_loss for e in got.epochs],
                                   [e.train_loss for e in solo.epochs], rtol=1e-4)
    with pytest.raises(ValueError, match="batch size"):
        batched.train_batch(sample, [members[0], {**members[1], "batch_size": 64}], epochs=1)
    with pytest.raises(ValueError, match="depth and activation"):
        batched.train_batch(sample, [members[0], {**members[1], "layers": 3}], epochs=1)
