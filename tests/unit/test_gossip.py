"""Gossip cores over the in-memory network, on an exact virtual clock."""

from __future__ import annotations

import pytest
from netsim import Net, Node

from p2phpo.core.entries import Abandon, AbandonReason, Report
from p2phpo.core.gossip import Dropped, EntriesMerged
from p2phpo.core.ledger import Ledger
from p2phpo.core.membership import (
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberRefuted,
    MemberSuspected,
    MemberUpdated,
)
from p2phpo.core.messages import State
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import DropReason, pack


def cluster(n: int, seed: int = 1, **kw: object) -> tuple[Net, list[Node]]:
    net = Net(seed=seed, **kw)  # type: ignore[arg-type]
    first = net.add()
    nodes = [first] + [net.add(seeds=[first.addr]) for _ in range(n - 1)]
    net.run_for(2.0)
    return net, nodes


def view(node: Node, other: Node) -> State:
    return next(m.state for m in node.core.members() if m.node == other.node_id)


def events(node: Node, cls: type) -> list:
    return [(t, e) for t, e in node.events if isinstance(e, cls)]


def add_entries(node: Node, n: int, wall: float = 1.0) -> list:
    out = [
        node.ledger.new(node.node_id, Report, wall=wall, trial=(node.node_id, 1), step=i, value=0.5)
        for i in range(n)
    ]
    node.core.append_local(out)
    return out


def test_join_via_seed_everyone_sees_everyone():
    net, nodes = cluster(4)
    for a in nodes:
        assert {m.node for m in a.core.members()} == {1, 2, 3, 4}
        assert all(m.state == State.ALIVE for m in a.core.members())
        assert len(events(a, MemberJoined)) == 3


def test_seed_is_contacted_again_until_it_answers():
    net = Net(seed=2)
    joiner = net.add(5, seeds=[("10.0.0.1", 7946)])  # the seed is not up yet
    net.run_for(1.0)
    assert not joiner.core.membership.joined
    seed = net.add(1)
    net.run_for(1.0)
    assert view(joiner, seed) == State.ALIVE and view(seed, joiner) == State.ALIVE


def test_probe_ack_keeps_members_alive():
    net, (a, b) = cluster(2)
    net.run_for(5.0)
    info = next(m for m in a.core.members() if m.node == b.node_id)
    assert info.state == State.ALIVE and info.last_ack is not None
    assert net.now - info.last_ack <= 2 * LOCAL.probe_interval
    assert not events(a, MemberSuspected) and not events(b, MemberSuspected)


def test_indirect_probe_through_a_third_node():
    net, (a, b, c) = cluster(3)
    # a and b can no longer talk directly; c relays their probes.
    net.partition({a.node_id}, {b.node_id})
    t0 = net.now
    net.run_for(5.0)
    assert view(a, b) == State.ALIVE and view(b, a) == State.ALIVE
    assert not [e for t, e in a.events if isinstance(e, MemberSuspected) and t > t0]
    ack = next(m.last_ack for m in a.core.members() if m.node == b.node_id)
    assert ack is not None and ack > t0 + 1.0


def test_exact_virtual_times_of_suspicion_and_death():
    net, (a, b) = cluster(2)
    net.kill(b)
    probe = a.core.swim.probe
    suspect_at = probe.end_at if probe is not None else a.core._t["probe"] + LOCAL.probe_interval
    net.run_for(3.0)
    ((ts, sus),) = events(a, MemberSuspected)
    ((td, dead),) = events(a, MemberDead)
    lo, _ = LOCAL.suspicion_bounds(2)  # two members: no confirmations expected, the floor applies
    assert ts == pytest.approx(suspect_at, abs=1e-12)
    assert td == pytest.approx(suspect_at + lo, abs=1e-12)
    assert sus.by == dead.by == a.node_id


def test_crashed_node_is_suspected_then_dead_within_lifeguard_bounds():
    net, nodes = cluster(5)
    a, victim = nodes[0], nodes[3]
    net.kill(victim)
    t0 = net.now
    net.run_for(10.0)
    lo, hi = LOCAL.suspicion_bounds(5)
    for n in nodes:
        if n is victim:
            continue
        assert view(n, victim) == State.DEAD
    (ts, sus), = [(t, e) for t, e in events(a, MemberSuspected) if e.node == victim.node_id]
    (td, dead), = [(t, e) for t, e in events(a, MemberDead) if e.node == victim.node_id]
    assert t0 < ts < td <= ts + hi
    # First suspicion within one probe round per member, DEAD after at least the floor.
    first_suspect = min(t for n in nodes for t, e in events(n, MemberSuspected) if e.node == victim.node_id)
    first_dead = min(t for n in nodes for t, e in events(n, MemberDead) if e.node == victim.node_id)
    assert first_dead - first_suspect >= lo - 1e-9


