"""What the status view shows: one immutable ``NodeSnapshot`` of a node.

The runtime (or ``status``, or a test) builds a snapshot; the renderers in
``render.py`` turn it into rich renderables and ``to_status_json`` into the
``p2phpo status --json`` document. Nothing here touches a socket or a clock:
the moment of the snapshot arrives as ``wall``.

``snapshot_from_ledger`` fills the parts a ledger alone can answer (study,
budget, best trial, running and recent trials, entries and vv hash); the
runtime passes the rest (members, traffic, dropped datagrams, events) as
keyword arguments.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phpo.core.best import best_key
from p2phpo.core.best import best_trial as core_best_trial
from p2phpo.core.entries import TrialId, trial_id_str
from p2phpo.core.ledger import Ledger, TrialState, TrialView


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/p2phpo``, or ``~/.local/state/p2phpo``."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base.strip() else Path.home() / ".local" / "state"
    return root / "p2phpo"


def node_hex(node_id: int | None) -> str:
    return "-" if node_id is None else f"{node_id:016x}"


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One member as this node sees it; ``state`` is ALIVE/SUSPECT/DEAD/LEFT."""

    id: int
    addr: str
    state: str
    incarnation: int = 0
    last_ack_age: float | None = None  # seconds since its last ack; None: never acked
    trials_run: int = 0
    is_self: bool = False


@dataclass(frozen=True, slots=True)
class RunningTrial:
    trial: str  # "<origin hex>:<seq>"
    node: int
    slot: int
    step: int | None = None  # last reported step (epoch)
    max_epochs: int | None = None
    last_value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None


@dataclass(frozen=True, slots=True)
class FinishedTrial:
    trial: str
    node: int
    slot: int
    state: str  # COMPLETE / PRUNED / FAILED / ABANDONED / SUPERSEDED
    value: float | None = None
    duration: float | None = None
    step: int | None = None  # last reported step (where a pruned trial stopped)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def pruned(self) -> bool:
        return self.state == TrialState.PRUNED.value


@dataclass(frozen=True, slots=True)
class LedgerHealth:
    entries: int = 0
    vv_hash: int = 0
    peers_agree: int = 0  # peers whose last vv digest equals ours
    peers_total: int = 0
    pending: int = 0  # out-of-order entries waiting for a gap
    bytes_in_per_s: float = 0.0
    bytes_out_per_s: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count


@dataclass(frozen=True, slots=True)
class Event:
    """Something a user may want to know: joined, suspected, dead, refuted, left,
    reclaimed, started, finished, done, ... ``node`` and ``trial`` are optional."""

    wall: float
    kind: str
    node: int | None = None
    trial: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    study: str = ""
    direction: str = "minimize"
    metric: str = "value"
    node_id: int | None = None
    node_addr: str = ""
    n_trials: int | None = None  # None: open-ended (timeout or target only)
    claimed: int = 0
    finished: int = 0
    trial_counts: dict[str, int] = field(default_factory=dict)  # state -> count
    best_trial: str | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    dataset_source: str | None = None
    keyed: bool = False  # traffic sealed with a cluster key
    insecure: bool = False  # bound beyond loopback without a key (--insecure)
    members: tuple[MemberRow, ...] = ()
    running: tuple[RunningTrial, ...] = ()
    recent: tuple[FinishedTrial, ...] = ()  # newest first
    ledger: LedgerHealth = field(default_factory=LedgerHealth)
    events: tuple[Event, ...] = ()  # oldest first
    wall: float = 0.0  # when the snapshot was taken
    done: bool = False
    objective: str = ""  # the study's objective name ("mnist-mlp", "pkg.mod:fn")
    state_dir: str = ""  # this node's state dir (for the reproduce command)
    network: str | None = None  # join diagnostics: what the node waits for, or its seed
    network_ok: bool = True  # False while the node waits to join or is alone
    remote: tuple[str, dict[str, Any]] | None = None  # (seed, its own health): status --seed


