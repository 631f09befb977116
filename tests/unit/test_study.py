"""Study files: validation with clear errors, normalization, fingerprint, the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2phpo.core.entries import Claim, StudyEntry
from p2phpo.core.ledger import Ledger
from p2phpo.study import CURVE_STEPS, StudyError, StudySpec, make_plan, parse_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist_mlp.toml"

MINIMAL = """
[study]
name = "t"
n_trials = 10
[space]
x = { type = "float", low = 0, high = 1 }
"""
CUSTOM = '[objective]\nname = "examples.custom_objective:objective"\n'


def test_the_example_study_file_loads():
    spec = StudySpec.load(EXAMPLE)
    assert spec.direction == "maximize" and spec.n_trials == 30 and spec.timeout == 7200.0
    assert spec.sampler == "tpe" and spec.pruner == "asha" and spec.max_resource == 5
    assert list(spec.space.names) == ["lr", "layers", "width", "activation", "dropout",
                                      "optimizer", "weight_decay", "batch_size"]


def test_fingerprint_ignores_whitespace_key_order_and_spelled_out_defaults():
    a = StudySpec.from_toml(MINIMAL + CUSTOM)
    b = StudySpec.from_toml(CUSTOM + """
[space]
x = {high = 1.0, low = 0.0, type = "float", log = false}

[sampler]
name = "tpe"
n_startup = 10

