"""Samplers: pure ``suggest(ctx, frame, rng) -> params`` functions."""

from p2phpo.samplers.base import (
    GridExhausted,
    Sampler,
    SamplerContext,
    SamplerError,
    get_sampler,
    sampler_names,
    sampler_rng,
)

__all__ = ["GridExhausted", "Sampler", "SamplerContext", "SamplerError", "get_sampler",
           "sampler_names", "sampler_rng"]