# -- from the membership core -------------------------------------------------------


def fmt_addr(addr: Any) -> str:
    """``host:port``, ``[v6addr]:port``; a string passes through."""
    if isinstance(addr, str):
        return addr
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def member_rows(
    infos: Iterable[Any],
    *,
    now: float,
    self_id: int | None = None,
    trials_run: Mapping[int, int] | None = None,
) -> tuple[MemberRow, ...]:
    """Rows from ``Membership.members()`` (node, addr, state, incarnation, last_ack).

    ``now`` is the same monotonic clock the membership core was given;
    ``trials_run`` is ``TrialSummary.per_node`` or ``trials_per_node(ledger)``.
    """
    runs = trials_run or {}
    rows = []
    for m in infos:
        state = getattr(m.state, "name", str(m.state))
        age = None if m.last_ack is None else max(0.0, now - m.last_ack)
        rows.append(MemberRow(id=m.node, addr=fmt_addr(m.addr), state=state,
                              incarnation=m.incarnation, last_ack_age=age,
                              trials_run=runs.get(m.node, 0), is_self=m.node == self_id))
    return tuple(rows)


def trials_per_node(ledger: Ledger) -> Counter[int]:
    """How many trials each node has claimed (running, finished or abandoned)."""
    return Counter(tid[0] for tid in ledger.trials())


# -- from a ledger ---------------------------------------------------------------


def _section(spec: dict[str, Any], name: str) -> dict[str, Any]:
    sub = spec.get(name)
    return sub if isinstance(sub, dict) else {}


def study_fields(ledger: Ledger) -> dict[str, Any]:
    """Name, direction, metric and n_trials from the STUDY entry in force."""
    entry = ledger.study
    if entry is None:
        return {}
    spec = entry.spec
    study = _section(spec, "study") or spec  # the TOML layout, or a flat spec
    out: dict[str, Any] = {}
    for key, name in (("study", "name"), ("direction", "direction"), ("metric", "metric")):
        if isinstance(study.get(name), str):
            out[key] = study[name]
    n = study.get("n_trials")
    if type(n) is int and n > 0:
        out["n_trials"] = n
    objective = _section(spec, "objective").get("name")
    if isinstance(objective, str):
        out["objective"] = objective
    return out


def max_epochs_of(ledger: Ledger) -> int | None:
    entry = ledger.study
    if entry is None:
        return None
    value = _section(entry.spec, "objective").get("max_epochs")
    if value is None:
        value = _section(entry.spec, "pruner").get("max_resource")
    return value if type(value) is int and value > 0 else None


def best_trial(trials: Iterable[TrialView], direction: str) -> TrialView | None:
    """The best COMPLETE trial (``p2phpo.core.best``: ties go to the lower trial id)."""
    return core_best_trial(trials, direction)


def budget_counts(trials: list[TrialView]) -> tuple[int, int]:
    """(claimed, finished): counted trials, plus slots still running without one."""
    finished = [v for v in trials if v.state.counted]
    done_slots = {v.slot for v in finished}
    running_slots = {v.slot for v in trials if v.state is TrialState.RUNNING} - done_slots
    return len(finished) + len(running_slots), len(finished)


def _running(view: TrialView, max_epochs: int | None) -> RunningTrial:
    last = view.last_report
    return RunningTrial(
        trial=trial_id_str(view.id), node=view.origin, slot=view.slot,
        step=last[0] if last else None, max_epochs=max_epochs,
        last_value=last[1] if last else None, params=dict(view.params),
        retry_of=trial_id_str(view.retry_of) if view.retry_of else None,
    )


def _finished(view: TrialView) -> FinishedTrial:
    last = view.last_report
    return FinishedTrial(
        trial=trial_id_str(view.id), node=view.origin, slot=view.slot,
        state=view.state.value, value=view.value, duration=view.duration,
        step=last[0] if last else None, params=dict(view.params), error=view.error,
    )


