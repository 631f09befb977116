"""hp.optimize: the in-process search through the ledger and the search core."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

import p2phpo as hp
from p2phpo.inprocess import run_local
from p2phpo.study import StudyError, StudySpec

SPACE = hp.Space(x=hp.Float(-5.0, 5.0), lr=hp.Float(1e-4, 1.0, log=True), n=hp.Int(1, 8),
                 act=hp.Choice(["relu", "gelu", "tanh"]))


def quadratic(trial: hp.Trial) -> float:
    p = trial.params
    return (p["x"] - 1) ** 2 + (math.log10(p["lr"]) + 2) ** 2 + (p["n"] - 3) ** 2 + (
        p["act"] != "gelu")


def test_optimize_finds_a_good_point_and_returns_every_trial():
    r = hp.optimize(quadratic, SPACE, n_trials=40, seed=0)
    assert len(r.trials) == 40 and [t.slot for t in r.trials] == list(range(40))
    assert all(t.state.name == "COMPLETE" for t in r.trials)
    assert r.best_value == min(t.value for t in r.trials) < 3.0
    assert SPACE.contains(r.best_params) and r.best_trial.params == r.best_params


def test_maximize_picks_the_largest_value():
    r = hp.optimize(lambda t: -quadratic(t), SPACE, n_trials=15, direction="maximize", seed=1)
    assert r.best_value == max(t.value for t in r.trials)


def test_same_seed_replays_the_same_search():
    a = hp.optimize(quadratic, SPACE, n_trials=20, seed=3)
    b = hp.optimize(quadratic, SPACE, n_trials=20, seed=3)
    c = hp.optimize(quadratic, SPACE, n_trials=20, seed=4)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_a_failing_objective_is_recorded_and_the_search_goes_on():
    def flaky(trial):
        if trial.number % 3 == 0:
            raise RuntimeError(f"diverged at trial {trial.number}")
        return quadratic(trial)

    r = hp.optimize(flaky, SPACE, n_trials=12, seed=0)
    states = Counter(t.state.name for t in r.trials)
    assert states == {"FAILED": 4, "COMPLETE": 8}
    failed = [t for t in r.trials if t.state.name == "FAILED"]
    assert failed[0].error == "RuntimeError: diverged at trial 0"
    assert r.best_value is not None


def test_a_non_numeric_result_is_a_failed_trial():
    r = hp.optimize(lambda t: "good", SPACE, n_trials=2, seed=0)
    assert {t.state.name for t in r.trials} == {"FAILED"}
    assert "not a number" in r.trials[0].error
    assert r.best_params is None and r.best_value is None


def _curve(sign: float = 1.0):
    """An Optuna-style objective: report(value, step), should_prune, raise TrialPruned."""
    def curve(trial):
        final = sign * quadratic(trial)
        for epoch in range(1, 10):
            trial.report(final + sign * 5.0 / epoch, epoch)
            if trial.should_prune():
                raise hp.TrialPruned()
        return final
    return curve


def test_asha_prunes_bad_curves_and_every_epoch_is_recorded():
    r = hp.optimize(_curve(), SPACE, n_trials=30, pruner="asha", seed=0)
    states = Counter(t.state.name for t in r.trials)
    assert states["PRUNED"] >= 10 and states["COMPLETE"] >= 1
    pruned = [t for t in r.trials if t.state.name == "PRUNED"]
    assert all(t.value == t.last_report[1] for t in pruned)
    assert {t.last_report[0] for t in pruned} <= {1, 3, 9}  # decided only at the rungs
    for t in r.trials:  # the whole curve up to where the trial stopped
        assert sorted(t.reports) == list(range(1, max(t.reports) + 1))
    assert all(max(t.reports) == 9 for t in r.trials if t.state.name == "COMPLETE")


def test_an_objective_that_ignores_should_prune_completes_as_in_optuna():
    def stubborn(trial):
        for epoch in range(1, 10):
            trial.report(quadratic(trial) + 5.0 / epoch, epoch)
        return quadratic(trial)

    r = hp.optimize(stubborn, SPACE, n_trials=20, pruner="asha", seed=0)
    assert {t.state.name for t in r.trials} == {"COMPLETE"}


@pytest.mark.parametrize("step, error, words", [
    (0.5, TypeError, "step must be an integer"), (True, TypeError, "step must be an integer"),
    (-1, ValueError, "step must be >= 0"), ("3", TypeError, "step must be an integer")])
def test_report_rejects_a_bad_step_in_one_sentence(step, error, words):
    trial = hp.Trial({"x": 1.0})
    with pytest.raises(error, match=words):
        trial.report(0.9, step)
    assert trial.reports == {}


def test_swapped_report_arguments_fail_the_trial_loudly():
    def swapped(trial):  # the order p2phpo used before 0.2: report(step, value)
        trial.report(1, 0.87)
        return 0.87

    r = hp.optimize(swapped, SPACE, n_trials=2, pruner="asha")
    assert {t.state.name for t in r.trials} == {"FAILED"}
    assert "value first, then step" in r.trials[0].error


@pytest.mark.parametrize("pruner, options", [
    ("median", {}), ("hyperband", {"max_resource": 9}), ("asha", {"reduction_factor": 2})])
def test_every_pruner_stops_poor_curves_when_maximizing(pruner, options):
    r = hp.optimize(_curve(-1.0), SPACE, n_trials=30, pruner=pruner, pruner_options=options,
                    direction="maximize", seed=2)
    states = Counter(t.state.name for t in r.trials)
    assert states["PRUNED"] >= 5 and states["COMPLETE"] >= 1
    assert r.best_value == max(t.value for t in r.trials if t.state.name == "COMPLETE")


def test_objective_options_reach_the_trial_and_set_hyperbands_resource():
    seen = []

    def obj(trial):
        seen.append(dict(trial.options))
        return _curve()(trial)

    r = hp.optimize(obj, SPACE, n_trials=12, pruner="hyperband", seed=0,
                    objective_options={"max_epochs": 9, "dataset": "mnist"})
    assert seen[0] == {"max_epochs": 9, "dataset": "mnist"}
    assert Counter(t.state.name for t in r.trials)["PRUNED"] >= 1


def test_hyperband_without_a_resource_says_how_to_set_it():
    with pytest.raises(StudyError, match="objective_options") as e:
        hp.optimize(quadratic, SPACE, n_trials=3, pruner="hyperband")
    assert "max_epochs" in str(e.value) and "max_resource" in str(e.value)


def test_callbacks_see_every_finished_trial_and_can_stop_the_search():
    seen = []

    def stop_at_good(study, trial):
        seen.append((trial.number, trial.state.name))
        if study.best_value is not None and study.best_value < 6.0:
            study.stop()

    r = hp.optimize(quadratic, SPACE, n_trials=200, seed=0, callbacks=[stop_at_good])
    assert r.reason == "stopped by a callback" and r.best_value < 6.0
    assert len(r.trials) == len(seen) < 200
    assert [n for n, _ in seen] == [t.slot for t in r.trials]


def test_ctrl_c_returns_the_result_so_far():
    def interrupted_at_five(trial):
        if trial.number == 5:
            raise KeyboardInterrupt
        return quadratic(trial)

    r = hp.optimize(interrupted_at_five, SPACE, n_trials=50, seed=0)
    assert r.reason == "interrupted"
    assert Counter(t.state.name for t in r.trials) == {"COMPLETE": 5, "ABANDONED": 1}
    assert r.best_value == min(t.value for t in r.trials if t.value is not None)


def test_results_other_than_real_numbers_are_failed_trials():
    import numpy as np

    values = iter([np.float32(0.5), np.array(0.25), True, "0.5", [1.0], float("inf"), 3])
    r = hp.optimize(lambda t: next(values), SPACE, n_trials=7, seed=0, sampler="random")
    states = [t.state.name for t in r.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAILED", "FAILED", "FAILED", "FAILED",
                      "COMPLETE"]
    assert r.best_value == 0.25


def test_ties_go_to_the_earlier_trial():
    r = hp.optimize(lambda t: 1.0, SPACE, n_trials=5, seed=0)
    assert r.best_trial.number == 0


def test_suggest_methods_port_optuna_objectives():
    def optuna_style(trial):
        x = trial.suggest_float("x", -5.0, 5.0)
        n = trial.suggest_int("n", 1, 8)
        act = trial.suggest_categorical("act", ["relu", "gelu", "tanh"])
        return x * x + n + (act == "tanh")

    assert hp.optimize(optuna_style, SPACE, n_trials=5).best_value is not None

    def wrong_range(trial):
        return trial.suggest_float("x", 0.0, 1.0)

    r = hp.optimize(wrong_range, SPACE, n_trials=2)
    assert "declares [-5.0, 5.0]" in r.trials[0].error


def test_grid_search_stops_when_the_grid_is_exhausted():
    space = hp.Space(a=hp.Int(1, 3), b=hp.Choice(["x", "y"]))
    r = hp.optimize(lambda t: t.params["a"], space, n_trials=50, sampler="grid")
    assert len(r.trials) == 6
    assert len({tuple(sorted(t.params.items())) for t in r.trials}) == 6


def test_timeout_stops_claiming_new_trials():
    spec = StudySpec.from_dict({
        "study": {"n_trials": 100, "timeout": 10},
        "objective": {"name": "python"}, "space": SPACE.to_dict()})
    ticks = itertools.count()
    # The timeout runs on the monotonic clock; the wall clock (frozen here) plays no part.
    ledger = run_local(spec, quadratic, node_id=5, clock=lambda: float(next(ticks)),
                       wall=lambda: 0.0)
    n = len(ledger.trials())
    assert 1 <= n <= 10  # one clock tick per step: at most ten claims before the timeout


def test_target_ends_the_search_early():
    r = hp.optimize(lambda t: 1.0, SPACE, n_trials=50, target=2.0)
    assert len(r.trials) == 1


@pytest.mark.parametrize("kw, message", [
    ({"sampler": "nope"}, "unknown sampler"),
    ({"pruner": "nope"}, "unknown pruner"),
    ({"direction": "up"}, "direction"),
    ({"n_trials": 0}, "n_trials"),
    ({"sampler_options": {"n_startup": -1}}, "n_startup"),
])
def test_bad_arguments_fail_before_any_trial(kw, message):
    with pytest.raises(StudyError, match=message):
        hp.optimize(quadratic, SPACE, **kw)


@pytest.mark.parametrize("sampler", ["tpe", "random", "evolution", "grid"])
def test_same_seed_on_one_node_gives_the_same_trials_whatever_the_node_id(sampler):
    # A fresh state dir draws a new node id; `seed` alone must fix the sequence of trials.
    spec = StudySpec.from_dict({
        "study": {"n_trials": 14, "seed": 7}, "sampler": {"name": sampler},
        "objective": {"name": "python"}, "space": SPACE.to_dict()})

    def params(node_id):
        ledger = run_local(spec, quadratic, node_id=node_id)
        return [v.params for v in sorted(ledger.trials().values(), key=lambda v: v.slot)]

    first = params(0x1234)
    assert len(first) == 14 and first == params(0x7FEDCBA987654321)
    other = StudySpec.from_dict({**spec.to_dict(), "study": {"n_trials": 14, "seed": 8}})
    assert [v.params for v in sorted(run_local(other, quadratic, node_id=0x1234).trials()
                                     .values(), key=lambda v: v.slot)] != first
