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