def trial_fields(ledger: Ledger, direction: str, *, recent: int = 8) -> dict[str, Any]:
    """Budget, counts, best, running and the ``recent`` newest finished trials."""
    trials = list(ledger.trials().values())
    claimed, finished = budget_counts(trials)
    counts = {s.value: 0 for s in TrialState}
    for view in trials:
        counts[view.state.value] += 1
    best = best_trial(trials, direction)
    epochs = max_epochs_of(ledger)
    running = sorted((v for v in trials if v.state is TrialState.RUNNING),
                     key=lambda v: (v.slot, v.id))
    done = sorted(
        (v for v in trials if v.state.finished),
        key=lambda v: (v.finished_wall or 0.0, v.id), reverse=True,
    )
    return {
        "claimed": claimed, "finished": finished, "trial_counts": counts,
        "best_trial": trial_id_str(best.id) if best else None,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "running": tuple(_running(v, epochs) for v in running),
        "recent": tuple(_finished(v) for v in done[:recent]),
    }


class TrialSummary:
    """``trial_fields`` kept up to date from the ledger's ``changes`` log.

    A node refreshes its view twice a second; rescanning every trial costs
    ~15 ms at 10,000 trials on the event loop, so this follows the ledger's
    change cursor instead and does work only for trials that changed.
    ``fields(direction)`` equals ``trial_fields(ledger, direction)``.
    """

    def __init__(self, ledger: Ledger, *, recent: int = 8) -> None:
        self.ledger = ledger
        self.recent = recent
        self._cursor = 0
        self._state: dict[TrialId, TrialState] = {}
        self.counts = {s.value: 0 for s in TrialState}
        self.finished = 0
        self._counted_in: Counter[int] = Counter()  # slot -> counted trials
        self._running_in: Counter[int] = Counter()  # slot -> running trials
        self._open_slots: set[int] = set()  # running, and no counted trial yet
        self._running: set[TrialId] = set()
        self._done: list[tuple[float, TrialId]] = []  # sorted (finished wall, id)
        self._done_key: dict[TrialId, tuple[float, TrialId]] = {}
        self._best: TrialId | None = None
        self._best_dir: str | None = None  # direction _best was computed for
        self.per_node: Counter[int] = Counter()  # node -> trials it claimed

    @property
    def claimed(self) -> int:
        return self.finished + len(self._open_slots)

    def update(self) -> None:
        changes = self.ledger.changes
        for tid in dict.fromkeys(changes[self._cursor:]):  # each changed trial once
            self._apply(tid)
        self._cursor = len(changes)

    def _apply(self, tid: TrialId) -> None:
        view = self.ledger.trial(tid)
        if view is None:
            return
        old, new = self._state.get(tid), view.state
        if old is None:
            self.per_node[view.origin] += 1
        else:
            self._count(view.slot, tid, old, -1)
        self._count(view.slot, tid, new, +1)
        self._state[tid] = new
        self._move_done(view)
        self._consider_best(view)

    def _count(self, slot: int, tid: TrialId, state: TrialState, d: int) -> None:
        self.counts[state.value] += d
        if state.counted:
            self._counted_in[slot] += d
            self.finished += d
        if state is TrialState.RUNNING:
            self._running_in[slot] += d
            (self._running.add if d > 0 else self._running.discard)(tid)
        if self._running_in[slot] > 0 and self._counted_in[slot] == 0:
            self._open_slots.add(slot)
        else:
            self._open_slots.discard(slot)

    def _move_done(self, view: TrialView) -> None:
        old = self._done_key.pop(view.id, None)
        if old is not None:
            del self._done[bisect.bisect_left(self._done, old)]
        if view.state.finished:
            key = (view.finished_wall or 0.0, view.id)
            bisect.insort(self._done, key)
            self._done_key[view.id] = key

    def _consider_best(self, view: TrialView) -> None:
        if self._best_dir is None:
            return
        if view.id == self._best:
            self._best_dir = None  # the best trial itself changed: rescan once
            return
        key = best_key(view, self._best_dir)
        if key is None:
            return
        best = self.ledger.trial(self._best) if self._best else None
        best_k = None if best is None else best_key(best, self._best_dir)
        if best_k is None or key < best_k:
            self._best = view.id

    def best(self, direction: str) -> TrialView | None:
        if self._best_dir != direction:
            found = best_trial(list(self.ledger.trials().values()), direction)
            self._best, self._best_dir = (found.id if found else None), direction
        return self.ledger.trial(self._best) if self._best else None

    def fields(self, direction: str) -> dict[str, Any]:
        self.update()
        best = self.best(direction)
        epochs = max_epochs_of(self.ledger)
        running = sorted((v for v in map(self.ledger.trial, self._running) if v is not None),
                         key=lambda v: (v.slot, v.id))
        recent = [self.ledger.trial(tid) for _, tid in reversed(self._done[-self.recent:])]
        return {
            "claimed": self.claimed, "finished": self.finished, "trial_counts": dict(self.counts),
            "best_trial": trial_id_str(best.id) if best else None,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else {},
            "running": tuple(_running(v, epochs) for v in running),
            "recent": tuple(_finished(v) for v in recent if v is not None),
        }


