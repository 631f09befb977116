"""``hp.Trial``: what an objective function sees.

The same class serves ``hp.optimize`` (in-process) and the node's worker
subprocess; only the ``reporter`` differs. Parameters are sampled before the
objective runs, so the Optuna-style ``suggest_*`` methods return the
pre-sampled value and check that the objective asks for what the space
declares.

:func:`run_objective` is the one place that decides how a trial ended
(COMPLETE, PRUNED or FAILED); the worker and ``hp.optimize`` both call it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from p2phpo.core.entries import cap_error
from p2phpo.core.verdict import Verdict


class TrialPruned(Exception):
    """Raise it from an objective to end the trial as PRUNED (Optuna's ``TrialPruned``).

    The usual pattern, unchanged from Optuna::

        trial.report(value, step)
        if trial.should_prune():
            raise hp.TrialPruned()

    ``trial.report`` raises it by itself only when the node stops the trial
    (the study ended or another node won its slot); the trial is then
    recorded as SUPERSEDED or PRUNED by the node, with its last report.
    """

    def __init__(self, message: str = "", *, verdict: Verdict | None = None,
                 step: int | None = None) -> None:
        super().__init__(message or (f"trial {verdict.value}ped at step {step}"
                                     if verdict else "trial pruned"))
        self.verdict = verdict
        self.step = step


Pruned = TrialPruned  # the name before 0.2; kept so old objectives still run

Reporter = Callable[[int, float], Verdict]


def _always_continue(step: int, value: float) -> Verdict:
    return Verdict.CONTINUE


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"trial.report(value, step): step must be an integer epoch or "
                        f"iteration, got {step!r} (Optuna's order is value first, then step)")
    if step < 0:
        raise ValueError(f"trial.report(value, step): step must be >= 0, got {step}")
    return int(step)


def _check_value(value: Any, step: int) -> float:
    if isinstance(value, bool | str | bytes) or not _is_number(value):
        raise TypeError(f"trial.report(value, step): value must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"trial.report(value, step): the value at step {step} is NaN")
    return value


def _is_number(value: Any) -> bool:
    """A real number: int, float, a numpy scalar or a 0-d numeric array (numpy, JAX)."""
    dtype = getattr(value, "dtype", None)
    kind = getattr(dtype, "kind", "")
    if isinstance(value, bool | str | bytes) or kind == "b":
        return False
    if isinstance(value, numbers.Real):
        return True
    return getattr(value, "ndim", None) == 0 and kind in ("f", "i", "u")


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
        self._verdict = Verdict.CONTINUE

    # -- reporting -------------------------------------------------------
    def report(self, value: float, step: int) -> None:
        """Record the intermediate ``value`` at ``step`` (Optuna's order).

        The node answers with its pruner's decision; read it with
        :meth:`should_prune`. Raises :class:`TrialPruned` only when the node
        stopped the trial (study over, slot lost), which an objective
        should let propagate.
        """
        step = _check_step(step)
        value = _check_value(value, step)
        self.reports[step] = value
        verdict = self._reporter(step, value)
        if verdict is not Verdict.CONTINUE and self._verdict is not Verdict.STOP:
            self._verdict = verdict  # a prune or stop is not taken back
        if self._verdict is Verdict.STOP:
            raise TrialPruned(verdict=Verdict.STOP, step=step)

    def should_prune(self) -> bool:
        """True once the pruner said this trial is not promising (or the node stopped it)."""
        return self._verdict is not Verdict.CONTINUE

    @property
    def verdict(self) -> Verdict:
        """The node's latest non-continue answer, or CONTINUE."""
        return self._verdict

    @property
    def last_step(self) -> int | None:
        return max(self.reports) if self.reports else None

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


# -- how a trial ended: the one classifier (worker, hp.optimize, tests) -----------

class TrialStatus(enum.Enum):
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"


@dataclasses.dataclass(frozen=True, slots=True)
class TrialOutcome:
    """How a trial ended. ``value`` is the result (COMPLETE) or the last report (PRUNED)."""

    status: TrialStatus
    value: float | None
    error: str | None
    duration: float
    last_step: int | None
    verdict: Verdict | None = None  # PRUNE or STOP when the node ended it


def is_pruned(exc: BaseException) -> bool:
    """``hp.TrialPruned`` or Optuna's ``TrialPruned`` (an objective that kept its import)."""
    return isinstance(exc, TrialPruned) or any(
        c.__name__ == "TrialPruned" and c.__module__.startswith("optuna")
        for c in type(exc).__mro__)


def run_objective(fn: Callable[[Trial], Any], trial: Trial, *,
                  print_traceback: bool = False) -> TrialOutcome:
    """Call ``fn(trial)`` and classify how it ended; never raises but for Ctrl-C.

    - raises ``TrialPruned``: PRUNED with the last reported value;
    - raises anything else (or ``SystemExit``): FAILED, ``"Type: message"``;
    - returns a finite real number (int, float, numpy or JAX scalar, not a
      bool or a string): COMPLETE with that value;
    - returns anything else, NaN or an infinity: FAILED.
    """
    t0 = time.perf_counter()
    verdict = None
    try:
        value = fn(trial)
    except (Exception, SystemExit) as exc:
        if is_pruned(exc):
            last = trial.last_step
            verdict = trial.verdict if trial.verdict is not Verdict.CONTINUE else None
            return TrialOutcome(TrialStatus.PRUNED, None if last is None else trial.reports[last],
                                None, time.perf_counter() - t0, last, verdict)
        if print_traceback:
            traceback.print_exc(file=sys.stderr)
        error = f"{type(exc).__name__}: {exc}"
    else:
        if not _is_number(value):
            error = f"objective returned {value!r:.60}, not a number"
        elif not math.isfinite(float(value)):
            error = f"objective returned {float(value)}"
        else:
            return TrialOutcome(TrialStatus.COMPLETE, float(value), None,
                                time.perf_counter() - t0, trial.last_step)
    return TrialOutcome(TrialStatus.FAILED, None, cap_error(error), time.perf_counter() - t0,
                        trial.last_step)