def test_nacks_keep_local_health_when_the_target_is_dead():
    net, (a, b, c) = cluster(3)
    health = a.core.membership
    raised: list[int] = []
    adjust = health.adjust_awareness
    health.adjust_awareness = lambda d: (raised.append(d) if d > 0 else None, adjust(d))  # type: ignore[method-assign]
    net.kill(c)
    net.run_for(5.0)
    assert view(a, c) == State.DEAD
    # b relayed a's probes of c, got no answer and said so in time: a never doubts itself.
    assert raised == []


def test_suspected_node_refutes_with_higher_incarnation():
    net, nodes = cluster(4)
    b = nodes[1]
    rule = net.partition({b.node_id}, {n.node_id for n in nodes if n is not b})

    def someone_suspects() -> bool:
        return any(events(n, MemberSuspected) for n in nodes if n is not b)

    net.run_for(5.0, stop=someone_suspects)
    assert someone_suspects()
    net.drop_rules.remove(rule)
    net.run_for(5.0)
    assert b.core.membership.incarnation >= 1
    assert [e for _, e in events(b, MemberRefuted) if e.node == b.node_id]
    for n in nodes:
        if n is not b:
            assert view(n, b) == State.ALIVE
            assert not [e for _, e in events(n, MemberDead) if e.node == b.node_id]


def test_graceful_leave_is_gossiped_and_never_becomes_dead():
    net, nodes = cluster(4)
    leaver = nodes[2]
    leaver.core.leave(net.now)
    net._pump(leaver)
    net.run_for(0.5)
    net.kill(leaver)
    net.run_for(10.0)
    for n in nodes:
        if n is not leaver:
            assert view(n, leaver) == State.LEFT
            assert [e for _, e in events(n, MemberLeft) if e.node == leaver.node_id]
            assert not [e for _, e in events(n, MemberDead) if e.node == leaver.node_id]


def test_entries_reach_everyone_by_piggyback():
    net, nodes = cluster(6)
    sent = add_entries(nodes[2], 5)
    net.run_for(1.0)
    for n in nodes:
        assert n.ledger.vv == {nodes[2].node_id: 5}
    merged = [e for t, ev in events(nodes[0], EntriesMerged) for e in ev.entries]
    assert merged == sent


def test_anti_entropy_repairs_an_entry_gossip_lost():
    net, nodes = cluster(4)
    a = nodes[0]
    (entry,) = add_entries(a, 1)
    raw = a.ledger.raw(entry.origin, entry.seq)
    def carries_entry(src: Node, dst: object, data: bytes) -> bool:
        return src is a and raw in data  # null cipher: the plaintext is visible

    net.drop(carries_entry)
    net.run_for(3.0)  # every retransmission of the piggybacked entry is lost
    assert len(a.core.queue) == 0
    assert all(len(n.ledger) == 0 for n in nodes[1:])
    net.drop_rules.remove(carries_entry)
    tcp_before = net.tcp_sessions

    def repaired() -> bool:
        return all(n.ledger.vv == a.ledger.vv for n in nodes)

    net.run_for(5.0, stop=repaired)
    assert repaired()
    assert net.tcp_sessions == tcp_before  # repaired by the UDP vv exchange, not push-pull


def test_bucketed_anti_entropy_with_many_origins():
    net, (a, b) = cluster(2)
    foreign = Ledger()
    for origin in range(1000, 1200):  # 200 origins: the digest is bucketed
        foreign.new(origin, Report, wall=1.0, trial=(origin, 1), step=0, value=1.0)
    a.ledger.merge(list(foreign))
    b.ledger.merge([e for e in foreign if e.origin % 50 != 0])  # b misses 4 origins
    tcp_before = net.tcp_sessions
    net.run_for(5.0, stop=lambda: b.ledger.vv == a.ledger.vv)
    assert b.ledger.vv == a.ledger.vv
    assert net.tcp_sessions == tcp_before


def test_tcp_catch_up_of_ten_thousand_entries():
    net = Net(seed=3)
    a = net.add()
    add_entries(a, 10_000)
    net.run_for(1.0)
    b = net.add(seeds=[a.addr])
    net.run_for(1.0)
    assert len(b.ledger) == 10_000 and b.ledger.vv_hash() == a.ledger.vv_hash()
    assert net.tcp_sessions >= 1


