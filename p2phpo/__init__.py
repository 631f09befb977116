"""p2phpo: peer-to-peer hyperparameter search with no central coordinator.

In-process use::

    import p2phpo as hp
    space = hp.Space(lr=hp.Float(1e-4, 1e-1, log=True), act=hp.Choice(["relu", "tanh"]))
    result = hp.optimize(objective, space, n_trials=50, direction="maximize")
"""

__version__ = "0.1.0"

from p2phpo.space import Choice, Float, Int, Space, SpaceError  # noqa: E402
from p2phpo.study import OptimizeResult, StudyError, StudySpec, optimize  # noqa: E402
from p2phpo.trial import Pruned, Trial, Verdict  # noqa: E402

Result = OptimizeResult

__all__ = ["Choice", "Float", "Int", "OptimizeResult", "Pruned", "Result", "Space",
           "SpaceError", "StudyError", "StudySpec", "Trial", "Verdict", "__version__",
           "optimize"]
