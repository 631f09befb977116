"""A node's own health travels inside an authenticated push-pull (status --seed X)."""

from __future__ import annotations

import random

import pytest

from p2phpo.core.gossip import TcpRequest
from p2phpo.core.health import decode_health, health_frame
from p2phpo.core.messages import MsgType
from p2phpo.core.wire import DropReason, WireError
from tests.unit.netsim import Net


def test_an_observer_gets_the_seeds_own_drops_traffic_and_members() -> None:
    net = Net(seed=3)
    seed = net.add()
    seed.core.health_extra = lambda: {"running": ["00aa:3"], "role": "worker"}
    for _ in range(5):  # hostile junk at the seed, from an address nobody knows
        seed.core.receive_datagram(b"\x01" * 80, ("10.0.0.66", 9), net.now)
    watcher = net.add(seeds=[seed.addr])
    watcher.core.want_health = True
    net.run_for(2.0)  # join; the seed's ack starts a push-pull that asks for its health
    assert seed.node_id in watcher.core.peer_health
    _, h = watcher.core.peer_health[seed.node_id]
    assert sum(h["dropped"].values()) == 5  # the seed's counter, not the watcher's
    assert watcher.core.dropped.total == 0
    assert h["members"] == {"ALIVE": 2}  # itself and the watcher, as the seed sees them
    assert h["running"] == ["00aa:3"] and h["role"] == "worker"
    assert h["traffic"]["datagrams_in"] >= 5 and h["ledger"]["entries"] == 0
    assert watcher.core.seed_nodes[seed.addr] == seed.node_id
    assert sum(seed.core.drops_from(("10.0.0.66", 9)).values()) == 5


def test_a_plain_push_pull_carries_no_health_and_unasked_health_fails_the_session() -> None:
    net = Net(seed=4)
    a = net.add()
    b = net.add(seeds=[a.addr])
    net.run_for(2.0)
    assert not b.core.peer_health and not a.core.peer_health
    s = b.core.sync_session(initiator=True)
    assert s.receive(health_frame(a.node_id, {"x": 1}), net.now) == []
    assert s.failed is DropReason.BAD_SCHEMA
    net._pushpull(b, TcpRequest(a.node_id, a.addr))  # sessions still work after that
    assert net.tcp_sessions >= 1


@pytest.mark.parametrize("bad", [
    [MsgType.PP_HEALTH, 1],
    [MsgType.PP_HEALTH, -1, {}],
    [MsgType.PP_HEALTH, 1, {"k": True}],
    [MsgType.PP_HEALTH, 1, {"k": {"deeper": {"too": 1}}}],
    [MsgType.PP_HEALTH, 1, {"k": ["s"] * 65}],
    [MsgType.PP_HEALTH, 1, {"k" * 33: 1}],
    [MsgType.PP_HEALTH, 1, {"k": "x" * 257}],
    [MsgType.PP_HEALTH, 1, {f"k{i}": 1 for i in range(33)}],
    [MsgType.PP_HEALTH, 1, {"k": [1]}],
])
def test_malformed_health_is_a_schema_drop(bad) -> None:
    with pytest.raises(WireError) as err:
        decode_health(bad)
    assert err.value.reason is DropReason.BAD_SCHEMA


def test_random_health_frames_never_raise_out_of_the_session() -> None:
    rng = random.Random(5)
    net = Net(seed=5)
    a = net.add()
    atoms = [0, -1, 2**64, 1.5, "s", b"b", None, True, [], {}, {"k": []}, {"k": {"j": "x"}}]
    for _ in range(300):
        frame = [rng.choice([MsgType.PP_HEALTH, MsgType.PP_HEALTH_REQ])]
        frame += [rng.choice(atoms) for _ in range(rng.randrange(0, 4))]
        s = a.core.sync_session(initiator=rng.random() < 0.5)
        s.want_health = True
        s.receive(frame, net.now)  # answers, keeps, or fails the session: never raises


def test_metrics_address_defaults_to_loopback_and_bad_ones_are_one_sentence() -> None:
    from p2phpo.runtime.metrics import MetricsError, parse_metrics

    assert parse_metrics("9108") == ("127.0.0.1", 9108)
    assert parse_metrics("[::1]:9108") == ("::1", 9108)
    assert parse_metrics("localhost:1") == ("localhost", 1)
    for bad in ("localhost", "a:b", "1:2:3:x"):
        with pytest.raises(MetricsError, match="--metrics"):
            parse_metrics(bad)
