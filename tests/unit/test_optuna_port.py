"""An Optuna objective ported by changing only its import prunes as under Optuna.

The objective's source is written once, with Optuna's idioms
(``suggest_float``, ``report(value, step)``, ``should_prune``,
``raise optuna.TrialPruned()``, ``trial.number``), and executed twice: under
``import optuna`` and under ``import p2phpo as optuna``. Its curves depend
only on the trial number, so both libraries see the same curves in the same
order and must prune the same trials at the same steps.
"""

from __future__ import annotations

import pytest

import p2phpo as hp

optuna = pytest.importorskip("optuna")

OBJECTIVE = '''
def objective(trial):
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    quality = ((trial.number * 37) % 23) / 23.0        # this trial's final loss
    for step in range(1, 28):
        loss = quality + 2.0 / step + 0.0 * (x + lr)
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
'''

N_TRIALS = 40


def _objective(import_line: str):
    scope: dict = {}
    exec(import_line + "\n" + OBJECTIVE, scope)  # noqa: S102 - the point of the test
    return scope["objective"]


def _pruned_under_optuna(pruner) -> dict[int, int]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective("import optuna"), n_trials=N_TRIALS)
    return {t.number: max(t.intermediate_values) for t in study.trials
            if t.state == optuna.trial.TrialState.PRUNED}


def _pruned_under_p2phpo(pruner: str, options: dict) -> dict[int, int]:
    space = hp.Space(x=hp.Float(-5.0, 5.0), lr=hp.Float(1e-4, 1e-1, log=True))
    result = hp.optimize(_objective("import p2phpo as optuna"), space, n_trials=N_TRIALS,
                         sampler="random", pruner=pruner, pruner_options=options, seed=0)
    assert len(result.trials) == N_TRIALS
    return {t.number: t.last_report[0] for t in result.trials if t.state.name == "PRUNED"}


def test_asha_prunes_the_same_trials_at_the_same_steps_as_optunas_successive_halving():
    expected = _pruned_under_optuna(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3, min_early_stopping_rate=0))
    got = _pruned_under_p2phpo("asha", {"min_resource": 1, "reduction_factor": 3})
    assert len(expected) >= 10  # the scenario prunes a good share under Optuna
    assert got == expected


def test_the_ported_objective_records_whole_curves_as_optuna_does():
    space = hp.Space(x=hp.Float(-5.0, 5.0), lr=hp.Float(1e-4, 1e-1, log=True))
    result = hp.optimize(_objective("import p2phpo as optuna"), space, n_trials=5,
                         sampler="random")
    assert [sorted(t.reports) for t in result.trials] == [list(range(1, 28))] * 5
    assert result.best_trial.number == min(
        range(5), key=lambda n: (((n * 37) % 23) / 23.0, n))


def test_median_prunes_the_same_trials_at_the_same_steps_as_optunas_median_pruner():
    expected = _pruned_under_optuna(optuna.pruners.MedianPruner(n_startup_trials=5,
                                                                n_warmup_steps=2))
    got = _pruned_under_p2phpo("median", {"n_startup_trials": 5, "n_warmup_steps": 2})
    assert len(expected) >= 10
    assert got == expected
