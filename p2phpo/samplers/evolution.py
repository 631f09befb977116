"""Regularized (aging) evolution (Real et al. 2019), as a pure function.

The population is the newest ``population`` finished trials (COMPLETE and
PRUNED, in finish order) — older ones "age out" whatever their value. A
tournament of ``tournament`` members drawn from it without replacement picks
the best (the same ranking as TPE: complete by value, then pruned deeper
first), and the child changes exactly one parameter: a numeric one moves by
a normal step of ``mutation_scale`` in the unit cube (so log-scaled
parameters move by a factor, not an offset), reflected at the bounds; a
choice jumps to another value. Until ``population`` trials have finished the
sampler draws at random. There is no stored population: it is read from the
frame, so every node evolves the shared history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2phpo.core.frame import Frame, RowState
from p2phpo.samplers.base import SamplerContext, SamplerError, positive_int, register, take_options
from p2phpo.space import Choice, Value

DEFAULTS: dict[str, Any] = {"population": 20, "tournament": 5, "mutation_scale": 0.2}


@dataclass(frozen=True, slots=True)
class EvolutionSampler:
    population: int = 20
    tournament: int = 5
    mutation_scale: float = 0.2
    name: str = "evolution"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EvolutionSampler:
        o = take_options("evolution", options, DEFAULTS)
        pop = positive_int("evolution", "population", o["population"], 2)
        tour = positive_int("evolution", "tournament", o["tournament"], 1)
        if tour > pop:
            raise SamplerError(
                f"sampler 'evolution': tournament ({tour}) cannot exceed population ({pop})")
        scale = o["mutation_scale"]
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise SamplerError(
                f"sampler 'evolution': mutation_scale must be in (0, 1], got {scale!r}")
        return cls(pop, tour, float(scale))

    def suggest(self, ctx: SamplerContext, frame: Frame, rng: np.random.Generator
                ) -> dict[str, Value]:
        space = ctx.space
        finished = np.flatnonzero(frame.state <= RowState.PRUNED)  # finish order
        if finished.size < self.population:
            return space.decode(rng.random(len(space)))
        members = finished[-self.population:]
        picks = rng.choice(members, size=self.tournament, replace=False)
        rank = np.empty(len(frame), np.int64)
        ranked = frame.ranked()
        rank[ranked] = np.arange(ranked.size)
        parent = picks[np.argmin(rank[picks])]
        u = frame.x[parent].astype(np.float64)
        return space.decode(self._mutate(space, u, rng))

    def _mutate(self, space: Any, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        j = int(rng.integers(len(space)))
        p = space.params[space.names[j]]
        child = u.copy()
        if isinstance(p, Choice):
            k = len(p.values)
            if k > 1:
                cur = min(int(u[j] * k), k - 1)
                new = (cur + 1 + int(rng.integers(k - 1))) % k
                child[j] = (new + 0.5) / k
            return child
        before = space.decode(u)[space.names[j]]
        for _ in range(8):  # a stepped parameter may need a bigger move to change
            v = u[j] + self.mutation_scale * rng.standard_normal()
            v = abs(v) % 2.0
            child[j] = 2.0 - v if v > 1.0 else v
            if space.decode(child)[space.names[j]] != before:
                break
        return child


register("evolution", EvolutionSampler.from_options)
