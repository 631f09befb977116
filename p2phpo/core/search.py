"""One node's search logic: budget slots, claims, conflicts, orphans, pruning.

Pure and sans-IO. The core reads the node's ledger replica and membership
view and decides; it never trains. The node driver (``core/driver.py``), under
every shell (the asyncio node, the simulator, ``hp.optimize``), runs what it
commands and hands back reports and outcomes (the types: ``core/search_types.py``):

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
A claim that may have a rival (stolen, fallback, or home while this node's
roster is young) writes its RESULT no sooner than its result window after the claim
(``result_window``: grows with log2 of the roster), so rival claims meet before
either counts; each claim names the members to send it to at once (``push_to``,
for the driver).

Orphans (a RUNNING trial whose owner is gone): ``core/search_orphans.py``; own claims
against rivals, result windows and trial timeouts: ``core/search_rivals.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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
from p2phpo.core.ledger import Ledger, TrialState, TrialView
from p2phpo.core.search_orphans import OrphanRules
from p2phpo.core.search_rivals import RivalRules
from p2phpo.core.search_types import (
    GONE,
    LIVE,
    Command,
    Exhausted,
    MemberView,
    Outcome,
    PlanFactory,
    SearchConfig,
    StartTrial,
    StopTrial,
    StudyDone,
    StudyPlan,
)
from p2phpo.core.slot_index import SlotIndex
from p2phpo.core.study_diff import difference, spec_diff
from p2phpo.core.verdict import Verdict

__all__ = [  # the types live in core/search_types.py (spec_diff in core/study_diff.py);
    # importers may name them here
    "GONE", "LIVE", "Command", "Exhausted", "MemberView", "Outcome", "PlanFactory",
    "SearchConfig", "SearchCore", "StartTrial", "StopTrial", "StudyDone", "StudyPlan",
    "spec_diff",
]


class SearchCore(OrphanRules, RivalRules):
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
        self._window: dict[TrialId, float] = {}  # claim that may meet a rival -> end of its result window
        self._held: dict[TrialId, Outcome] = {}  # finished inside its window: result not written yet
        self.recorded: list[TrialId] = []  # own trials whose outcome got written (driver notes)
        self.push_to: dict[int, list[int]] = {}  # seq of a claim -> members to send it at once
        self.tell: list[tuple[int, list[int]]] = []  # (seq of a claim we keep, its losers' owners)
        self._told: set[TrialId] = set()  # rival claims whose owners were told they lost
        self.index = SlotIndex(ledger)
        self._gone_since: dict[int, float] = {}
        self._unknown_since: dict[int, float] = {}  # owner of a running trial, no member
        self._unknown_seq: dict[int, int] = {}  # its log's length when the wait (re)started
        self._last_sync = -math.inf
        self._abandoned_by_me: set[TrialId] = set()
        self._unmatched_since: float | None = None
        self._roster: list[int] = []
        self._roster_since = -math.inf
        self._roster_born = math.inf  # when this node first saw another ready member
        self._roster_key: tuple | None = None
        self._members_gen = 0  # bumped when the members' map is replaced or the roster moves
        self._keys_gen = 0  # bumped when a member or a gone member is added or removed
        self._unknown_key: tuple[int, int] | None = None  # (index.seen, _keys_gen) of _unknown_owners
        self._unknown_owners: set[int] = set()
        self._pick_kind = "home"
        self._now = -math.inf
        self._adopted_at = math.inf  # monotonic time this node adopted the study
        self._planner = SlotPlanner(None, self.index.is_open)
        self._new: list[Entry] = []

    # -- inputs ----------------------------------------------------------
    def set_members(self, now: float, members: dict[int, MemberView],
                    changed: Iterable[int] | None = None) -> None:
        """The member views. ``changed``: only these members differ from the last call
        (``members`` is still the whole map), so an update costs what changed, not the
        cluster's size (a 1,000-node cluster changes a few members per datagram)."""
        if changed is None:
            for mid, view in members.items():
                self._note_gone(mid, view, now)
            self.members = dict(members)
            self._alive = {mid for mid, m in members.items() if m.state == "ALIVE"}
            self._members_gen += 1
            self._keys_gen += 1
            return
        fp = self.plan.fingerprint if self.plan else None
        for mid in changed:
            old, view = self.members.get(mid), members.get(mid)
            if (old is None) != (view is None):
                self._keys_gen += 1
            if view is None:
                self.members.pop(mid, None)
            else:
                self._note_gone(mid, view, now)
                self.members[mid] = view
            if view is not None and view.state == "ALIVE":
                self._alive.add(mid)
            else:
                self._alive.discard(mid)
            if _in_roster(old, fp) != _in_roster(view, fp):
                self._members_gen += 1  # the roster moved

    def recover(self, wall: float) -> None:
        """After a restart: abandon our own trials the ledger still shows RUNNING."""
        self._sync_index()
        for tid in sorted(self.index.running):
            if tid[0] == self.node_id:
                self._write(Abandon, wall, trial=tid, reason=AbandonReason.RESTARTED)
        self._sync_index()

    def leave(self, wall: float) -> None:
        """Graceful exit: abandon our running trials so others retry them now."""
        self.leaving = True
        for tid in sorted(self._own) + sorted(self._held):
            self._write(Abandon, wall, trial=tid, reason=AbandonReason.LEFT)
        self._own.clear()
        self._held.clear()
        self._window.clear()

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
        cmds += self._claim_batch(now, wall)
        finished = self._finished_reason(now)
        if finished and self.done is None:
            self.done = finished
            cmds.append(StudyDone(finished))
        return cmds

    def adopt(self, now: float, wall: float) -> bool:
        """Take the cluster's study if it is in the ledger, and claim nothing (a warm
        start's first call: ready, but the roster is not known yet)."""
        self._now = now
        self._sync_index()
        return self.plan is not None or self._adopt(now, wall)

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
        self._planner = SlotPlanner(self.plan.n_trials, self.index.is_open, self.config.steal_wait,
                                    self.config.gone_wait)
        for slot in self.index.slots:
            self._mark(slot)
        self.index.follow_best(self.plan.direction)
        return True

    def _refusal(self, entry: StudyEntry) -> str:
        """Why this node's ``--study`` cannot run beside the ledger's STUDY ``entry``."""
        fields = difference(self.local_study[0], entry.spec) if self.local_study else ""
        if entry.origin == self.node_id:
            return ("this node's --study differs from the study its state dir already runs "
                    f"(started by this node) in: {fields}; run it without --study to continue "
                    "that study, or give a fresh --state-dir for the new one")
        return "this node's study differs from the cluster's study in: " + fields

    # -- the slot index (core/slot_index.py) -----------------------------------
    def _sync_index(self) -> None:
        self.index.sync(self._now, self._mark)

    def _mark(self, slot: int) -> None:
        self._planner.mark(slot, self.index.is_open(slot))

    def _sign(self) -> float:
        return -1.0 if self.plan is not None and self.plan.direction == "maximize" else 1.0

    # -- claiming -------------------------------------------------------------
    def _claims_open(self, now: float) -> bool:
        if not self.ready or self.leaving or self.done or self.worker_busy:
            return False
        if len(self._own) + len(self._held) >= self.config.capacity:
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
        if plan.target is not None and self.index.best is not None:
            if self.index.best[0] <= self._sign() * plan.target:
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
        key = (self._members_gen, self.plan.fingerprint if self.plan else None, self.ready, self.leaving)
        if key == self._roster_key:
            return self._roster
        self._roster_key = key
        roster = self._roster_now()
        if roster != self._roster:
            self._roster = roster
            self._roster_since = now
            if len(roster) > 1 and self._roster_born == math.inf:
                self._roster_born = now
        return roster

    def _pick_slot(self, now: float) -> int | None:
        pick = self._choose(now)
        if pick is None:
            if self._planner.any_open(self.index.low) is None and self.plan.n_trials is not None:
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
        home = planner.home(self.node_id, roster, self.index.low)
        if home is not None:
            return Pick(home, "home")
        # A SUSPECT owner may be cut off, running its rights on the other side: its
        # slots are stolen last, like a gone owner's.
        live = set(self._alive)
        live.add(self.node_id)
        busy = {t[0] for t in self.index.running}
        fresh = {t[0] for t in self.index.running if now - self.index.seen_at.get(t, now) < self.config.fresh}
        idle_for = 0.0 if self._unmatched_since is None else now - self._unmatched_since
        pick = planner.steal(self.node_id, roster, live, busy, fresh, idle_for, fallback=waited,
                             quiet=self._quiet(live, now))
        if pick is None and waited:
            slot = planner.any_open(self.index.low)
            pick = None if slot is None else Pick(slot, "grace")
        return pick

    def _quiet(self, live: set[int], now: float) -> set[int]:
        """While some member is SUSPECT or gone (a cut may be in force), the live
        members we have not heard from lately: they may be on the far side too."""
        if all(m.state == "ALIVE" for m in self.members.values()):
            return set()
        heard, window = self.index.heard, self.config.heard_window
        return {m for m in live if now - heard.get(m, -math.inf) > window}

    def _claim_batch(self, now: float, wall: float) -> list[StartTrial]:
        """Claim up to ``capacity`` slots at once (a batch the worker trains together):
        the claiming stops at the first slot this node cannot take now."""
        out: list[StartTrial] = []
        idle_since, claimed = self._unmatched_since, False
        while self._claims_open(now):
            before = len(self._own)
            start = self._maybe_claim(now, wall)
            if start is not None:
                out.append(start)
            if len(self._own) == before:
                break
            claimed = True
            self._sync_index()
            # The batch's later members are picked as the first was: by a node idle
            # since then (a gone owner's slots wait for an idle node's gone_wait).
            self._unmatched_since = idle_since
        if claimed:
            self._unmatched_since = None
        return out

    def _batch_params(self) -> list[dict[str, Any]]:
        """The params of the trials this node holds now, in claim order: the batch the
        next claim joins (claims are made only while the worker is idle)."""
        tids = sorted(self._own, key=lambda t: t[1])
        views = [self.ledger.trial(t) for t in tids]
        return [dict(v.params) for v in views if v is not None]

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
            batch = self._batch_params() if self.config.capacity > 1 else []
            try:
                params = (self.plan.suggest(self.ledger, self.node_id, slot, batch=batch) if batch
                          else self.plan.suggest(self.ledger, self.node_id, slot))
            except Exhausted:
                self.exhausted = "search space exhausted"
                return None
        retry_of = None if retry is None else retry.id
        claim = self._write(Claim, wall, slot=slot, params=params, retry_of=retry_of)
        window = self.result_window(self._pick_kind, now)
        if window > 0:  # the trial runs meanwhile; a loser stops once it sees the winner
            self._window[claim.key] = now + window
        self._own[claim.key] = now
        stolen = self._planner.contenders if self._pick_kind in ("steal", "steal2") else None
        rivals = self._planner.rivals(slot, self.node_id, self._roster, self._alive,
                                      self.config.push_rivals, stolen)
        if rivals:
            self.push_to[claim.seq] = rivals
        return StartTrial(claim.key, slot, dict(params), retry_of)

    def _abandoned(self, slot: int) -> list[TrialView]:
        return [v for v in self.index.views(slot) if v.state is TrialState.ABANDONED]

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
        """Our trial ended; ignored if it was already stopped (superseded, timeout).
        Inside its result window (``result_window``) the outcome waits for the next step."""
        if self._own.pop(trial, None) is None:
            return
        if trial in self._window:
            self._held[trial] = outcome
            return
        self._record(trial, outcome, wall)

    def _record(self, trial: TrialId, outcome: Outcome, wall: float) -> None:
        value = outcome.value
        if outcome.status is Status.PRUNED and value is None:
            last = self.ledger.trial(trial).last_report
            value = None if last is None else last[1]
        error = None if outcome.error is None else cap_error(outcome.error)
        self._write(Result, wall, trial=trial, status=outcome.status, value=value,
                    error=error, duration=max(0.0, outcome.duration))
        self.recorded.append(trial)

    def setup_failed(self, trial: TrialId | None, wall: float) -> None:
        """The worker could not load: abandon the trial (it does not burn budget)."""
        self.ready = False
        self._window.pop(trial, None)
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
    def running(self) -> list[TrialId]:
        """Our claimed trials: running, or finished with the outcome held in its window."""
        return sorted(self._own) + sorted(self._held)

    def get_timer(self, now: float, wall: float) -> float | None:
        """The next monotonic time at which ``step`` has timed work to do."""
        times: list[float] = [self._window[t] for t in self._held]
        if self.config.trial_timeout is not None:
            times += [t + self.config.trial_timeout for t in self._own.values()]
        if self._unmatched_since is not None:
            times.append(self._unmatched_since + self.config.claim_grace)
            times.append(self._roster_since + self.config.settle)
            times.append(self._unmatched_since + self.config.steal_wait)
            times.append(self._unmatched_since + self.config.gone_wait)
        if self._gone_since:  # (the running set is the whole cluster's: skip it if nobody is gone)
            owners = {t[0] for t in self.index.running}
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

    @property
    def budget_counted(self) -> bool:
        """Every slot of the budget has a counted RESULT: a fact of the ledger, so any
        node holding this ledger sees it too (``core/durability.py``'s ``Linger``)."""
        n = self.plan.n_trials if self.plan is not None else None
        return n is not None and self.index.low >= n

    def _finished_reason(self, now: float) -> str | None:
        if self.plan is None:
            return None
        if self.budget_counted:
            return f"budget of {self.plan.n_trials} trials used"
        closed = self._closed_reason(now)
        if closed and not any(t[0] not in self._gone_since and not self._owner_gone(t[0], now)
                              for t in self.index.running):
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
        slots_done = self.index.n_done()
        n = self.plan.n_trials if self.plan else None
        best = None
        if self.index.best is not None:
            v = self.ledger.trial(self.index.best[1])
            best = {"trial": v.id, "value": v.value, "params": dict(v.params)}
        return {
            "n_trials": n,
            "claimed": len(self.index.slots),
            "finished": counted,
            "counts": counts,
            "duplicates": counted - slots_done,
            "overshoot": max(0, counted - n) if n is not None else 0,
            "best": best,
            "done": self.done,
            "refused": self.refused,
        }


def _in_roster(view: MemberView | None, fp: str | None) -> bool:
    """Whether a member with ``view`` belongs to the roster (see ``_roster_now``)."""
    return view is not None and view.ready and view.study == fp
