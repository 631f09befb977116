"""Packed trials: members of one batch train as if alone, in one compiled program."""

from __future__ import annotations

import numpy as np
import pytest

from p2phpo.train import batched, mlp, packed, program

pytestmark = pytest.mark.usefixtures("offline")  # tests/unit/conftest.py


MEMBERS = [  # one batch size, depth and activation (and the study's seed); the rest differs
    {"layers": 2, "width": 64, "batch_size": 128, "lr": 3e-3, "optimizer": "adamw",
     "weight_decay": 1e-2, "activation": "gelu", "dropout": 0.2},
    {"layers": 2, "width": 96, "batch_size": 128, "lr": 3e-3, "optimizer": "adam",
     "activation": "gelu"},
    {"layers": 2, "width": 200, "batch_size": 128, "lr": 0.05, "optimizer": "sgd",
     "weight_decay": 1e-3, "activation": "gelu", "dropout": 0.3},
]


def test_packed_members_follow_their_solo_curves_and_a_pruned_member_leaves_alone(sample) -> None:
    seen: list[tuple[int, int]] = []

    def on_epoch(i: int, m: mlp.EpochMetrics) -> bool:
        seen.append((i, m.epoch))
        return not (i == 0 and m.epoch == 1)  # member 0 is pruned after its first epoch

    # k=4: a slot more than members (an empty slot trains nothing and changes nothing)
    results = batched.train_batch(sample, MEMBERS, epochs=2, seed=5, on_epoch=on_epoch, k=4)
    cls = results[0].shape_class
    assert isinstance(cls, packed.PackedClass) and cls.slots == (192, 192, 96, 64)
    assert results[0].compiles <= 1
    assert sorted(seen) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert [len(r.epochs) for r in results] == [1, 2, 2]
    for params, got in zip(MEMBERS, results, strict=True):
        solo = mlp.train(sample, params, epochs=len(got.epochs), seed=5, buckets=None)
        np.testing.assert_allclose([e.train_loss for e in got.epochs],
                                   [e.train_loss for e in solo.epochs], rtol=1e-4)
        np.testing.assert_allclose([e.val_accuracy for e in got.epochs],
                                   [e.val_accuracy for e in solo.epochs], atol=0.004)
    # a later, narrower batch of the same depth fits the compiled class: no new compile
    later = [{**MEMBERS[1], "width": 32, "lr": 1e-3}, {**MEMBERS[0], "width": 160}]
    again = batched.train_batch(sample, later, epochs=1, seed=5)
    assert again[0].shape_class == cls and again[0].compiles == 0
    assert all(0.1 < r.val_accuracy <= 1.0 for r in again)


def test_the_tightest_class_and_which_classes_fit() -> None:
    nat = packed.natural_class(128, [70, 200, 32], 3, 784, 10)
    assert nat.slots == (224, 96, 32) and nat.layers == 4 and nat.total == 352
    assert packed.PackedClass(128, (256, 96, 64, 32), 4, 784, 10).fits(nat)
    assert not packed.PackedClass(128, (256, 64, 64), 4, 784, 10).fits(nat)  # 96 > 64
    assert not packed.PackedClass(256, (256, 96, 32), 4, 784, 10).fits(nat)  # batch size
    assert nat.step_flops(3) < packed.PackedClass(128, (256, 256, 256), 4, 784, 10).step_flops(3)
    with pytest.raises(ValueError, match="hidden layer"):
        packed.natural_class(128, [64], 0, 784, 10)


def test_members_that_do_not_share_a_class_are_refused(sample) -> None:
    with pytest.raises(ValueError, match="batch size"):
        batched.train_batch(sample, [MEMBERS[0], {**MEMBERS[1], "batch_size": 64}], epochs=1)
    with pytest.raises(ValueError, match="depth and activation"):
        batched.train_batch(sample, [MEMBERS[0], {**MEMBERS[1], "layers": 3}], epochs=1)
    prog = packed.PackedProgram(packed.PackedClass(128, (64, 32), 4, 784, 10))
    with pytest.raises(ValueError, match="do not fit"):
        prog.init_state([0, 0], [64, 64], 2, 2.0)


def test_run_trials_groups_members_and_each_ends_on_its_own() -> None:
    """The built-in objective's batch hook (the worker's run_batch): two members that share a
    class train packed, one with another activation alone, an invalid one fails alone."""
    from p2phpo.trial import Trial, TrialStatus, Verdict

    seen: list[tuple[int, int]] = []

    def reporter(n: int):
        def report(step: int, value: float) -> Verdict:
            seen.append((n, step))
            return Verdict.PRUNE if (n, step) == (1, 1) else Verdict.CONTINUE
        return report

    opts = {"dataset": "mnist", "max_epochs": 2}
    params = [MEMBERS[1], MEMBERS[0], {**MEMBERS[1], "activation": "tanh"},
              {**MEMBERS[1], "activation": "bogus"}]
    trials = [Trial(p, options=opts, number=n, trial_id=f"ab:{n}", reporter=reporter(n))
              for n, p in enumerate(params)]
    out = mlp.mnist_mlp.batch(trials)
    assert [o.status for o in out] == [TrialStatus.COMPLETE, TrialStatus.PRUNED,
                                       TrialStatus.COMPLETE, TrialStatus.FAILED]
    assert out[1].last_step == 1 and out[1].verdict is Verdict.PRUNE
    assert "activation" in (out[3].error or "")
    assert sorted(seen) == [(0, 1), (0, 2), (1, 1), (2, 1), (2, 2)]
    solo = mlp.train(mlp.cached_dataset(opts), MEMBERS[1], epochs=2)
    assert out[0].value == pytest.approx(solo.val_accuracy, abs=0.004)
    assert out[0].value == trials[0].reports[2]


