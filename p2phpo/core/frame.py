"""The column-wise trial frame the samplers read.

A :class:`Frame` is an immutable snapshot of the study's trials as numpy
columns: parameters scaled to the unit cube (float32), values normalized so
that lower is better, states, and the last report step of pruned trials.
Rows are in finish order, ``(RESULT wall, trial id)``, with RUNNING trials
after every finished one (ordered by claim wall), so "newest" is "last".

:class:`FrameBuilder` keeps the columns up to date from the ledger
incrementally: each :meth:`FrameBuilder.sync` reads only
``ledger.changes[cursor:]`` and touches the rows of the trials named there,
so a sampler never rebuilds arrays from trial objects.

ABANDONED and SUPERSEDED trials are not rows (they do not count and are
retried or replaced elsewhere); FAILED trials are rows with state FAILED
that the model-based samplers ignore and the grid sampler still avoids.

Pure: numpy only, no clock, no IO.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2phpo.space import Space, SpaceError

TrialId = tuple[int, int]
_NO_STEP = np.iinfo(np.int64).max  # "complete": deeper than any pruned trial


class RowState(enum.IntEnum):
    """A frame row's state (the trial states the samplers care about)."""

    COMPLETE = 0
    PRUNED = 1
    RUNNING = 2
    FAILED = 3


_FROM_TRIAL_STATE = {"COMPLETE": RowState.COMPLETE, "PRUNED": RowState.PRUNED,
                     "RUNNING": RowState.RUNNING, "FAILED": RowState.FAILED}


def direction_sign(direction: str) -> float:
    """+1 for "minimize", -1 for "maximize": multiply a value to get lower-is-better."""
    if direction == "minimize":
        return 1.0
    if direction == "maximize":
        return -1.0
    raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")


@dataclass(frozen=True, slots=True)
class Row:
    """One trial as the frame sees it (used to build frames directly)."""

    params: Mapping[str, Any]
    state: RowState
    value: float | None = None  # raw objective value (COMPLETE) or last report (PRUNED)
    step: int | None = None  # last report step of a PRUNED trial
    wall: float = 0.0  # RESULT wall (finished) or CLAIM wall (running)
    trial: TrialId = (0, 0)
    slot: int = 0


class Frame:
    """Immutable column snapshot; build with :meth:`from_rows` or a :class:`FrameBuilder`.

    Columns (all length ``n``, in finish order):
    ``x`` float32 ``(n, d)`` unit-cube params; ``state`` int8 :class:`RowState`;
    ``value`` float64 lower-is-better (NaN for RUNNING/FAILED); ``step`` int64
    depth of the value (``_NO_STEP`` for COMPLETE, last report step for
    PRUNED, -1 otherwise); ``origin``/``seq`` the trial ids; ``slot``.
    """

    __slots__ = ("space", "direction", "x", "state", "value", "step", "origin", "seq",
                 "slot", "_ranked")

    def __init__(self, space: Space, direction: str, x: np.ndarray, state: np.ndarray,
                 value: np.ndarray, step: np.ndarray, origin: np.ndarray, seq: np.ndarray,
                 slot: np.ndarray) -> None:
        self.space, self.direction = space, direction
        self.x, self.state, self.value, self.step = x, state, value, step
        self.origin, self.seq, self.slot = origin, seq, slot
        for a in (x, state, value, step, origin, seq, slot):
            a.flags.writeable = False
        self._ranked: np.ndarray | None = None

    @classmethod
    def empty(cls, space: Space, direction: str = "minimize") -> Frame:
        return cls.from_rows(space, direction, [])

    @classmethod
    def from_rows(cls, space: Space, direction: str, rows: Iterable[Row]) -> Frame:
        """Build a frame from :class:`Row` objects (tests, benchmarks); rows are sorted."""
        b = FrameBuilder(space, direction)
        for r in rows:
            b.put(r)
        return b.snapshot()

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def n_finished(self) -> int:
        """COMPLETE + PRUNED rows (what the samplers learn from)."""
        return int(np.count_nonzero(self.state <= RowState.PRUNED))

    def count(self, state: RowState) -> int:
        return int(np.count_nonzero(self.state == state))

    def ranked(self) -> np.ndarray:
        """Row indices of COMPLETE and PRUNED trials, best first.

        COMPLETE trials by value, then PRUNED ones deeper first (larger last
        report step), by value within a step — Optuna's order.
        """
        if self._ranked is None:
            idx = np.flatnonzero(self.state <= RowState.PRUNED)
            order = np.lexsort((self.value[idx], -self.step[idx]))
            self._ranked = idx[order]
        return self._ranked

    def best(self) -> int | None:
        """Row index of the best COMPLETE trial, or None (``core.best``'s rule:
        ties go to the lower trial id)."""
        idx = np.flatnonzero(self.state == RowState.COMPLETE)
        if idx.size == 0:
            return None
        return int(idx[np.lexsort((self.seq[idx], self.origin[idx], self.value[idx]))[0]])

    def trial_id(self, row: int) -> TrialId:
        return int(self.origin[row]), int(self.seq[row])


