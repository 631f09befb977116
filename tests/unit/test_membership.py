"""SWIM + Lifeguard member table: transitions, refutation, suspicion timeouts."""

from __future__ import annotations

import random

import pytest

from p2phpo.core.membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberRefuted,
    Membership,
    MemberSuspected,
    Suspicion,
)
from p2phpo.core.messages import Alive, Dead, Leave, MemberRecord, State, Suspect
from p2phpo.core.profiles import LAN, LOCAL, profile


def table(n_members: int = 0) -> Membership:
    m = Membership(1, ("10.0.0.1", 7946), LAN, random.Random(0))
    for i in range(n_members):
        m.apply_alive(Alive(100 + i, 0, ("10.0.1.1", 7000 + i), {}), 0.0)
    m.events.clear()
    m.outbox.clear()
    return m


def state(m: Membership, node: int) -> State:
    got = m.get(node)
    assert got is not None
    return got.state


def test_new_member_joins_and_update_needs_higher_incarnation():
    m = table()
    m.apply_alive(Alive(7, 3, ("h", 1), {"ready": True}), 0.0)
    assert isinstance(m.events[-1], MemberJoined)
    m.apply_alive(Alive(7, 3, ("other", 2), {}), 1.0)
    assert m.get(7).addr == ("h", 1)  # same incarnation: ignored
    m.apply_alive(Alive(7, 4, ("other", 2), {}), 1.0)
    assert m.get(7).addr == ("other", 2)


def test_suspect_then_dead_and_old_incarnations_ignored():
    m = table(4)
    m.apply_suspect(Suspect(100, 0, 101), 1.0)
    assert state(m, 100) == State.SUSPECT
    assert isinstance(m.events[-1], MemberSuspected)
    m.apply_alive(Alive(100, 0, ("x", 1), {}), 1.5)  # not higher: no refutation
    assert state(m, 100) == State.SUSPECT
    m.apply_dead(Dead(100, 0, 102), 2.0)
    assert state(m, 100) == State.DEAD
    assert isinstance(m.events[-1], MemberDead)
    m.apply_alive(Alive(100, 1, ("x", 1), {}), 3.0)  # came back with a higher incarnation
    assert state(m, 100) == State.ALIVE
    assert isinstance(m.events[-1], MemberAlive)


def test_refutes_suspicion_about_itself():
    m = table(2)
    m.apply_suspect(Suspect(1, 0, 100), 1.0)
    assert m.incarnation == 1
    assert m.awareness == 1  # Lifeguard: refuting raises our own health multiplier
    assert isinstance(m.events[-1], MemberRefuted)
    assert m.outbox[-1] == Alive(1, 1, m.addr, {})
    m.apply_dead(Dead(1, 5, 100), 2.0)  # above our signed incarnation: a forgery, ignored
    assert m.incarnation == 1
    m.apply_dead(Dead(1, 1, 100), 2.0)
    assert m.incarnation == 2


def test_leave_is_final_for_equal_incarnation():
    m = table(2)
    m.apply_leave(Leave(100, 0), 1.0)
    assert state(m, 100) == State.LEFT
    m.apply_alive(Alive(100, 0, ("x", 1), {}), 2.0)
    m.apply_dead(Dead(100, 0, 101), 2.0)
    assert state(m, 100) == State.LEFT


def test_suspicion_timeout_shrinks_with_confirmations():
    lo, hi = LAN.suspicion_bounds(10)
    assert (lo, hi) == (4.0, 24.0)
    s = Suspicion(start=0.0, k=2, lo=lo, hi=hi, first=5)
    assert s.deadline() == 24.0
    assert not s.confirm(5)  # the first suspecter does not confirm itself
    assert s.confirm(6)
    assert lo < s.deadline() < hi
    assert not s.confirm(6)  # confirmations are independent
    assert s.confirm(7)
    assert s.deadline() == 4.0
    assert LAN.suspicion_bounds(1000)[0] == pytest.approx(12.0)


def test_expire_declares_dead_at_the_deadline():
    m = Membership(1, ("a", 1), LOCAL, random.Random(0))
    for i in range(2):
        m.apply_alive(Alive(100 + i, 0, ("b", i), {}), 0.0)
    m.suspect(100, 10.0)
    deadline = m.next_deadline()
    lo, hi = LOCAL.suspicion_bounds(3)
    assert deadline == pytest.approx(10.0 + hi)  # k = 1 confirmation expected among 3 members
    m.apply_suspect(Suspect(100, 0, 101), 10.1)
    assert m.next_deadline() == pytest.approx(10.0 + lo)
    m.expire(10.0 + lo - 1e-9)
    assert state(m, 100) == State.SUSPECT
    m.expire(10.0 + lo)
    assert state(m, 100) == State.DEAD


def test_pushpull_record_dead_only_suspects():
    m = table(1)
    m.apply_record(MemberRecord(100, 0, State.DEAD, ("x", 1), {}), 1.0)
    assert state(m, 100) == State.SUSPECT
    m.apply_record(MemberRecord(200, 2, State.ALIVE, ("y", 1), {"a": 1}), 1.0)
    assert state(m, 200) == State.ALIVE


def test_probe_order_visits_everyone_once_per_pass():
    m = table(5)
    first = [m.next_probe_target() for _ in range(5)]
    second = [m.next_probe_target() for _ in range(5)]
    assert sorted(first) == sorted(second) == list(range(100, 105))


def test_profiles_and_retransmit_limit():
    assert profile("local").probe_interval == 0.2
    assert LAN.retransmit_limit(10) == 8
    assert LAN.retransmit_limit(1000) == 16
    with pytest.raises(ValueError, match="lan, local or wan"):
        profile("moon")