[study]
n_trials = 10
name   =   "t"
direction = "minimize"
""")
    assert a.fingerprint() == b.fingerprint()
    assert a.to_dict() == b.to_dict()


def test_fingerprint_changes_with_the_spec_and_the_dataset():
    a = StudySpec.from_toml(MINIMAL + CUSTOM)
    b = StudySpec.from_toml(MINIMAL.replace("n_trials = 10", "n_trials = 11") + CUSTOM)
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint("data-1") != a.fingerprint("data-2")


def test_normalized_spec_round_trips():
    spec = StudySpec.load(EXAMPLE)
    again = StudySpec.from_dict(spec.to_dict())
    assert again == spec and again.fingerprint() == spec.fingerprint()


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0), ("1d", 86400.0),
    (45, 45.0), (0.5, 0.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "h", "", "-5s", 0, "10x", True])
def test_bad_durations_are_refused(text):
    with pytest.raises(StudyError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("patch, message", [
    (("n_trials = 10", "n_trials = 10\nwarmup = 3"), r"unknown key\(s\) warmup"),
    (("n_trials = 10", "n_trials = 10\ndirection = \"up\""), "direction must be"),
    (("n_trials = 10", "n_trials = -1"), "n_trials must be an integer >= 1"),
    (("n_trials = 10", ""), "needs n_trials, timeout or target"),
    (("n_trials = 10", "n_trials = 10\nbatch = 0"), "batch must be an integer >= 1"),
    (("n_trials = 10", "n_trials = 10\nbatch = 100"), "batch must be at most 64"),
    (("n_trials = 10", "n_trials = 10\ntimeout = \"soon\""), "timeout must be a duration"),
    (("low = 0,", "low = 2,"), r"\[space\] parameter 'x': low \(2"),
    (("[space]", "[spaces]"), r"unknown table\(s\) \[spaces\]"),
    (("[space]", "[sampler]\nname = \"cmaes\"\n[space]"), r"\[sampler\] unknown sampler 'cmaes'"),
    (("[space]", "[sampler]\nname = \"grid\"\nsteps = { y = 3 }\n[space]"),
     "unknown parameter"),
    (("[space]", "[pruner]\nname = \"hyperband\"\n[space]"), r"\[pruner\].*max_resource"),
    (("[space]", "[pruner]\nname = \"asha\"\neta = 3\n[space]"), "no option"),
    (("name = \"t\"", "name = \"t\"\nname = \"u\""), "not valid TOML"),
    # too big for a node's memory or for the STUDY entry (msgpack): said, not a crash
    (("n_trials = 10", "n_trials = 10_000_000_000_000"), "n_trials must be at most 1,000,000"),
    (("n_trials = 10", "n_trials = 10\nseed = 1_180_591_620_717_411_303_424"),
     r"\[study\] seed: 1180591620717411303424 is out of range"),
    (("[space]", "[objective]\nmax_epochs = 1_180_591_620_717_411_303_424\n[space]"),
     r"\[objective\] max_epochs: .* out of range"),
    (("[space]", "[objective]\nwhen = 1979-05-27\n[space]"), r"\[objective\] when: .* not a string"),
    (("low = 0, high = 1", "low = -1e308, high = 1e308"), "high - low must be a finite number"),
    (("type = \"float\", low = 0, high = 1", "type = \"int\", low = 0, high = 9_007_199_254_740_993"),
     r"low and high must be within \+-2\*\*53"),
])
def test_mistakes_are_reported_in_one_sentence(patch, message):
    old, new = patch
    with pytest.raises(StudyError, match=message) as e:
        StudySpec.from_toml(MINIMAL.replace(old, new, 1))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("patch, message", [
    (("max_epochs = 5", "max_epochs = 0"), r"\[objective\] max_epochs must be a whole number of epochs >= 1, got 0"),
    (("max_epochs = 5", "max_epochs = 5\nbatch = 4"), r"mnist-mlp does not take the option\(s\) batch"),
    (("max_epochs = 5", "max_epochs = 5\nwidth_buckets = [0, 512]"), r"width_buckets must be a list of positive widths"),
    (("high = 1024, log = true", "high = 100000000, log = true"), r"\[space\] width must be from 1 to 16,384 units, got 100000000"),
    (("values = [64, 128, 256, 512]", "values = [0, 64]"), r"\[space\] batch_size must be a whole number of rows >= 1, got 0"),
    (('"relu", "gelu", "tanh"', '"relu", "swish"'), r"\[space\] activation must be one of relu, .*, got 'swish'"),
    (("low = 0.0, high = 0.5", "low = 0.0, high = 1.0"), r"\[space\] dropout must be a number from 0 up to \(not including\) 1"),
    (("layers       = { type", "units = { type = \"int\", low = 1, high = 4 }\nlayers       = { type"),
     r"\[space\] mnist-mlp does not take the parameter\(s\) units"),
])
def test_what_the_built_in_objective_cannot_train_is_refused_in_one_sentence(patch, message):
    old, new = patch
    text = EXAMPLE.read_text()
    assert old in text
    with pytest.raises(StudyError, match=message) as e:
        StudySpec.from_toml(text.replace(old, new, 1))
    assert "\n" not in str(e.value)


def test_the_built_in_objective_check_knows_the_trainer_names():
    from p2phpo.train import builtin_check, mlp, optim

    assert builtin_check.ACTIVATION_NAMES == tuple(mlp.ACTIVATIONS)
    assert builtin_check.OPTIMIZER_NAMES == tuple(optim.OPTIMIZERS)
    assert set(builtin_check.PARAMS) == set(mlp.PARAM_DEFAULTS)
    assert set(builtin_check.OPTIONS) == set(mlp.OPTION_DEFAULTS) | {"label_column"}


def test_missing_file_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="cannot read study file"):
        StudySpec.load(tmp_path / "nope.toml")


def test_the_plan_of_a_study_entry_suggests_and_prunes():
    spec = StudySpec.load(EXAMPLE)
    entry = StudyEntry(1, 1, 0.0, spec=spec.to_dict(), fingerprint=spec.fingerprint())
    plan = make_plan(entry)
    assert plan.fingerprint == entry.fingerprint and plan.n_trials == 30
    led = Ledger()
    led.append(entry)
    params = plan.suggest(led, 7, 0)
    assert spec.space.contains(params)
    claim = led.new(7, Claim, wall=1.0, slot=0, params=params)
    # every epoch is recorded (whole curves); the pruner decides at its rungs only
    assert all(plan.should_report(s) for s in range(CURVE_STEPS + 1))
    assert not plan.should_report(CURVE_STEPS + 1)
    assert not plan.should_prune(led, led.trial(claim.key), 2, -1e9)
    assert not plan.should_prune(led, led.trial(claim.key), 1, 0.5)
