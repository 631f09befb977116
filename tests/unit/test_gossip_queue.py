"""Piggyback queue: least-sent and newest first, retired after the limit, byte budget."""

from __future__ import annotations

from p2phpo.core.gossip_queue import PiggybackQueue


def test_least_sent_then_newest_first_and_retired_after_limit():
    q = PiggybackQueue()
    for i in range(4):
        q.put(i, bytes([i]) * 10)
    assert q.take(25, limit=2) == [bytes([3]) * 10, bytes([2]) * 10]  # newest first
    assert q.take(25, limit=2) == [bytes([1]) * 10, bytes([0]) * 10]  # then the unsent ones
    assert sorted(q.take(100, limit=2)) == [bytes([b]) * 10 for b in (0, 1, 2, 3)]
    assert len(q) == 0 and q.nbytes == 0  # each sent twice: retired


def test_newer_item_for_a_key_replaces_the_old_one():
    q = PiggybackQueue()
    q.put(("m", 7), b"old")
    q.take(100, limit=5)
    q.put(("m", 7), b"new")
    assert len(q) == 1
    assert q.take(100, limit=5) == [b"new"]


def test_items_that_do_not_fit_wait_for_the_next_datagram():
    q = PiggybackQueue()
    q.put("big", b"x" * 50)
    q.put("small", b"y" * 5)
    assert q.take(20, limit=3) == [b"y" * 5]
    assert q.take(60, limit=3) == [b"x" * 50, b"y" * 5]


def test_byte_budget_forgets_most_sent_oldest_first():
    q = PiggybackQueue(max_bytes=100)
    for i in range(5):
        q.put(("sent", i), b"s" * 10)
    q.take(1000, limit=10)  # all five now sent once
    for i in range(6):
        q.put(("new", i), b"n" * 10)
    assert q.nbytes <= 100 and q.forgotten == 1
    assert ("sent", 0) not in q and ("sent", 4) in q
    for i in range(6, 20):
        q.put(("new", i), b"n" * 10)
    assert q.nbytes <= 100 and not any(("sent", i) in q for i in range(5))


def test_an_item_with_its_own_limit_retires_after_it():
    q = PiggybackQueue()
    q.put("short", b"s", limit=2)
    q.put("long", b"l")
    assert q.take(10, limit=5) == [b"l", b"s"]
    assert q.take(10, limit=5) == [b"l", b"s"]
    assert q.take(10, limit=5) == [b"l"]  # "short" went twice: retired
    q.put("short", b"s")  # put again without a limit: the queue's limit applies
    assert [q.take(10, limit=5) for _ in range(6)] == [[b"s", b"l"], [b"s", b"l"]] + [[b"s"]] * 3 + [[]]


def test_room_below_every_queued_item_takes_nothing_and_counts_nothing_as_sent():
    q = PiggybackQueue()
    q.put("a", b"a" * 40)
    q.put("b", b"b" * 30)
    assert q.take(29, limit=1) == []  # smaller than the smallest item queued
    assert q.take(30, limit=1) == [b"b" * 30]  # nothing was counted as sent above
    assert q.take(40, limit=1) == [b"a" * 40]
    assert len(q) == 0 and q.nbytes == 0
    q.put("c", b"c" * 50)  # the queue emptied: a bigger item alone is still found
    assert q.take(50, limit=1) == [b"c" * 50]


class _Model:
    """The queue's rules written plainly (module doc of core/gossip_queue.py): items by
    (times sent, newest placement first); the stops of one take; retirement; the budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.items, self.own, self.order = max_bytes, {}, {}, 0
        self.floor, self.forgotten = 4, 0

    def nbytes(self) -> int:
        return sum(len(d) for d, _, _ in self.items.values())

    def put(self, key, data, limit=None) -> None:
        self.items.pop(key, None)
        if not self.items or len(data) < self.floor:
            self.floor = max(4, len(data))
        self.own.pop(key, None)
        if limit is not None:
            self.own[key] = limit
        self.order += 1
        self.items[key] = (data, 0, self.order)
        while self.nbytes() > self.max_bytes:
            most = max(sent for _, sent, _ in self.items.values())
            victim = min((o, k) for k, (_, sent, o) in self.items.items() if sent == most)[1]
            del self.items[victim]
            self.own.pop(victim, None)
            self.forgotten += 1

    def take(self, room: int, limit: int) -> list[bytes]:
        if room < self.floor:
            return []
        picked, scanned, misses = [], 0, 0
        for key in sorted(self.items, key=lambda k: (self.items[k][1], -self.items[k][2])):
            if room < self.floor or scanned >= 512 or misses >= 16:
                break
            scanned += 1
            data = self.items[key][0]
            if len(data) <= room:
                picked.append(key)
                room -= len(data)
                misses = 0
            else:
                misses += 1
        out = [self.items[k][0] for k in picked]
        for key in reversed(picked):
            data, sent, _ = self.items[key]
            if sent + 1 >= min(limit, self.own.get(key, limit)):
                del self.items[key]
                self.own.pop(key, None)
            else:
                self.order += 1
                self.items[key] = (data, sent + 1, self.order)
        return out


def test_random_puts_and_takes_follow_the_rules_exactly():
    """Replacements, own limits, items too big, the scan and miss stops and the byte
    budget, against the plain model: the same datagrams, the same items left."""
    import random

    for seed in range(40):
        rng = random.Random(seed)
        max_bytes = rng.choice([150, 1000, 1 << 20])
        q, model = PiggybackQueue(max_bytes), _Model(max_bytes)
        keys = rng.choice([6, 40, 700])
        lo, hi = rng.choice([(1, 3), (9, 11), (10, 200)])
        for step in range(400):
            if rng.random() < 0.55:
                key, data = rng.randrange(keys), bytes([step % 256]) * rng.randint(lo, hi)
                limit = rng.choice([None, None, 1, 2, 5])
                q.put(key, data, limit)
                model.put(key, data, limit)
            else:
                room, limit = rng.choice([0, 3, 12, 100, 1232, 6000]), rng.choice([1, 3, 16])
                assert q.take(room, limit) == model.take(room, limit), (seed, step)
            assert len(q) == len(model.items) and q.nbytes == model.nbytes(), (seed, step)
            assert q.forgotten == model.forgotten, (seed, step)