class FrameBuilder:
    """Keeps a :class:`Frame` in step with a ledger by reading its change log.

    ``sync(ledger)`` reads ``ledger.changes[cursor:]`` and ``ledger.trial(id)``
    for those ids only; it returns the same frame object while nothing changed.
    Trials whose params do not fit the space are skipped and counted in
    ``skipped`` (a peer's bad claim never breaks sampling).
    """

    def __init__(self, space: Space, direction: str) -> None:
        self.space, self.direction = space, direction
        self._sign = direction_sign(direction)
        self._cursor = 0
        self._rows: dict[TrialId, int] = {}
        self._n = 0
        self._alloc(64)
        self._frame: Frame | None = None
        self.skipped = 0

    def _alloc(self, cap: int) -> None:
        d = len(self.space)
        old = getattr(self, "_x", None)
        x = np.zeros((cap, d), np.float32)
        cols = {"_state": np.int8, "_value": np.float64, "_step": np.int64, "_wall": np.float64,
                "_origin": np.uint64, "_seq": np.int64, "_slot": np.int64, "_live": bool}
        new = {k: np.zeros(cap, t) for k, t in cols.items()}
        if old is not None:
            x[: self._n] = old[: self._n]
            for k in cols:
                new[k][: self._n] = getattr(self, k)[: self._n]
        self._x = x
        for k, v in new.items():
            setattr(self, k, v)

    # -- writing ---------------------------------------------------------
    def put(self, r: Row) -> None:
        """Insert or replace the row of trial ``r.trial``."""
        try:
            u = self.space.encode(r.params)
        except SpaceError:
            self.skipped += 1
            self._drop(r.trial)
            return
        state = RowState(r.state)
        value = math.nan if r.value is None else float(r.value) * self._sign
        if state <= RowState.PRUNED and math.isnan(value):
            state = RowState.FAILED  # a finished trial without a usable value
        if state is RowState.COMPLETE:
            step = _NO_STEP
        elif state is RowState.PRUNED:
            step = -1 if r.step is None else int(r.step)
        else:
            step, value = -1, math.nan
        i = self._rows.get(r.trial)
        if i is None:
            if self._n == self._x.shape[0]:
                self._alloc(2 * self._n)
            i = self._rows[r.trial] = self._n
            self._n += 1
        self._x[i] = u
        self._state[i], self._value[i], self._step[i] = int(state), value, step
        self._wall[i], self._slot[i], self._live[i] = r.wall, r.slot, True
        self._origin[i], self._seq[i] = r.trial[0], r.trial[1]
        self._frame = None

    def _drop(self, tid: TrialId) -> None:
        i = self._rows.get(tid)
        if i is not None and self._live[i]:
            self._live[i] = False
            self._frame = None

    def update(self, view: Any) -> None:
        """Apply one ledger trial view (duck-typed ``TrialView``)."""
        name = getattr(view.state, "name", str(view.state))
        state = _FROM_TRIAL_STATE.get(name)
        if state is None:  # ABANDONED, SUPERSEDED: not a row
            self._drop(view.id)
            return
        value, step = view.value, None
        if state is RowState.PRUNED and view.last_report is not None:
            step = view.last_report[0]
            if value is None:
                value = view.last_report[1]
        finished = state is not RowState.RUNNING and view.finished_wall is not None
        wall = view.finished_wall if finished else view.claim_wall
        self.put(Row(view.params, state, value, step, float(wall or 0.0), view.id, view.slot))

    def sync(self, ledger: Any) -> Frame:
        """Fold ``ledger.changes[cursor:]`` in and return the current frame."""
        changes = ledger.changes
        if self._cursor < len(changes):
            for tid in dict.fromkeys(changes[self._cursor:]):
                view = ledger.trial(tid)
                if view is not None:
                    self.update(view)
            self._cursor = len(changes)
        return self.snapshot()

    # -- reading ---------------------------------------------------------
    def snapshot(self) -> Frame:
        if self._frame is None:
            n = self._n
            live = np.flatnonzero(self._live[:n])
            running = self._state[live] == RowState.RUNNING
            order = live[np.lexsort((self._seq[live], self._origin[live], self._wall[live],
                                     running))]
            self._frame = Frame(self.space, self.direction, self._x[order], self._state[order],
                                self._value[order], self._step[order], self._origin[order],
                                self._seq[order], self._slot[order])
        return self._frame
