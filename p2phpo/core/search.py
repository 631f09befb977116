"""One node's search logic: budget slots, claims, conflicts, orphans, pruning.

Pure and sans-IO. The core reads the node's ledger replica and membership
view and decides; it never trains. Callers (the asyncio node, the
simulator, ``hp.optimize``) run what it commands and hand back reports and
outcomes:

    cmds = core.step(now, wall)          # StartTrial / StopTrial / StudyDone
    verdict = core.report(trial, step, value, wall)
    core.finish(trial, Outcome(...), wall)
    new = core.take_new_entries()        # persist (fsync), then gossip

Budget. The cluster runs ``n_trials`` counted trials, one per *slot*
0..n-1 (open-ended without ``n_trials``). A slot is DONE when a trial on it
has a counted RESULT, BUSY while one runs, REOPENED when all its trials were
abandoned or superseded, FREE when never claimed. Which free slot an idle
node claims is ``core/budget.py``'s choice: first its own share of the
budget (rights derived from the membership), then slots stolen from other
members' shares, and after ``claim_grace`` seconds without work any slot, so
no view of the membership can stall the search. When two running claims name
one slot, the lowest
``hrw(slot, origin)`` wins; the loser stops and writes RESULT SUPERSEDED.

Orphans. A RUNNING trial whose owner is DEAD or LEFT is abandoned (ABANDON
DEAD/LEFT) by the rendezvous winner among live ready members, once an
anti-entropy exchange has completed after the owner's death (so its last
RESULT had a chance to arrive). An owner that is no member at all (reaped
after its death, or never seen by a node that restarted after it died) counts
as DEAD once it stayed unknown for ``reclaim_fallback`` seconds and an
anti-entropy exchange completed since (a push-pull hands over the peer's
member table), or for twice that alone; each entry of its log that arrives
restarts the wait, as it may be alive and only not announced yet. Its slot reopens and is retried with the same
params (``retry_of``); after ``max_retries`` abandonments the trial is FAILED.
A RESULT beats ABANDON, and a running retry stops as soon as any counted
RESULT for its slot arrives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2phpo.core.best import best_key, best_trial
from p2phpo.core.budget import Pick, SlotPlanner
from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    Entry,
    Report,
    Result,
    Status,
    StudyEntry,
    TrialId,
    cap_error,
)
from p2phpo.core.hrw import hrw, hrw_order
from p2phpo.core.ledger import Ledger, TrialState, TrialView
from p2phpo.core.study_diff import difference, spec_diff  # noqa: F401 - spec_diff: re-exported
from p2phpo.core.verdict import Verdict

LIVE = ("ALIVE", "SUSPECT")
GONE = ("DEAD", "LEFT")


class Exhausted(Exception):
    """Raised by a plan's ``suggest`` when the space has nothing left (grid done)."""


