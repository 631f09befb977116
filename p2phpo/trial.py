"""``hp.Trial``: what an objective function sees.

The same class serves ``hp.optimize`` (in-process) and the node's worker
subprocess; only the ``reporter`` differs. Parameters are sampled before the
objective runs, so the Optuna-style ``suggest_*`` methods return the
pre-sampled value and check that the objective asks for what the space
declares.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class Verdict(enum.Enum):
    """The node's answer to a ``trial.report``."""

    CONTINUE = "continue"
    PRUNE = "prune"  # the pruner says this trial is not promising
    STOP = "stop"  # the study ended or the trial was superseded


class Pruned(Exception):
    """Raised by ``Trial.report`` when the trial should stop early.

    Let it propagate out of the objective: the trial is then recorded as
    PRUNED (or SUPERSEDED when the node stopped it) with its last report.
    """

    def __init__(self, verdict: Verdict = Verdict.PRUNE, step: int | None = None) -> None:
        super().__init__(f"trial {verdict.value}d at step {step}")
        self.verdict = verdict
        self.step = step


Reporter = Callable[[int, float], Verdict]


def _always_continue(step: int, value: float) -> Verdict:
    return Verdict.CONTINUE


class Trial:
    """One evaluation of the objective.

    ``params`` holds the sampled values; ``options`` the study's
    ``[objective]`` table (dataset, max_epochs, ...); ``number`` the budget
    slot; ``trial_id`` the ledger id ``"<origin hex>:<seq>"``.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        space: Any = None,
        reporter: Reporter = _always_continue,
        options: Mapping[str, Any] | None = None,
        number: int = 0,
        trial_id: str = "",
    ) -> None:
        self.params: dict[str, Any] = dict(params)
        self.options: dict[str, Any] = dict(options or {})
        self.number = number
        self.trial_id = trial_id
        self.reports: dict[int, float] = {}
        self._space = space
        self._reporter = reporter
        self._last_verdict = Verdict.CONTINUE

    # -- reporting -------------------------------------------------------
    def report(self, step: int, value: float) -> None:
        """Record an intermediate value; raises :class:`Pruned` if told to stop."""
        step = int(step)
        value = float(value)
        if step < 0:
            raise ValueError(f"report step must be >= 0, got {step}")
        if math.isnan(value):
            raise ValueError(f"report value at step {step} is NaN")
        self.reports[step] = value
        self._last_verdict = self._reporter(step, value)
        if self._last_verdict is not Verdict.CONTINUE:
            raise Pruned(self._last_verdict, step)

    def should_prune(self) -> bool:
        """True when the last report was answered with prune or stop."""
        return self._last_verdict is not Verdict.CONTINUE

    # -- Optuna-style accessors -----------------------------------------
    def _lookup(self, name: str) -> Any:
        if name not in self.params:
            declared = ", ".join(sorted(self.params)) or "nothing"
            raise KeyError(
                f"parameter {name!r} is not in the study's space (it declares {declared})"
            )
        return self.params[name]

    def _declared(self, name: str) -> Any:
        params = getattr(self._space, "params", None)
        return None if params is None else params.get(name)

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False,
                      step: float | None = None) -> float:
        value = self._lookup(name)
        self._check_range(name, low, high, log)
        return float(value)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False,
                    step: int = 1) -> int:
        value = self._lookup(name)
        self._check_range(name, low, high, log)
        return int(value)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self._lookup(name)
        decl = self._declared(name)
        values = getattr(decl, "values", None)
        if values is not None and list(values) != list(choices):
            raise ValueError(
                f"suggest_categorical({name!r}, {list(choices)!r}) does not match the "
                f"space, which declares {list(values)!r}"
            )
        if value not in list(choices):
            raise ValueError(f"{name}={value!r} is not one of {list(choices)!r}")
        return value

    def _check_range(self, name: str, low: float, high: float, log: bool) -> None:
        decl = self._declared(name)
        if decl is None:
            return
        d_low, d_high = getattr(decl, "low", None), getattr(decl, "high", None)
        d_log = getattr(decl, "log", False)
        if (d_low, d_high, bool(d_log)) != (low, high, bool(log)):
            raise ValueError(
                f"suggest for {name!r} asks for [{low}, {high}] log={log} but the space "
                f"declares [{d_low}, {d_high}] log={d_log}"
            )

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, params={self.params!r})"
