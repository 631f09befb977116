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
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

from p2phpo.trial import TrialPruned

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
