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

__version__ = "0.1.0"

from p2phpo.inprocess import OptimizeResult, Study, optimize  # noqa: E402
from p2phpo.space import Choice, Float, Int, Space, SpaceError  # noqa: E402
from p2phpo.study import StudyError, StudySpec  # noqa: E402
from p2phpo.trial import Pruned, Trial, TrialPruned, Verdict  # noqa: E402

Result = OptimizeResult

__all__ = ["Choice", "Float", "Int", "OptimizeResult", "Pruned", "Result", "Space",
           "SpaceError", "Study", "StudyError", "StudySpec", "Trial", "TrialPruned", "Verdict",
           "__version__", "optimize"]
