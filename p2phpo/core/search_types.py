"""What the search core takes in and hands out (``core/search.py``).

The study plan it asks (:class:`StudyPlan`), its settings
(:class:`SearchConfig`), the member views it reads (:class:`MemberView`),
the commands it gives the worker (:class:`StartTrial`, :class:`StopTrial`,
:class:`StudyDone`) and the outcome handed back (:class:`Outcome`). Pure data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from p2phpo.core.entries import Status, StudyEntry, TrialId
from p2phpo.core.ledger import Ledger, TrialView
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

    def suggest(self, ledger: Ledger, node_id: int, slot: int) -> dict[str, Any]:
        """The params of ``slot``'s trial. With ``capacity`` > 1 the core passes
        ``batch=[params, ...]``, the trials already claimed for the batch this one joins
        (first claimed first), when there are any."""
        ...

    def should_report(self, step: int) -> bool: ...

    def should_prune(self, ledger: Ledger, trial: TrialView, step: int, value: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class SearchConfig:
    max_retries: int = 2  # abandonments of one slot before its trial is FAILED
    trial_timeout: float | None = None  # seconds; a trial running longer is FAILED
    claim_grace: float = 2.0  # seconds an unmatched idle node waits before claiming anyway
    reclaim_fallback: float = 30.0  # reclaim a gone owner's trials after this long even unsynced
    capacity: int = 1  # trials this node claims at once and its worker trains as one batch
    # True: ``capacity`` trials run side by side, each on its own (worker lanes): a trial
    # that ends frees its place for a new claim at once instead of at the batch's end
    refill: bool = False
    # Result windows (SearchCore.result_window): a claim that may have a rival trains at
    # once, but its RESULT is written no sooner than this long after the CLAIM, so rival
    # claims meet before either counts. A fallback claim gets ``grace_window``; a stolen
    # one, and a home claim made while the roster is young, ``steal_window``; both grow by
    # ``window_growth`` per doubling of the roster (claims take longer to meet).
    grace_window: float = 0.0
    steal_window: float = 0.0
    window_growth: float = 0.0
    young_roster: float = 0.0  # seconds after a node first sees another ready member: its home claims get a window
    settle: float = 0.0  # seconds the ready roster must be still before a node claims (join storms)
    steal_wait: float = 0.0  # seconds idle before taking a slot a busy thief would win
    gone_wait: float = 0.0  # seconds idle before stealing from a SUSPECT/DEAD/LEFT owner
    fresh: float = 1.0  # a thief seen starting a trial this recently does not compete for steals
    heard_window: float = 4.0  # while a member is suspected or gone, owners silent this long are robbed last
    push_rivals: int = 0  # members a claim is sent to at once: those likeliest to claim its slot too


    @classmethod
    def for_profile(cls, profile: Any, *, max_retries: int = 2,
                    trial_timeout: float | None = None) -> SearchConfig:
        """The settings a node derives from its gossip profile (``core/profiles.py``)."""
        return cls(max_retries=max_retries, trial_timeout=trial_timeout,
                   claim_grace=profile.probe_interval * 4,
                   reclaim_fallback=profile.probe_interval * 10,
                   settle=0.0, steal_wait=profile.probe_interval / 2,
                   gone_wait=profile.probe_interval * 2,
                   heard_window=profile.probe_interval * 4,
                   grace_window=profile.gossip_interval * 3,
                   steal_window=profile.gossip_interval * 2,
                   window_growth=profile.gossip_interval / 2,
                   young_roster=profile.probe_interval * 4, push_rivals=6)


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
