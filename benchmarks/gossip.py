"""Gossip benchmark: dissemination rounds, failure detection, bandwidth, sealing, catch-up.

    python benchmarks/gossip.py [--quick]

Everything but the last table runs real ``GossipCore`` objects over the
in-memory network of ``tests/unit/netsim.py`` (virtual clock, null cipher,
1 ms latency), ``lan`` profile, many seeds:

- spread: gossip rounds (200 ms each) until a new entry is on all N nodes,
  N = 10 / 100 / 1000 at 0% and 10% loss. Baseline in the same process: an
  ideal push epidemic with the same fan-out and retransmit limit (every
  infected node pushes to ``fan-out`` random nodes each round).
- detect: seconds until a crashed node is DEAD on every other node, N = 10 / 100.
- false DEAD: healthy nodes declared DEAD anywhere during 60 s at 10% loss.
- bandwidth: bytes sent per node per second, idle and busy (every node
  appends one entry per second).
- seal: full datagrams composed from the piggyback queue and sealed per second
  (null and AES-GCM), against plain msgpack packing of the same messages.
- catch-up: a node joining a 10,000-entry ledger over real loopback sockets
  (AES-GCM, TCP push-pull), against decoding the same entries in-process.

Nodes sign their ledger records and verify every merged one, as real nodes
do (``--unsigned``: the ledgers of before, for comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from _common import emit  # noqa: E402
from netsim import Net  # noqa: E402

from p2phpo.core.entries import Report  # noqa: E402
from p2phpo.core.gossip import EntriesMerged, GossipCore  # noqa: E402
from p2phpo.core.membership import MemberDead  # noqa: E402
from p2phpo.core.messages import Ping, State  # noqa: E402
from p2phpo.core.profiles import LAN  # noqa: E402
from p2phpo.core.records import decode_record  # noqa: E402
from p2phpo.core.wire import Cipher, pack  # noqa: E402

SIGNED = True  # --unsigned turns it off


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


# --------------------------------------------------------------------------- spread
def spread_once(n: int, loss: float, seed: int) -> float:
    net = Net(seed=seed, profile=LAN, loss=loss, signed=SIGNED)
    net.keep_events = False
    nodes = net.mesh(n)
    net.run_for(2.0)
    got: set[int] = set()
    net.on_event = lambda node, ev: isinstance(ev, EntriesMerged) and got.add(node.node_id)
    origin = random.Random(seed).choice(nodes)
    got.add(origin.node_id)
    t0 = net.now
    e = origin.ledger.new(origin.node_id, Report, wall=1.0, trial=(origin.node_id, 1), step=1, value=1.0)
    origin.core.append_local([e])
    net.run_for(60.0, stop=lambda: len(got) == n)
    return (net.now - t0) / LAN.gossip_interval if len(got) == n else math.inf


def ideal_rounds(n: int, loss: float, rng: random.Random) -> int:
    limit = LAN.retransmit_limit(n)
    sent = {0: 0}
    rounds = 0
    while len(sent) < n and rounds < 100:
        rounds += 1
        for node, k in list(sent.items()):
            if k >= limit:
                continue
            sent[node] = k + LAN.gossip_nodes
            for t in rng.sample(range(n), LAN.gossip_nodes):
                if t not in sent and rng.random() >= loss:
                    sent[t] = 0
    return rounds


def bench_spread(quick: bool) -> list[list]:
    rows = []
    plan = {10: 40, 100: 12, 1000: 3} if not quick else {10: 10, 100: 3, 1000: 1}
    for n, seeds in plan.items():
        for loss in (0.0, 0.1):
            t = time.perf_counter()
            rounds = [spread_once(n, loss, s) for s in range(seeds)]
            rng = random.Random(n)
            ideal = [ideal_rounds(n, loss, rng) for _ in range(200)]
            rows.append([
                n, f"{loss:.0%}", seeds, pct(rounds, 0.5), pct(rounds, 0.99),
                float(pct(ideal, 0.5)), float(pct(ideal, 0.99)), time.perf_counter() - t,
            ])
            print(rows[-1], file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- detection
def detect_once(n: int, seed: int) -> tuple[float, int]:
    net = Net(seed=seed, profile=LAN, signed=SIGNED)
    net.keep_events = False
    nodes = net.mesh(n)
    net.run_for(5.0)
    victim = nodes[random.Random(seed).randrange(n)]
    dead_at: set[int] = set()
    false_dead = [0]

    def on_event(node, ev) -> None:
        if isinstance(ev, MemberDead):
            if ev.node == victim.node_id:
                dead_at.add(node.node_id)
            else:
                false_dead[0] += 1

    net.on_event = on_event
    net.kill(victim)
    t0 = net.now
    net.run_for(120.0, stop=lambda: len(dead_at) == n - 1)
    return net.now - t0, false_dead[0]


def bench_detect(quick: bool) -> list[list]:
    rows = []
    for n, seeds in ({10: 30, 100: 8} if not quick else {10: 6, 100: 2}).items():
        got = [detect_once(n, s) for s in range(seeds)]
        times = [t for t, _ in got]
        rows.append([n, seeds, pct(times, 0.5), pct(times, 0.99), sum(f for _, f in got)])
        print(rows[-1], file=sys.stderr)
    return rows


def false_dead(n: int, loss: float, seconds: float, seed: int) -> int:
    net = Net(seed=seed, profile=LAN, loss=loss, signed=SIGNED)
    net.keep_events = False
    nodes = net.mesh(n)
    count = [0]
    net.on_event = lambda node, ev: isinstance(ev, MemberDead) and count.__setitem__(0, count[0] + 1)
    net.run_for(seconds)
    assert all(m.state != State.LEFT for m in nodes[0].core.members())
    return count[0]


# --------------------------------------------------------------------------- repair
def repair_once(n: int, seed: int) -> tuple[float, int]:
    """An entry whose every gossip copy was lost: seconds until anti-entropy put it everywhere."""
    net = Net(seed=seed, profile=LAN, signed=SIGNED)
    net.keep_events = False
    nodes = net.mesh(n)
    net.run_for(2.0)
    a = nodes[0]
    e = a.ledger.new(a.node_id, Report, wall=1.0, trial=(a.node_id, 1), step=1, value=1.0)
    raw = a.ledger.raw(e.origin, e.seq)
    net.drop(lambda src, dst, data: raw in data)
    a.core.append_local([e])
    net._pump(a)
    net.run_for(10.0)  # every piggybacked copy is lost and retired
    net.drop_rules.clear()
    t0, tcp0 = net.now, net.tcp_sessions
    net.run_for(300.0, stop=lambda: all(len(x.ledger) == 1 for x in nodes))
    return net.now - t0, net.tcp_sessions - tcp0


# --------------------------------------------------------------------------- bandwidth
def bandwidth(n: int, busy: bool, seconds: float, seed: int) -> float:
    net = Net(seed=seed, profile=LAN, signed=SIGNED)
    net.keep_events = False
    nodes = net.mesh(n)
    net.run_for(3.0)
    start = sum(x.core.stats["bytes_out"] for x in nodes)
    t0 = net.now
    step = 0
    while net.now < t0 + seconds:
        if busy:
            for x in nodes:
                e = x.ledger.new(x.node_id, Report, wall=net.now, trial=(x.node_id, 1), step=step, value=0.5)
                x.core.append_local([e])
                net._pump(x)
            step += 1
        net.run_for(1.0)
    sent = sum(x.core.stats["bytes_out"] for x in nodes) - start
    return sent / n / seconds


# --------------------------------------------------------------------------- sealing
def bench_seal(quick: bool) -> list[list]:
    rows = []
    reps = 2000 if quick else 20000
    for cipher in (Cipher.NULL, Cipher.AES_GCM):
        net = Net(seed=1, profile=LAN, cipher=cipher, signed=SIGNED)
        net.keep_events = False
        a, b = net.mesh(2)
        entries = [
            a.ledger.new(a.node_id, Report, wall=1.0, trial=(1, 1), step=i, value=0.5) for i in range(3000 + reps * 9)
        ]
        core: GossipCore = a.core
        head = [Ping(1, b.node_id), core.ae.digest()]
        msgs = [(("e", e.origin, e.seq), pack([9, a.ledger.raw(e.origin, e.seq)])) for e in entries]
        for key, m in msgs[:3000]:
            core.queue.put(key, m)
        t = time.perf_counter()
        for i in range(reps):  # keep the queue full: as many entries in as leave per datagram
            core._send(b.addr, head)
            core.datagrams_to_send(0.0)
            for key, m in msgs[3000 + i * 9 : 3000 + i * 9 + 9]:
                core.queue.put(key, m)
        seal_rate = reps / (time.perf_counter() - t)
        parts = [pack([9, a.ledger.raw(e.origin, e.seq)]) for e in entries[:10]]
        t = time.perf_counter()
        for _ in range(reps):
            pack([[1, 1, 2], [10, 1, 2, 3], *([9, p] for p in parts)])
        base = reps / (time.perf_counter() - t)
        rows.append([cipher.value, seal_rate, base, seal_rate / base])
    return rows


# --------------------------------------------------------------------------- catch-up
async def catch_up(n_entries: int) -> tuple[float, float]:
    import os

    from p2phpo.core.identity import Identity
    from p2phpo.core.ledger import Ledger
    from p2phpo.core.profiles import LOCAL
    from p2phpo.core.wire import Keyring
    from p2phpo.runtime.udp import GossipRuntime

    ring = Keyring([os.urandom(32)])
    ia, ib = Identity(os.urandom(32)), Identity(os.urandom(32))

    def fresh(ident: Identity) -> Ledger:
        return Ledger(identity=ident) if SIGNED else Ledger()

    big = fresh(ia)
    me = ia.node_id
    for i in range(n_entries):
        big.new(me, Report, wall=1.0, trial=(me, 1 + i // 20), step=i % 20, value=0.5)
    raws = [big.raw(e.origin, e.seq) for e in big]
    t = time.perf_counter()
    fresh(ib).merge([(decode_record(r), r) for r in raws])
    base = time.perf_counter() - t
    a = GossipRuntime.create(me, big, keyring=ring, profile=LOCAL)
    b = GossipRuntime.create(ib.node_id, fresh(ib), keyring=ring, profile=LOCAL)
    seed = await a.start()
    t = time.perf_counter()
    await b.start(seeds=[seed])
    while len(b.core.ledger) < n_entries and time.perf_counter() - t < 60:
        await asyncio.sleep(0.005)
    took = time.perf_counter() - t
    await b.stop(leave=False)
    await a.stop(leave=False)
    return took, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds (a smoke run)")
    ap.add_argument("--unsigned", action="store_true", help="unsigned ledgers (as before signing)")
    args = ap.parse_args()
    q = args.quick
    global SIGNED
    SIGNED = not args.unsigned

    spread = bench_spread(q)
    emit("gossip_spread", "Rounds (200 ms) until a new entry is on all N nodes (lan)",
         ["N", "loss", "seeds", "p50", "p99", "ideal p50", "ideal p99", "wall s"], spread,
         {"signed": SIGNED})
    detect = bench_detect(q)
    emit("gossip_detect", "Seconds until a crashed node is DEAD everywhere (lan)",
         ["N", "seeds", "p50 s", "p99 s", "false DEAD"], detect)
    fd_rows = []
    for n, secs, seeds in ((10, 60.0, 10 if not q else 2), (100, 60.0, 3 if not q else 1)):
        fd_rows.append([n, "10%", secs, seeds, sum(false_dead(n, 0.1, secs, s) for s in range(seeds))])
    emit("gossip_false_dead", "Healthy nodes declared DEAD at 10% loss (lan)",
         ["N", "loss", "seconds", "seeds", "false DEAD"], fd_rows)
    rep = []
    for n, seeds in ((10, 10 if not q else 2), (100, 5 if not q else 1)):
        got = [repair_once(n, s) for s in range(seeds)]
        times = [t for t, _ in got]
        rep.append([n, seeds, pct(times, 0.5), pct(times, 0.99), sum(k for _, k in got)])
    emit("gossip_repair", "Seconds until anti-entropy repairs an entry gossip lost (lan)",
         ["N", "seeds", "p50 s", "p99 s", "TCP push-pulls"], rep)
    bw = []
    for n in (10, 100):
        idle = bandwidth(n, False, 20.0, 1)
        busy = bandwidth(n, True, 20.0, 1)
        bw.append([n, idle, busy])
    emit("gossip_bandwidth", "Bytes/s sent per node (lan; busy = 1 entry/s/node)",
         ["N", "idle B/s", "busy B/s"], bw, {"signed": SIGNED})
    seal = bench_seal(q)
    emit("gossip_seal", "Full datagrams composed + sealed per second vs msgpack pack",
         ["cipher", "sealed/s", "pack/s (base)", "ratio"], seal)
    took, base = asyncio.run(catch_up(10_000))
    emit("gossip_catchup", "Join + TCP catch-up of 10,000 entries on loopback (AES-GCM)",
         ["entries", "catch-up s", "in-process decode+merge s (base)"], [[10_000, took, base]],
         {"signed": SIGNED})


if __name__ == "__main__":
    main()
