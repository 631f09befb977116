"""The simulator, the asyncio node and hp.optimize make the same driver calls.

One node runs a three-trial study of ``examples.custom_objective`` three times:
under the asyncio shell (``p2phpo/runtime/node.py``: real sockets, the real
worker subprocess, a real state dir), under the simulator's shell
(``simulations/node.py``: virtual network and clock, the same objective's
reports replayed as simulated trial steps) and under ``hp.optimize``'s
in-process shell (``p2phpo/inprocess.py``: the objective called in this
process). A recording subclass of
:class:`NodeDriver` logs every call that carries a decision input (join,
worker ready, trial report and its verdict, trial end, persist confirmed,
push-pull end, leave) and every action the driver hands back. Gossip
plumbing of a lone node (timer expiries: real vs virtual time) and clock
values are left out;
node ids are replaced by the trial's seq. Both logs must be equal, call for
call: the shells add nothing and lose nothing on the way to the driver.
"""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Any

import pytest

import p2phpo.inprocess as inprocess
import p2phpo.runtime.node as runtime_node
import simulations.node as sim_node
from p2phpo.commands.node_options import node_options
from p2phpo.core.driver import MayExit, NodeDriver, Note, Persist, StudyFound
from p2phpo.core.search import StartTrial, StopTrial, StudyDone
from p2phpo.runtime.node import Node
from p2phpo.runtime.udp import run as run_loop
from p2phpo.study import StudySpec
from p2phpo.study import make_plan as real_make_plan
from p2phpo.train.worker import run_inprocess
from simulations.objective import SimObjective, TrialPlan
from simulations.sim import SimConfig, Simulation

STUDY = """
[study]
name = "one-driver"
direction = "minimize"
seed = 3
n_trials = 3

[sampler]
name = "random"

[pruner]
name = "none"

[objective]
name = "examples.custom_objective:objective"
max_epochs = 3

[space]
x = { type = "float", low = -5.0, high = 10.0 }
y = { type = "float", low = 0.0, high = 15.0 }
"""

CALLS = ("start", "handle_worker_ready", "handle_trial_report", "handle_trial_finished",
         "handle_setup_failed", "handle_pushpull_done", "handle_persisted", "handle_disk_failed",
         "handle_leave")


def _tid(trial: Any) -> Any:
    return trial[1] if isinstance(trial, tuple) and len(trial) == 2 else trial


def _action(a: Any) -> Any:
    if isinstance(a, Persist):
        return ("persist", a.own, [type(e).__name__ for e in a.entries])
    if isinstance(a, StartTrial):
        return ("start", _tid(a.trial), a.slot, sorted(a.params.items()), _tid(a.retry_of))
    if isinstance(a, StopTrial):
        return ("stop", _tid(a.trial), a.verdict.name, a.reason)
    if isinstance(a, StudyDone):
        return ("done", a.reason)
    if isinstance(a, Note):
        return ("note", a.kind, _tid(a.trial), a.detail)
    if isinstance(a, StudyFound | MayExit):
        return (type(a).__name__,)
    return None  # membership events and incarnations: a lone node has none worth comparing


def recording_driver(log: list[Any]) -> type[NodeDriver]:
    class Recording(NodeDriver):
        def take_actions(self) -> list[Any]:
            out = super().take_actions()
            log.extend(x for x in map(_action, out) if x is not None)
            return out

    def wrap(name: str) -> Any:
        method = getattr(NodeDriver, name)

        def call(self: NodeDriver, *args: Any, **kwargs: Any) -> Any:
            if name == "handle_worker_ready":
                shown: list[Any] = [args[2][1]]  # the study fingerprint
            elif name in ("handle_trial_report", "handle_trial_finished", "handle_setup_failed"):
                outcome = args[1] if name == "handle_trial_finished" else None
                shown = [_tid(args[0]), *(args[1:3] if name == "handle_trial_report" else []),
                         None if outcome is None else (outcome.status.name, outcome.value)]
            else:
                shown = []
            log.append((name, *shown))
            out = method(self, *args, **kwargs)
            if out is not None:
                log.append(("verdict", out.name))
            return out

        return call

    for name in CALLS:
        setattr(Recording, name, wrap(name))
    return Recording


class ReplayObjective(SimObjective):
    """The simulated objective whose steps report what the real objective reports."""

    def plan(self, params: dict[str, Any], rng: Any, speed: float) -> TrialPlan:
        reports: list[float] = []

        def on_report(step: int, value: float) -> Any:
            from p2phpo.core.verdict import Verdict
            reports.append(value)
            return Verdict.CONTINUE

        out = run_inprocess("examples.custom_objective:objective", params,
                            options={"max_epochs": 3}, on_report=on_report)
        return TrialPlan(tuple(float(k + 1) for k in range(len(reports))), tuple(reports),
                         out.value, False)


def _simulated(study: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    log: list[Any] = []
    monkeypatch.setattr(sim_node, "NodeDriver", recording_driver(log))
    monkeypatch.setattr(sim_node, "make_plan", real_make_plan)
    spec = StudySpec.load(study)
    sim = Simulation(SimConfig(nodes=1, seed=0, profile="local"))
    sim.setup = sim_node.NodeSetup(0, sim.setup.profile, ReplayObjective(), sim.setup.search)
    sim.study = (spec.to_dict(), spec.fingerprint(""))
    sim.start()
    sim.run_until(60.0)
    (node,) = sim.live()
    assert node.done == "budget of 3 trials used"
    node.leave(sim.heap.now)
    return log


def _asyncio(study: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    log: list[Any] = []
    monkeypatch.setattr(runtime_node, "NodeDriver", recording_driver(log))
    node = Node(node_options(study=study, bind="127.0.0.1:0", state_dir=tmp / "state",
                             profile="local", grace=0.0))

    async def main() -> int:
        return await asyncio.wait_for(node.run(), 120)

    assert run_loop(main()) == 0
    assert node.done == "budget of 3 trials used"
    return log


def _in_process(study: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    log: list[Any] = []
    monkeypatch.setattr(inprocess, "NodeDriver", recording_driver(log))
    from examples.custom_objective import objective

    spec = StudySpec.load(study)
    ledger, reason = inprocess.drive_local(spec, objective, node_id=0x5EED)
    assert reason == "budget of 3 trials used"
    return log


def test_every_shell_makes_the_same_driver_calls(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # `examples` importable
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    simulated = _simulated(study, monkeypatch)
    real = _asyncio(study, tmp_path, monkeypatch)
    starts = [x for x in simulated if x[0] == "start" and len(x) > 1]
    assert [s[2] for s in starts] == [0, 1, 2]  # three trials, one per slot
    assert sum(1 for x in simulated if x[0] == "handle_trial_report") == 9
    diff = "\n".join(difflib.unified_diff([repr(x) for x in simulated], [repr(x) for x in real],
                                           "simulator shell", "asyncio shell", lineterm=""))
    assert real == simulated, diff
    # hp.optimize: one process and nobody to wait for, so no linger (MayExit) and no
    # repair gate; every other call and action is the same.
    local = _in_process(study, monkeypatch)
    expected = [x for x in simulated if x != ("MayExit",)]
    diff = "\n".join(difflib.unified_diff([repr(x) for x in expected], [repr(x) for x in local],
                                           "simulator shell", "in-process shell", lineterm=""))
    assert local == expected, diff
