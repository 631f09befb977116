"""The one rule for "the best trial", used by every part of p2phpo.

The best trial is the COMPLETE trial with the best value in the study's
direction; among equal values the lower trial id ``(origin, seq)`` wins (on
one node that is the earlier claim, as in Optuna). PRUNED, FAILED, RUNNING,
SUPERSEDED and ABANDONED trials are never the best. The view, the search
core, ``hp.optimize``, the exports and the samplers' frame all call this.

Pure: no clock, no IO.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _sign(direction: str) -> float:
    if direction == "minimize":
        return 1.0
    if direction == "maximize":
        return -1.0
    raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")


def best_key(view: Any, direction: str) -> tuple[float, Any] | None:
    """Sort key of a trial view (lower is better), or None if it cannot be the best."""
    state = getattr(view.state, "name", view.state)
    if state != "COMPLETE" or view.value is None:
        return None
    return (_sign(direction) * float(view.value), tuple(view.id))


def best_trial(views: Iterable[Any], direction: str) -> Any | None:
    """The best of ``views`` by :func:`best_key`, or None when none completed."""
    best, best_k = None, None
    for view in views:
        k = best_key(view, direction)
        if k is not None and (best_k is None or k < best_k):
            best, best_k = view, k
    return best
