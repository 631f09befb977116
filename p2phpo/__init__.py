"""p2phpo: peer-to-peer hyperparameter search with no central coordinator.

In-process use::

    import p2phpo as hp
    space = hp.Space(lr=hp.Float(1e-4, 1e-1, log=True), act=hp.Choice(["relu", "tanh"]))
    def objective(trial: hp.Trial) -> float:
        for epoch in range(1, 10):
            acc = ...                            # train one epoch with trial.params
            trial.report(acc, epoch)             # Optuna's order: value, then step
            if trial.should_prune():
                raise hp.TrialPruned()
        return acc

    result = hp.optimize(objective, space, n_trials=50, pruner="asha", direction="maximize")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from p2phpo.inprocess import OptimizeResult, Study, optimize
    from p2phpo.space import Choice, Float, Int, Space, SpaceError
    from p2phpo.study import StudyError, StudySpec
    from p2phpo.trial import Pruned, Trial, TrialPruned, Verdict

    Result = OptimizeResult

# The public names load on first use (PEP 562): a node's worker process, which imports
# this package for ``p2phpo.train``, then skips the search code (~0.2 s of its start).
_LAZY = {
    "OptimizeResult": "p2phpo.inprocess", "Result": "p2phpo.inprocess", "Study": "p2phpo.inprocess",
    "optimize": "p2phpo.inprocess", "Choice": "p2phpo.space", "Float": "p2phpo.space",
    "Int": "p2phpo.space", "Space": "p2phpo.space", "SpaceError": "p2phpo.space",
    "StudyError": "p2phpo.study", "StudySpec": "p2phpo.study", "Pruned": "p2phpo.trial",
    "Trial": "p2phpo.trial", "TrialPruned": "p2phpo.trial", "Verdict": "p2phpo.trial",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'p2phpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), "OptimizeResult" if name == "Result" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

__all__ = ["Choice", "Float", "Int", "OptimizeResult", "Pruned", "Result", "Space",
           "SpaceError", "Study", "StudyError", "StudySpec", "Trial", "TrialPruned", "Verdict",
           "__version__", "optimize"]
