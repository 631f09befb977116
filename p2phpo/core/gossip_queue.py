"""The piggyback queue: updates waiting to ride on outgoing datagrams.

Items are already-encoded messages under a key (a newer item for the same
key replaces the older one: a member's latest state, an entry's bytes). Each
datagram takes the least-sent items first and, among equally sent ones, the
newest; an item is retired after ``limit`` transmissions (or its own, smaller,
limit given to :meth:`put`). The queue holds at
most ``max_bytes``: past that it forgets the most-sent, oldest items first —
anti-entropy carries whatever it forgets.

Layout: one list per transmit count ("tier"), oldest first, of *cells*
``[data, key, live]``; ``_items[key]`` is the key's live cell. A take moves
the cells it sent from the end of one tier to the end of the next with list
slices (a busy N = 1,000 node sends ~100 announcements per datagram, and a
per-item dict update each was most of its CPU); a replaced item's old cell is
marked dead and skipped, an evicted one is cut off at the tier's head, and dead
cells are purged once they outnumber the live ones. Deterministic: no hashing
of strings or bytes decides an order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from itertools import accumulate
from operator import itemgetter
from typing import Any

_MIN_ITEM = 4  # smallest message we could still fit: stop scanning below this
_MAX_SCAN = 512  # live items inspected per take(), so one call stays cheap
_MAX_MISSES = 16  # consecutive items too big for the room left: the datagram is full
_DATA, _KEY, _LIVE = 0, 1, 2  # a cell: [data, key, live]
_data, _live = itemgetter(_DATA), itemgetter(_LIVE)

Cell = list[Any]


class PiggybackQueue:
    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self._tiers: list[list[Cell]] = [[]]
        self._head: list[int] = [0]  # cells before this index are dead (evicted)
        self._items: dict[Hashable, Cell] = {}
        self._limit: dict[Hashable, int] = {}  # items with their own transmission limit
        self._dead = 0  # replaced cells still in a tier
        self._bytes = 0
        self._floor = _MIN_ITEM  # no live item is smaller (the smallest put since the queue was empty)
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def put(self, key: Hashable, data: bytes, limit: int | None = None) -> None:
        """Queue ``data`` under ``key`` as never sent (replacing any older item), to be
        sent at most ``limit`` times (None: the limit :meth:`take` is given)."""
        old = self._items.pop(key, None)
        if old is not None:
            old[_LIVE] = False
            self._bytes -= len(old[_DATA])
            self._dead += 1
        if not self._items or len(data) < self._floor:
            self._floor = max(_MIN_ITEM, len(data))
        if limit is None:
            self._limit.pop(key, None)
        else:
            self._limit[key] = limit
        cell = [data, key, True]
        self._items[key] = cell
        self._tiers[0].append(cell)
        self._bytes += len(data)
        self._enforce_budget()
        if self._dead > 64 and self._dead > len(self._items):
            self._purge()

    def _purge(self) -> None:
        """Drop the dead cells of every tier (they outnumber the live ones)."""
        for t, cells in enumerate(self._tiers):
            self._tiers[t] = [c for c in cells[self._head[t]:] if c[_LIVE]]
            self._head[t] = 0
        self._dead = 0

    def _enforce_budget(self) -> None:
        tiers, heads = self._tiers, self._head
        t = len(tiers) - 1
        while self._bytes > self.max_bytes and t >= 0:
            cells, i = tiers[t], heads[t]
            while i < len(cells) and not cells[i][_LIVE]:
                i += 1
            heads[t] = i
            if i == len(cells):
                t -= 1
                continue
            cell = cells[i]  # the oldest of the most-sent tier
            cell[_LIVE] = False
            del self._items[cell[_KEY]]
            self._limit.pop(cell[_KEY], None)
            self._bytes -= len(cell[_DATA])
            heads[t] = i + 1
            self.forgotten += 1
            if i + 1 > 256 and 2 * (i + 1) > len(cells):
                del cells[: i + 1]
                heads[t] = 0

    def take(self, room: int, limit: int) -> list[bytes]:
        """Items that fit in ``room`` bytes, least-sent and newest first; each counts as sent.

        The hottest path of a busy node (once per datagram sent): a tier's newest
        cells that are live and all fit are found and moved with whole-list
        operations (:meth:`_fitting_tail`), the rest one by one.
        """
        floor = self._floor  # nothing smaller is queued: below it the datagram is full
        if room < floor:
            return []
        tiers, heads = self._tiers, self._head
        runs: list[tuple[int, int, list[Cell], list[int]]] = []  # tier, tail, picked, their indexes
        scanned = misses = 0
        for t in range(len(tiers)):
            cells, head = tiers[t], heads[t]
            if len(cells) <= head:
                continue
            if room < floor or scanned >= _MAX_SCAN or misses >= _MAX_MISSES:
                break  # the datagram is full
            picked, used = self._fitting_tail(cells, head, room, floor, _MAX_SCAN - scanned)
            tail = len(picked)
            if tail:
                scanned += tail
                room -= used
                misses = 0
            where: list[int] = []
            full = False
            for i in range(len(cells) - 1 - tail, head - 1, -1):
                if room < floor or scanned >= _MAX_SCAN or misses >= _MAX_MISSES:
                    full = True
                    break
                cell = cells[i]
                if not cell[_LIVE]:
                    continue
                scanned += 1
                size = len(cell[_DATA])
                if size <= room:
                    picked.append(cell)
                    where.append(i)
                    room -= size
                    misses = 0
                else:
                    misses += 1
            if picked:
                runs.append((t, tail, picked, where))
            if full:
                break
        # Highest tier first: a tier's picked tail is still its end when it is cut off.
        for t, tail, picked, where in reversed(runs):
            self._promote(t, tail, picked, where, limit)
        if len(runs) == 1:
            return list(map(_data, runs[0][2]))
        return [data for run in runs for data in map(_data, run[2])]

    def _fitting_tail(self, cells: list[Cell], head: int, room: int, floor: int,
                      cap: int) -> tuple[list[Cell], int]:
        """A tier's newest cells, newest first, while each is live and fits in what is left
        of ``room`` with at least ``floor`` left before it (at most ``cap``), and their
        bytes: exactly what the one-by-one scan would pick first."""
        n = min(len(cells) - head, room // floor + 1, cap)
        tail = cells[-n:]
        tail.reverse()
        if self._dead and not all(map(_live, tail)):
            n = next(j for j, c in enumerate(tail) if not c[_LIVE])  # stop before a dead cell
            del tail[n:]
        ends = list(accumulate(map(len, map(_data, tail))))
        k = min(bisect_right(ends, room), bisect_right(ends, room - floor) + 1)
        del tail[k:]
        return tail, ends[k - 1] if k else 0

    def _promote(self, t: int, tail: int, picked: list[Cell], where: list[int], limit: int) -> None:
        """``picked`` (newest first; the first ``tail`` were tier ``t``'s newest cells, the
        rest at indexes ``where``) were sent: each moves to the end of the next tier,
        oldest first (the newest stays newest there), or retires at its limit."""
        cells, own = self._tiers[t], self._limit
        if tail:
            del cells[-tail:]
        for i in where:  # descending: each deletion leaves the next index in place
            del cells[i]
        nxt = t + 1
        if own and not own.keys().isdisjoint([c[_KEY] for c in picked]):
            moved = [c for c in picked if nxt < min(limit, own.get(c[_KEY], limit))]
            retired = [c for c in picked if nxt >= min(limit, own.get(c[_KEY], limit))]
        elif nxt < limit:
            moved, retired = picked, []
        else:
            moved, retired = [], picked
        for cell in retired:
            del self._items[cell[_KEY]]
            self._bytes -= len(cell[_DATA])
            if own:
                own.pop(cell[_KEY], None)
        if moved:
            if nxt == len(self._tiers):
                self._tiers.append([])
                self._head.append(0)
            self._tiers[nxt] += moved[::-1]  # (a copy: ``picked`` is what take returns)
        if self._head[t] > len(cells):
            self._head[t] = len(cells)

    def dump(self) -> list[list[object]]:
        """Live keys per tier, oldest first (tests, fuzz)."""
        out: list[list[object]] = []
        for t, cells in enumerate(self._tiers):
            live = [c[_KEY] for c in cells[self._head[t]:] if c[_LIVE]]
            out.append([list(k) if isinstance(k, tuple) else k for k in live])
        return out
