"""Which parameters mattered: a PED-ANOVA-style importance, in numpy.

PED-ANOVA (Watanabe et al., IJCAI 2023) measures a parameter's importance as
the Pearson divergence between its distribution among the top trials and
among all trials: a parameter whose good values are spread like all its
values did not matter; one whose good values bunch up did. We compute it per
parameter in the unit cube the samplers use (``Space.encode``):

- the trials are the finished ones ranked best first (COMPLETE by value, then
  PRUNED deeper first, as ``Frame.ranked``), so pruned trials count too;
- the top set is the best ``gamma`` share of them (at least 2 trials);
- a numeric parameter's two densities are Gaussian kernel estimates on a
  grid over [0, 1] (Scott's bandwidth over all trials, floored at 0.02);
  a choice's are its frequencies with a small uniform prior;
- importance = ``sum(p_all * (p_top / p_all - 1) ** 2)``, normalized so the
  parameters' importances sum to 1.

Pure: numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from p2phpo.core.frame import Frame
from p2phpo.space import Choice

GRID = 128
MIN_TRIALS = 4


def _kde(u: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    z = (grid[:, None] - u[None, :]) / h
    density = np.exp(-0.5 * z * z).sum(axis=1) + 1e-12
    return density / density.sum()


def _numeric(all_u: np.ndarray, top_u: np.ndarray) -> float:
    grid = np.linspace(0.0, 1.0, GRID)
    h = max(0.02, 1.06 * float(np.std(all_u)) * len(all_u) ** -0.2)
    p_all, p_top = _kde(all_u, grid, h), _kde(top_u, grid, h)
    return float(np.sum(p_all * (p_top / p_all - 1.0) ** 2))


def _categorical(all_u: np.ndarray, top_u: np.ndarray, k: int) -> float:
    def freq(u: np.ndarray) -> np.ndarray:
        idx = np.clip((u * k).astype(int), 0, k - 1)
        counts = np.bincount(idx, minlength=k) + 1.0 / k  # a small uniform prior
        return counts / counts.sum()

    p_all, p_top = freq(all_u), freq(top_u)
    return float(np.sum(p_all * (p_top / p_all - 1.0) ** 2))


def importance(frame: Frame, gamma: float = 0.1) -> dict[str, float] | None:
    """Each parameter's importance (summing to 1), or None with fewer than 4 finished trials."""
    ranked = frame.ranked()
    if len(ranked) < MIN_TRIALS or len(frame.space) == 0:
        return None
    n_top = max(2, math.ceil(gamma * len(ranked)))
    x = np.asarray(frame.x, dtype=np.float64)
    all_x, top_x = x[ranked], x[ranked[:n_top]]
    raw: dict[str, float] = {}
    for j, (name, p) in enumerate(frame.space.params.items()):
        if isinstance(p, Choice):
            raw[name] = _categorical(all_x[:, j], top_x[:, j], len(p.values))
        else:
            raw[name] = _numeric(all_x[:, j], top_x[:, j])
    total = sum(raw.values())
    if total <= 0:
        return {name: 1.0 / len(raw) for name in raw}
    return dict(sorted(((n, v / total) for n, v in raw.items()), key=lambda kv: -kv[1]))
