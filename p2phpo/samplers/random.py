"""Uniform random search over the unit cube (log-scaled where declared)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2phpo.core.frame import Frame
from p2phpo.samplers.base import SamplerContext, register, take_options
from p2phpo.space import Value


@dataclass(frozen=True, slots=True)
class RandomSampler:
    """Every parameter drawn independently and uniformly in its encoding."""

    name: str = "random"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RandomSampler:
        take_options("random", options, {})
        return cls()

    def suggest(self, ctx: SamplerContext, frame: Frame, rng: np.random.Generator
                ) -> dict[str, Value]:
        return ctx.space.decode(rng.random(len(ctx.space)))


register("random", RandomSampler.from_options)
