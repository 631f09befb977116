"""Own claims against their rivals: result windows, double claims, trial timeouts.

Two running claims of one slot: the lowest ``hrw(slot, origin)`` keeps it, the loser
stops and writes RESULT SUPERSEDED; the winner names the losers' nodes (``tell``) so
the driver sends them its claim at once. A claim that may have a rival (stolen,
fallback, or a home claim while this node's roster is young) writes its RESULT no
sooner than its result window after the claim (``result_window``), held meanwhile.
A trial running longer than ``trial_timeout`` ends FAILED.

:class:`RivalRules` is the part of :class:`~p2phpo.core.search.SearchCore` that keeps
these rules (a mixin: it shares the core's state, set up in its ``__init__``).
"""

from __future__ import annotations

import math
from typing import Any

from p2phpo.core.entries import Result, Status, TrialId
from p2phpo.core.hrw import hrw
from p2phpo.core.ledger import TrialState
from p2phpo.core.search_types import Command, Outcome, StopTrial
from p2phpo.core.verdict import Verdict


class RivalRules:
    """Result windows and double claims of this node's own trials (see the module doc)."""

    config: Any
    ledger: Any
    index: Any
    tell: list[tuple[int, list[int]]]
    _own: dict[TrialId, float]
    _held: dict[TrialId, Outcome]
    _window: dict[TrialId, float]
    _told: set[TrialId]
    _roster: Any
    _roster_born: float

    # -- own trials: conflicts, timeouts --------------------------------------
    def _police_own(self, now: float, wall: float) -> list[Command]:
        self._release_held(now, wall)
        cmds: list[Command] = []
        for tid in sorted(self._held):
            if self._rival_reason(tid) is None:
                self._tell_losers(tid)
        for tid in sorted(self._own):
            reason = self._stop_reason(tid, now)
            if reason is None:
                self._tell_losers(tid)
                continue
            started = self._own.pop(tid)
            self._window.pop(tid, None)
            if reason == "trial_timeout":
                self._write(Result, wall, trial=tid, status=Status.FAILED,
                            error=f"trial_timeout of {self.config.trial_timeout:g}s exceeded",
                            duration=now - started)
            else:
                self._write(Result, wall, trial=tid, status=Status.SUPERSEDED, duration=now - started)
            cmds.append(StopTrial(tid, Verdict.STOP, reason))
        return cmds

    def _release_held(self, now: float, wall: float) -> None:
        """Close the result windows (``result_window``) that ran out: a trial that finished
        inside its window gets its outcome written now, SUPERSEDED if a rival claim of
        the slot won meanwhile; a trial still running is policed as any other."""
        for tid in sorted(t for t, end in self._window.items() if end <= now):
            del self._window[tid]
            outcome = self._held.pop(tid, None)
            if outcome is not None:
                if self._rival_reason(tid) is not None:
                    outcome = Outcome(Status.SUPERSEDED, duration=outcome.duration)
                self._record(tid, outcome, wall)

    def _tell_losers(self, tid: TrialId) -> None:
        """Our claim ``tid`` keeps its slot against running rival claims: name their
        owners (``tell``, for the driver) to send it to at once. A loser that has not
        heard of our claim yet would otherwise write its result when its window closes:
        at 200 nodes a claim was seen 2 s late by its rival, whose own it had seen."""
        view = self.ledger.trial(tid)
        losers = [] if view is None else [
            v.id for v in self.index.views(view.slot)
            if v.id != tid and v.state is TrialState.RUNNING and v.id not in self._told]
        if losers:
            self._told.update(losers)
            self.tell.append((tid[1], sorted({t[0] for t in losers})))

    def _stop_reason(self, tid: TrialId, now: float) -> str | None:
        reason = self._rival_reason(tid)
        if reason is not None:
            return reason
        timeout = self.config.trial_timeout
        if timeout is not None and now - self._own[tid] > timeout:
            return "trial_timeout"
        return None

    def _rival_reason(self, tid: TrialId) -> str | None:
        """Why our running trial ``tid`` must give way to another of its slot, if it must."""
        view = self.ledger.trial(tid)
        if view is None or view.state is not TrialState.RUNNING:
            return None
        others = [v for v in self.index.views(view.slot) if v.id != tid]
        if any(v.state.counted for v in others):
            return "slot already has a result"
        rivals = [v.id for v in others if v.state is TrialState.RUNNING]
        if rivals and _winner(view.slot, rivals + [tid]) != tid:
            return "lost a double claim"
        return None

    def result_window(self, kind: str, now: float) -> float:
        """Seconds after a claim of ``kind`` (``Pick.kind``) before its RESULT may be
        written, so rival claims meet before either counts. Thieves agree on a slot
        only when they agree on who is a thief, and with trials shorter than the
        claims' travel two that each saw the other busy would both count. Home slots
        are agreed once every node sees the same roster (``core/budget.py``): no
        window, unless this node's roster is young (``young_roster`` seconds since it
        first saw another ready member: views of who owns what differ most while the
        cluster joins; at 200 nodes two members that did not know each other yet
        counted one slot twice). A claim takes about log2(members) gossip rounds to
        reach everyone, so the windows grow with the roster. The wait costs idle time
        only when the trial is shorter than the window. Alone: no window."""
        cfg = self.config
        if kind == "grace":
            base = cfg.grace_window
        elif kind != "home" or now - self._roster_born < cfg.young_roster:
            base = cfg.steal_window
        else:
            base = 0.0
        if base <= 0 or len(self._ready_members()) <= 1:
            return 0.0
        return base + cfg.window_growth * math.log2(max(2, len(self._roster)))


def _winner(slot: int, trials: list[TrialId]) -> TrialId:
    """The claim that keeps a doubly claimed slot: lowest hrw(slot, origin)."""
    return min(trials, key=lambda t: (hrw(slot, t[0]), t))
