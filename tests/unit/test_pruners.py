"""Pruners: ASHA, Hyperband, median, none — decisions from every trial's reports."""

from __future__ import annotations

from collections import Counter

import pytest

from p2phpo.core.entries import Claim, Report
from p2phpo.core.ledger import Ledger
from p2phpo.pruners import (
    ASHAPruner,
    HyperbandPruner,
    PrunerError,
    ReportIndex,
    get_pruner,
)


def index_of(values_by_trial: dict[int, dict[int, float]]) -> ReportIndex:
    idx = ReportIndex()
    for t, reports in values_by_trial.items():
        for step, v in reports.items():
            idx.add((1, t), step, v)
    return idx


def test_asha_rungs_are_geometric_and_only_rungs_are_reported():
    p = get_pruner("asha", {"min_resource": 1, "reduction_factor": 3}, max_resource=20)
    assert p.rungs() == [1, 3, 9]
    assert [s for s in range(30) if p.reports_at(s)] == [1, 3, 9]
    q = get_pruner("asha", {"min_resource": 2, "reduction_factor": 2, "min_early_stopping_rate": 1})
    assert q.rungs(40) == [4, 8, 16, 32]


def test_asha_first_trial_at_a_rung_continues():
    p = get_pruner("asha", {})
    assert not p.decide((1, 1), 1, 100.0, ReportIndex())


def test_asha_keeps_only_the_top_third_at_a_rung():
    p = get_pruner("asha", {"reduction_factor": 3})  # minimize
    idx = index_of({t: {3: float(t)} for t in range(1, 9)})  # values 1..8 at step 3
    # with 9 values the top 3 continue: 1, 2, and a new 2.5
    assert not p.decide((1, 99), 3, 2.5, idx)
    assert p.decide((1, 99), 3, 3.5, idx)
    assert not p.decide((1, 99), 2, 1000.0, idx)  # not a rung: never pruned


def test_asha_respects_maximize():
    p = get_pruner("asha", {}, direction="maximize")
    idx = index_of({t: {1: float(t)} for t in range(1, 9)})
    assert not p.decide((1, 99), 1, 7.5, idx)
    assert p.decide((1, 99), 1, 1.5, idx)


def test_asha_prunes_a_nan_report():
    assert get_pruner("asha", {}).decide((1, 1), 1, float("nan"), ReportIndex())


def test_asha_ignores_the_trials_own_earlier_report():
    p = ASHAPruner(reduction_factor=2)
    idx = index_of({1: {1: 5.0}, 2: {1: 1.0}})
    assert p.decide((1, 1), 1, 5.0, idx)  # competes with trial 2 only, and loses
    assert not p.decide((1, 2), 1, 1.0, idx)


def test_hyperband_brackets_are_spread_and_stable():
    p = get_pruner("hyperband", {"max_resource": 27})
    assert isinstance(p, HyperbandPruner) and p.n_brackets == 4
    counts = Counter(p.bracket((5, i)) for i in range(1, 2001))
    assert set(counts) == {0, 1, 2, 3}
    assert counts[0] > counts[3]  # the aggressive bracket gets the most trials
    assert p.bracket((5, 17)) == get_pruner("hyperband", {}, max_resource=27).bracket((5, 17))


def test_hyperband_compares_only_within_a_bracket():
    p = get_pruner("hyperband", {"max_resource": 9, "reduction_factor": 3})
    ids = [(3, i) for i in range(1, 400)]
    zero = [t for t in ids if p.bracket(t) == 0]
    one = [t for t in ids if p.bracket(t) == 1]
    idx = ReportIndex()
    for t in zero[:6]:
        idx.add(t, 3, 10.0 + t[1])  # poor values in bracket 0
    for t in one[:6]:
        idx.add(t, 3, 0.0)  # excellent values in bracket 1
    assert not p.decide(zero[7], 3, 10.5, idx)  # best in its bracket
    assert p.decide(one[7], 3, 10.5, idx)  # worst in its bracket
    assert not p.decide(one[8], 1, 99.0, idx)  # bracket 1 has no rung at step 1


def test_hyperband_needs_a_max_resource():
    with pytest.raises(PrunerError, match="needs max_resource"):
        get_pruner("hyperband", {})


def _complete(idx: ReportIndex, *trials: int) -> ReportIndex:
    idx.complete.update((1, t) for t in trials)
    return idx


def test_median_waits_for_startup_trials_and_warmup():
    p = get_pruner("median", {"n_startup_trials": 3, "n_warmup_steps": 2})
    two = _complete(index_of({1: {2: 1.0}, 2: {2: 2.0}, 3: {2: 3.0}}), 1, 2)
    assert not p.decide((1, 9), 2, 50.0, two)  # only 2 trials complete
    three = _complete(index_of({1: {1: 1.0, 2: 1.0}, 2: {1: 2.0, 2: 2.0},
                                3: {1: 3.0, 2: 3.0}}), 1, 2, 3)
    assert not p.decide((1, 9), 1, 50.0, three)  # warm-up
    assert p.decide((1, 9), 2, 2.5, three)
    assert not p.decide((1, 9), 2, 1.5, three)


def test_median_compares_the_best_so_far_with_complete_trials_only_as_optuna():
    p = get_pruner("median", {"n_startup_trials": 2})
    idx = _complete(index_of({1: {1: 1.0, 2: 1.0}, 2: {1: 2.0, 2: 2.0}, 3: {1: 0.1},
                              4: {1: 0.2}}), 1, 2)
    assert p.decide((1, 9), 1, 1.6, idx)  # worse than the median 1.5 of trials 1 and 2
    assert not p.decide((1, 9), 1, 1.2, idx)  # running trials 3 and 4 do not pull it down
    idx.add((1, 9), 1, 1.4)
    assert not p.decide((1, 9), 2, 9.0, idx)  # its best so far (1.4) beats the median 1.5


def test_median_reports_every_step_up_to_32_reports():
    assert all(get_pruner("median", {}).reports_at(s) for s in range(1, 100))
    p = get_pruner("median", {}, max_resource=100)
    assert sum(p.reports_at(s) for s in range(1, 101)) <= 34 and p.reports_at(100)


def test_none_never_prunes_and_writes_nothing():
    p = get_pruner(None)
    assert not p.reports_at(1) and not p.decide((1, 1), 1, 1e9, ReportIndex())


@pytest.mark.parametrize("name, options, message", [
    ("sha", {}, "choose one of asha, hyperband, median, none"),
    ("asha", {"eta": 3}, "no option"),
    ("asha", {"reduction_factor": 1}, "reduction_factor must be an integer >= 2"),
    ("median", {"n_startup_trials": -1}, "n_startup_trials"),
])
def test_bad_pruner_config_is_refused_clearly(name, options, message):
    with pytest.raises(PrunerError, match=message):
        get_pruner(name, options)


def test_report_index_follows_the_ledger():
    led = Ledger()
    c = led.new(1, Claim, wall=1.0, slot=0, params={"x": 1.0})
    d = led.new(2, Claim, wall=1.0, slot=1, params={"x": 2.0})
    idx = ReportIndex().sync(led)
    assert idx.by_step == {}
    led.new(1, Report, wall=2.0, trial=c.key, step=1, value=0.5)
    led.new(2, Report, wall=2.0, trial=d.key, step=1, value=0.7)
    led.new(2, Report, wall=3.0, trial=d.key, step=3, value=0.6)
    idx.sync(led)
    assert idx.by_step == {1: {c.key: 0.5, d.key: 0.7}, 3: {d.key: 0.6}}
    assert sorted(idx.values_at(1, exclude=c.key)) == [0.7]
