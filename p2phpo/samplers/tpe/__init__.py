"""TPE: the Parzen estimators (``parzen``) and the sampler (``sampler``)."""

from p2phpo.samplers.tpe.sampler import TPESampler

__all__ = ["TPESampler"]
