"""The sampler plug-in point: ``suggest(ctx, frame, rng) -> params``.

A sampler is configuration only (a frozen dataclass built from the study's
``[sampler]`` options); :meth:`Sampler.suggest` is a pure function of the
context, the trial :class:`~p2phpo.core.frame.Frame` and a numpy
``Generator``. There is no hidden RNG state: the node derives the generator
from ``(study seed, slot)`` with :func:`sampler_rng`. Nodes propose
different points because each budget slot is claimed by one node; leaving
the node id out makes a run replay: the same seed on one node gives the same
sequence of trials, whatever node id a fresh state dir draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from p2phpo.core.frame import Frame
from p2phpo.core.hrw import hrw
from p2phpo.space import Space, Value


class SamplerError(ValueError):
    """Bad sampler name or options; the message says which in one sentence."""


class GridExhausted(Exception):
    """The grid sampler has no unevaluated point left: stop claiming new trials."""


@dataclass(frozen=True, slots=True)
class SamplerContext:
    """What a sampler may know besides the trials.

    ``n_trials`` is the cluster budget (None when open-ended); ``options``
    the study's ``[sampler]`` table; ``seed`` the study seed. ``fixed``: values
    the suggestion must take (a batch member shares its leader's shape class);
    a sampler that ignores it has them set after it chose (``study.Plan``).
    """

    space: Space
    direction: str = "minimize"
    node_id: int = 0
    slot: int = 0
    n_trials: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    fixed: Mapping[str, Value] = field(default_factory=dict)


class Sampler(Protocol):
    """Proposes the parameters of the next trial."""

    name: str

    def suggest(self, ctx: SamplerContext, frame: Frame, rng: np.random.Generator
                ) -> dict[str, Value]:
        """A parameter set inside ``ctx.space``; may raise :class:`GridExhausted`."""
        ...


def sampler_rng(seed: int, slot: int) -> np.random.Generator:
    """The generator for one suggestion: a function of (study seed, slot) only."""
    return np.random.default_rng(hrw("sampler", seed, slot))


def take_options(name: str, options: Mapping[str, Any] | None,
                 defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``options`` over ``defaults``; an unknown key is a :class:`SamplerError`."""
    opts = dict(options or {})
    opts.pop("name", None)
    unknown = sorted(set(opts) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise SamplerError(
            f"sampler {name!r} has no option(s) {', '.join(unknown)} (it accepts: {known})")
    return {**defaults, **opts}


def positive_int(sampler: str, key: str, v: Any, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise SamplerError(f"sampler {sampler!r}: {key} must be an integer >= {minimum}, got {v!r}")
    return v


_REGISTRY: dict[str, Callable[[Mapping[str, Any]], Sampler]] = {}


def register(name: str, factory: Callable[[Mapping[str, Any]], Sampler]) -> None:
    _REGISTRY[name] = factory


def sampler_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_sampler(name: str, options: Mapping[str, Any] | None = None) -> Sampler:
    """Build a sampler by name (``random``, ``grid``, ``tpe``, ``evolution``)."""
    _load()
    factory = _REGISTRY.get(name)
    if factory is None:
        raise SamplerError(
            f"unknown sampler {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return factory(options or {})


def _load() -> None:
    from p2phpo.samplers import evolution, grid, random  # noqa: F401
    from p2phpo.samplers.tpe import sampler  # noqa: F401