def test_restarted_node_comes_back_alive_with_its_ledger():
    net, nodes = cluster(4)
    victim = nodes[2]
    add_entries(victim, 3)
    net.run_for(1.0)
    net.kill(victim)
    net.run_for(10.0)
    assert view(nodes[0], victim) == State.DEAD
    back = net.add(victim.node_id, seeds=[nodes[0].addr], ledger=victim.ledger, restart=1)
    net.run_for(3.0)
    for n in nodes:
        if n is not victim:
            assert view(n, back) == State.ALIVE
            assert n.ledger.vv == back.ledger.vv
    assert all(m.state == State.ALIVE for m in back.core.members())


def test_metadata_changes_are_gossiped():
    net, nodes = cluster(3)
    nodes[1].core.set_meta({"ready": True, "study": "ab12"}, net.now)
    net._pump(nodes[1])
    net.run_for(1.0)
    for n in (nodes[0], nodes[2]):
        info = next(m for m in n.core.members() if m.node == nodes[1].node_id)
        assert info.meta == {"ready": True, "study": "ab12"}
        assert events(n, MemberUpdated)


def test_partition_heals_after_both_sides_declared_dead():
    net, nodes = cluster(4)
    left, right = {1, 2}, {3, 4}
    rule = net.partition(left, right)
    net.run_for(10.0)
    assert view(nodes[0], nodes[3]) == State.DEAD
    net.drop_rules.remove(rule)
    net.run_for(3 * LOCAL.reconnect_interval + 2.0)
    for a in nodes:
        for b in nodes:
            if a is not b:
                assert view(a, b) == State.ALIVE


def test_lossy_duplicating_network_converges_without_false_dead():
    net, nodes = cluster(8, seed=5, loss=0.1, dup=0.05, jitter=0.004)
    for n in nodes[:4]:
        add_entries(n, 3)
    net.run_for(8.0)
    assert len({n.ledger.vv_hash() for n in nodes}) == 1
    assert not any(events(n, MemberDead) for n in nodes)


def test_datagrams_never_exceed_the_limit():
    sizes: list[int] = []
    net, nodes = cluster(5)
    net.drop(lambda src, dst, data: sizes.append(len(data)) or False)
    for n in nodes:
        add_entries(n, 40)
    net.run_for(3.0)
    assert sizes and max(sizes) <= 1232
    assert len({n.ledger.vv_hash() for n in nodes}) == 1


def test_garbage_is_counted_and_reported_not_raised():
    net, (a, b) = cluster(2)
    before = pack(a.core.dump())
    a.core.receive_datagram(b"\x02" * 80, ("6.6.6.6", 1), net.now)  # our version, no cluster
    a.core.receive_datagram(b"", ("6.6.6.6", 1), net.now)
    assert a.core.dropped[DropReason.BAD_SIZE] == 1
    assert a.core.dropped[DropReason.UNKNOWN_CLUSTER] == 1
    assert pack(a.core.dump()) == before
    evs = []
    while (ev := a.core.next_event()) is not None:
        evs.append(ev)
    assert [e.reason for e in evs if isinstance(e, Dropped)] == [
        DropReason.UNKNOWN_CLUSTER,
        DropReason.BAD_SIZE,
    ]


@pytest.mark.parametrize("seed", [7, 8])
def test_same_seed_same_run(seed: int):
    dumps = []
    for _ in range(2):
        net, nodes = cluster(5, seed=seed, loss=0.05, jitter=0.003)
        add_entries(nodes[1], 10)
        net.run_for(3.0)
        dumps.append([pack(n.core.dump()) for n in nodes])
    assert dumps[0] == dumps[1]


def test_nodes_that_met_before_their_seed_answered_still_join_it():
    # B and C find each other while the seed A is unreachable; joined to each other,
    # they keep asking A (slower) until it answers, so the cluster never stays split.
    net = Net(seed=5)
    a = net.add()
    def cut(src: Node, dst: tuple[str, int], data: bytes) -> bool:
        return dst == a.addr or src is a

    net.drop(cut)
    b = net.add(seeds=[a.addr])
    c = net.add(seeds=[a.addr, b.addr])
    net.run_for(3.0)
    assert c.core.membership.joined and b.core.membership.joined
    assert a.core.membership.ids(State.ALIVE) == []
    net.drop_rules.remove(cut)
    net.run_for(15.0)
    for x in (a, b, c):
        others = {n.node_id for n in (a, b, c)} - {x.node_id}
        assert set(x.core.membership.ids(State.ALIVE)) == others


