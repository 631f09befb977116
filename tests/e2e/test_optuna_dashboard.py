"""The Optuna export, read back by Optuna's own tools: trials_dataframe, its plots and
optuna-dashboard (a real server on 127.0.0.1, read through its HTTP API)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

import p2phpo as hp
from p2phpo.core.entries import trial_id_str
from p2phpo.export import write_optuna
from tests.e2e.cluster import free_port

optuna = pytest.importorskip("optuna", reason="the optuna extra is not installed")

SPACE = hp.Space(lr=hp.Float(1e-4, 1e-1, log=True), act=hp.Choice(["relu", "gelu"]))


def objective(trial):
    acc = 0.97 - 0.05 * abs(trial.params["lr"] - 0.01) ** 0.5 - 0.02 * (trial.params["act"] == "relu")
    for epoch in range(1, 6):
        trial.report(acc - 0.2 / epoch, epoch)
        if trial.should_prune():
            raise hp.TrialPruned()
    return acc


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    result = hp.optimize(objective, SPACE, n_trials=20, pruner="asha", direction="maximize",
                         seed=0)
    db = tmp_path_factory.mktemp("optuna") / "study.db"
    name, count = write_optuna(result.ledger, f"sqlite:///{db}", study_name="dash")
    assert (name, count) == ("dash", 20)
    return result, db


def test_trials_dataframe_and_optunas_plots_work_on_the_export(exported):
    pytest.importorskip("pandas", reason="the optuna extra (pandas) is not installed")
    pytest.importorskip("plotly", reason="the optuna extra (plotly) is not installed")
    result, db = exported
    study = optuna.load_study(study_name="dash", storage=f"sqlite:///{db}")
    df = study.trials_dataframe()
    assert len(df) == 20 and {"params_lr", "params_act", "value", "state"} <= set(df.columns)
    assert study.best_value == result.best_value
    fig = optuna.visualization.plot_optimization_history(study)
    assert len(fig.data) >= 1
    assert len(optuna.visualization.plot_intermediate_values(study).data) == 20


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - 127.0.0.1 only
        return json.loads(r.read())


def test_the_export_opens_in_optuna_dashboard(exported):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed "
                        "(pip install 'p2phpo[dev]')")
    result, db = exported
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from optuna_dashboard._cli import main; main()",
         f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"optuna-dashboard did not start: "
                                         f"{server.stderr.read().decode()[-500:]}") from None
                time.sleep(0.3)
        assert [s["study_name"] for s in studies] == ["dash"]
        detail = _get(f"{base}/api/studies/{studies[0]['study_id']}")
    finally:
        server.terminate()
        server.wait(10)
    trials = detail["trials"]
    assert len(trials) == 20 and detail["directions"] == ["maximize"]
    by_id = {_attr(t, "p2phpo_trial"): t for t in trials}
    best = by_id[trial_id_str(result.best_trial.id)]
    assert best["state"] == "Complete" and best["values"] == [result.best_value]
    assert [v["step"] for v in best["intermediate_values"]] == [1, 2, 3, 4, 5]
    pruned = [t for t in trials if t["state"] == "Pruned"]
    assert pruned and all(t["intermediate_values"] for t in pruned)
    assert detail["best_trials"][0]["values"] == [result.best_value]


def _attr(trial: dict, key: str) -> str:
    return next(a["value"] for a in trial["user_attrs"] if a["key"] == key)
