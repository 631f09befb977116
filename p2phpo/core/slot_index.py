"""The search's index of the ledger by budget slot (``core/search.py``).

Pure. Follows the ledger's change log, so each ``sync`` costs the changed
trials only, and keeps what the search core asks on every step: the trials
of each slot and the slot's state (FREE never claimed, BUSY while a trial
runs, DONE once one has a counted RESULT, REOPENED when all were abandoned
or superseded), every RUNNING trial (anyone's) with when this node first saw
it, when a change to each owner's trials last came (budget.py's ``quiet``), the
lowest slot not yet DONE, and the best counted trial so far
(``core/best.py``'s rule).
"""

from __future__ import annotations

from collections.abc import Callable

from p2phpo.core.best import best_key, best_trial
from p2phpo.core.entries import TrialId
from p2phpo.core.ledger import Ledger, TrialState, TrialView


class SlotIndex:
    """The trials of ``ledger`` by slot (module doc)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.slots: dict[int, list[TrialId]] = {}
        self.running: set[TrialId] = set()
        self.owners: dict[int, int] = {}  # owner -> its trials in ``running``
        self.seen_at: dict[TrialId, float] = {}  # running trial -> when this node first saw it
        self.heard: dict[int, float] = {}  # owner -> when a change to one of its trials came
        self.low = 0  # every slot below is DONE
        self.best: tuple[float, TrialId] | None = None  # best_key of the best counted trial
        self.direction: str | None = None  # the study's, once adopted: best is kept from then
        self._cursor = 0
        self._counts: dict[int, list[int]] = {}  # slot -> [counted, running] trials, as of the last sync
        self._was: dict[TrialId, tuple[bool, bool]] = {}  # trial -> (counted, running) then

    @property
    def seen(self) -> int:
        """How many ledger changes were taken in (``running`` changes only with it)."""
        return self._cursor

    def sync(self, now: float, changed: Callable[[int], None]) -> None:
        """Take in the ledger's changes since the last call; ``changed(slot)`` for each that
        can move its slot's state (not a REPORT of a trial still running)."""
        ledger = self.ledger
        changes = ledger.changes
        running = self.running
        for tid in changes[self._cursor :]:
            view = ledger.trial(tid)
            if view is None:
                continue
            self.heard[tid[0]] = now
            if tid in running and view.state is TrialState.RUNNING:
                # Still running (a REPORT): its slot's state cannot have moved. Every
                # change of a slot's trials comes through here, so the slot's mark
                # from when it last moved still holds.
                continue
            self._count(tid, view)
            trials = self.slots.setdefault(view.slot, [])
            if tid not in trials:
                trials.append(tid)
            if view.state is TrialState.RUNNING:
                running.add(tid)
                self.owners[tid[0]] = self.owners.get(tid[0], 0) + 1
                self.seen_at.setdefault(tid, now)
            else:
                self.seen_at.pop(tid, None)
                if tid in running:
                    running.remove(tid)
                    self._drop_owner(tid[0])
                self._note_best(view)
            changed(view.slot)
        self._cursor = len(changes)
        while self.state(self.low) == "DONE":
            self.low += 1

    def _drop_owner(self, owner: int) -> None:
        left = self.owners[owner] - 1
        if left:
            self.owners[owner] = left
        else:
            del self.owners[owner]

    def _count(self, tid: TrialId, view: TrialView) -> None:
        """Move ``tid`` to its state now in its slot's counts."""
        now = (view.state.counted, view.state is TrialState.RUNNING)
        was = self._was.get(tid, (False, False))
        if now != was:
            counts = self._counts.setdefault(view.slot, [0, 0])
            counts[0] += now[0] - was[0]
            counts[1] += now[1] - was[1]
            self._was[tid] = now

    def follow_best(self, direction: str) -> None:
        """The study was adopted: keep the best trial for ``direction`` from now on."""
        self.direction = direction
        found = best_trial(self.ledger.trials().values(), direction)
        self.best = None if found is None else best_key(found, direction)

    def _note_best(self, view: TrialView) -> None:
        direction = self.direction
        if direction is None:
            return
        key = best_key(view, direction)
        if key is None and self.best is not None and self.best[1] == view.id:
            # The best trial stopped counting (a retry whose original's RESULT surfaced).
            self.follow_best(direction)
        elif key is not None and (self.best is None or key < self.best):
            self.best = key  # p2phpo.core.best's rule, as everywhere

    def views(self, slot: int) -> list[TrialView]:
        trials = self.slots.get(slot)
        return [] if trials is None else [self.ledger.trial(t) for t in trials]

    def is_open(self, slot: int) -> bool:
        return self.state(slot) in ("FREE", "REOPENED")

    def state(self, slot: int) -> str:
        """FREE, BUSY, DONE or REOPENED. From counts of the slot's counted and running
        trials, kept by ``sync``: every change of a trial's state passes through it
        (a retry and its original share the slot). Between a ledger change and the
        next sync it is computed afresh from the trials."""
        if self._cursor != len(self.ledger.changes):
            return self._state_of(slot)
        if not self.slots.get(slot):
            return "FREE"
        counted, running = self._counts.get(slot, (0, 0))
        return "DONE" if counted else "BUSY" if running else "REOPENED"

    def _state_of(self, slot: int) -> str:
        views = self.views(slot)
        if not views:
            return "FREE"
        if any(v.state.counted for v in views):
            return "DONE"
        if any(v.state is TrialState.RUNNING for v in views):
            return "BUSY"
        return "REOPENED"

    def n_done(self) -> int:
        """Slots with a counted RESULT."""
        return sum(1 for s in self.slots if self.state(s) == "DONE")
