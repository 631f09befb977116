"""The simulator's building blocks: clock, network model, objective."""

from __future__ import annotations

import random

from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, WireError, label_hash
from simulations.clock import EventHeap, derive_rng
from simulations.network import LinkModel, Network, majorities_ring, one_way, split
from simulations.objective import SimObjective, branin


def _net(**model: float) -> Network:
    net = Network(random.Random(1), LinkModel(**model))
    for i in range(1, 9):
        net.attach(i, i)
    return net


def test_events_at_one_instant_run_in_scheduling_order() -> None:
    heap = EventHeap()
    for k in range(5):
        heap.push(1.0, "x", k)
    heap.push(0.5, "y", 9)
    order = [heap.pop().node for _ in range(6)]
    assert order == [9, 0, 1, 2, 3, 4] and heap.now == 1.0


def test_streams_are_independent_of_each_other_and_reproducible() -> None:
    a = [derive_rng(3, "net").random() for _ in range(2)]
    assert a[0] == a[1]
    assert derive_rng(3, "net").random() != derive_rng(3, "gossip", 1).random()


def test_split_cuts_both_ways_and_one_way_only_one() -> None:
    net = _net()
    net.add_cut(split("halves", [1, 2, 3, 4], [5, 6, 7, 8]))
    assert net.blocked(1, 5) and net.blocked(5, 1) and not net.blocked(1, 2)
    net.heal()
    net.add_cut(one_way("ow", [1, 2], [3, 4]))
    assert net.blocked(1, 3) and not net.blocked(3, 1) and not net.blocked(5, 1)


def test_majorities_ring_gives_each_node_a_different_majority() -> None:
    cut = majorities_ring("ring", list(range(1, 9)))
    seen = [frozenset(d for d in range(1, 9) if not cut.blocks(s, d)) for s in range(1, 9)]
    assert all(len(v) > 4 for v in seen)  # a majority of 8, itself included
    assert len(set(seen)) == 8
    assert all(cut.blocks(s, d) == cut.blocks(d, s) for s in range(1, 9) for d in range(1, 9))


def test_loss_duplication_and_accounting() -> None:
    net = _net(loss=0.5, duplicate=0.2)
    got = sum(len(net.send(1, net.addr_of(2), b"x" * 100, 0.0)) for _ in range(2000))
    assert 800 < got < 1400
    assert net.traffic.bytes_sent[1] == 200_000 and net.traffic.dropped["loss"] > 800


def test_oversize_datagrams_are_recorded_and_partitions_counted() -> None:
    net = _net(max_datagram=1232)
    net.send(1, net.addr_of(2), b"x" * 1233, 0.5)
    net.add_cut(split("s", [1], [2]))
    assert net.send(1, net.addr_of(2), b"x", 1.0) == []
    assert net.traffic.oversize == [(0.5, 1, 1233)] and net.traffic.dropped["partition"] == 1


def test_corrupted_datagrams_are_rejected_by_both_ciphers() -> None:
    net = _net(corrupt=1.0)
    for cipher in (Cipher.NULL, Cipher.AES_GCM):
        ring = Keyring([bytes(32)], cipher=cipher)
        sealer = Sealer(ring, 1, 0, 7, label_hash("t"))
        opener = Opener(ring, [label_hash("t")])
        data = sealer.seal([[1, 2, 3]])
        assert opener.open(data).messages == [[1, 2, 3]]
        for _ in range(50):
            (_, _, bad), = net.send(1, net.addr_of(2), sealer.seal([[1]]), 0.0)
            try:
                opener.open(bad)
            except WireError:
                continue
            raise AssertionError("a corrupted datagram was accepted")


def test_tcp_is_slower_for_more_bytes_and_fails_across_a_cut() -> None:
    net = _net()
    small, big = net.tcp_delay(1, 2, 1000), net.tcp_delay(1, 2, 10_000_000)
    assert small is not None and big is not None and big > small + 0.05
    net.add_cut(one_way("ow", [2], [1]))
    assert net.tcp_delay(1, 2, 10) is None  # TCP needs both directions


def test_objective_curves_end_at_the_benchmark_value_and_slow_nodes_take_longer() -> None:
    obj = SimObjective(mean_duration=60.0, steps=9)
    params = {"x": 3.14159, "y": 2.275}
    fast = obj.plan(params, random.Random(1), speed=3.0)
    slow = obj.plan(params, random.Random(1), speed=1.0)
    assert abs(fast.final - branin(**params)) < 1e-12 and abs(fast.final - 0.397887) < 1e-5
    assert fast.values[-1] == fast.final and list(fast.values) == sorted(fast.values, reverse=True)
    assert abs(slow.step_times[-1] - 3 * fast.step_times[-1]) < 1e-9
