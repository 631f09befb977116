"""An in-memory network for gossip cores, on an exact virtual clock.

In the spirit of aioquic's ``client_and_server()``/``drop()`` helpers: every
core runs unchanged, datagrams are delivered after ``latency`` (plus optional
jitter), and knobs drop, duplicate or block traffic. TCP push-pull requests
are served by running both ``SyncSession`` ends in memory, frames packed and
strictly unpacked as the wire would. Deterministic for a given seed.

    net = Net(seed=1)
    a = net.add(); b = net.add(seeds=[a.addr])
    net.run_for(2.0)
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2phpo.core.gossip import GossipConfig, GossipCore, TcpRequest
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL, Profile
from p2phpo.core.records import Verifier
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash, pack, unpack_strict

KEY = bytes(range(32))
LABEL = label_hash("netsim")


def make_wire(
    node_id: int, key: bytes = KEY, cipher: Cipher = Cipher.NULL, restart: int = 0
) -> tuple[Sealer, Opener]:
    ring = Keyring([key], cipher=cipher)
    salt = (node_id & 0xFFFF) | restart << 16  # each life its own boot salt, as os.urandom gives
    return Sealer(ring, node_id, restart, salt, LABEL), Opener(ring, [LABEL])


@dataclass
class Node:
    node_id: int
    addr: tuple[str, int]
    core: GossipCore
    ledger: Ledger
    events: list[tuple[float, Any]] = field(default_factory=list)
    alive: bool = True


class Net:
    def __init__(
        self,
        seed: int = 0,
        *,
        profile: Profile = LOCAL,
        latency: float = 0.001,
        jitter: float = 0.0,
        loss: float = 0.0,
        dup: float = 0.0,
        cipher: Cipher = Cipher.NULL,
        config: dict[str, Any] | None = None,
        signed: bool = False,
    ) -> None:
        self.signed = signed  # nodes get identities and signing ledgers (one shared verifier)
        self.verifier = Verifier()
        self.rng = random.Random(seed)
        self.seed = seed
        self.profile = profile
        self.latency, self.jitter, self.loss, self.dup = latency, jitter, loss, dup
        self.cipher = cipher
        self.config = config or {}
        self.now = 0.0
        self.nodes: dict[tuple[str, int], Node] = {}
        self.by_id: dict[int, Node] = {}
        self._heap: list[tuple[float, int, str, Any]] = []
        self._n = 0
        self.drop_rules: list[Callable[[Node, tuple[str, int], bytes], bool]] = []
        self.sent = 0
        self.delivered = 0
        self.tcp_sessions = 0
        self.on_event: Callable[[Node, Any], None] | None = None
        self.keep_events = True

    # -- setup -----------------------------------------------------------------
    def add(
        self,
        node_id: int | None = None,
        *,
        seeds: list[tuple[str, int]] | None = None,
        meta: dict[str, Any] | None = None,
        key: bytes = KEY,
        ledger: Ledger | None = None,
        restart: int = 0,
        identity: Identity | None = None,
    ) -> Node:
        """A node; with ``identity`` its id is the identity's and it signs its Alive
        (and requires signed Alives from everyone). In a ``signed`` net a node made
        without id, identity or ledger gets an identity and a signing ledger."""
        if self.signed and identity is None and node_id is None and ledger is None:
            seed = f"netsim/{self.seed}/{len(self.by_id) + 1}".encode()
            identity = Identity(hashlib.sha256(seed).digest())
            ledger = Ledger(identity=identity, verifier=self.verifier)
        host = len(self.by_id) + 1
        if identity is not None:
            node_id = identity.node_id
            host = next((i for i, n in enumerate(self.by_id.values(), 1) if n.node_id == node_id), host)
        node_id = node_id if node_id is not None else host
        if identity is None:
            host = node_id
        addr = (f"10.0.{host >> 8 & 255}.{host & 255}", 7946)
        ledger = ledger if ledger is not None else Ledger()
        sealer, opener = make_wire(node_id, key, self.cipher, restart)
        cfg = GossipConfig(profile=self.profile, addr=addr, incarnation=restart, **self.config)
        core = GossipCore(
            node_id, cfg, random.Random(f"{self.seed}/{node_id}"), ledger, sealer, opener, meta,
            identity=identity,
        )
        node = Node(node_id, addr, core, ledger)
        self.nodes[addr] = node
        self.by_id[node_id] = node
        core.join(list(seeds or []), self.now)
        self._pump(node)
        return node

    def mesh(self, n: int) -> list[Node]:
        """``n`` nodes that already know each other (large benchmarks skip the join)."""
        nodes = [self.add() for _ in range(n)]
        records = [x.core.membership.self_alive() for x in nodes]
        for x in nodes:
            m = x.core.membership
            for r in records:
                if r.node != x.node_id:
                    m.apply_alive(r, self.now)
            m.outbox.clear()
            m.events.clear()
        return nodes

    def kill(self, node: Node) -> None:
        """Crash: the node stops sending and receiving, no goodbye."""
        node.alive = False

    def drop(self, rule: Callable[[Node, tuple[str, int], bytes], bool]) -> None:
        """Drop every datagram for which ``rule(sender_node, dest_addr, data)`` is true."""
        self.drop_rules.append(rule)

    def partition(self, a: set[int], b: set[int]) -> Callable[..., bool]:
        def rule(src: Node, dst: tuple[str, int], data: bytes) -> bool:
            d = self.nodes.get(dst)
            if d is None:
                return False
            return (src.node_id in a and d.node_id in b) or (src.node_id in b and d.node_id in a)

        self.drop(rule)
        return rule

    # -- running ---------------------------------------------------------------
    def _push(self, t: float, kind: str, item: Any) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, kind, item))

    def _pump(self, node: Node) -> None:
        """Collect what a core wants after it was called: datagrams, TCP, timer, events."""
        core = node.core
        for data, dst in core.datagrams_to_send(self.now):
            self._send(node, data, dst)
        for req in core.tcp_requests(self.now):
            self._push(self.now + 2 * self.latency, "tcp", (node, req))
        t = core.get_timer()
        if t is not None:
            self._push(max(t, self.now), "timer", (node, t))
        while (ev := core.next_event()) is not None:
            if self.keep_events:
                node.events.append((self.now, ev))
            if self.on_event is not None:
                self.on_event(node, ev)

    def _send(self, node: Node, data: bytes, dst: tuple[str, int]) -> None:
        self.sent += 1
        if any(rule(node, dst, data) for rule in self.drop_rules):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        copies = 2 if self.dup and self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.latency + (self.rng.random() * self.jitter if self.jitter else 0.0)
            self._push(self.now + delay, "dgram", (node.addr, dst, data))

    def step(self) -> bool:
        if not self._heap:
            return False
        t, _, kind, item = heapq.heappop(self._heap)
        self.now = max(self.now, t)
        if kind == "timer":
            node, when = item
            if node.alive and node.core.get_timer() == when:
                node.core.handle_timer(self.now)
                self._pump(node)
        elif kind == "dgram":
            src, dst, data = item
            node = self.nodes.get(dst)
            if node is not None and node.alive:
                self.delivered += 1
                node.core.receive_datagram(data, src, self.now)
                self._pump(node)
        elif kind == "tcp":
            self._pushpull(*item)
        return True

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> float:
        while self._heap and self._heap[0][0] <= t_end:
            self.step()
            if stop is not None and stop():
                return self.now
        self.now = max(self.now, t_end)
        return self.now

    def run_for(self, dt: float, stop: Callable[[], bool] | None = None) -> float:
        return self.run_until(self.now + dt, stop)

    # -- TCP push-pull ---------------------------------------------------------
    def _pushpull(self, node: Node, req: TcpRequest) -> None:
        peer = self.nodes.get(tuple(req.addr))  # type: ignore[arg-type]
        if not node.alive or peer is None or not peer.alive:
            return
        if any(rule(node, peer.addr, b"") for rule in self.drop_rules):
            return
        self.tcp_sessions += 1
        a = node.core.sync_session(initiator=True)
        b = peer.core.sync_session(initiator=False)
        inbox_b = [_wire(f) for f in a.start(self.now)]
        for _ in range(10_000):
            inbox_a = [_wire(f) for f in _feed(b, inbox_b, self.now)]
            inbox_b = [_wire(f) for f in _feed(a, inbox_a, self.now)]
            if (a.done and b.done) or (not inbox_a and not inbox_b):
                break
        self._pump(node)
        self._pump(peer)


def _wire(frame: Any) -> Any:
    return unpack_strict(pack(frame))


def _feed(session: Any, frames: list[Any], now: float) -> list[Any]:
    out: list[Any] = []
    for f in frames:
        out += session.receive(f, now)
    return out