class StudyPlan(Protocol):
    """What the search needs from a study: budget, sampler and pruner, all pure."""

    fingerprint: str
    direction: str  # "minimize" | "maximize"
    n_trials: int | None
    timeout: float | None  # seconds on each node's own clock from when it adopted the study
    target: float | None

    def suggest(self, ledger: Ledger, node_id: int, slot: int) -> dict[str, Any]: ...

    def should_report(self, step: int) -> bool: ...

    def should_prune(self, ledger: Ledger, trial: TrialView, step: int, value: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class SearchConfig:
    max_retries: int = 2  # abandonments of one slot before its trial is FAILED
    trial_timeout: float | None = None  # seconds; a trial running longer is FAILED
    claim_grace: float = 2.0  # seconds an unmatched idle node waits before claiming anyway
    reclaim_fallback: float = 30.0  # reclaim a gone owner's trials after this long even unsynced
    capacity: int = 1  # trials this node runs at once
    confirm_delay: float = 0.0  # seconds between a fallback CLAIM and its start (rivals meet first)
    settle: float = 0.0  # seconds the ready roster must be still before a node claims (join storms)
    steal_wait: float = 0.0  # seconds idle before taking a slot a busy thief would win
    gone_wait: float = 0.0  # seconds idle before stealing from a SUSPECT/DEAD/LEFT owner
    fresh: float = 1.0  # a thief seen starting a trial this recently does not compete for steals


    @classmethod
    def for_profile(cls, profile: Any, *, max_retries: int = 2,
                    trial_timeout: float | None = None) -> SearchConfig:
        """The settings a node derives from its gossip profile (``core/profiles.py``)."""
        return cls(max_retries=max_retries, trial_timeout=trial_timeout,
                   claim_grace=profile.probe_interval * 4,
                   reclaim_fallback=profile.probe_interval * 10,
                   settle=0.0, steal_wait=profile.probe_interval / 2,
                   gone_wait=profile.probe_interval * 2,
                   confirm_delay=profile.gossip_interval * 3)


@dataclass(frozen=True, slots=True)
class MemberView:
    state: str  # ALIVE | SUSPECT | DEAD | LEFT
    ready: bool = False  # advertises a loaded worker
    study: str | None = None  # fingerprint it runs


@dataclass(frozen=True, slots=True)
class StartTrial:
    trial: TrialId
    slot: int
    params: dict[str, Any]
    retry_of: TrialId | None = None


@dataclass(frozen=True, slots=True)
class StopTrial:
    trial: TrialId
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class StudyDone:
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    value: float | None = None
    error: str | None = None
    duration: float = 0.0


Command = StartTrial | StopTrial | StudyDone
PlanFactory = Callable[[StudyEntry], StudyPlan]


@dataclass(slots=True)
class _Slot:
    trials: list[TrialId] = field(default_factory=list)


class SearchCore:
    """The search logic of node ``node_id`` over ``ledger``."""

    def __init__(
        self,
        node_id: int,
        ledger: Ledger,
        config: SearchConfig,
        make_plan: PlanFactory,
        local_study: tuple[dict, str] | None = None,
    ) -> None:
        self.node_id = node_id
        self.ledger = ledger
        self.config = config
        self.make_plan = make_plan
        self.local_study = local_study  # (normalized spec, fingerprint) from --study
        self.plan: StudyPlan | None = None
        self.study: StudyEntry | None = None
        self.refused: str | None = None
        self.ready = False
        self.worker_busy = False  # the runner still winds down a stopped trial
        self.leaving = False
        self.done: str | None = None
        self.exhausted: str | None = None
        self.members: dict[int, MemberView] = {}
        self._alive: set[int] = set()  # ALIVE members (kept by set_members)
        self._own: dict[TrialId, float] = {}  # own running trial -> start (monotonic)
        self._pending: dict[TrialId, tuple[float, StartTrial]] = {}  # claimed, not yet started
        self._slots: dict[int, _Slot] = {}
        self._running: set[TrialId] = set()
        self._low = 0  # every slot below is DONE
        self._cursor = 0
        self._gone_since: dict[int, float] = {}
        self._unknown_since: dict[int, float] = {}  # owner of a running trial, no member
        self._unknown_seq: dict[int, int] = {}  # its log's length when the wait (re)started
        self._last_sync = -math.inf
        self._abandoned_by_me: set[TrialId] = set()
        self._unmatched_since: float | None = None
        self._roster: list[int] = []
        self._roster_since = -math.inf
        self._roster_key: tuple | None = None
        self._pick_kind = "home"
        self._now = -math.inf
        self._adopted_at = math.inf  # monotonic time this node adopted the study
        self._seen_at: dict[TrialId, float] = {}  # running trial -> when this node first saw it
        self._planner = SlotPlanner(None, self._is_open)
        self._new: list[Entry] = []
        self._best: tuple[float, TrialId] | None = None

    # -- inputs ----------------------------------------------------------
    def set_members(self, now: float, members: dict[int, MemberView]) -> None:
        for mid, view in members.items():
            if view.state in GONE:
                self._gone_since.setdefault(mid, now)
            else:
                self._gone_since.pop(mid, None)
        self.members = dict(members)
        self._alive = {mid for mid, m in members.items() if m.state == "ALIVE"}

    def synced_with(self, peer: int, now: float) -> None:
        """An anti-entropy exchange with ``peer`` completed at ``now``."""
        self._last_sync = now

    def recover(self, wall: float) -> None:
        """After a restart: abandon our own trials the ledger still shows RUNNING."""
        self._sync_index()
        for tid in sorted(self._running):
            if tid[0] == self.node_id:
                self._write(Abandon, wall, trial=tid, reason=AbandonReason.RESTARTED)
        self._sync_index()

    def leave(self, wall: float) -> None:
        """Graceful exit: abandon our running trials so others retry them now."""
        self.leaving = True
        for tid in sorted(self._own) + sorted(self._pending):
            self._write(Abandon, wall, trial=tid, reason=AbandonReason.LEFT)
        self._own.clear()
        self._pending.clear()

    # -- the decision step -------------------------------------------------
    def step(self, now: float, wall: float) -> list[Command]:
        self._now = now
        self._sync_index()
        if self.plan is None and not self._adopt(now, wall):
            return []
        cmds: list[Command] = self._police_own(now, wall)
        self._track_unknown(now)
        self._reclaim_orphans(now, wall)
        self._sync_index()
        if self._claims_open(now):
            start = self._maybe_claim(now, wall)
            if start is not None:
                cmds.append(start)
        finished = self._finished_reason(now)
        if finished and self.done is None:
            self.done = finished
            cmds.append(StudyDone(finished))
        return cmds

    def _adopt(self, now: float, wall: float) -> bool:
        entry = self.ledger.study
        if entry is None:
            if self.local_study is None:
                return False
            spec, fp = self.local_study
            self._write(StudyEntry, wall, spec=spec, fingerprint=fp)
            entry = self.ledger.study
        if self.local_study is not None and entry.fingerprint != self.local_study[1]:
            if self.refused is None:
                self.refused = self._refusal(entry)
            return False
        self.study = entry
        self.plan = self.make_plan(entry)
        self._adopted_at = now
        self._planner = SlotPlanner(self.plan.n_trials, self._is_open, self.config.steal_wait,
                                    self.config.gone_wait)
        for slot in self._slots:
            self._planner.mark(slot, self._is_open(slot))
        found = best_trial(self.ledger.trials().values(), self.plan.direction)
        self._best = None if found is None else best_key(found, self.plan.direction)
        return True

    def _refusal(self, entry: StudyEntry) -> str:
        """Why this node's ``--study`` cannot run beside the ledger's STUDY ``entry``."""
        fields = difference(self.local_study[0], entry.spec) if self.local_study else ""
        if entry.origin == self.node_id:
            return ("this node's --study differs from the study its state dir already runs "
                    f"(started by this node) in: {fields}; run it without --study to continue "
                    "that study, or give a fresh --state-dir for the new one")
        return "this node's study differs from the cluster's study in: " + fields

    # -- the slot index ----------------------------------------------------
    def _sync_index(self) -> None:
        changes = self.ledger.changes
        for tid in changes[self._cursor :]:
            view = self.ledger.trial(tid)
            if view is None:
                continue
            slot = self._slots.setdefault(view.slot, _Slot())
            if tid not in slot.trials:
                slot.trials.append(tid)
            if view.state is TrialState.RUNNING:
                self._running.add(tid)
                self._seen_at.setdefault(tid, self._now)
            else:
                self._seen_at.pop(tid, None)
                self._running.discard(tid)
                self._note_best(view)
            self._planner.mark(view.slot, self._is_open(view.slot))
        self._cursor = len(changes)
        while self._slot_state(self._low) == "DONE":
            self._low += 1

    def _note_best(self, view: TrialView) -> None:
        if self.plan is None:
            return
        key = best_key(view, self.plan.direction)
        if key is None and self._best is not None and self._best[1] == view.id:
            # The best trial stopped counting (a retry whose original's RESULT surfaced).
            found = best_trial(self.ledger.trials().values(), self.plan.direction)
            self._best = None if found is None else best_key(found, self.plan.direction)
        elif key is not None and (self._best is None or key < self._best):
            self._best = key  # p2phpo.core.best's rule, as everywhere

    def _sign(self) -> float:
        return -1.0 if self.plan is not None and self.plan.direction == "maximize" else 1.0

    def _views(self, slot: int) -> list[TrialView]:
        s = self._slots.get(slot)
        return [] if s is None else [self.ledger.trial(t) for t in s.trials]

    def _is_open(self, slot: int) -> bool:
        return self._slot_state(slot) in ("FREE", "REOPENED")

    def _slot_state(self, slot: int) -> str:
        views = self._views(slot)
        if not views:
            return "FREE"
        if any(v.state.counted for v in views):
            return "DONE"
        if any(v.state is TrialState.RUNNING for v in views):
            return "BUSY"
        return "REOPENED"

    # -- own trials: conflicts, timeouts --------------------------------------
    def _police_own(self, now: float, wall: float) -> list[Command]:
        cmds = self._confirm_pending(now, wall)
        for tid in sorted(self._own):
            reason = self._stop_reason(tid, now)
            if reason is None:
                continue
            started = self._own.pop(tid)
            if reason == "trial_timeout":
                self._write(Result, wall, trial=tid, status=Status.FAILED,
                            error=f"trial_timeout of {self.config.trial_timeout:g}s exceeded",
                            duration=now - started)
                cmds.append(StopTrial(tid, Verdict.STOP, reason))
            else:
                self._write(Result, wall, trial=tid, status=Status.SUPERSEDED, duration=now - started)
                cmds.append(StopTrial(tid, Verdict.STOP, reason))
        return cmds

    def _confirm_pending(self, now: float, wall: float) -> list[Command]:
        """Start the claims whose confirmation delay passed and that kept their slot."""
        cmds: list[Command] = []
        for tid in sorted(self._pending):
            due, start = self._pending[tid]
            self._own[tid] = due  # measured from the claim; used by _stop_reason
            reason = self._stop_reason(tid, now)
            if reason is None and now < due:
                del self._own[tid]
                continue
            del self._pending[tid]
            if reason is None:
                self._own[tid] = now
                cmds.append(start)
            else:
                del self._own[tid]
                self._write(Result, wall, trial=tid, status=Status.SUPERSEDED, duration=0.0)
        return cmds

    def _stop_reason(self, tid: TrialId, now: float) -> str | None:
        view = self.ledger.trial(tid)
        if view is None or view.state is not TrialState.RUNNING:
            return None
        others = [v for v in self._views(view.slot) if v.id != tid]
        if any(v.state.counted for v in others):
            return "slot already has a result"
        rivals = [v.id for v in others if v.state is TrialState.RUNNING]
        if rivals and _winner(view.slot, rivals + [tid]) != tid:
            return "lost a double claim"
        timeout = self.config.trial_timeout
        if timeout is not None and now - self._own[tid] > timeout:
            return "trial_timeout"
        return None

    # -- orphans ---------------------------------------------------------------
    def _owner_gone(self, owner: int, now: float) -> bool:
        """DEAD or LEFT, and either synced since, or gone long enough that no peer is left
        to sync with (a lone survivor must not wait forever). An owner that is no member
        counts once unknown long enough (the module docstring)."""
        since = self._gone_since.get(owner)
        if since is None:
            since = self._unknown_since.get(owner)
            if since is None:
                return False
            wait = self.config.reclaim_fallback
            return now - since >= wait and (self._last_sync >= since or now - since >= 2 * wait)
        return self._last_sync >= since or now - since >= self.config.reclaim_fallback

    def _track_unknown(self, now: float) -> None:
        """Since when each owner of a RUNNING trial has been no member (restarted when
        its log grows: an entry of it arriving means it may well be alive)."""
        if not self._running and not self._unknown_since:
            return
        owners = {t[0] for t in self._running}
        owners.difference_update(self.members, self._gone_since, (self.node_id,))
        for owner in [o for o in self._unknown_since if o not in owners]:
            del self._unknown_since[owner], self._unknown_seq[owner]
        for owner in owners:
            seq = self.ledger.vv.get(owner, 0)
            if self._unknown_seq.get(owner) != seq:
                self._unknown_seq[owner] = seq
                self._unknown_since[owner] = now

    def _reclaim_orphans(self, now: float, wall: float) -> None:
        if not (self._gone_since or self._unknown_since) or not self.ready or self.leaving:
            return  # the common case: nobody is gone, nothing to look at
        orphans = [tid for tid in sorted(self._running)
                   if tid[0] != self.node_id and tid not in self._abandoned_by_me
                   and self._owner_gone(tid[0], now)]
        live = self._ready_members() if orphans else []
        for tid in orphans:
            owner = tid[0]
            if _rendezvous(("orphan", tid), live) != self.node_id:
                continue
            member = self.members.get(owner)  # None: reaped, or never a member here
            reason = AbandonReason.LEFT if member and member.state == "LEFT" else AbandonReason.DEAD
            self._write(Abandon, wall, trial=tid, reason=reason)
            self._abandoned_by_me.add(tid)

    # -- claiming -------------------------------------------------------------
    def _claims_open(self, now: float) -> bool:
        if not self.ready or self.leaving or self.done or self.worker_busy:
            return False
        if len(self._own) + len(self._pending) >= self.config.capacity:
            return False
        return self._closed_reason(now) is None

    def _closed_reason(self, now: float) -> str | None:
        plan = self.plan
        if self.exhausted:
            return self.exhausted
        # The timeout runs on this node's own monotonic clock from when it adopted the
        # study: no decision compares one node's wall clock with another's.
        if plan.timeout is not None and now >= self._adopted_at + plan.timeout:
            return "timeout reached"
        if plan.target is not None and self._best is not None:
            if self._best[0] <= self._sign() * plan.target:
                return "target reached"
        return None

    def _ready_members(self) -> list[int]:
        """Live members with a ready worker for this study (this node included)."""
        fp = self.plan.fingerprint if self.plan else None
        out = [
            mid for mid, m in self.members.items()
            if mid != self.node_id and m.state in LIVE and m.ready and m.study == fp
        ]
        if self.ready and not self.leaving:
            out.append(self.node_id)
        return sorted(out)

    # -- the roster and the slot choice (core/budget.py) --------------------------
    def _roster_now(self) -> list[int]:
        """Every member that advertised a ready worker for this study, in any state."""
        fp = self.plan.fingerprint if self.plan else None
        out = {mid for mid, m in self.members.items() if m.ready and m.study == fp}
        out.discard(self.node_id)
        if self.ready and not self.leaving:
            out.add(self.node_id)
        return sorted(out)

    def _update_roster(self, now: float) -> list[int]:
        key = (id(self.members), self.ready, self.leaving)
        if key == self._roster_key:
            return self._roster
        self._roster_key = key
        roster = self._roster_now()
        if roster != self._roster:
            self._roster = roster
            self._roster_since = now
        return roster

    def _pick_slot(self, now: float) -> int | None:
        pick = self._choose(now)
        if pick is None:
            if self._planner.any_open(self._low) is None and self.plan.n_trials is not None:
                self._unmatched_since = None  # nothing to wait for: every slot is taken
            elif self._unmatched_since is None:
                self._unmatched_since = now
            return None
        self._unmatched_since = None
        self._pick_kind = pick.kind
        return pick.slot

    def _choose(self, now: float) -> Pick | None:
        roster = self._update_roster(now)
        waited = self._unmatched_since is not None and now - self._unmatched_since >= self.config.claim_grace
        settled = len(roster) <= 1 or now - self._roster_since >= self.config.settle
        if not (settled or waited):
            return None
        planner = self._planner
        home = planner.home(self.node_id, roster, self._low)
        if home is not None:
            return Pick(home, "home")
        # A SUSPECT owner may be cut off, running its rights on the other side: its
        # slots are stolen last, like a gone owner's.
        live = set(self._alive)
        live.add(self.node_id)
        busy = {t[0] for t in self._running}
        fresh = {t[0] for t in self._running if now - self._seen_at.get(t, now) < self.config.fresh}
        idle_for = 0.0 if self._unmatched_since is None else now - self._unmatched_since
        pick = planner.steal(self.node_id, roster, live, busy, fresh, idle_for, fallback=waited)
        if pick is None and waited:
            slot = planner.any_open(self._low)
            pick = None if slot is None else Pick(slot, "grace")
        return pick

    def _maybe_claim(self, now: float, wall: float) -> StartTrial | None:
        slot = self._pick_slot(now)
        if slot is None:
            return None
        retry = self._retry_target(slot)
        if retry is not None and self._retries_used(slot) > self.config.max_retries:
            self._write(Result, wall, trial=retry.id, status=Status.FAILED,
                        error=f"abandoned {self._retries_used(slot)} times (owner died or left)")
            return None
        if retry is not None:
            params = dict(retry.params)
        else:
            try:
                params = self.plan.suggest(self.ledger, self.node_id, slot)
            except Exhausted:
                self.exhausted = "search space exhausted"
                return None
        retry_of = None if retry is None else retry.id
        claim = self._write(Claim, wall, slot=slot, params=params, retry_of=retry_of)
        start = StartTrial(claim.key, slot, dict(params), retry_of)
        if (self.config.confirm_delay > 0 and self._pick_kind == "grace"
                and len(self._ready_members()) > 1):
            # A fallback claim may well meet a rival: let them meet before anything runs.
            # Home and stolen slots are agreed by construction (core/budget.py); alone,
            # nobody can hold a rival claim: start at once.
            self._pending[claim.key] = (now + self.config.confirm_delay, start)
            return None
        self._own[claim.key] = now
        return start

    def _abandoned(self, slot: int) -> list[TrialView]:
        return [v for v in self._views(slot) if v.state is TrialState.ABANDONED]

    def _retry_target(self, slot: int) -> TrialView | None:
        """The newest abandoned trial of a reopened slot: its params are retried."""
        abandoned = self._abandoned(slot)
        return max(abandoned, key=lambda v: (v.claim_wall, v.id)) if abandoned else None

    def _retries_used(self, slot: int) -> int:
        """Abandonments that count against max_retries (setup errors do not)."""
        return sum(1 for v in self._abandoned(slot)
                   if v.abandon.reason is not AbandonReason.SETUP_ERROR)

    # -- the running trial ----------------------------------------------------
    def report(self, trial: TrialId, step: int, value: float, wall: float) -> Verdict:
        """Record an intermediate value of our trial and answer: continue, prune, stop."""
        if trial not in self._own or self.plan is None:
            return Verdict.STOP
        view = self.ledger.trial(trial)
        if self.plan.should_report(step):
            self._write(Report, wall, trial=trial, step=int(step), value=float(value))
        if self.plan.should_prune(self.ledger, view, int(step), float(value)):
            return Verdict.PRUNE
        return Verdict.CONTINUE

    def finish(self, trial: TrialId, outcome: Outcome, wall: float) -> None:
        """Our trial ended; ignored if it was already stopped (superseded, timeout)."""
        if self._own.pop(trial, None) is None:
            return
        value = outcome.value
        if outcome.status is Status.PRUNED and value is None:
            last = self.ledger.trial(trial).last_report
            value = None if last is None else last[1]
        error = None if outcome.error is None else cap_error(outcome.error)
        self._write(Result, wall, trial=trial, status=outcome.status, value=value,
                    error=error, duration=max(0.0, outcome.duration))

    def setup_failed(self, trial: TrialId | None, wall: float) -> None:
        """The worker could not load: abandon the trial (it does not burn budget)."""
        self.ready = False
        if trial is not None and self._own.pop(trial, None) is not None:
            self._write(Abandon, wall, trial=trial, reason=AbandonReason.SETUP_ERROR)

    # -- outputs ---------------------------------------------------------------
    def _write(self, cls: type, wall: float, **fields: Any) -> Entry:
        entry = self.ledger.new(self.node_id, cls, wall=wall, **fields)
        self._new.append(entry)
        return entry

    def take_new_entries(self) -> list[Entry]:
        out, self._new = self._new, []
        return out

    @property
    def awaits_sync(self) -> bool:
        """Some running trial's owner is gone or unknown: a sync may let it be reclaimed."""
        return bool(self._gone_since or self._unknown_since)

    @property
    def running(self) -> list[TrialId]:
        """Our claimed trials: started, or waiting out the confirmation delay."""
        return sorted(self._own) + sorted(self._pending)

    def get_timer(self, now: float, wall: float) -> float | None:
        """The next monotonic time at which ``step`` has timed work to do."""
        times: list[float] = [due for due, _ in self._pending.values()]
        if self.config.trial_timeout is not None:
            times += [t + self.config.trial_timeout for t in self._own.values()]
        if self._unmatched_since is not None:
            times.append(self._unmatched_since + self.config.claim_grace)
            times.append(self._roster_since + self.config.settle)
            times.append(self._unmatched_since + self.config.steal_wait)
            times.append(self._unmatched_since + self.config.gone_wait)
        if self._gone_since:  # (the running set is the whole cluster's: skip it if nobody is gone)
            owners = {t[0] for t in self._running}
            times += [since + self.config.reclaim_fallback
                      for node, since in self._gone_since.items() if node in owners]
        for since in self._unknown_since.values():
            times += [since + self.config.reclaim_fallback, since + 2 * self.config.reclaim_fallback]
        if self.plan is not None and self.plan.timeout is not None and not self.done:
            times.append(self._adopted_at + self.plan.timeout)
        # What fell due was handled by the step that just ran (or is another node's to
        # do, e.g. an orphan it wins): only the future can wake us.
        future = [t for t in times if t > now]
        return min(future) if future else None

    def _finished_reason(self, now: float) -> str | None:
        if self.plan is None:
            return None
        n = self.plan.n_trials
        if n is not None and self._low >= n:
            return f"budget of {n} trials used"
        closed = self._closed_reason(now)
        if closed and not any(t[0] not in self._gone_since and not self._owner_gone(t[0], now)
                              for t in self._running):
            return closed
        return None

    def status(self) -> dict[str, Any]:
        """Budget and quality counters for the status view and the simulator."""
        self._sync_index()
        trials = self.ledger.trials()
        counts: dict[str, int] = {}
        for v in trials.values():
            counts[v.state.value] = counts.get(v.state.value, 0) + 1
        counted = sum(1 for v in trials.values() if v.state.counted)
        slots_done = sum(1 for s in self._slots if self._slot_state(s) == "DONE")
        n = self.plan.n_trials if self.plan else None
        best = None
        if self._best is not None:
            v = self.ledger.trial(self._best[1])
            best = {"trial": v.id, "value": v.value, "params": dict(v.params)}
        return {
            "n_trials": n,
            "claimed": len(self._slots),
            "finished": counted,
            "counts": counts,
            "duplicates": counted - slots_done,
            "overshoot": max(0, counted - n) if n is not None else 0,
            "best": best,
            "done": self.done,
            "refused": self.refused,
        }


def _rendezvous(key: object, candidates: list[int]) -> int | None:
    order = hrw_order(key, candidates)
    return order[0] if order else None


def _winner(slot: int, trials: list[TrialId]) -> TrialId:
    """The claim that keeps a doubly claimed slot: lowest hrw(slot, origin)."""
    return min(trials, key=lambda t: (hrw(slot, t[0]), t))
