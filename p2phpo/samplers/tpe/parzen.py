"""Parzen estimators on the unit cube, vectorised over kernels and dimensions.

The estimator follows Optuna's / Hyperopt's: one kernel per observation
plus a prior kernel (mean 0.5, width 1 on the unit interval), kernel weights
from :func:`recency_weights` with the prior weighted ``prior_weight``;
numeric dimensions use normal kernels truncated to ``[0, 1]`` with the
Hyperopt bandwidth (distance to the farther neighbour, the "magic clip"
lower bound ``1 / min(100, 1 + n_kernels)``, upper bound 1) in both the
univariate and the multivariate mode, as Optuna 5 does; categorical
dimensions use Optuna's kernel (``prior_weight / n_kernels`` on every
category plus 1 on the observed one, normalized).

Stepped and integer dimensions are sampled as continuous and snapped to a
value, then scored by the kernels' mass over that value's bin, as Optuna
does; bins narrower than a fifth of the smallest kernel width use the
density at the bin centre instead (the width cancels in l/g).

Densities are evaluated without a Python loop over observations: for a
normal kernel ``log N(x) = a + b·x + c·x²`` with per-kernel ``(a, b, c)``,
so the (candidates × kernels) log-density table is one product of
``[1, x, x²]`` with a ``3 × kernels`` coefficient table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)

# Per numeric dimension: None (continuous) or the unit-cube (low, high) bounds of
# each candidate's bin (stepped floats and integers).
Bins = Sequence[tuple[np.ndarray, np.ndarray] | None]


def recency_weights(n: int) -> np.ndarray:
    """Hyperopt's weights for ``n`` observations, oldest first: the newest 25 get 1,
    older ones a ramp from ``1/n`` up to 1."""
    if n < 25:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, n - 25), np.ones(25)])


def _erfc_pos(z: np.ndarray) -> np.ndarray:
    """erfc for z >= 0 (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7)."""
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return t * np.exp(poly)


def log_trunc_mass(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log P(0 <= X <= 1) for X ~ N(mu, sigma²) with mu in [0, 1].

    Only kernels within 6 sigma of an end lose measurable mass (erfc(6/√2)
    < 2e-9), so the tail is computed for those alone.
    """
    out = np.zeros(mu.shape)
    r = 1.0 / (sigma * np.sqrt(2.0))
    zu, zl = np.abs(1.0 - mu) * r, np.abs(mu) * r
    near = np.minimum(zu, zl) < 4.3  # 6 / sqrt(2)
    if near.any():
        tails = 0.5 * (_erfc_pos(zu[near]) + _erfc_pos(zl[near]))
        out[near] = np.log(np.maximum(1.0 - tails, 1e-300))
    return out


