"""Tree-structured Parzen Estimator (Bergstra et al. 2011; Optuna's defaults).

After ``n_startup`` finished trials, the finished trials are split into the
best ``gamma(n) = min(ceil(0.1·n), 25)`` ("below", density ``l``) and the
rest ("above", density ``g``); ``n_ei_candidates`` points drawn from ``l``
are scored by ``log l(x) - log g(x)`` and the best one wins — jointly
(``multivariate=True``, the default, as in Optuna 5 for one objective) or
per parameter (``multivariate=False``, Hyperopt's independent TPE).

Ranking: COMPLETE trials by value, then PRUNED trials deeper first and by
their last report within a depth; FAILED trials are ignored. With
``constant_liar`` (default on) RUNNING trials join the "above" set (they do
not count in ``n``), so nodes working at the same time spread out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2phpo.core.frame import Frame, RowState
from p2phpo.samplers.base import SamplerContext, SamplerError, positive_int, register, take_options
from p2phpo.samplers.tpe import parzen
from p2phpo.space import Choice, Float, Space, Value

DEFAULTS: dict[str, Any] = {"n_startup": 10, "n_ei_candidates": 24, "multivariate": True,
                            "prior_weight": 1.0, "constant_liar": True}


def gamma(n: int) -> int:
    """How many trials form the "below" (good) set."""
    return min(int(math.ceil(0.1 * n)), 25)


@dataclass(frozen=True, slots=True)
class TPESampler:
    n_startup: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = True
    prior_weight: float = 1.0
    constant_liar: bool = True
    name: str = "tpe"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TPESampler:
        o = take_options("tpe", options, DEFAULTS)
        for key in ("multivariate", "constant_liar"):
            if not isinstance(o[key], bool):
                raise SamplerError(f"sampler 'tpe': {key} must be true or false, got {o[key]!r}")
        pw = o["prior_weight"]
        if isinstance(pw, bool) or not isinstance(pw, int | float) or not pw > 0:
            raise SamplerError(f"sampler 'tpe': prior_weight must be a number > 0, got {pw!r}")
        return cls(positive_int("tpe", "n_startup", o["n_startup"], 0),
                   positive_int("tpe", "n_ei_candidates", o["n_ei_candidates"]),
                   o["multivariate"], float(pw), o["constant_liar"])

    def suggest(self, ctx: SamplerContext, frame: Frame, rng: np.random.Generator
                ) -> dict[str, Value]:
        space = ctx.space
        if frame.n_finished < max(self.n_startup, 1):
            return space.decode(rng.random(len(space)))
        below, above = self._split(frame)
        num, cat, n_choices = _layout(space)
        l_est = self._estimator(frame, below, num, cat, n_choices)
        g_est = self._estimator(frame, above, num, cat, n_choices)
        xs, cs = l_est.sample(rng, self.n_ei_candidates, joint=self.multivariate)
        u = np.empty((self.n_ei_candidates, len(space)))
        u[:, num] = xs
        u[:, cat] = (cs + 0.5) / np.asarray(n_choices, dtype=np.float64)
        u = space.snap(u)
        if ctx.fixed:  # a batch member: the leader's class values, the rest scored around them
            _pin(space, u, ctx.fixed)
            cs = np.minimum(np.floor(u[:, cat] * np.asarray(n_choices, dtype=np.float64)),
                            np.asarray(n_choices) - 1).astype(np.int64)
        xs = u[:, num]
        params = [space.params[space.names[j]] for j in num]
        bins = [None if isinstance(p, Float) and p.step is None else p.bin_of(u[:, j])
                for p, j in zip(params, num, strict=True)]
        if self.multivariate:
            score = l_est.log_pdf_joint(xs, cs, bins) - g_est.log_pdf_joint(xs, cs, bins)
            return space.decode(u[int(np.argmax(score))])
        # (n, n_num + n_cat): each parameter takes its own best candidate
        score = l_est.log_pdf_each(xs, cs, bins) - g_est.log_pdf_each(xs, cs, bins)
        best = np.argmax(score, axis=0)
        dims = np.concatenate([num, cat])
        pick = np.empty(len(space))
        pick[dims] = u[best, dims]
        return space.decode(pick)

    def _split(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        ranked = frame.ranked()
        running = (np.flatnonzero(frame.state == RowState.RUNNING) if self.constant_liar
                   else np.empty(0, np.int64))
        n_below = gamma(ranked.size)  # running trials do not count in n (as in Optuna)
        below = np.sort(ranked[:n_below])
        above = np.sort(np.concatenate([ranked[n_below:], running]))
        return below, above

    def _estimator(self, frame: Frame, rows: np.ndarray, num: np.ndarray, cat: np.ndarray,
                   n_choices: tuple[int, ...]) -> parzen.Parzen:
        x = frame.x[rows]
        c = np.minimum(np.floor(x[:, cat] * np.asarray(n_choices, dtype=np.float32)),
                       np.asarray(n_choices) - 1).astype(np.int64)
        return parzen.build(x[:, num].astype(np.float64), c, n_choices,
                            prior_weight=self.prior_weight)


def _pin(space: Space, u: np.ndarray, fixed: Mapping[str, Value]) -> None:
    """Set the columns of ``fixed``'s parameters of every candidate to their values."""
    for name, x in fixed.items():
        p = space.params[name]
        j = space.names.index(name)
        u[:, j] = ((p.index(x) + 0.5) / len(p.values) if isinstance(p, Choice)
                   else float(p.to_unit(np.float64(x))))


def _layout(space: Space) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Column indices of numeric and categorical parameters, and the choice counts."""
    kinds = [isinstance(p, Choice) for p in space.params.values()]
    num = np.array([j for j, k in enumerate(kinds) if not k], dtype=np.int64)
    cat = np.array([j for j, k in enumerate(kinds) if k], dtype=np.int64)
    n_choices = tuple(len(space.params[space.names[j]].values) for j in cat)
    return num, cat, n_choices


register("tpe", TPESampler.from_options)
