"""One trial as the ledger's entries say it is: :class:`TrialView` and :class:`TrialState`.

Pure: the ledger folds entries into views (``core/ledger.py``); everything a
user sees (export, status, best, plots, ``hp.optimize``) reads these views.

One slot, one count. A trial's state comes from its own entries: RUNNING
until a RESULT or ABANDON names it; the RESULT that ranks first (the owner's,
then COMPLETE < PRUNED < FAILED < SUPERSEDED) wins over ABANDON. One more
rule spans trials: a *retry* (its claim's ``retry_of`` names a trial of the
same slot, directly or through earlier retries) whose original holds a
counted RESULT reads as SUPERSEDED, whatever its own RESULT says. That
happens when an owner persisted its RESULT and died before gossiping it:
the others abandoned the trial and retried it, and the RESULT surfaced when
the owner came back. The original counts; the retry, the same params run
again, does not. The rule depends only on the entries held, so every
replica that holds the same entries shows the same states.
"""

from __future__ import annotations

import enum

from p2phpo.core.entries import Abandon, Claim, Result, Status, TrialId


class TrialState(enum.Enum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"
    SUPERSEDED = "SUPERSEDED"

    @property
    def finished(self) -> bool:
        return self is not TrialState.RUNNING

    @property
    def counted(self) -> bool:
        """Counts toward the study's n_trials budget."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


_STATE_OF = {
    Status.COMPLETE: TrialState.COMPLETE,
    Status.PRUNED: TrialState.PRUNED,
    Status.FAILED: TrialState.FAILED,
    Status.SUPERSEDED: TrialState.SUPERSEDED,
}
# Lower wins when several RESULTs name one trial (e.g. the owner's and a reclaimer's).
_PRECEDENCE = {Status.COMPLETE: 0, Status.PRUNED: 1, Status.FAILED: 2, Status.SUPERSEDED: 3}


class TrialView:
    """The folded state of one trial. Read-only for callers; the ledger updates it."""

    __slots__ = ("id", "claim", "reports", "results", "abandons", "state", "result", "abandon",
                 "eclipsed")

    def __init__(self, tid: TrialId) -> None:
        self.id = tid
        self.claim: Claim | None = None
        self.reports: dict[int, float] = {}
        self.results: list[Result] = []
        self.abandons: list[Abandon] = []
        self.state = TrialState.RUNNING
        self.result: Result | None = None
        self.abandon: Abandon | None = None
        self.eclipsed = False  # a retry whose original holds a counted RESULT (module doc)

    # -- derived fields --------------------------------------------------
    @property
    def origin(self) -> int:
        return self.id[0]

    @property
    def slot(self) -> int:
        return self.claim.slot if self.claim else -1

    @property
    def number(self) -> int:
        """The budget slot (Optuna's ``trial.number``)."""
        return self.slot

    @property
    def params(self) -> dict:
        return self.claim.params if self.claim else {}

    @property
    def retry_of(self) -> TrialId | None:
        return self.claim.retry_of if self.claim else None

    @property
    def claim_wall(self) -> float | None:
        return self.claim.wall if self.claim else None

    @property
    def last_report(self) -> tuple[int, float] | None:
        if not self.reports:
            return None
        step = max(self.reports)
        return step, self.reports[step]

    @property
    def value(self) -> float | None:
        return self.result.value if self.result else None

    @property
    def error(self) -> str | None:
        return self.result.error if self.result else None

    @property
    def duration(self) -> float | None:
        return self.result.duration if self.result else None

    @property
    def finished_wall(self) -> float | None:
        if self.result:
            return self.result.wall
        return self.abandon.wall if self.abandon else None

    @property
    def own_counted(self) -> bool:
        """Its own RESULTs count (whether or not an original eclipses it)."""
        return self.result is not None and _STATE_OF[self.result.status].counted

    def _refresh(self) -> None:
        if self.results:
            owner = self.id[0]
            self.result = min(
                self.results,
                key=lambda r: (r.origin != owner, _PRECEDENCE[r.status], r.origin, r.seq),
            )
            self.state = _STATE_OF[self.result.status]
            if self.eclipsed and self.state.counted:
                self.state = TrialState.SUPERSEDED
        elif self.abandons:
            self.result = None
            self.state = TrialState.ABANDONED
        else:
            self.state = TrialState.RUNNING
        self.abandon = min(self.abandons, key=lambda a: a.key) if self.abandons else None

    def __repr__(self) -> str:
        return f"TrialView({self.id}, slot={self.slot}, {self.state.value}, value={self.value})"
