"""hp.optimize: the in-process search through the ledger and the search core."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

import p2phpo as hp
from p2phpo.study import StudyError, StudySpec, run_local

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


def test_asha_prunes_bad_curves_and_reports_only_at_rungs():
    def curve(trial):
        final = quadratic(trial)
        for epoch in range(1, 10):
            trial.report(epoch, final + 5.0 / epoch)
        return final

    r = hp.optimize(curve, SPACE, n_trials=30, pruner="asha", seed=0)
    states = Counter(t.state.name for t in r.trials)
    assert states["PRUNED"] >= 10 and states["COMPLETE"] >= 1
    assert all(set(t.reports) <= {1, 3, 9} for t in r.trials)
    pruned = [t for t in r.trials if t.state.name == "PRUNED"]
    assert all(t.value == t.last_report[1] for t in pruned)


@pytest.mark.parametrize("pruner, options", [
    ("median", {}), ("hyperband", {"max_resource": 9}), ("asha", {"reduction_factor": 2})])
def test_every_pruner_stops_poor_curves_when_maximizing(pruner, options):
    def curve(trial):
        final = -quadratic(trial)
        for epoch in range(1, 10):
            trial.report(epoch, final - 5.0 / epoch)
        return final

    r = hp.optimize(curve, SPACE, n_trials=30, pruner=pruner, pruner_options=options,
                    direction="maximize", seed=2)
    states = Counter(t.state.name for t in r.trials)
    assert states["PRUNED"] >= 5 and states["COMPLETE"] >= 1
    assert r.best_value == max(t.value for t in r.trials if t.state.name == "COMPLETE")


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
    ledger = run_local(spec, quadratic, node_id=5, clock=lambda: 0.0,
                       wall=lambda: float(next(ticks)))
    n = len(ledger.trials())
    assert 1 <= n < 10


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
