"""Search spaces: validation, unit-cube encoding, TOML tables, hp.Trial accessors."""

from __future__ import annotations

import numpy as np
import pytest

import p2phpo as hp
from p2phpo.space import Choice, Float, Int, Space, SpaceError

MIXED = Space(
    lr=Float(1e-4, 1e-1, log=True),
    dropout=Float(0.0, 0.5),
    frac=Float(0.0, 1.0, step=0.25),
    layers=Int(1, 4),
    width=Int(32, 1024, log=True),
    batch=Int(16, 128, step=16),
    act=Choice(["relu", "gelu", "tanh"]),
    bs=Choice([64, 128, 256]),
    flag=Choice([True, False]),
)


def test_any_unit_point_decodes_inside_the_space():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.random((500, len(MIXED))), np.zeros(len(MIXED)), np.ones(len(MIXED))])
    for u in points:
        assert MIXED.contains(MIXED.decode(u))


def test_decode_reaches_both_ends_of_every_range():
    low, high = MIXED.decode(np.zeros(len(MIXED))), MIXED.decode(np.ones(len(MIXED)))
    assert (low["lr"], high["lr"]) == pytest.approx((1e-4, 1e-1))
    assert (low["layers"], high["layers"]) == (1, 4)
    assert (low["width"], high["width"]) == (32, 1024)
    assert (low["batch"], high["batch"]) == (16, 128)
    assert (low["frac"], high["frac"]) == (0.0, 1.0)
    assert (low["act"], high["act"]) == ("relu", "tanh")


def test_encode_decode_round_trip_keeps_values():
    params = {"lr": 3e-3, "dropout": 0.2, "frac": 0.75, "layers": 3, "width": 100, "batch": 64,
              "act": "gelu", "bs": 256, "flag": False}
    back = MIXED.decode(MIXED.encode(params))
    assert back["lr"] == pytest.approx(3e-3)
    assert {k: v for k, v in back.items() if k != "lr"} == {
        k: v for k, v in params.items() if k != "lr"}
    assert type(back["layers"]) is int and type(back["flag"]) is bool


def test_every_integer_of_a_log_range_is_reachable():
    sp = Space(n=Int(1, 10, log=True))
    seen = {sp.decode(np.array([u]))["n"] for u in np.linspace(0, 1, 2001)}
    assert seen == set(range(1, 11))


def test_log_scale_spreads_uniformly_in_log_space():
    sp = Space(lr=Float(1e-4, 1.0, log=True))
    vals = np.array([sp.decode(np.array([u]))["lr"] for u in np.linspace(0, 1, 401)])
    assert np.mean(vals < 1e-2) == pytest.approx(0.5, abs=0.01)


def test_snap_moves_discrete_columns_to_their_value():
    u = np.random.default_rng(1).random((50, len(MIXED)))
    s = MIXED.snap(u)
    for a, b in zip(u, s, strict=True):
        assert MIXED.decode(a) == MIXED.decode(b)
    assert np.array_equal(s[:, 1], u[:, 1])  # continuous column unchanged


@pytest.mark.parametrize("make, message", [
    (lambda: Float(1.0, 1.0), "must be below"),
    (lambda: Float(0.0, 1.0, log=True), "log scale needs low > 0"),
    (lambda: Int(0, 10, log=True), "log scale needs low >= 1"),
    (lambda: Int(1, 10, step=0), "step must be >= 1"),
    (lambda: Float(0.0, 1.0, step=2.0), "step must be in"),
    (lambda: Int(1.5, 3), "must be an integer"),
    (lambda: Choice([]), "at least one value"),
    (lambda: Choice(["a", "a"]), "appears twice"),
    (lambda: Choice([[1, 2]]), "must be str, int, float or bool"),
])
def test_invalid_parameters_are_refused_with_a_reason(make, message):
    with pytest.raises(SpaceError, match=message):
        Space(p=make())


def test_empty_space_is_refused():
    with pytest.raises(SpaceError, match="empty"):
        Space()


def test_toml_table_builds_the_space():
    sp = Space.from_dict({
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "layers": {"type": "int", "low": 1, "high": 4},
        "act": {"type": "choice", "values": ["relu", "gelu"]},
    })
    assert sp.params["lr"] == Float(1e-4, 1e-1, log=True)
    assert sp.params["layers"] == Int(1, 4)
    assert Space.from_dict(sp.to_dict()) == sp


@pytest.mark.parametrize("table, message", [
    ({"x": {"type": "float", "low": 0, "high": 1, "scale": "log"}}, "unknown key"),
    ({"x": {"type": "normal", "low": 0, "high": 1}}, "type must be one of"),
    ({"x": {"type": "int", "low": 1}}, "needs low and high"),
    ({"x": {"type": "choice"}}, "needs a values list"),
    ({"x": 3}, "must be a table"),
    ({"x": {"type": "float", "low": "a", "high": 1}}, "finite number"),
])
def test_bad_toml_tables_say_what_is_wrong(table, message):
    with pytest.raises(SpaceError, match=message):
        Space.from_dict(table)


def test_encode_refuses_values_outside_a_choice_and_missing_params():
    with pytest.raises(SpaceError, match="not one of"):
        MIXED.encode({**MIXED.decode(np.zeros(len(MIXED))), "act": "swish"})
    with pytest.raises(SpaceError, match="missing"):
        MIXED.encode({"lr": 1e-3})


def test_choice_matches_numbers_across_int_and_float_but_not_bool():
    c = Choice([1, 2, 3])
    assert c.contains(2.0) and not c.contains(True)


def test_trial_suggest_methods_work_against_the_space():
    params = MIXED.decode(np.full(len(MIXED), 0.3))
    trial = hp.Trial(params, space=MIXED)
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == params["lr"]
    assert trial.suggest_int("layers", 1, 4) == params["layers"]
    assert trial.suggest_categorical("act", ["relu", "gelu", "tanh"]) == params["act"]
    with pytest.raises(ValueError, match="declares"):
        trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    with pytest.raises(KeyError, match="not in the study's space"):
        trial.suggest_int("depth", 1, 4)