def test_an_entry_whose_whole_copies_are_lost_is_fetched_after_an_announcement():
    """Lazy push: past ``eager_sends`` whole copies a node only announces an entry
    (Have); a node that lacks an announced entry fetches it from the announcer at its
    next gossip tick — no digest exchange, no push-pull."""
    net, nodes = cluster(12)
    a, b = nodes[0], nodes[1]
    (entry,) = add_entries(a, 1)
    raw = a.ledger.raw(entry.origin, entry.seq)

    def pushed_to_b(src: Node, dst: object, data: bytes) -> bool:
        # every whole copy to b is lost until b has asked for it
        return dst == b.addr and raw in data and entry.origin not in b.core.ae.gap_at

    net.drop(pushed_to_b)
    tcp_before = net.tcp_sessions
    t0 = net.now
    net.run_for(3.0, stop=lambda: b.ledger.vv == a.ledger.vv)
    assert b.ledger.vv == a.ledger.vv
    assert net.now - t0 < 1.0 and net.tcp_sessions == tcp_before
    assert all(n.ledger.vv == a.ledger.vv for n in nodes)


def test_each_node_sends_an_entry_whole_at_most_eager_sends_times():
    net, nodes = cluster(12)
    a = nodes[0]
    (entry,) = add_entries(a, 1)
    raw = a.ledger.raw(entry.origin, entry.seq)
    whole: dict[int, int] = {}

    def count(src: Node, dst: object, data: bytes) -> bool:
        if raw in data:
            whole[src.node_id] = whole.get(src.node_id, 0) + 1
        return False

    net.drop(count)
    net.run_for(5.0)
    assert all(n.ledger.vv == a.ledger.vv for n in nodes)
    # whole copies: the eager pushes, plus answers to nodes that asked for it
    eager = a.core.config.eager_sends
    limit = a.core.profile.retransmit_limit(12)
    assert eager < limit and sum(whole.values()) < 12 * limit
    assert max(whole.values()) <= eager + 11


def test_a_pushed_entry_reaches_the_named_members_at_once_with_the_entries_before_it():
    net, nodes = cluster(6)
    a, b, c, d = nodes[:4]
    for i in range(3):  # written, not queued: only the push can carry them
        a.ledger.new(a.node_id, Report, wall=1.0, trial=(a.node_id, 1), step=i, value=0.5)
    a.core.push_own(3, [b.node_id, c.node_id, 999])  # 999: no member, skipped
    net._pump(a)
    net.run_for(0.01)  # one network latency, far less than a gossip round
    assert b.ledger.vv.get(a.node_id) == c.ledger.vv.get(a.node_id) == 3  # applied: no gap
    assert d.ledger.vv.get(a.node_id, 0) == 0


def test_a_lost_entry_filled_as_lost_is_repaired_from_a_peer_that_held_it():
    """Node 3's disk lost its seq 2 while node 2 (which held it) was away: it wrote an
    ABANDON(LOST) there. Equal vvs would hide the split forever; anti-entropy asks a
    peer for the records behind fillers now and then, so every replica ends with the
    real record."""
    real = [Report(origin=3, seq=s, wall=1.0, trial=(3, 1), step=s, value=0.5) for s in (1, 2, 3)]
    filler = Abandon(origin=3, seq=2, wall=2.0, trial=(3, 2), reason=AbandonReason.LOST)
    held, damaged = Ledger(), Ledger()
    held.merge(real)
    damaged.merge([real[0], filler, real[2]])
    net = Net(seed=4)
    first = net.add(1)
    net.add(2, seeds=[first.addr], ledger=held)
    net.add(3, seeds=[first.addr], ledger=damaged)
    net.add(4, seeds=[first.addr])
    net.run_for(30.0)
    want = held.raw(3, 2)
    assert all(n.ledger.raw(3, 2) == want for n in net.by_id.values())
    assert all(n.ledger.fillers() == {} for n in net.by_id.values())
    assert damaged.counts["replaced_fillers"] == 1



def test_the_announcements_of_a_datagram_travel_as_one_haves_message():
    """Past its whole copies an entry is only announced; every announcement of one
    datagram rides in one ``Haves`` message (one decode, not one per entry)."""
    from p2phpo.core.messages import Have, Haves, decode_messages
    from p2phpo.core.wire_codec import unpack_strict

    net, nodes = cluster(4)
    a = nodes[0]
    entries = add_entries(a, 30)
    announced: set[tuple[int, int]] = set()
    for _ in range(40):
        parts = a.core._piggyback(1200)
        msgs = decode_messages([unpack_strict(p) for p in parts]) if parts else []
        assert not any(type(m) is Have for m in msgs)
        batches = [m for m in msgs if type(m) is Haves]
        assert len(batches) <= 1
        for m in batches:
            announced |= set(zip(m.pairs[::2], m.pairs[1::2], strict=True))
    assert announced == {(e.origin, e.seq) for e in entries}
