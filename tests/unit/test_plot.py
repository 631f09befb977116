"""``p2phpo plot`` and the importance it draws: data a person would read off the picture."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import p2phpo as hp
from p2phpo.cli import app
from p2phpo.core.frame import FrameBuilder
from p2phpo.importance import importance
from p2phpo.plot import plot_data
from p2phpo.storage import Storage

SPACE = hp.Space(lr=hp.Float(1e-4, 1e-1, log=True), width=hp.Int(32, 512, log=True),
                 act=hp.Choice(["relu", "gelu", "tanh"]), noise=hp.Float(0.0, 1.0))


def objective(trial):
    """Accuracy that depends on lr a lot, on act a little, on width and noise not at all."""
    p = trial.params
    final = 0.98 - 0.08 * abs(math.log10(p["lr"]) + 2.5) - 0.01 * (p["act"] != "gelu")
    for epoch in range(1, 10):
        trial.report(final - 0.3 / epoch, epoch)
        if trial.should_prune():
            raise hp.TrialPruned()
    return final


@pytest.fixture(scope="module")
def result():
    return hp.optimize(objective, SPACE, n_trials=60, pruner="asha", direction="maximize",
                       seed=0)


def test_plot_data_reads_like_the_study(result):
    d = plot_data(result.ledger)
    assert d.direction == "maximize" and d.n_trials == 60
    assert d.best["value"] == result.best_value and d.best["params"] == result.best_params
    bests = [y for _, y in d.best_so_far]
    assert bests == sorted(bests) and bests[-1] == result.best_value  # never gets worse
    states = {s for _, _, s in d.history}
    assert states == {"COMPLETE", "PRUNED"}
    assert len(d.curves) == 60 and all(c.steps == list(range(1, len(c.steps) + 1))
                                       for c in d.curves)
    complete = sum(1 for t in result.trials if t.state.name == "COMPLETE")
    assert len(d.lines) == complete and len(d.pruned_lines) == 60 - complete
    assert [a["name"] for a in d.axes] == ["lr", "width", "act", "noise"]
    assert all(0.0 <= u <= 1.0 for coords, _ in d.lines for u in coords)


def test_importance_finds_the_parameter_that_matters(result):
    imp = importance(FrameBuilder(SPACE, "maximize").sync(result.ledger))
    assert abs(sum(imp.values()) - 1.0) < 1e-9
    assert next(iter(imp)) == "lr" and imp["lr"] > imp["width"] and imp["lr"] > imp["noise"]


def test_importance_needs_a_few_finished_trials():
    r = hp.optimize(objective, SPACE, n_trials=3, direction="maximize")
    assert importance(FrameBuilder(SPACE, "maximize").sync(r.ledger)) is None


def test_importance_agrees_with_optunas_ped_anova():
    optuna = pytest.importorskip("optuna")
    r = hp.optimize(objective, SPACE, n_trials=100, sampler="random", direction="maximize",
                    seed=1)
    ours = importance(FrameBuilder(SPACE, "maximize").sync(r.ledger))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
             "width": optuna.distributions.IntDistribution(32, 512, log=True),
             "act": optuna.distributions.CategoricalDistribution(["relu", "gelu", "tanh"]),
             "noise": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for t in r.trials:
        study.add_trial(optuna.trial.create_trial(params=t.params, distributions=dists,
                                                  value=t.value))
    theirs = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    assert next(iter(ours)) == next(iter(theirs)) == "lr"


def _state_dir(root: Path, ledger) -> Path:
    with Storage.open(root) as st:
        st.append(ledger.delta_since({}))
    return root


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_plot_command_writes_the_picture(result, tmp_path, suffix):
    pytest.importorskip("matplotlib")
    root = _state_dir(tmp_path / "state", result.ledger)
    out = tmp_path / f"study{suffix}"
    res = CliRunner().invoke(app, ["plot", "--state-dir", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = out.read_bytes()
    assert len(data) > 20_000
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        text = data.decode()
        assert "<svg" in text and ("Optimization history" in text or "Optimization" in text)
        if suffix == ".html":
            assert f"Best trial {result.best_trial.id[0]:016x}:" in text


def test_plot_refuses_an_unknown_format(tmp_path):
    res = CliRunner().invoke(app, ["plot", "--state-dir", str(tmp_path), "--out", "x.pdf"])
    assert res.exit_code == 2 and "--out must end in .png, .svg, .html" in res.stderr
