"""The sampler contract (every sampler), the column frame, and per-sampler behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2phpo.core.entries import Abandon, AbandonReason, Claim, Report, Result, Status
from p2phpo.core.frame import Frame, FrameBuilder, Row, RowState
from p2phpo.core.ledger import Ledger
from p2phpo.samplers import (
    GridExhausted,
    SamplerContext,
    SamplerError,
    get_sampler,
    sampler_names,
    sampler_rng,
)
from p2phpo.space import Choice, Float, Int, Space

SPACE = Space(
    lr=Float(1e-5, 1e-1, log=True),
    x=Float(-2.0, 3.0),
    frac=Float(0.0, 1.0, step=0.1),
    layers=Int(1, 6),
    width=Int(8, 1024, log=True),
    batch=Int(16, 256, step=16),
    act=Choice(["relu", "gelu", "tanh"]),
    bs=Choice([32, 64, 128, 256]),
    flag=Choice([True, False]),
)

SAMPLERS = [("random", {}), ("grid", {"default_steps": 3}), ("tpe", {}),
            ("tpe", {"multivariate": False}), ("tpe", {"constant_liar": False}),
            ("evolution", {"population": 8, "tournament": 3})]
IDS = ["random", "grid", "tpe", "tpe-univariate", "tpe-no-liar", "evolution"]


def loss(p: dict) -> float:
    return (math.log10(p["lr"]) + 3) ** 2 + (p["x"] - 1) ** 2 + (p["layers"] - 3) ** 2 + (
        p["act"] != "gelu") + 0.1 * p["frac"]


def history(n: int, state: RowState = RowState.COMPLETE, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = SPACE.decode(rng.random(len(SPACE)))
        value = loss(p) if state in (RowState.COMPLETE, RowState.PRUNED) else None
        step = 3 if state is RowState.PRUNED else None
        rows.append(Row(p, state, value, step, wall=float(i), trial=(7, i + 1), slot=i))
    return rows


def frame_of(*row_lists: list[Row], direction: str = "minimize") -> Frame:
    return Frame.from_rows(SPACE, direction, [r for rows in row_lists for r in rows])


HISTORIES = {
    "empty": lambda: frame_of([]),
    "failed-only": lambda: frame_of(history(15, RowState.FAILED)),
    "running-only": lambda: frame_of(history(15, RowState.RUNNING)),
    "complete": lambda: frame_of(history(30)),
    "mixed": lambda: frame_of(history(20), history(6, RowState.PRUNED, 1),
                              history(4, RowState.RUNNING, 2), history(3, RowState.FAILED, 3)),
}


def suggest(name, options, frame, node=1, slot=40, seed=0):
    sampler = get_sampler(name, options)
    ctx = SamplerContext(SPACE, "minimize", node, slot, 100, options, seed)
    return sampler.suggest(ctx, frame, sampler_rng(seed, slot))


# -- the contract --------------------------------------------------------------


def test_every_registered_sampler_is_covered():
    assert {n for n, _ in SAMPLERS} == set(sampler_names())


@pytest.mark.parametrize("name, options", SAMPLERS, ids=IDS)
@pytest.mark.parametrize("hist", sorted(HISTORIES))
def test_suggestions_are_always_inside_the_space(name, options, hist):
    frame = HISTORIES[hist]()
    for slot in range(12):
        params = suggest(name, options, frame, node=slot % 3 + 1, slot=slot + 40)
        assert SPACE.contains(params), params
        assert all(type(params[n]) is type(SPACE.decode(np.zeros(len(SPACE)))[n])
                   for n in SPACE.names)


@pytest.mark.parametrize("name, options", SAMPLERS, ids=IDS)
@pytest.mark.parametrize("hist", ["empty", "mixed"])
def test_same_rng_gives_the_same_suggestion(name, options, hist):
    frame = HISTORIES[hist]()
    assert suggest(name, options, frame) == suggest(name, options, frame)


@pytest.mark.parametrize("name, options", SAMPLERS, ids=IDS)
@pytest.mark.parametrize("hist", ["empty", "complete", "mixed"])
def test_concurrent_slots_get_different_points_and_the_node_id_does_not_matter(name, options,
                                                                              hist):
    # Concurrent nodes work on different slots; the same slot replays on any node id,
    # so one node with a given seed always runs the same sequence of trials.
    frame = HISTORIES[hist]()
    points = [suggest(name, options, frame, node=1, slot=s) for s in range(40, 44)]
    assert len({tuple(sorted(p.items())) for p in points}) == 4
    assert suggest(name, options, frame, node=2, slot=41) == points[1]


@pytest.mark.parametrize("name, options", SAMPLERS, ids=IDS)
def test_bad_options_are_refused_by_name(name, options):
    with pytest.raises(SamplerError, match="no option"):
        get_sampler(name, {**options, "warp_speed": 9})


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(SamplerError, match="choose one of evolution, grid, random, tpe"):
        get_sampler("cmaes")


def test_rng_depends_on_seed_and_slot_only():
    draws = {sampler_rng(*k).random() for k in [(0, 2), (1, 2), (0, 3), (1, 3)]}
    assert len(draws) == 4
    assert sampler_rng(0, 2).random() == sampler_rng(0, 2).random()


# -- the frame -----------------------------------------------------------------


def test_frame_ranks_complete_first_then_deeper_pruned():
    rows = [
        Row(SPACE.decode(np.full(9, 0.1)), RowState.PRUNED, 0.1, 1, 1.0, (1, 1)),
        Row(SPACE.decode(np.full(9, 0.2)), RowState.COMPLETE, 5.0, None, 2.0, (1, 2)),
        Row(SPACE.decode(np.full(9, 0.3)), RowState.PRUNED, 9.0, 9, 3.0, (1, 3)),
        Row(SPACE.decode(np.full(9, 0.4)), RowState.COMPLETE, 2.0, None, 4.0, (1, 4)),
        Row(SPACE.decode(np.full(9, 0.5)), RowState.PRUNED, 0.5, 1, 5.0, (1, 5)),
        Row(SPACE.decode(np.full(9, 0.6)), RowState.FAILED, None, None, 6.0, (1, 6)),
        Row(SPACE.decode(np.full(9, 0.7)), RowState.RUNNING, None, None, 0.5, (1, 7)),
    ]
    f = Frame.from_rows(SPACE, "minimize", rows)
    assert [f.trial_id(i)[1] for i in f.ranked()] == [4, 2, 3, 1, 5]
    assert f.trial_id(len(f) - 1) == (1, 7)  # running rows come after finished ones
    assert f.best() is not None and f.trial_id(f.best()) == (1, 4)
    g = Frame.from_rows(SPACE, "maximize", rows)
    assert [g.trial_id(i)[1] for i in g.ranked()] == [2, 4, 3, 5, 1]


def test_frame_builder_follows_the_ledger_incrementally():
    led = Ledger()
    b = FrameBuilder(SPACE, "maximize")
    p = [SPACE.decode(np.full(9, u)) for u in (0.1, 0.5, 0.9)]
    c1 = led.new(1, Claim, wall=1.0, slot=0, params=p[0])
    c2 = led.new(1, Claim, wall=2.0, slot=1, params=p[1])
    c3 = led.new(2, Claim, wall=2.5, slot=2, params=p[2])
    f = b.sync(led)
    assert len(f) == 3 and f.count(RowState.RUNNING) == 3
    assert b.sync(led) is f  # nothing changed: the same snapshot
    led.new(1, Result, wall=3.0, trial=c2.key, status=Status.COMPLETE, value=0.8, duration=1.0)
    led.new(1, Report, wall=3.5, trial=c1.key, step=3, value=0.4)
    led.new(1, Result, wall=4.0, trial=c1.key, status=Status.PRUNED, value=0.4, duration=1.0)
    led.new(3, Abandon, wall=5.0, trial=c3.key, reason=AbandonReason.DEAD)
    f = b.sync(led)
    assert len(f) == 2 and f.n_finished == 2
    assert f.value.tolist() == [-0.8, -0.4]  # maximize: stored negated, finish order
    assert f.step.tolist()[1] == 3
    assert np.allclose(f.x[0], SPACE.encode(p[1]), atol=1e-6)


def test_frame_builder_skips_claims_outside_the_space():
    led = Ledger()
    led.new(1, Claim, wall=1.0, slot=0, params={"x": 1.0})
    b = FrameBuilder(SPACE, "minimize")
    assert len(b.sync(led)) == 0 and b.skipped == 1


# -- grid ------------------------------------------------------------------------


def _run(name, options, space, n, fn, seed=0):
    """Sequential search: returns the params of n trials (stops at GridExhausted)."""
    sampler = get_sampler(name, options)
    b = FrameBuilder(space, "minimize")
    out = []
    for slot in range(n):
        ctx = SamplerContext(space, "minimize", 1, slot, n, options, seed)
        try:
            p = sampler.suggest(ctx, b.snapshot(), sampler_rng(seed, slot))
        except GridExhausted:
            break
        out.append(p)
        b.put(Row(p, RowState.COMPLETE, fn(p), None, float(slot), (1, slot + 1), slot))
    return out


def test_grid_covers_every_point_once_then_reports_exhaustion():
    space = Space(lr=Float(1e-4, 1e-1, log=True), n=Int(1, 3), act=Choice(["a", "b"]))
    options = {"steps": {"lr": 4}}
    pts = _run("grid", options, space, 100, lambda p: 0.0)
    assert len(pts) == 4 * 3 * 2
    assert len({tuple(sorted(p.items())) for p in pts}) == 24
    assert sorted({round(p["lr"], 8) for p in pts}) == [1e-4, 1e-3, 1e-2, 1e-1]


def test_grid_never_repeats_a_point_present_in_the_frame():
    space = Space(x=Float(0, 1), y=Int(0, 4))
    sampler = get_sampler("grid", {"default_steps": 5})
    taken = [space.decode(np.array([u, v])) for u in (0.0, 0.5) for v in (0.0, 1.0)]
    frame = Frame.from_rows(space, "minimize", [
        Row(p, RowState.RUNNING, trial=(1, i + 1), slot=i) for i, p in enumerate(taken)])
    for slot in range(25):
        p = sampler.suggest(SamplerContext(space, slot=slot), frame, sampler_rng(0, slot))
        assert p not in taken


def test_grid_steps_must_name_declared_parameters():
    with pytest.raises(SamplerError, match="unknown parameter"):
        suggest("grid", {"steps": {"depth": 3}}, frame_of([]))


# -- model quality (deterministic, not timed) ------------------------------------


@pytest.mark.parametrize("options", [{}, {"multivariate": False}], ids=["multi", "uni"])
def test_tpe_beats_random_search_on_a_smooth_problem(options):
    def f(p):
        return (math.log10(p["lr"]) + 3) ** 2 + (p["x"] - 1) ** 2 + (p["layers"] - 3) ** 2

    tpe = [min(map(f, _run("tpe", options, SPACE, 60, f, seed=s))) for s in range(8)]
    rnd = [min(map(f, _run("random", {}, SPACE, 60, f, seed=s))) for s in range(8)]
    assert np.mean(tpe) < 0.5 * np.mean(rnd)


def test_evolution_children_differ_from_a_parent_in_one_parameter():
    frame = frame_of(history(30))
    parents = {tuple(sorted(SPACE.decode(x).items())) for x in frame.x.astype(float)}
    for slot in range(10):
        child = suggest("evolution", {"population": 8, "tournament": 3}, frame, slot=slot)
        diffs = [sum(child[k] != dict(p)[k] for k in SPACE.names) for p in parents]
        assert min(diffs) == 1


def test_tpe_constant_liar_steers_away_from_running_points():
    frame = frame_of(history(30))
    base = suggest("tpe", {}, frame)
    busy = Row(base, RowState.RUNNING, trial=(9, 1), slot=99)
    running = [Row(busy.params, RowState.RUNNING, trial=(9, i), slot=99 + i) for i in range(1, 30)]
    after = suggest("tpe", {}, Frame.from_rows(SPACE, "minimize", history(30) + running))
    assert after != base


@pytest.mark.parametrize("name, options", SAMPLERS, ids=IDS)
def test_degenerate_spaces_and_tied_values_do_not_break_sampling(name, options):
    space = Space(only=Choice(["a"]), bit=Int(0, 1), x=Float(0.0, 1.0, step=0.5))
    sampler = get_sampler(name, options)
    rows = [Row(space.decode(np.full(3, u)), RowState.COMPLETE, 1.0, trial=(1, i + 1), slot=i)
            for i, u in enumerate(np.linspace(0, 1, 14))]
    frame = Frame.from_rows(space, "minimize", rows)
    for slot in range(5):
        ctx = SamplerContext(space, "minimize", 1, 100 + slot, None, options, 0)
        try:
            params = sampler.suggest(ctx, frame, sampler_rng(0, slot))
        except GridExhausted:
            assert name == "grid"  # all 6 points are in the frame
            continue
        assert space.contains(params)
