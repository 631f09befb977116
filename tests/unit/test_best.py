"""One rule for "the best trial": view, search core, hp.optimize and the frame agree."""

from __future__ import annotations

import pytest

import p2phpo as hp
from p2phpo.core.best import best_trial
from p2phpo.core.entries import Claim, Result, Status
from p2phpo.core.frame import FrameBuilder
from p2phpo.core.ledger import Ledger
from p2phpo.inprocess import _result
from p2phpo.ui.snapshot import TrialSummary
from p2phpo.ui.snapshot import best_trial as view_best

SPACE = hp.Space(x=hp.Float(0.0, 1.0))


def _ledger(rows, led=None):
    """rows: (origin, value, status) in claim order; origins write in that order."""
    led = Ledger() if led is None else led
    for i, (origin, value, status) in enumerate(rows):
        claim = led.new(origin, Claim, wall=float(i), slot=i, params={"x": 0.5})
        led.new(origin, Result, wall=100.0 + i, trial=claim.key, status=status, value=value)
    return led


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_every_reader_picks_the_same_best_trial_on_ties(direction):
    good = 0.2 if direction == "minimize" else 0.8
    led = Ledger()
    summary = TrialSummary(led)  # the live view's incremental best
    assert summary.best(direction) is None
    _ledger([(9, 0.5, Status.COMPLETE), (7, good, Status.COMPLETE),
             (3, good, Status.COMPLETE), (5, good, Status.PRUNED),
             (4, None, Status.FAILED)], led)
    views = list(led.trials().values())
    expected = best_trial(views, direction)
    assert expected.id[0] == 3 and expected.value == good  # lower trial id wins the tie
    assert view_best(views, direction).id == expected.id
    summary.update()
    assert summary.best(direction).id == expected.id
    spec = hp.StudySpec(SPACE, direction=direction, n_trials=5)
    assert _result(spec, led).best_trial.id == expected.id
    frame = FrameBuilder(SPACE, direction).sync(led)
    assert frame.trial_id(frame.best()) == expected.id


def test_pruned_and_failed_trials_are_never_the_best():
    led = _ledger([(1, 0.1, Status.PRUNED), (2, None, Status.FAILED)])
    assert best_trial(led.trials().values(), "minimize") is None
