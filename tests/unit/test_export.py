"""``p2phpo export``: a state dir written by a node, exported as a user would."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from p2phpo.cli import app
from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    Report,
    Result,
    Status,
    StudyEntry,
    trial_id_str,
)
from p2phpo.core.records import sign_entry
from p2phpo.storage import Storage
from tests.signing import ident

PEER = ident(9)
OTHER = PEER.node_id
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "width": {"type": "int", "low": 32, "high": 1024, "log": True, "step": 1},
    "act": {"type": "choice", "values": ["relu", "gelu", "tanh"]},
}
SPEC = {"study": {"name": "mnist-mlp", "direction": "maximize", "metric": "val_accuracy",
                  "n_trials": 4}, "objective": {"max_epochs": 3}, "space": SPACE}


def _urandom(n: int) -> bytes:
    return bytes([7] * n)


def make_state_dir(root: Path) -> dict[str, str]:
    """A node's state dir: 2 of its own trials, 3 merged from a peer (one retried)."""
    names: dict[str, str] = {}
    with Storage.open(root, urandom=_urandom) as st:
        me, led = st.node_id, st.ledger
        st.append_local(StudyEntry(origin=me, seq=1, wall=1000.0, spec=SPEC, fingerprint="f" * 32))

        def own(cls, **kw):
            return st.append_local(cls(origin=me, seq=led.next_seq(me), wall=1001.0 + led.next_seq(me), **kw))

        a = own(Claim, slot=0, params={"lr": 0.001, "width": 64, "act": "relu"})
        for step, v in ((1, 0.90), (2, 0.95), (3, 0.97)):
            own(Report, trial=a.key, step=step, value=v)
        own(Result, trial=a.key, status=Status.COMPLETE, value=0.97, duration=30.0)
        peer = []

        def theirs(cls, **kw):
            e = cls(origin=OTHER, seq=len(peer) + 1, wall=1100.0 + len(peer), **kw)
            peer.append((e, sign_entry(PEER, e, peer[-1][1] if peer else None)))
            return e

        b = theirs(Claim, slot=1, params={"lr": 0.05, "width": 512, "act": "tanh"})
        theirs(Report, trial=b.key, step=1, value=0.4)
        theirs(Result, trial=b.key, status=Status.PRUNED, value=0.4, duration=8.0)
        c = theirs(Claim, slot=2, params={"lr": 0.01, "width": 128, "act": "gelu"})
        theirs(Abandon, trial=c.key, reason=AbandonReason.DEAD)
        d = theirs(Claim, slot=3, params={"lr": 0.02, "width": 256, "act": "relu"})
        theirs(Result, trial=d.key, status=Status.FAILED, error="CUDA out of memory", duration=1.5)
        stats = led.merge(peer)
        st.append(stats.added)
        r = own(Claim, slot=2, params={"lr": 0.01, "width": 128, "act": "gelu"}, retry_of=c.key)
        own(Report, trial=r.key, step=1, value=0.91)
        # a claim that lost slot 0 to ours: SUPERSEDED, never trained
        lost = own(Claim, slot=0, params={"lr": 0.003, "width": 96, "act": "gelu"})
        own(Result, trial=lost.key, status=Status.SUPERSEDED, duration=0.0)
        names["superseded"] = trial_id_str(lost.key)
        names.update(best=trial_id_str(a.key), pruned=trial_id_str(b.key),
                     abandoned=trial_id_str(c.key), failed=trial_id_str(d.key),
                     retry=trial_id_str(r.key), me=f"{me:016x}")
    return names


