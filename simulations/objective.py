"""A simulated objective: trial durations, values from a benchmark function, reports.

A trial's value comes from a classic benchmark (Branin, or a sphere in any
dimension) of its parameters; its learning curve approaches that value from
above as steps pass, with a per-trial slope, so ASHA and the median pruner
have something real to compare. A trial's duration is log-normal around
``mean_duration`` divided by the node's speed, spread evenly over its steps.
Nothing here trains: the simulator schedules a report event at each step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

_BRANIN_SPACE = {
    "x": {"type": "float", "low": -5.0, "high": 10.0},
    "y": {"type": "float", "low": 0.0, "high": 15.0},
}


def branin(x: float, y: float) -> float:
    """Branin-Hoo: global minimum 0.397887 at three points."""
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    t = 1 / (8 * math.pi)
    return (y - b * x * x + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


def sphere(params: dict[str, Any]) -> float:
    return sum((float(v) - 0.3) ** 2 for _, v in sorted(params.items()))


@dataclass(frozen=True, slots=True)
class TrialPlan:
    """When a trial reports, what it reports, and how it ends."""

    step_times: tuple[float, ...]
    """Seconds after the start at which step 1, 2, ... completes."""
    values: tuple[float, ...]
    final: float
    fails: bool


@dataclass(frozen=True, slots=True)
class SimObjective:
    """Configuration of the simulated objective (minimized)."""

    function: str = "branin"
    mean_duration: float = 60.0
    duration_sigma: float = 0.25
    steps: int = 9
    fail_rate: float = 0.0
    dims: int = 4
    """Dimensions of the sphere function (Branin has 2)."""

    def space(self) -> dict[str, dict[str, Any]]:
        """The ``[space]`` table of the simulated study."""
        if self.function == "branin":
            return dict(_BRANIN_SPACE)
        return {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(self.dims)}

    def value(self, params: dict[str, Any]) -> float:
        if self.function == "branin":
            return branin(float(params["x"]), float(params["y"]))
        return sphere(params)

    def plan(self, params: dict[str, Any], rng: random.Random, speed: float) -> TrialPlan:
        """Draw one trial's durations, curve and fate on a node of relative ``speed``."""
        total = self.mean_duration * math.exp(rng.gauss(0.0, self.duration_sigma)) / speed
        n = max(1, self.steps)
        times = tuple(total * (k + 1) / n for k in range(n))
        final = self.value(params)
        slope = (1.0 + abs(final)) * (0.5 + rng.random())
        values = tuple(final + slope / (k + 1) - slope / n for k in range(n))
        return TrialPlan(times, values, final, rng.random() < self.fail_rate)