def test_a_batch_trains_packed_only_when_that_beats_its_members_alone(sample, monkeypatch) -> None:
    """The batch hook weighs a new packed program's build against the padding it saves:
    on a small dataset a compile costs more than every epoch of the batch."""
    cfgs = [mlp.Config.from_params({**m, "width": 40}) for m in MEMBERS[:2]]
    buckets = mlp._buckets(mlp.OPTION_DEFAULTS["width_buckets"])
    monkeypatch.setattr(mlp.COST, "compile_seconds", 3.0)  # solo trials pad to share classes
    monkeypatch.setattr(mlp.COST, "flops_per_second", 1e9)
    monkeypatch.setattr(batched.PACKED_COST, "compile_seconds", 1e-9)
    monkeypatch.setattr(batched, "SURVIVAL", _all_epochs(5))
    assert batched.packing_pays(cfgs, sample, 5, buckets)  # cheap to build, no padding: it pays
    monkeypatch.setattr(batched.PACKED_COST, "compile_seconds", 1e6)
    fresh = batched.packed_class(cfgs, sample, 5) not in batched._PACKED
    assert batched.packing_pays(cfgs, sample, 5, buckets) is not fresh


def test_packed_steps_measured_slow_here_make_the_members_run_alone(sample, monkeypatch) -> None:
    """On a GPU a packed step is bound by kernel launches: once this worker measured its
    packed epochs far slower per FLOP than its solo ones, a batch stops packing."""
    cfgs = [mlp.Config.from_params({**m, "width": 40}) for m in MEMBERS[:2]]
    buckets = mlp._buckets(mlp.OPTION_DEFAULTS["width_buckets"])
    monkeypatch.setattr(mlp.COST, "compile_seconds", 3.0)
    monkeypatch.setattr(mlp.COST, "flops_per_second", 1e9)
    monkeypatch.setattr(batched.PACKED_COST, "compile_seconds", 1e-9)
    monkeypatch.setattr(batched, "SURVIVAL", _all_epochs(5))
    monkeypatch.setattr(batched.PACKED_COST, "flops_per_second", 0.0)
    assert batched.packing_pays(cfgs, sample, 5, buckets)  # unmeasured: the solo rate
    batched.note_rate(1e9, 100.0)  # a packed epoch ran at 1e7 FLOP/s
    assert batched.PACKED_COST.flops_per_second == pytest.approx(1e7)
    assert not batched.packing_pays(cfgs, sample, 5, buckets)
    batched.note_rate(1e9, 0.5)  # later epochs faster: the rate moves towards them
    assert batched.PACKED_COST.flops_per_second > 1e9
    assert batched.packing_pays(cfgs, sample, 5, buckets)


def test_the_packing_gate_counts_the_epochs_the_pruner_leaves(sample, monkeypatch) -> None:
    """A packed batch runs until its longest member ends; a member trained alone stops
    costing when it is pruned. Under ASHA most trials end after one epoch, so a batch
    that pays when every member runs all its epochs does not pay any more."""
    cfgs = [mlp.Config.from_params({**m, "width": 40}) for m in MEMBERS[:2]]
    buckets = mlp._buckets(mlp.OPTION_DEFAULTS["width_buckets"])
    monkeypatch.setattr(mlp.COST, "compile_seconds", 3.0)
    monkeypatch.setattr(mlp.COST, "flops_per_second", 1e9)
    monkeypatch.setattr(batched.PACKED_COST, "compile_seconds", 1e-9)
    monkeypatch.setattr(batched.PACKED_COST, "flops_per_second", 0.0)
    monkeypatch.setattr(batched, "SURVIVAL", batched.Survival())
    monkeypatch.setattr(mlp, "_PROGRAMS", {})
    solo = {mlp.shape_class(c, sample, 5, buckets) for c in cfgs}  # compiled already: no build
    monkeypatch.setattr(mlp, "_PROGRAMS", {c: program.Program(c) for c in solo})
    fresh = batched.packed_class(cfgs, sample, 5) not in batched._PACKED
    assert batched.packing_pays(cfgs, sample, 5, buckets) is not fresh  # no build before it knows
    monkeypatch.setattr(batched, "_PACKED", {batched.packed_class(cfgs, sample, 5): None})
    assert batched.packing_pays(cfgs, sample, 5, buckets)  # compiled, nothing seen: 5 epochs each
    for epochs in (1, 1, 1, 5):
        batched.SURVIVAL.note(epochs)
    assert batched.SURVIVAL.expected(5) == pytest.approx(2.0)  # 1 + 4 x 1/4
    assert batched.SURVIVAL.expected(5, 2) == pytest.approx(2.75)  # 1 + 4 x (1 - (3/4)^2)
    assert not batched.packing_pays(cfgs, sample, 5, buckets)


def _all_epochs(epochs: int) -> batched.Survival:
    """A worker that saw its trials run all their epochs."""
    seen = batched.Survival()
    for _ in range(seen.MIN_SEEN):
        seen.note(epochs)
    return seen