@pytest.fixture()
def state(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "state"
    return root, make_state_dir(root)


def invoke(*args: str):
    return CliRunner().invoke(app, ["export", *args])


def test_jsonl_rows_follow_the_design_schema(state):
    root, names = state
    res = invoke("--state-dir", str(root), "--format", "jsonl")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert list(row) == ["trial", "slot", "node", "state", "params", "value", "reports",
                             "retry_of", "started", "duration", "error"]
    by_id = {r["trial"]: r for r in rows}
    best = by_id[names["best"]]
    assert best["state"] == "COMPLETE" and best["value"] == 0.97 and best["slot"] == 0
    assert best["node"] == names["me"] and best["duration"] == 30.0
    assert best["reports"] == {"1": 0.90, "2": 0.95, "3": 0.97}
    assert best["params"] == {"lr": 0.001, "width": 64, "act": "relu"}
    assert isinstance(best["started"], float)
    assert by_id[names["pruned"]]["state"] == "PRUNED"
    assert by_id[names["abandoned"]]["state"] == "ABANDONED"
    assert by_id[names["failed"]]["error"] == "CUDA out of memory"
    retry = by_id[names["retry"]]
    assert retry["state"] == "RUNNING" and retry["retry_of"] == names["abandoned"]
    assert retry["value"] is None and retry["duration"] is None
    assert [r["slot"] for r in rows] == [0, 1, 2, 2, 3]


def test_json_is_the_same_rows_as_a_list(state):
    root, _ = state
    lines = invoke("--state-dir", str(root), "--format", "jsonl").stdout.splitlines()
    res = invoke("--state-dir", str(root), "--format", "json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == [json.loads(line) for line in lines]


def test_csv_has_a_column_per_parameter(state, tmp_path):
    root, names = state
    out = tmp_path / "trials.csv"
    res = invoke("--state-dir", str(root), "--format", "csv", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "wrote 5 trials" in res.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 5
    best = next(r for r in rows if r["trial"] == names["best"])
    assert best["params_lr"] == "0.001" and best["params_width"] == "64"
    assert best["params_act"] == "relu" and best["value"] == "0.97"
    assert best["last_step"] == "3" and json.loads(best["reports"])["3"] == 0.97
    pruned = next(r for r in rows if r["trial"] == names["pruned"])
    assert pruned["state"] == "PRUNED"


def test_optuna_study_holds_every_trial(state, tmp_path):
    optuna = pytest.importorskip("optuna")
    root, names = state
    db = tmp_path / "x.db"
    res = invoke("--state-dir", str(root), "--format", "optuna", "--storage", f"sqlite:///{db}")
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="mnist-mlp", storage=f"sqlite:///{db}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 5
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL", "FAIL", "PRUNED", "RUNNING"]
    assert study.best_value == 0.97 and study.best_params["act"] == "relu"
    best = study.best_trial
    assert best.intermediate_values == {1: 0.90, 2: 0.95, 3: 0.97}
    assert best.user_attrs["p2phpo_trial"] == names["best"]
    # times are the ledger's wall clocks (1970 here), not the moment of export
    assert best.datetime_start.year == 1970 and best.datetime_start < best.datetime_complete
    assert best.distributions["lr"].log and best.distributions["width"].high == 1024
    assert best.distributions["act"].choices == ("relu", "gelu", "tanh")
    again = invoke("--state-dir", str(root), "--format", "optuna", "--storage", f"sqlite:///{db}")
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_missing_state_dir_is_one_sentence_and_exit_2(tmp_path):
    res = invoke("--state-dir", str(tmp_path / "nope"), "--format", "csv")
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "does not exist" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_a_dir_that_is_not_a_state_dir_is_refused(tmp_path):
    res = invoke("--state-dir", str(tmp_path), "--format", "csv")
    assert res.exit_code == 2 and "not a p2phpo state dir" in res.stderr


def test_bad_format_and_missing_storage_exit_2(state):
    root, _ = state
    res = invoke("--state-dir", str(root), "--format", "xml")
    assert res.exit_code == 2 and "unknown --format" in res.stderr
    res = invoke("--state-dir", str(root), "--format", "optuna")
    assert res.exit_code == 2 and "--storage" in res.stderr


def test_default_state_dir_follows_xdg(state, monkeypatch, tmp_path):
    root, _ = state
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    root.rename(tmp_path / "p2phpo")
    res = invoke("--format", "jsonl")
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 5


def test_seed_where_nothing_listens_ends_in_one_sentence(monkeypatch):
    monkeypatch.delenv("P2PHPO_KEY", raising=False)
    res = invoke("--seed", "127.0.0.1:9", "--insecure", "--timeout", "1", "--format", "csv")
    assert res.exit_code == 2 and res.stdout == ""
    assert "could not fetch the ledger from 127.0.0.1:9" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_export_reads_while_a_node_holds_the_state_dir(tmp_path):
    root = tmp_path / "live"
    make_state_dir(root)
    with Storage.open(root, urandom=_urandom):  # a running node holds the lock
        res = invoke("--state-dir", str(root), "--format", "jsonl")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 5


def test_seed_uses_the_runtime_fetch_when_present(state, monkeypatch):
    monkeypatch.delenv("P2PHPO_KEY", raising=False)
    import sys
    import types

    from p2phpo.storage import read_state

    root, _ = state
    calls = []

    async def fetch_ledger(seed, *, keyring=None, cluster="default", insecure=False,
                           timeout=10.0):
        calls.append((seed, keyring, cluster, insecure))
        return read_state(root).ledger

    module = types.ModuleType("p2phpo.runtime.fetch")
    module.fetch_ledger = fetch_ledger
    monkeypatch.setitem(sys.modules, "p2phpo.runtime.fetch", module)
    res = invoke("--seed", "127.0.0.1:7946", "--format", "jsonl", "--cluster", "lab", "--insecure")
    assert res.exit_code == 0, res.output
    assert calls == [("127.0.0.1:7946", None, "lab", True)] and len(res.stdout.splitlines()) == 5


DESIGN_TOML = """
[study]
name = "mnist-mlp"
direction = "maximize"
metric = "val_accuracy"
n_trials = 100
[sampler]
name = "tpe"
[pruner]
name = "asha"
min_resource = 1
reduction_factor = 3
[objective]
name = "mnist-mlp"
dataset = "mnist"
max_epochs = 20
[space]
lr           = { type = "float", low = 1e-4, high = 1e-1, log = true }
layers       = { type = "int", low = 1, high = 4 }
width        = { type = "int", low = 32, high = 1024, log = true }
activation   = { type = "choice", values = ["relu", "gelu", "tanh"] }
dropout      = { type = "float", low = 0.0, high = 0.5 }
batch_size   = { type = "choice", values = [64, 128, 256, 512] }
"""


def test_optuna_distributions_come_from_the_study_spec(tmp_path):
    optuna = pytest.importorskip("optuna")
    from p2phpo.export import optuna_distributions
    from p2phpo.study import StudySpec
    from p2phpo.ui.snapshot import snapshot_from_ledger

    spec = StudySpec.from_toml(DESIGN_TOML)
    with Storage.open(tmp_path / "s", urandom=_urandom) as st:
        me = st.node_id
        st.append_local(StudyEntry(origin=me, seq=1, wall=1.0, spec=spec.to_dict(),
                                   fingerprint=spec.fingerprint()))
        c = st.append_local(Claim(origin=me, seq=2, wall=2.0, slot=0, params={
            "lr": 0.003, "layers": 2, "width": 256, "activation": "gelu", "dropout": 0.1,
            "batch_size": 128}))
        st.append_local(Result(origin=me, seq=3, wall=3.0, trial=c.key, value=0.98,
                               duration=1.0))
        dists = optuna_distributions(st.ledger)
        snap = snapshot_from_ledger(st.ledger)
    d = optuna.distributions
    assert dists["lr"] == d.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["layers"] == d.IntDistribution(1, 4)
    assert dists["width"] == d.IntDistribution(32, 1024, log=True)
    assert dists["activation"] == d.CategoricalDistribution(["relu", "gelu", "tanh"])
    assert dists["batch_size"] == d.CategoricalDistribution([64, 128, 256, 512])
    assert dists["dropout"] == d.FloatDistribution(0.0, 0.5)
    assert (snap.study, snap.direction, snap.metric, snap.n_trials) == \
        ("mnist-mlp", "maximize", "val_accuracy", 100)


def test_optuna_missing_is_said_clearly(state, monkeypatch, tmp_path):
    import sys

    root, _ = state
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    res = invoke("--state-dir", str(root), "--format", "optuna",
                 "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert res.exit_code == 2 and "needs the optuna package" in res.stderr


def test_superseded_claims_are_left_out_unless_all(state):
    root, names = state
    rows = [json.loads(x) for x in invoke("--state-dir", str(root), "--format", "jsonl")
            .stdout.splitlines()]
    assert names["superseded"] not in {r["trial"] for r in rows} and len(rows) == 5
    rows = [json.loads(x) for x in invoke("--state-dir", str(root), "--format", "jsonl",
                                          "--all").stdout.splitlines()]
    assert len(rows) == 6
    assert next(r for r in rows if r["trial"] == names["superseded"])["state"] == "SUPERSEDED"


def test_a_state_dir_that_is_a_file_is_named_a_file(tmp_path):
    f = tmp_path / "trials.csv"
    f.write_text("x\n")
    res = invoke("--state-dir", str(f))
    assert res.exit_code == 2
    assert f"--state-dir {f} is a file, not a folder" in res.stderr
