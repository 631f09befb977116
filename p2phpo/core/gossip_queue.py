"""The piggyback queue: updates waiting to ride on outgoing datagrams.

Items are already-encoded messages under a key (a newer item for the same
key replaces the older one: a member's latest state, an entry's bytes). Each
datagram takes the least-sent items first and, among equally sent ones, the
newest; an item is retired after ``limit`` transmissions. The queue holds at
most ``max_bytes``: past that it forgets the most-sent, oldest items first —
anti-entropy carries whatever it forgets. Deterministic: plain insertion
ordered dicts, no hashing of strings or bytes.
"""

from __future__ import annotations

from collections.abc import Hashable

_MIN_ITEM = 4  # smallest message we could still fit: stop scanning below this
_MAX_SCAN = 512  # items inspected per take(), so one call stays cheap


class PiggybackQueue:
    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self._tiers: list[dict[Hashable, bytes]] = [{}]  # index = times sent
        self._tier_of: dict[Hashable, int] = {}
        self._bytes = 0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._tier_of)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tier_of

    def put(self, key: Hashable, data: bytes) -> None:
        """Queue ``data`` under ``key`` as never sent (replacing any older item)."""
        self._remove(key)
        self._tiers[0][key] = data
        self._tier_of[key] = 0
        self._bytes += len(data)
        self._enforce_budget()

    def _remove(self, key: Hashable) -> None:
        tier = self._tier_of.pop(key, None)
        if tier is not None:
            self._bytes -= len(self._tiers[tier].pop(key))

    def _enforce_budget(self) -> None:
        t = len(self._tiers) - 1
        while self._bytes > self.max_bytes and t >= 0:
            tier = self._tiers[t]
            if not tier:
                t -= 1
                continue
            key = next(iter(tier))  # oldest of the most-sent tier
            self._remove(key)
            self.forgotten += 1

    def take(self, room: int, limit: int) -> list[bytes]:
        """Items that fit in ``room`` bytes, least-sent and newest first; each counts as sent."""
        picked: list[tuple[int, Hashable]] = []
        scanned = 0
        for t, tier in enumerate(self._tiers):
            if room < _MIN_ITEM or scanned >= _MAX_SCAN:
                break
            for key in reversed(tier):
                scanned += 1
                size = len(tier[key])
                if size <= room:
                    picked.append((t, key))
                    room -= size
                if room < _MIN_ITEM or scanned >= _MAX_SCAN:
                    break
        out = [self._tiers[t][k] for t, k in picked]
        # Promote oldest-first so the newest stays newest in its next tier.
        for t, key in reversed(picked):
            data = self._tiers[t].pop(key)
            if t + 1 >= limit:
                del self._tier_of[key]
                self._bytes -= len(data)
                continue
            if t + 1 == len(self._tiers):
                self._tiers.append({})
            self._tiers[t + 1][key] = data
            self._tier_of[key] = t + 1
        return out

    def dump(self) -> list[list[object]]:
        """Keys per tier, in order (tests, fuzz)."""
        return [[list(k) if isinstance(k, tuple) else k for k in tier] for tier in self._tiers]