@dataclass(frozen=True, slots=True)
class Parzen:
    """A mixture of ``k`` kernels over the numeric and categorical dimensions.

    ``mu``/``sigma``/``logz``: ``(k, n_num)``; ``cat``: one ``(k, n_choices)``
    probability table per categorical dimension; ``weights``: ``(k,)``.
    The last kernel is the prior.
    """

    weights: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    logz: np.ndarray
    cat: tuple[np.ndarray, ...]

    @property
    def n_kernels(self) -> int:
        return int(self.weights.shape[0])

    # -- sampling --------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int, joint: bool
               ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws: (numeric ``(n, n_num)`` in [0, 1], categorical ``(n, n_cat)`` ints).

        ``joint``: one kernel per draw for every dimension (multivariate);
        otherwise each dimension picks its own kernel.
        """
        n_num, n_cat = self.mu.shape[1], len(self.cat)
        cols = 1 if joint else n_num + n_cat
        cdf = np.cumsum(self.weights)
        ks = np.minimum(np.searchsorted(cdf, rng.random((n, cols)) * cdf[-1], side="right"),
                        self.n_kernels - 1)
        k_num = np.broadcast_to(ks[:, :1], (n, n_num)) if joint else ks[:, :n_num]
        dim = np.arange(n_num)
        x = _trunc_normal(rng, self.mu[k_num, dim], self.sigma[k_num, dim])
        c = np.empty((n, n_cat), np.int64)
        u = rng.random((n, n_cat))
        for j, table in enumerate(self.cat):
            kk = ks[:, 0] if joint else ks[:, n_num + j]
            rows = np.cumsum(table[kk], axis=1)
            c[:, j] = np.minimum((rows < u[:, j:j + 1] * rows[:, -1:]).sum(axis=1),
                                 table.shape[1] - 1)
        return x, c

    # -- densities -------------------------------------------------------
    def _coef(self, dims: Sequence[int] | None = None, with_weights: bool = True
              ) -> np.ndarray:
        """(d, 3, k): log N(x) = coef[0] + coef[1]·x + coef[2]·x² per kernel and
        dimension (``coef[0]`` also carries log w when ``with_weights``)."""
        mu, sig, logz = self.mu, self.sigma, self.logz
        if dims is not None:
            mu, sig, logz = mu[:, dims], sig[:, dims], logz[:, dims]
        inv = 1.0 / (sig * sig)
        a = -0.5 * mu * mu * inv - np.log(sig) - logz - _LOG_SQRT_2PI
        if with_weights:
            a = a + np.log(self.weights)[:, None]
        return np.ascontiguousarray(np.stack([a, mu * inv, -0.5 * inv], axis=1).T)

    def log_pdf_each(self, x: np.ndarray, c: np.ndarray, bins: Bins = ()) -> np.ndarray:
        """Per-dimension marginal log densities ``(n, n_num + n_cat)`` (univariate TPE)."""
        n, n_num = x.shape
        out = np.empty((n, n_num + c.shape[1]))
        if n_num:
            feats = np.stack([np.ones_like(x), x, x * x], axis=2).transpose(1, 0, 2)
            # einsum runs numpy's own loops: a threaded BLAS gemm for these thin
            # products is several times slower on a busy machine.
            t = np.einsum("dnj,djk->dnk", feats.astype(np.float32),
                          self._coef().astype(np.float32))
            # Terms are bounded above (sigma >= 1/100) and the prior kernel keeps
            # the sum away from 0, so exp needs no max-shift here.
            np.exp(t, out=t)
            out[:, :n_num] = np.log(t.sum(axis=2)).T
            for j, rows, logm in self._wide_bins(x, bins):
                out[rows, j] = np.log(np.maximum(np.exp(logm) @ self.weights, 1e-300))
        for j, table in enumerate(self.cat):
            p = self.weights @ table
            out[:, n_num + j] = np.log(p[c[:, j]])
        return out

    def log_pdf_joint(self, x: np.ndarray, c: np.ndarray, bins: Bins = ()) -> np.ndarray:
        """Joint log density ``(n,)`` of the product-kernel mixture (multivariate TPE)."""
        n, n_num = x.shape
        wide = list(self._wide_bins(x, bins))
        exact = {j for j, rows, _ in wide if rows.size == n}  # no density term needed
        dims = [j for j in range(n_num) if j not in exact]
        # float32 for the (candidates x kernels) table: the log densities need
        # about 1e-3 absolute accuracy to rank 24 candidates, and it halves the cost
        if dims:
            coef = self._coef(dims, with_weights=False)  # (d, 3, k)
            feats = np.concatenate([np.ones((n, 1)), x[:, dims], x[:, dims] ** 2], axis=1)
            table = np.concatenate([coef[:, 0].sum(axis=0, keepdims=True)
                                    + np.log(self.weights), coef[:, 1], coef[:, 2]], axis=0)
            t = np.einsum("nj,jk->nk", feats.astype(np.float32), table.astype(np.float32))
        else:
            t = np.repeat(np.log(self.weights).astype(np.float32)[None, :], n, axis=0)
        for j, rows, logm in wide:
            if j in exact:
                t += logm
            else:  # swap the density term for the mass on these rows
                t[rows] += logm - self._log_density(x[rows, j], j)
        for j, tab in enumerate(self.cat):
            t += np.log(tab.T).astype(np.float32)[c[:, j]]  # small table: log it first
        m = t.max(axis=1, keepdims=True)
        t -= m
        np.exp(t, out=t)
        return (m[:, 0] + np.log(t.sum(axis=1))).astype(np.float64)

    def _log_density(self, xj: np.ndarray, j: int) -> np.ndarray:
        """``(len(xj), k)`` truncated-normal log densities of dimension ``j``."""
        mu, sig = self.mu[:, j], self.sigma[:, j]
        z = (xj[:, None] - mu) / sig
        return -0.5 * z * z - np.log(sig) - self.logz[:, j] - _LOG_SQRT_2PI

    def _wide_bins(self, x: np.ndarray, bins: Bins
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For stepped/integer dimensions, the candidates whose bin is wide enough
        for the density at its centre to misstate the kernel's mass over it.

        Yields ``(dim, rows, log mass (rows, k))`` (float32); the mass is exact
        (normal CDF differences), computed once per distinct bin and kernel.
        Narrower bins keep the density: the bin width cancels in l/g.
        """
        for j, b in enumerate(bins):
            if b is None:
                continue
            lo, hi = b
            rows = np.flatnonzero(hi - lo > _NARROW_BIN)
            if rows.size == 0:
                continue
            ulo, first, inv = np.unique(lo[rows], return_index=True, return_inverse=True)
            uhi = hi[rows][first]
            # Kernels of a discrete dimension sit on bin centres and most share the
            # clipped minimum width: compute each distinct (mu, sigma) once.
            keys, kfirst, kinv = np.unique(self.mu[:, j] + 1j * self.sigma[:, j],
                                           return_index=True, return_inverse=True)
            mu, sig = keys.real, keys.imag
            mass = _gauss_mass((ulo[:, None] - mu) / sig, (uhi[:, None] - mu) / sig)
            logm = np.log(np.maximum(mass, 1e-300)) - self.logz[kfirst, j]
            yield j, rows, logm.astype(np.float32)[np.ix_(inv, kinv.ravel())]


