"""Exhaustive grid search, spread over the cluster without a coordinator.

Each numeric parameter is tried at ``steps[name]`` evenly spaced points of
its encoding (log-spaced for ``log=True``; ``default_steps`` when not
given; an integer or stepped range never yields more points than it has);
a choice is tried at every value. The grid is their full Cartesian product.

Budget slot ``k`` evaluates point ``perm(k mod N)`` of a seeded pseudo-random
permutation of the ``N`` grid points (a keyed Feistel network, so nothing of
size ``N`` is materialized). Slots are distinct, so a healthy cluster never
evaluates a point twice; if that point is already in the frame (done,
running or failed — e.g. after a retry or a partition), the slot probes
forward from a position hashed from the slot. When every point is present
:class:`GridExhausted` is raised and the node stops claiming.

The choice depends only on (study seed, slot, frame), not on the node id or
the rng: the slot is what separates concurrent nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p2phpo.core.frame import Frame
from p2phpo.core.hrw import hrw
from p2phpo.samplers.base import (
    GridExhausted,
    SamplerContext,
    SamplerError,
    positive_int,
    register,
    take_options,
)
from p2phpo.space import Choice, Space, Value

DEFAULTS: dict[str, Any] = {"steps": {}, "default_steps": 5}
_MAX_POINTS = 1 << 62
_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class GridSampler:
    steps: Mapping[str, int] = field(default_factory=dict)
    default_steps: int = 5
    name: str = "grid"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> GridSampler:
        o = take_options("grid", options, DEFAULTS)
        if not isinstance(o["steps"], Mapping):
            raise SamplerError("sampler 'grid': steps must be a table like { lr = 5, width = 4 }")
        steps = {str(k): positive_int("grid", f"steps.{k}", v) for k, v in o["steps"].items()}
        return cls(steps, positive_int("grid", "default_steps", o["default_steps"]))

    def axes(self, space: Space) -> list[np.ndarray]:
        """The sorted unit-cube positions tried for each parameter."""
        unknown = sorted(set(self.steps) - set(space.names))
        if unknown:
            raise SamplerError(f"sampler 'grid': steps names unknown parameter(s) "
                               f"{', '.join(unknown)}")
        out = []
        for j, (name, p) in enumerate(space.params.items()):
            if isinstance(p, Choice):
                out.append((np.arange(len(p.values)) + 0.5) / len(p.values))
                continue
            s = self.steps.get(name, self.default_steps)
            u = np.full((s, len(space)), 0.5)
            u[:, j] = np.linspace(0.0, 1.0, s) if s > 1 else 0.5
            out.append(np.unique(space.snap(u)[:, j]))
        return out

    def size(self, space: Space) -> int:
        return math.prod(len(a) for a in self.axes(space))

    def suggest(self, ctx: SamplerContext, frame: Frame, rng: np.random.Generator
                ) -> dict[str, Value]:
        axes = self.axes(ctx.space)
        sizes = [len(a) for a in axes]
        n = math.prod(sizes)
        if n > _MAX_POINTS:
            raise SamplerError(f"sampler 'grid': {n} points is too many; lower the steps")
        present = _present(frame, axes, sizes)
        if present.size >= n:
            raise GridExhausted(f"all {n} grid points have been tried")
        key = hrw("grid", ctx.seed)
        idx = int(_permute(np.array([ctx.slot % n], np.uint64), n, key)[0])
        if _contains(present, idx):
            idx = _probe(n, key, hrw("grid-probe", ctx.seed, ctx.slot) % n, present)
        return ctx.space.decode(_point(idx, axes, sizes))


def _present(frame: Frame, axes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Sorted unique grid indices of every row (nearest grid point per column)."""
    if len(frame) == 0:
        return np.empty(0, np.uint64)
    idx = np.zeros(len(frame), np.uint64)
    for j, a in enumerate(axes):
        col = frame.x[:, j].astype(np.float64)
        pos = np.clip(np.searchsorted(a, col), 1, max(len(a) - 1, 1))
        if len(a) > 1:
            pos = np.where(np.abs(col - a[pos - 1]) <= np.abs(col - a[pos]), pos - 1, pos)
        else:
            pos = np.zeros_like(pos)
        idx = idx * np.uint64(sizes[j]) + pos.astype(np.uint64)
    return np.unique(idx)


def _contains(sorted_arr: np.ndarray, v: int) -> bool:
    i = int(np.searchsorted(sorted_arr, np.uint64(v)))
    return i < sorted_arr.size and int(sorted_arr[i]) == v


def _probe(n: int, key: int, start: int, present: np.ndarray) -> int:
    """The first free point along the permutation, starting at position ``start``."""
    for base in range(0, n, _CHUNK):
        pos = (np.arange(base, min(base + _CHUNK, n), dtype=np.uint64) + np.uint64(start)
               ) % np.uint64(n)
        pts = _permute(pos, n, key)
        free = ~np.isin(pts, present)
        if free.any():
            return int(pts[np.argmax(free)])
    raise GridExhausted(f"all {n} grid points have been tried")


def _point(idx: int, axes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    u = np.empty(len(axes))
    for j in range(len(axes) - 1, -1, -1):
        idx, r = divmod(idx, sizes[j])
        u[j] = axes[j][r]
    return u


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _permute(i: np.ndarray, n: int, key: int) -> np.ndarray:
    """A keyed bijection of ``[0, n)``: a 4-round Feistel network on the next even
    power of two, with cycle walking back into range."""
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    keys = [np.uint64(hrw("feistel", key, r)) for r in range(4)]
    out = i.astype(np.uint64)
    todo = np.ones(out.shape, bool)
    with np.errstate(over="ignore"):
        while todo.any():
            x = out[todo]
            left, right = x >> half, x & mask
            for k in keys:
                f = (right ^ k) * _M1
                f = (f ^ (f >> np.uint64(31))) * _M2
                left, right = right, left ^ ((f ^ (f >> np.uint64(29))) & mask)
            out[todo] = (left << half) | right
            todo = out >= np.uint64(n)
    return out


register("grid", GridSampler.from_options)
