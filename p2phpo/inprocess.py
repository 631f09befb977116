"""``hp.optimize``: a study run in this process, on the node driver users run.

:class:`LocalNode` is a shell around :class:`p2phpo.core.driver.NodeDriver`,
as ``runtime/node.py`` is for ``p2phpo node`` and ``simulations/node.py`` for
the simulator. It owns only what the driver does not decide: the clock, the
objective (called here, in the caller's thread, where ``p2phpo node`` has a
worker process) and the callbacks. It has no peers and no state dir: its
gossip core is alone (there is no one to send to), and its own entries are
durable as soon as they are in the in-memory ledger. Claims, pruning
decisions, the budget and the end of the study are the driver's, so
``hp.optimize`` runs the same search as a cluster does.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from p2phpo.core.best import best_trial
from p2phpo.core.driver import Fatal, NodeDriver, Persist
from p2phpo.core.entries import Status, TrialId, trial_id_str
from p2phpo.core.gossip import GossipConfig, GossipCore
from p2phpo.core.hrw import hrw
from p2phpo.core.ledger import Ledger
from p2phpo.core.search import Outcome, SearchConfig, StartTrial, StudyDone
from p2phpo.core.verdict import Verdict
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash
from p2phpo.space import Space, Value
from p2phpo.study import Plan, StudyError, StudySpec
from p2phpo.trial import Trial, TrialOutcome, TrialStatus, run_objective


@dataclass(frozen=True, slots=True)
class OptimizeResult:
    """What :func:`optimize` returns. ``best_*`` are None when no trial completed.

    ``reason`` says why the search ended: the study's own reason (budget,
    timeout, target), ``"stopped by a callback"`` or ``"interrupted"``
    (Ctrl-C; the trial that was running is recorded as ABANDONED).
    """

    best_params: dict[str, Value] | None
    best_value: float | None
    best_trial: Any  # ledger TrialView or None
    trials: list[Any]  # ledger TrialViews in slot order
    ledger: Any = None
    reason: str = ""


class Study:
    """What an ``hp.optimize`` callback sees: the study so far, and ``stop()``.

    A callback is ``callback(study, trial)``, called after each trial
    finishes (COMPLETE, PRUNED or FAILED) with that trial's ledger view,
    as Optuna's ``callbacks=`` are. ``study.stop()`` ends the search after
    the callbacks return; ``hp.optimize`` then returns the result so far.
    """

    def __init__(self, spec: StudySpec, ledger: Ledger) -> None:
        self.spec = spec
        self.direction = spec.direction
        self._ledger = ledger
        self.stopped = False

    def stop(self) -> None:
        """End the search once the running callbacks return."""
        self.stopped = True

    @property
    def trials(self) -> list[Any]:
        return sorted(self._ledger.trials().values(), key=lambda v: (v.slot, v.id))

    @property
    def best_trial(self) -> Any:
        return best_trial(self._ledger.trials().values(), self.direction)

    @property
    def best_value(self) -> float | None:
        best = self.best_trial
        return None if best is None else best.value

    @property
    def best_params(self) -> dict[str, Value] | None:
        best = self.best_trial
        return None if best is None else dict(best.params)


Callback = Callable[[Study, Any], None]


def optimize(objective: Callable[..., float] | str, space: Space, n_trials: int | None = 100,
             sampler: str = "tpe", pruner: str | None = None, direction: str = "minimize",
             seed: int = 0, timeout: float | str | None = None,
             sampler_options: Mapping[str, Any] | None = None,
             pruner_options: Mapping[str, Any] | None = None,
             target: float | None = None, callbacks: Sequence[Callback] = (),
             objective_options: Mapping[str, Any] | None = None, batch: int = 1,
             batch_keys: Sequence[str] | None = None) -> OptimizeResult:
    """Run ``objective(trial) -> value`` on up to ``n_trials`` suggested parameter sets.

    In-process and single-node, on the same node driver (ledger, search core,
    sampler and pruner) as ``p2phpo node``. ``objective`` is a function or a built-in
    name (``"mnist-mlp"``); ``objective_options`` become ``trial.options``
    (for the built-in: ``max_epochs``, ``dataset``, ``data_dir``, ...; its
    ``max_epochs`` is also the pruners' ``max_resource``). As in Optuna,
    ``trial.report(value, step)`` records an intermediate value and
    ``trial.should_prune()`` tells the objective to ``raise hp.TrialPruned()``
    (the trial is PRUNED with its last report); an objective that raises
    anything else is FAILED with the error text and the search goes on.
    ``callbacks`` run after each finished trial and may call ``study.stop()``;
    ``timeout`` (seconds or "30m") stops starting new trials; Ctrl-C and
    ``stop()`` both return the result so far. ``batch`` K claims K trials at a
    time, as ``p2phpo node --batch K``: the built-in objective trains them packed
    together, a function runs them one after another; the members of a batch
    share the values of ``batch_keys`` (default: the built-in's batch size, depth,
    activation and seed, none for a function), chosen by the batch's first trial.
    """
    if not isinstance(space, Space):
        raise TypeError(f"space must be an hp.Space, got {type(space).__name__}")
    fn, name = _objective(objective)
    study = {"name": name, "direction": direction, "seed": seed, "n_trials": n_trials,
             "timeout": timeout, "target": target, "batch": batch if batch != 1 else None}
    spec = StudySpec.from_dict({
        "study": {k: v for k, v in study.items() if v is not None},
        "sampler": {"name": sampler, **dict(sampler_options or {})},
        "pruner": {"name": pruner or "none", **dict(pruner_options or {})},
        "objective": {"name": name if isinstance(objective, str) else "python",
                      **dict(objective_options or {})},
        "space": space.to_dict()})
    spec = dataclasses.replace(spec, space=space)
    node_id = (hrw("optimize", seed) | 1) & ((1 << 63) - 1)
    keys = None if batch_keys is None else tuple(batch_keys)
    ledger, reason = drive_local(spec, fn, node_id=node_id, callbacks=callbacks, batch_keys=keys)
    return _result(spec, ledger, reason)


def _objective(objective: Callable[..., float] | str) -> tuple[Callable[..., float], str]:
    if isinstance(objective, str):
        from p2phpo.train.objectives import ObjectiveError, resolve

        try:
            return resolve(objective), objective
        except ObjectiveError as e:
            raise StudyError(str(e)) from None
    if not callable(objective):
        raise TypeError(f"objective must be a function or a built-in name, got {objective!r}")
    return objective, getattr(objective, "__name__", "objective") or "objective"


def run_local(spec: StudySpec, objective: Callable[..., float], node_id: int,
              clock: Callable[[], float] = time.monotonic,
              wall: Callable[[], float] = time.time) -> Ledger:
    """:func:`drive_local` without callbacks; returns the ledger."""
    return drive_local(spec, objective, node_id, clock, wall)[0]


def drive_local(spec: StudySpec, objective: Callable[..., float], node_id: int,
                clock: Callable[[], float] = time.monotonic,
                wall: Callable[[], float] = time.time,
                callbacks: Sequence[Callback] = (),
                batch_keys: tuple[str, ...] | None = None) -> tuple[Ledger, str]:
    """Run ``spec`` on one :class:`LocalNode` until the study is done.

    Returns the ledger and why the search ended.
    """
    node = LocalNode(spec, objective, node_id, clock, wall, callbacks, batch_keys)
    return node.ledger, node.run()


class LocalNode:
    """One node in this process: the driver, the objective, the callbacks (module doc)."""

    def __init__(self, spec: StudySpec, objective: Callable[..., float], node_id: int,
                 clock: Callable[[], float], wall: Callable[[], float],
                 callbacks: Sequence[Callback] = (),
                 batch_keys: tuple[str, ...] | None = None) -> None:
        self.spec, self.objective, self.callbacks = spec, objective, callbacks
        self.batch_keys = batch_keys
        self.clock, self.wall = clock, wall
        self.ledger = Ledger()
        self.driver = NodeDriver(node_id, self.ledger, _lone_gossip(node_id, self.ledger))
        self.study = Study(spec, self.ledger)
        self.reason = "no more trials to run"
        self.ended = False

    def run(self) -> str:
        """Search until the study is done, a callback stops it or Ctrl-C; why it ended."""
        d, spec = self.driver, self.spec
        try:
            d.start([], self.clock(), self.wall())
            config = SearchConfig(max_retries=spec.max_retries, capacity=spec.batch or 1)
            d.handle_worker_ready(config, lambda entry: Plan(spec, entry.fingerprint, self.batch_keys),
                                  (spec.to_dict(), spec.fingerprint()), self.clock(), self.wall())
            idle = 0
            while not self.ended and idle < 3:  # the driver may only have written entries
                idle = 0 if self._act() else idle + 1
                if not self.ended:
                    d.handle_timer(self.clock(), self.wall())
        except KeyboardInterrupt:
            self.reason, self.ended = "interrupted", True
        self.ended = True
        d.handle_leave(self.clock(), self.wall())  # Ctrl-C: the running trial is ABANDONED
        self._act()
        return self.reason

    def _act(self) -> bool:
        """Carry out the driver's actions until it has none; whether a trial ran.
        A batch is written (and confirmed) before the trial it starts runs."""
        ran = False
        while actions := self.driver.take_actions():
            starts = [a for a in actions if type(a) is StartTrial]
            for a in actions:
                self._do(a)
            hook = getattr(self.objective, "batch", None)
            if len(starts) > 1 and hook is not None and not self.ended:
                self._run_batch(starts, hook)
                ran = True
                continue
            for start in starts:
                if not self.ended:
                    self._run(start)
                    ran = True
        return ran

    def _do(self, a: Any) -> None:
        t = type(a)
        if t is Persist:
            if a.own:  # in memory: durable already
                self.driver.handle_persisted(self.clock(), self.wall())
        elif t is StudyDone or t is Fatal:
            if not self.ended:  # a callback's stop() came first
                self.reason = a.reason if t is StudyDone else a.message
            self.ended = True
        # StopTrial: the objective hears STOP as its next report's verdict.

    def _report(self, trial: TrialId, step: int, value: float) -> Verdict:
        verdict = self.driver.handle_trial_report(trial, step, value, self.clock(), self.wall())
        self._act()  # the report is written before the trial goes on
        return verdict

    def _trial(self, start: StartTrial) -> Trial:
        tid = start.trial
        return Trial(start.params, space=self.spec.space, options=self.spec.objective_options,
                     reporter=lambda step, value: self._report(tid, step, value),
                     number=start.slot, trial_id=trial_id_str(tid))

    def _run(self, start: StartTrial) -> None:
        """Run the objective on ``start``, record its outcome, then the callbacks."""
        self._record(start.trial, run_objective(self.objective, self._trial(start)))

    def _run_batch(self, starts: list[StartTrial], hook: Callable[..., Any]) -> None:
        """Train a batch with the objective's ``batch`` hook (the built-in's packed
        training); each member's reports and verdicts are its own."""
        trials = [self._trial(s) for s in starts]
        try:
            outs = list(hook(trials))
        except Exception as exc:  # a broken hook fails its trials, not the search
            outs = [TrialOutcome(TrialStatus.FAILED, None, f"{type(exc).__name__}: {exc}", 0.0,
                                 t.last_step) for t in trials]
        for start, out in zip(starts, outs, strict=True):
            if not self.ended:
                self._record(start.trial, out)

    def _record(self, tid: TrialId, out: TrialOutcome) -> None:
        """Hand ``tid``'s outcome to the driver, then run the callbacks."""
        d = self.driver
        outcome = Outcome(Status[out.status.value], value=out.value, error=out.error,
                          duration=out.duration)
        # With callbacks, they see the recorded trial before anything new is claimed.
        held = bool(self.callbacks)
        d.handle_trial_finished(tid, outcome, self.clock(), self.wall(), worker_free=not held)
        for callback in self.callbacks:
            callback(self.study, self.ledger.trial(tid))
        if self.study.stopped:
            self.reason, self.ended = "stopped by a callback", True
        elif held:
            d.handle_worker_free(self.clock(), self.wall())


def _lone_gossip(node_id: int, ledger: Ledger) -> GossipCore:
    """A gossip core with no seeds and no peers: it holds the node's advertised
    metadata and its entries for nobody (nothing is ever sent)."""
    ring = Keyring([secrets.token_bytes(32)], cipher=Cipher.NULL)
    label = label_hash("p2phpo-optimize")
    sealer = Sealer(ring, node_id, 0, 0, label)
    opener = Opener(ring, [label])
    return GossipCore(node_id, GossipConfig(addr=("127.0.0.1", 0)), random.Random(node_id),
                      ledger, sealer, opener, meta={"ready": False})


def _result(spec: StudySpec, ledger: Any, reason: str = "") -> OptimizeResult:
    views = sorted(ledger.trials().values(), key=lambda v: (v.slot, v.id))
    best = best_trial(views, spec.direction)
    return OptimizeResult(None if best is None else dict(best.params),
                          None if best is None else best.value, best, views, ledger, reason)