_NARROW_BIN = 0.002  # 0.2 x the smallest kernel width: midpoint rule error < 0.2%


def _gauss_mass(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """P(za <= Z <= zb) for a standard normal Z, accurate in both tails.

    A bin entirely beyond 8.5 sigma on one side gets 0 (its mass is < 1e-17):
    most kernels are far from most bins, so erfc runs on the near pairs only.
    """
    out = np.zeros(za.shape)
    near = (np.minimum(np.abs(za), np.abs(zb)) < 8.5) | ((za < 0) & (zb > 0))
    a, b = za[near], zb[near]
    r = 1.0 / np.sqrt(2.0)
    qa, qb = 0.5 * _erfc_pos(np.abs(a) * r), 0.5 * _erfc_pos(np.abs(b) * r)
    out[near] = np.where(a >= 0, qa - qb, np.where(b <= 0, qb - qa, 1.0 - qa - qb))
    return out


def _trunc_normal(rng: np.random.Generator, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Draws from N(mu, sigma²) truncated to [0, 1] by vectorised rejection."""
    x = mu + sigma * rng.standard_normal(mu.shape)
    for _ in range(64):
        bad = (x < 0.0) | (x > 1.0)
        if not bad.any():
            break
        x[bad] = mu[bad] + sigma[bad] * rng.standard_normal(int(bad.sum()))
    return np.clip(x, 0.0, 1.0)


def build(x: np.ndarray, c: np.ndarray, n_choices: tuple[int, ...], *,
          prior_weight: float) -> Parzen:
    """The estimator of observations ``x`` (numeric, unit cube) and ``c`` (category
    indices), rows oldest first."""
    m, n_num = x.shape
    k = m + 1
    w = np.append(recency_weights(m), prior_weight)
    w = w / w.sum()
    min_sigma = 1.0 / min(100.0, 1.0 + k)
    sig = _neighbour_bandwidth(x)
    sigma = np.vstack([np.clip(sig, min_sigma, 1.0), np.ones((1, n_num))])
    mu = np.vstack([x, np.full((1, n_num), 0.5)])
    cats = []
    for j, nc in enumerate(n_choices):
        table = np.full((k, nc), prior_weight / k)
        table[np.arange(m), c[:, j]] += 1.0
        table[m] = 1.0
        cats.append(table / table.sum(axis=1, keepdims=True))
    return Parzen(w, mu, sigma, log_trunc_mass(mu, sigma), tuple(cats))


def _neighbour_bandwidth(x: np.ndarray) -> np.ndarray:
    """Hyperopt's rule per column: the larger gap to a sorted neighbour (the
    interval ends count as neighbours); the end kernels use their inner gap.
    As in Optuna 5 the prior's mean is not among the neighbours."""
    m, d = x.shape
    if d == 0 or m == 0:
        return np.zeros((m, d))
    pts = np.ascontiguousarray(x.T)  # one contiguous row per dimension sorts faster
    order = np.argsort(pts, axis=1)
    s = np.take_along_axis(pts, order, axis=1)
    e = np.hstack([np.zeros((d, 1)), s, np.ones((d, 1))])
    gaps = np.diff(e, axis=1)
    sig = np.maximum(gaps[:, :-1], gaps[:, 1:])
    if e.shape[1] >= 4:
        sig[:, 0] = e[:, 2] - e[:, 1]
        sig[:, -1] = e[:, -2] - e[:, -3]
    out = np.empty_like(sig)
    np.put_along_axis(out, order, sig, axis=1)
    return out.T
