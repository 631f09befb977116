"""Resolve an objective spec: ``"mnist-mlp"`` or ``"package.module:function"``.

Objectives are import paths resolved on each node; no code crosses the
network. An objective is ``fn(trial) -> float``. It may carry an optional
``fn.prepare(options) -> dict`` attribute: the worker calls it once before
announcing itself ready (load data, warm caches) and passes the returned
dict (e.g. ``{"dataset": {"name", "source", "fingerprint", ...}}``) to the
node. An exception from ``prepare`` is a setup error. An optional
``fn.batch(trials) -> [TrialOutcome, ...]`` runs several trials at once (the
worker's ``run_batch``; ``mnist-mlp`` trains them packed in one program);
without it the worker runs a batch's trials one after another.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

BUILTIN = {"mnist-mlp": "p2phpo.train.mlp:mnist_mlp"}
_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class ObjectiveError(Exception):
    """The objective spec is malformed or cannot be imported."""


def resolve(spec: str) -> Callable[[Any], float]:
    """Import and return the objective function named by ``spec``."""
    target = BUILTIN.get(spec, spec)
    if not _SPEC.match(target):
        raise ObjectiveError(f"objective {spec!r} is neither built in ({', '.join(BUILTIN)}) "
                             "nor of the form 'package.module:function'")
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError or any error raised while importing the module
        raise ObjectiveError(f"cannot import {module_name!r} for objective {spec!r}: "
                             f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ObjectiveError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ObjectiveError(f"objective {spec!r} is not callable")
    return obj


def check_form(spec: str) -> str:
    """``spec`` if it names an objective (built in or ``package.module:function``)."""
    if spec not in BUILTIN and not _SPEC.match(spec):
        raise ObjectiveError(f"objective {spec!r} is neither built in ({', '.join(BUILTIN)}) "
                             "nor of the form 'package.module:function'")
    return spec


def check_allowed(spec: str, allowed: Iterable[str]) -> None:
    """Refuse to run an objective that the network named and this machine's operator did not.

    A study that arrives over gossip may name any import path; a node runs it
    only if it is built in or listed in ``allowed`` (``--allow-objective``, or
    the objective of the node's own ``--study`` file). Nothing is imported here.
    """
    if spec in BUILTIN or spec in set(allowed):
        return
    raise ObjectiveError(
        f"the cluster's study runs objective {spec!r}, which is not built in and not allowed "
        f"on this machine; if you trust its code, rerun with --allow-objective {spec}"
    )


def prepare(fn: Callable[[Any], float], options: dict[str, Any]) -> dict[str, Any]:
    """Run the objective's optional ``prepare`` hook; returns its info dict."""
    hook = getattr(fn, "prepare", None)
    if hook is None:
        return {}
    info = hook(options)
    return dict(info) if isinstance(info, dict) else {}
