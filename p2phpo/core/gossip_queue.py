"""The piggyback queue: updates waiting to ride on outgoing datagrams.

Items are already-encoded messages under a key (a newer item for the same
key replaces the older one: a member's latest state, an entry's bytes). Each
datagram takes the least-sent items first and, among equally sent ones, the
newest; an item is retired after ``limit`` transmissions (or its own, smaller,
limit given to :meth:`put`). The queue holds at
most ``max_bytes``: past that it forgets the most-sent, oldest items first —
anti-entropy carries whatever it forgets.

Layout: one list per transmit count ("tier"), newest at the end, holding
``(key, version)``; the live item is ``_items[key] = (tier, version, data)``,
so a stale list slot (item moved, replaced or retired) is skipped in O(1) and
lists are compacted when mostly stale. Deterministic: no hashing of strings
or bytes decides an order.
"""

from __future__ import annotations

from collections.abc import Hashable

_MIN_ITEM = 4  # smallest message we could still fit: stop scanning below this
_MAX_SCAN = 512  # live items inspected per take(), so one call stays cheap
_MAX_MISSES = 16  # consecutive items too big for the room left: the datagram is full


class PiggybackQueue:
    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self._tiers: list[list[tuple[Hashable, int]]] = [[]]
        self._live: list[int] = [0]  # live items per tier
        self._head: list[int] = [0]  # slots before this index are stale
        self._items: dict[Hashable, tuple[int, int, bytes]] = {}
        self._limit: dict[Hashable, int] = {}  # items with their own transmission limit
        self._version = 0
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
        self._remove(key)
        if not self._items or len(data) < self._floor:
            self._floor = max(_MIN_ITEM, len(data))
        if limit is None:
            self._limit.pop(key, None)
        else:
            self._limit[key] = limit
        self._place(key, 0, data)
        self._bytes += len(data)
        self._enforce_budget()

    def _place(self, key: Hashable, tier: int, data: bytes) -> None:
        while tier >= len(self._tiers):
            self._tiers.append([])
            self._live.append(0)
            self._head.append(0)
        self._version += 1
        self._items[key] = (tier, self._version, data)
        self._tiers[tier].append((key, self._version))
        self._live[tier] += 1

    def _remove(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._live[item[0]] -= 1
            self._bytes -= len(item[2])

    def _is_live(self, tier: int, key: Hashable, version: int) -> bytes | None:
        item = self._items.get(key)
        return item[2] if item is not None and item[0] == tier and item[1] == version else None

    def _compact(self, tier: int) -> None:
        slots, items = self._tiers[tier], self._items
        while slots:
            key, version = slots[-1]
            item = items.get(key)
            if item is not None and item[0] == tier and item[1] == version:
                break
            slots.pop()  # taken items were the newest: their slots sit at the end
        self._head[tier] = min(self._head[tier], len(slots))
        if self._head[tier] > 256 and 2 * self._head[tier] > len(slots):
            del slots[: self._head[tier]]
            self._head[tier] = 0
        if len(slots) > 32 and len(slots) > 2 * self._live[tier]:
            self._tiers[tier] = [(k, v) for k, v in slots if self._is_live(tier, k, v) is not None]
            self._head[tier] = 0

    def _enforce_budget(self) -> None:
        t = len(self._tiers) - 1
        while self._bytes > self.max_bytes and t >= 0:
            if not self._live[t]:
                t -= 1
                continue
            slots, i = self._tiers[t], self._head[t]
            while self._is_live(t, *slots[i]) is None:
                i += 1
            self._remove(slots[i][0])  # oldest of the most-sent tier
            self._limit.pop(slots[i][0], None)
            self._head[t] = i + 1
            self.forgotten += 1
            self._compact(t)

    def take(self, room: int, limit: int) -> list[bytes]:
        """Items that fit in ``room`` bytes, least-sent and newest first; each counts as sent.

        The hottest path of a busy node (once per datagram sent): the liveness
        check, removal and promotion are written out inline.
        """
        items, tiers, live = self._items, self._tiers, self._live
        picked: list[tuple[int, Hashable, bytes]] = []
        scanned = misses = 0
        full = False
        floor = self._floor  # nothing smaller is queued: below it the datagram is full
        if room < floor:
            return []
        for t in range(len(tiers)):
            if not live[t]:
                continue
            slots = tiers[t]
            for i in range(len(slots) - 1, -1, -1):
                if room < floor or scanned >= _MAX_SCAN or misses >= _MAX_MISSES:
                    full = True
                    break
                key, version = slots[i]
                item = items.get(key)
                if item is None or item[0] != t or item[1] != version:
                    continue  # a stale slot
                scanned += 1
                data = item[2]
                if len(data) <= room:
                    picked.append((t, key, data))
                    room -= len(data)
                    misses = 0
                else:
                    misses += 1
            if full:
                break
        if not picked:
            return []
        touched = set()
        for t, key, _data in picked:
            del items[key]
            live[t] -= 1
            touched.add(t)
        for t in sorted(touched):
            self._compact(t)  # taken slots were the newest: trim them off the end
        # Promote oldest-first so the newest stays newest in its next tier.
        version = self._version
        own = self._limit
        for t, key, data in reversed(picked):
            nxt = t + 1
            if nxt >= (limit if key not in own else min(limit, own[key])):
                self._bytes -= len(data)  # retired
                if own:
                    own.pop(key, None)
                continue
            if nxt == len(tiers):
                tiers.append([])
                live.append(0)
                self._head.append(0)
            version += 1
            items[key] = (nxt, version, data)
            tiers[nxt].append((key, version))
            live[nxt] += 1
        self._version = version
        return [data for _, _, data in picked]

    def dump(self) -> list[list[object]]:
        """Live keys per tier, oldest first (tests, fuzz)."""
        out: list[list[object]] = []
        for t, slots in enumerate(self._tiers):
            live = [k for k, v in slots if self._is_live(t, k, v) is not None]
            out.append([list(k) if isinstance(k, tuple) else k for k in live])
        return out
