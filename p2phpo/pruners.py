"""Pruners: ASHA, Hyperband, median and none — pure functions of the reports.

A pruner is configuration only. The node running a trial asks
``pruner.decide(trial, step, value, index)`` after each report written at a
step where ``pruner.reports_at(step)`` is true; ``index`` is a
:class:`ReportIndex` of every trial's REPORT values (from every node), kept
up to date incrementally from the ledger's change log. Values in the index
are raw; pruners compare them with the study direction.

- ``asha``: stop-early successive halving. Rungs at ``min_resource·η^k``
  (``k >= min_early_stopping_rate``). At a rung a trial continues only if
  its value is in the top ``⌊n/η⌋`` (at least the best one) of the ``n``
  values reported at that rung by all trials, itself included — Optuna's
  ``SuccessiveHalvingPruner`` rule, so early trials are not all pruned.
- ``hyperband``: brackets ``s = 0..s_max`` (``s_max = ⌊log_η(max/min)⌋``),
  each an ASHA whose first rung is ``min·η^s``; a trial's bracket is chosen
  by hashing its id (``core/hrw``), weighted by Hyperband's bracket budgets,
  and it only competes with trials of its own bracket.
- ``median``: Optuna's ``MedianPruner`` rule: once ``n_startup_trials``
  trials are COMPLETE and ``step >= n_warmup_steps``, prune if the trial's
  best value so far is worse than the median of the COMPLETE trials' values
  at this step. Decides every step (at most 32 spread over ``max_resource``
  when it is known).
- ``none``: never prunes and needs no reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from p2phpo.core.hrw import hrw

TrialId = tuple[int, int]


class PrunerError(ValueError):
    """Bad pruner name or options; the message says which in one sentence."""


class ReportIndex:
    """Every trial's reports, indexed by step: ``by_step[step][trial] = value``.

    Feed it with :meth:`add` or incrementally with :meth:`sync` (which reads
    ``ledger.changes[cursor:]`` and the named trials' ``reports``).
    """

    def __init__(self) -> None:
        self.by_step: dict[int, dict[TrialId, float]] = {}
        self.complete: set[TrialId] = set()  # trials whose RESULT is COMPLETE
        self._cursor = 0

    def add(self, trial: TrialId, step: int, value: float) -> None:
        if math.isfinite(value):
            self.by_step.setdefault(int(step), {})[trial] = float(value)

    def values_at(self, step: int, exclude: TrialId | None = None,
                  among: Iterable[TrialId] | None = None) -> np.ndarray:
        """Values reported at ``step`` (optionally without one trial / within a set)."""
        col = self.by_step.get(int(step), {})
        if among is not None:
            keep = set(among)
            return np.fromiter((v for t, v in col.items() if t in keep and t != exclude), float)
        return np.fromiter((v for t, v in col.items() if t != exclude), float)

    def trials_at(self, step: int) -> list[TrialId]:
        return list(self.by_step.get(int(step), {}))

    def best_so_far(self, trial: TrialId, step: int, value: float, minimize: bool) -> float:
        """The best of ``trial``'s values at steps up to ``step``, ``value`` included."""
        mine = [col[trial] for s, col in self.by_step.items() if s <= step and trial in col]
        mine.append(value)
        return min(mine) if minimize else max(mine)

    def sync(self, ledger: Any) -> ReportIndex:
        changes = ledger.changes
        if self._cursor < len(changes):
            for tid in dict.fromkeys(changes[self._cursor:]):
                view = ledger.trial(tid)
                if view is not None:
                    for step, value in view.reports.items():
                        self.add(tid, step, value)
                    if getattr(view.state, "name", "") == "COMPLETE":
                        self.complete.add(tid)
            self._cursor = len(changes)
        return self


class Pruner(Protocol):
    name: str

    def reports_at(self, step: int) -> bool:
        """Whether a report at ``step`` should be written to the ledger and decided on."""
        ...

    def decide(self, trial: TrialId, step: int, value: float, index: ReportIndex) -> bool:
        """True: stop the trial now (PRUNED)."""
        ...


def _n_better(value: float, others: np.ndarray, minimize: bool) -> int:
    """How many of ``others`` are strictly better than ``value``."""
    return int(np.count_nonzero(others < value if minimize else others > value))


def _num(name: str, key: str, v: Any, minimum: float, integer: bool = False) -> Any:
    ok = not isinstance(v, bool) and isinstance(v, int if integer else int | float)
    if not ok or v < minimum:
        kind = "an integer" if integer else "a number"
        raise PrunerError(f"pruner {name!r}: {key} must be {kind} >= {minimum}, got {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class NopPruner:
    name: str = "none"

    def reports_at(self, step: int) -> bool:
        return False

    def decide(self, trial: TrialId, step: int, value: float, index: ReportIndex) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ASHAPruner:
    direction: str = "minimize"
    min_resource: int = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    max_resource: int | None = None
    name: str = "asha"

    def rung_of(self, step: int) -> int | None:
        """The rung index ``k`` when ``step == min_resource·η^(k + rate)``, else None."""
        r = self.min_resource * self.reduction_factor ** self.min_early_stopping_rate
        k = 0
        while r <= step:
            if r == step:
                return k
            r *= self.reduction_factor
            k += 1
        return None

    def rungs(self, max_resource: int | None = None) -> list[int]:
        """The rung steps up to ``max_resource`` (or this pruner's)."""
        top = max_resource or self.max_resource or self.min_resource * self.reduction_factor ** 8
        r = self.min_resource * self.reduction_factor ** self.min_early_stopping_rate
        out = []
        while r <= top:
            out.append(r)
            r *= self.reduction_factor
        return out

    def reports_at(self, step: int) -> bool:
        within = self.max_resource is None or step <= self.max_resource
        return within and self.rung_of(step) is not None

    def decide(self, trial: TrialId, step: int, value: float, index: ReportIndex,
               among: Iterable[TrialId] | None = None) -> bool:
        if not self.reports_at(step):
            return False
        if not math.isfinite(value):
            return True
        others = index.values_at(step, exclude=trial, among=among)
        n = others.size + 1
        keep = max(n // self.reduction_factor, 1)
        return _n_better(value, others, self.direction == "minimize") >= keep


@dataclass(frozen=True, slots=True)
class HyperbandPruner:
    direction: str = "minimize"
    min_resource: int = 1
    max_resource: int = 27
    reduction_factor: int = 3
    name: str = "hyperband"

    @property
    def n_brackets(self) -> int:
        ratio = self.max_resource / self.min_resource
        return int(math.floor(math.log(ratio, self.reduction_factor) + 1e-9)) + 1

    def bracket(self, trial: TrialId) -> int:
        """The bracket of ``trial``: a hash of its id, weighted by bracket budgets."""
        return _bracket(self.n_brackets, self.reduction_factor, trial)

    def _asha(self, bracket: int) -> ASHAPruner:
        return ASHAPruner(self.direction, self.min_resource, self.reduction_factor, bracket,
                          self.max_resource)

    def reports_at(self, step: int) -> bool:
        return step <= self.max_resource and self._asha(0).reports_at(step)

    def decide(self, trial: TrialId, step: int, value: float, index: ReportIndex) -> bool:
        b = self.bracket(trial)
        peers = [t for t in index.trials_at(step) if self.bracket(t) == b]
        return self._asha(b).decide(trial, step, value, index, among=peers)


@lru_cache(maxsize=65536)
def _bracket(n_brackets: int, eta: int, trial: TrialId) -> int:
    # Hyperband's budget per bracket s (s = n-1 is the most aggressive):
    # ceil(n · η^s / (s + 1)); bracket b = n - 1 - s starts its rungs at min·η^b.
    budgets = [math.ceil(n_brackets * eta ** s / (s + 1)) for s in range(n_brackets - 1, -1, -1)]
    h = hrw("hyperband", trial[0], trial[1]) % sum(budgets)
    for b, size in enumerate(budgets):
        if h < size:
            return b
        h -= size
    return n_brackets - 1


@dataclass(frozen=True, slots=True)
class MedianPruner:
    direction: str = "minimize"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    max_resource: int | None = None
    name: str = "median"

    def reports_at(self, step: int) -> bool:
        if step < 1:
            return False
        stride = max(1, math.ceil(self.max_resource / 32)) if self.max_resource else 1
        return step % stride == 0 or step == self.max_resource

    def decide(self, trial: TrialId, step: int, value: float, index: ReportIndex) -> bool:
        if step < self.n_warmup_steps:
            return False
        if not math.isfinite(value):
            return True
        done = index.complete - {trial}
        if len(done) < max(self.n_startup_trials, 1):
            return False
        others = index.values_at(step, among=done)
        if others.size == 0:
            return False
        med = float(np.median(others))
        minimize = self.direction == "minimize"
        best = index.best_so_far(trial, step, value, minimize)
        return best > med if minimize else best < med


_DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "asha": {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0,
             "max_resource": None},
    "hyperband": {"min_resource": 1, "reduction_factor": 3, "max_resource": None},
    "median": {"n_startup_trials": 5, "n_warmup_steps": 0, "max_resource": None},
}


def pruner_names() -> list[str]:
    return sorted(_DEFAULTS)


def get_pruner(name: str | None, options: Mapping[str, Any] | None = None,
               direction: str = "minimize", max_resource: int | None = None) -> Pruner:
    """Build a pruner. ``max_resource`` (e.g. the objective's max_epochs) fills the
    option of that name when the options leave it out."""
    name = "none" if name is None else name
    if name not in _DEFAULTS:
        raise PrunerError(f"unknown pruner {name!r}; choose one of {', '.join(pruner_names())}")
    opts = dict(options or {})
    opts.pop("name", None)
    unknown = sorted(set(opts) - set(_DEFAULTS[name]))
    if unknown:
        known = ", ".join(sorted(_DEFAULTS[name])) or "none"
        raise PrunerError(f"pruner {name!r} has no option(s) {', '.join(unknown)} "
                          f"(it accepts: {known})")
    o = {**_DEFAULTS[name], **opts}
    if "max_resource" in o and o["max_resource"] is None:
        o["max_resource"] = max_resource
    if o.get("max_resource") is not None:
        _num(name, "max_resource", o["max_resource"], 1, integer=True)
    if name == "none":
        return NopPruner()
    if name == "median":
        return MedianPruner(direction, _num(name, "n_startup_trials", o["n_startup_trials"], 0,
                                            True),
                            _num(name, "n_warmup_steps", o["n_warmup_steps"], 0, True),
                            o["max_resource"])
    mn = _num(name, "min_resource", o["min_resource"], 1, integer=True)
    eta = _num(name, "reduction_factor", o["reduction_factor"], 2, integer=True)
    if name == "asha":
        rate = _num(name, "min_early_stopping_rate", o["min_early_stopping_rate"], 0, True)
        return ASHAPruner(direction, mn, eta, rate, o["max_resource"])
    if o["max_resource"] is None:
        raise PrunerError("pruner 'hyperband' needs max_resource, the last step the objective "
                          "reports: set max_resource in [pruner] or max_epochs in [objective] "
                          "(from Python: pruner_options={'max_resource': N} or "
                          "objective_options={'max_epochs': N})")
    if o["max_resource"] < mn:
        raise PrunerError(f"pruner 'hyperband': max_resource ({o['max_resource']}) is below "
                          f"min_resource ({mn})")
    return HyperbandPruner(direction, mn, o["max_resource"], eta)
