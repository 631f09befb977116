"""The simulated study: its spec, fingerprint and the search core's ``StudyPlan``.

The plan samples uniformly in the unit cube of the space (the ``random``
sampler's contract: a pure function of the study seed, node id and slot) and
prunes with the real pruners of :mod:`p2phpo.pruners` over a
:class:`~p2phpo.pruners.ReportIndex` kept in sync with the node's ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2phpo.core.entries import StudyEntry
from p2phpo.core.hrw import canonical, hrw
from p2phpo.core.ledger import Ledger, TrialView
from p2phpo.pruners import Pruner, ReportIndex, get_pruner
from p2phpo.samplers import sampler_rng
from p2phpo.space import Space
from simulations.objective import SimObjective


def study_spec(objective: SimObjective, n_trials: int | None, seed: int,
               pruner: str = "asha", timeout: float | None = None) -> dict[str, Any]:
    """A normalized study spec for the simulated objective."""
    spec: dict[str, Any] = {
        "study": {"name": "sim", "direction": "minimize", "metric": "value", "seed": seed},
        "sampler": {"name": "random"},
        "pruner": {"name": pruner, "min_resource": 1, "reduction_factor": 3}
        if pruner in ("asha", "hyperband") else {"name": pruner},
        "objective": {"name": f"sim-{objective.function}", "max_epochs": objective.steps},
        "space": objective.space(),
    }
    if n_trials is not None:
        spec["study"]["n_trials"] = n_trials
    if timeout is not None:
        spec["study"]["timeout"] = timeout
    return spec


def fingerprint(spec: dict[str, Any]) -> str:
    return f"{hrw('fingerprint', canonical(spec)):016x}"


@dataclass(slots=True)
class SimPlan:
    """A ``p2phpo.core.search.StudyPlan`` for the simulated study."""

    fingerprint: str
    space: Space
    seed: int
    pruner: Pruner
    n_trials: int | None
    timeout: float | None = None
    target: float | None = None
    direction: str = "minimize"
    index: ReportIndex = field(default_factory=ReportIndex)

    def suggest(self, ledger: Ledger, node_id: int, slot: int,
                batch: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """A uniform draw (the simulated objective has no shape class: ``batch`` is
        not used)."""
        rng = sampler_rng(self.seed, slot)
        return self.space.decode(rng.random(len(self.space)))

    def should_report(self, step: int) -> bool:
        return self.pruner.reports_at(step)

    def should_prune(self, ledger: Ledger, trial: TrialView, step: int, value: float) -> bool:
        return self.pruner.decide(trial.id, step, value, self.index.sync(ledger))


def make_plan(entry: StudyEntry) -> SimPlan:
    """The plan factory handed to ``SearchCore``: everything comes from the STUDY entry."""
    spec = entry.spec
    study = spec["study"]
    opts = {k: v for k, v in spec["pruner"].items() if k != "name"}
    pruner = get_pruner(spec["pruner"]["name"], opts, "minimize",
                        spec["objective"].get("max_epochs"))
    return SimPlan(entry.fingerprint, Space.from_dict(spec["space"]), int(study["seed"]), pruner,
                   study.get("n_trials"), study.get("timeout"))
