"""A fast custom objective without JAX: a noisy Branin function "trained" in epochs.

Use it as ``objective = "examples.custom_objective:objective"`` in a study
(run the node from the repository root so ``examples`` is importable), or
from Python::

    from p2phpo.trial import Trial
    from examples.custom_objective import objective
    objective(Trial({"x": 3.14, "y": 2.27}, options={"max_epochs": 5}))

Parameters: ``x`` in [-5, 10], ``y`` in [0, 15] (defaults 0, 0). The value to
*minimize* starts high and decays toward Branin(x, y) over the epochs
(global minimum 0.397887), with small seeded noise, and is reported after
every epoch, so pruners can stop bad points early.

Options (the study's ``[objective]`` table): ``max_epochs`` (10), ``sleep``
seconds per epoch (0.0), ``noise`` (0.01), ``seed`` (0), ``fail_at_epoch``
(raise a RuntimeError at that epoch, for tests of failure handling).

``objective.batch`` shows the batch hook (``p2phpo node --batch K``): the
worker hands it K trials at once; it "trains" them epoch by epoch side by
side, one sleep per epoch for the whole batch (as one program training K
networks would), and every member reports, is pruned and ends on its own.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

from p2phpo.trial import TrialOutcome, TrialPruned, TrialStatus

SPACE_TOML = """
[space]
x = { type = "float", low = -5.0, high = 10.0 }
y = { type = "float", low = 0.0, high = 15.0 }
"""


def branin(x: float, y: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5.0 / math.pi
    r, s, t = 6.0, 10.0, 1.0 / (8 * math.pi)
    return a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


def objective(trial: Any) -> float:
    x = float(trial.params.get("x", 0.0))
    y = float(trial.params.get("y", 0.0))
    opts = trial.options
    epochs = int(opts.get("max_epochs", 10))
    sleep = float(opts.get("sleep", 0.0))
    noise = float(opts.get("noise", 0.01))
    fail_at = opts.get("fail_at_epoch")
    rng = random.Random(f"{opts.get('seed', 0)}:{x!r}:{y!r}")
    target = branin(x, y)
    value = target
    for epoch in range(1, epochs + 1):
        if fail_at is not None and epoch == int(fail_at):
            raise RuntimeError(f"injected failure at epoch {epoch}")
        value = target * (1.0 + 2.0 * 0.5**epoch) + noise * rng.gauss(0.0, 1.0)
        trial.report(value, epoch)
        if trial.should_prune():
            raise TrialPruned()
        if sleep > 0:
            time.sleep(sleep)
    return value


def objective_batch(trials: Sequence[Any]) -> list[TrialOutcome]:
    """Several trials at once, each with its own reports, verdicts and outcome."""
    t0 = time.perf_counter()
    opts = trials[0].options
    epochs, sleep = int(opts.get("max_epochs", 10)), float(opts.get("sleep", 0.0))
    noise, fail_at = float(opts.get("noise", 0.01)), opts.get("fail_at_epoch")
    out: dict[int, TrialOutcome] = {}
    state = {}
    for i, t in enumerate(trials):
        x, y = float(t.params.get("x", 0.0)), float(t.params.get("y", 0.0))
        state[i] = (branin(x, y), random.Random(f"{opts.get('seed', 0)}:{x!r}:{y!r}"))
    for epoch in range(1, epochs + 1):
        for i in [i for i in range(len(trials)) if i not in out]:
            out_i = _epoch(trials[i], epoch, *state[i], noise, fail_at, t0)
            if out_i is not None:
                out[i] = out_i
        if sleep > 0 and len(out) < len(trials):
            time.sleep(sleep)
    done = time.perf_counter() - t0
    for i, t in enumerate(trials):
        if i not in out:
            out[i] = TrialOutcome(TrialStatus.COMPLETE, t.reports[epochs], None, done, epochs)
    return [out[i] for i in range(len(trials))]


def _epoch(trial: Any, epoch: int, target: float, rng: random.Random, noise: float,
           fail_at: Any, t0: float) -> TrialOutcome | None:
    """One epoch of one batch member; its outcome if it ended there."""
    if fail_at is not None and epoch == int(fail_at):
        return TrialOutcome(TrialStatus.FAILED, None, f"RuntimeError: injected failure at epoch {epoch}",
                            time.perf_counter() - t0, trial.last_step)
    value = target * (1.0 + 2.0 * 0.5**epoch) + noise * rng.gauss(0.0, 1.0)
    try:
        trial.report(value, epoch)
    except TrialPruned:  # the node stopped this member (its slot went to another node)
        pass
    if trial.should_prune():
        return TrialOutcome(TrialStatus.PRUNED, value, None, time.perf_counter() - t0, epoch,
                            trial.verdict)
    return None


objective.batch = objective_batch  # type: ignore[attr-defined]