def snapshot_from_ledger(
    ledger: Ledger,
    *,
    summary: TrialSummary | None = None,
    recent: int = 8,
    health: dict[str, Any] | None = None,
    **fields: Any,
) -> NodeSnapshot:
    """A snapshot whose study, trial and ledger parts come from ``ledger``.

    Pass the same ``summary`` (a ``TrialSummary`` of this ledger) on every
    refresh to avoid rescanning all trials (``recent`` is then the summary's). ``health`` adds to the
    ledger-health part (peers_agree, bytes_in_per_s, dropped, ...); every
    other keyword (members, events, node_id, wall, ...) is passed to
    ``NodeSnapshot`` and wins over what the ledger says.
    """
    base: dict[str, Any] = study_fields(ledger)
    direction = fields.get("direction", base.get("direction", "minimize"))
    if summary is None:
        base.update(trial_fields(ledger, direction, recent=recent))
    else:
        base.update(summary.fields(direction))
    base["ledger"] = LedgerHealth(
        entries=len(ledger), vv_hash=ledger.vv_hash(), pending=ledger.pending_count(),
        **(health or {}),
    )
    n_trials = fields.get("n_trials", base.get("n_trials"))
    if n_trials is not None and "done" not in fields:
        base["done"] = base["finished"] >= n_trials and not base["running"]
    base.update(fields)
    return NodeSnapshot(**base)


# -- status --json ---------------------------------------------------------------


def to_status_json(snap: NodeSnapshot) -> dict[str, Any]:
    """The ``p2phpo status --json`` document (every field: docs/formats.md).

    For ``status --seed X`` (an observer), ``dropped`` is X's own count and
    ``health`` is X's own health as X reported it (``"of"`` names X).
    """
    return {
        "study": snap.study,
        "node": node_hex(snap.node_id) if snap.node_id is not None else None,
        "members": [
            {"id": node_hex(m.id), "addr": m.addr, "state": m.state, "incarnation": m.incarnation}
            for m in snap.members
        ],
        "trials": dict(snap.trial_counts),
        "budget": {"n_trials": snap.n_trials, "claimed": snap.claimed, "finished": snap.finished},
        "best": {"trial": snap.best_trial, "value": snap.best_value,
                 "params": dict(snap.best_params)},
        "ledger": {"entries": snap.ledger.entries, "vv_hash": f"{snap.ledger.vv_hash:016x}"},
        "dropped": dict(snap.remote[1].get("dropped", {}) if snap.remote else snap.ledger.dropped),
        **({"health": {"of": snap.remote[0], **snap.remote[1]}} if snap.remote else {}),
    }
