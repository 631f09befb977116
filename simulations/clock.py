"""Virtual time: a seeded event heap and the simulator's random streams.

Events are ``(time, seq, kind, node, payload)``; ``seq`` is a global push
counter, so events due at the same instant run in the order they were
scheduled and a run never depends on comparing payloads. Every random stream
is a ``random.Random`` seeded by :func:`p2phpo.core.hrw.hrw` over
``(seed, purpose, node)``: adding a consumer never shifts another stream, and
nothing depends on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, NamedTuple

from p2phpo.core.hrw import hrw


def derive_rng(seed: int, purpose: str, node: int = 0) -> random.Random:
    """An independent, reproducible stream for ``purpose`` (and ``node``)."""
    return random.Random(hrw("sim", seed, purpose, node))


class Event(NamedTuple):
    time: float
    seq: int
    kind: str
    node: int
    payload: Any


class EventHeap:
    """A priority queue of events on a virtual clock that only moves forward."""

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0
        self.now = 0.0
        self.processed = 0

    def push(self, time: float, kind: str, node: int = 0, payload: Any = None) -> None:
        """Schedule ``kind`` for ``node`` at ``time`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, Event(max(time, self.now), self._seq, kind, node, payload))

    def pop(self) -> Event | None:
        """The next event, advancing ``now`` to its time; None when empty."""
        if not self._heap:
            return None
        ev = heapq.heappop(self._heap)
        self.now = ev.time
        self.processed += 1
        return ev

    def peek_time(self) -> float | None:
        return self._heap[0].time if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
