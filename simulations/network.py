"""The simulated network: datagrams, TCP streams, partitions and accounting.

Datagrams see a latency distribution (log-normal around a median), loss,
duplication, reordering (an extra random delay) and corruption (one flipped
byte, which the AEAD or the null cipher's CRC must reject). TCP streams are
reliable and ordered; a transfer takes a handshake, the latency and the bytes
over the link bandwidth, slowed by loss (retransmissions), and fails when
either direction is cut. Partitions are predicates over (src, dst) so that
one-way cuts and the majorities ring are as cheap as a clean split. Every
datagram is measured: bytes and counts per node, and any datagram over the
configured limit is recorded for the checkers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

Addr = tuple[str, int]
PORT = 7946


@dataclass(frozen=True, slots=True)
class LinkModel:
    """How every link behaves (one model for the whole network)."""

    latency: float = 0.001
    """Median one-way latency, seconds."""
    jitter: float = 0.3
    """Sigma of the log-normal latency."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Probability that a datagram gets an extra delay of up to ``reorder_delay``."""
    reorder_delay: float = 0.02
    corrupt: float = 0.0
    bandwidth: float = 125e6
    """Bytes per second of one TCP stream."""
    max_datagram: int = 1232
    """Largest datagram on the wire (the node's default); bigger ones are recorded."""


@dataclass(frozen=True, slots=True)
class Cut:
    """A partition: ``blocks(src, dst)`` is True when src's packets to dst vanish.

    ``groups`` maps node -> group; ``one_way`` lists (from group, to group)
    directions that are cut (both directions when ``one_way`` is empty);
    ``ring`` (the majorities ring) lists nodes in ring order instead.
    """

    name: str
    groups: dict[int, int] = field(default_factory=dict)
    one_way: tuple[tuple[int, int], ...] = ()
    ring: tuple[int, ...] = ()

    def blocks(self, src: int, dst: int) -> bool:
        if self.ring:
            return _ring_blocks(self.ring, src, dst)
        gs, gd = self.groups.get(src), self.groups.get(dst)
        if gs is None or gd is None or gs == gd:
            return False
        return (gs, gd) in self.one_way if self.one_way else True


def _ring_blocks(ring: tuple[int, ...], src: int, dst: int) -> bool:
    n = len(ring)
    try:
        i, j = ring.index(src), ring.index(dst)
    except ValueError:
        return False
    reach = (n // 2) // 2 + (n // 2) % 2  # each node + 2*reach neighbours is a majority
    d = abs(i - j)
    return min(d, n - d) > reach


def split(name: str, *groups: list[int]) -> Cut:
    return Cut(name, {n: g for g, members in enumerate(groups) for n in members})


def one_way(name: str, sources: list[int], sinks: list[int]) -> Cut:
    """Packets from ``sources`` to ``sinks`` vanish; the reverse direction works."""
    groups = {n: 0 for n in sources} | {n: 1 for n in sinks}
    return Cut(name, groups, one_way=((0, 1),))


def majorities_ring(name: str, ring: list[int]) -> Cut:
    """Each node sees a majority, and no two nodes see the same majority."""
    return Cut(name, ring=tuple(ring))


@dataclass(slots=True)
class Traffic:
    bytes_sent: dict[int, int] = field(default_factory=dict)
    bytes_recv: dict[int, int] = field(default_factory=dict)
    datagrams: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    tcp_streams: int = 0
    tcp_bytes: int = 0
    tcp_failed: int = 0
    max_datagram_seen: int = 0
    oversize: list[tuple[float, int, int]] = field(default_factory=list)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class Network:
    """Addresses, the link model, the cuts in force and the traffic counters."""

    def __init__(self, rng: random.Random, model: LinkModel) -> None:
        self.rng = rng
        self.model = model
        self.cuts: list[Cut] = []
        self.cut_lifted = -math.inf
        self.traffic = Traffic()
        self._addr: dict[int, Addr] = {}
        self._node: dict[Addr, int] = {}

    # -- addresses -------------------------------------------------------
    def attach(self, node: int, host_index: int) -> Addr:
        addr = (f"10.{host_index // 65536 % 256}.{host_index // 256 % 256}.{host_index % 256}", PORT)
        self._addr[node] = addr
        self._node[addr] = node
        return addr

    def addr_of(self, node: int) -> Addr:
        return self._addr[node]

    def node_at(self, addr: Addr) -> int | None:
        return self._node.get((addr[0], addr[1]))

    # -- faults ----------------------------------------------------------
    def set_model(self, **changes: float) -> None:
        self.model = replace(self.model, **changes)

    def add_cut(self, cut: Cut) -> None:
        self.cuts.append(cut)

    def heal(self, now: float = 0.0) -> None:
        if self.cuts:
            self.cut_lifted = now
        self.cuts.clear()

    def blocked(self, src: int, dst: int) -> bool:
        return any(c.blocks(src, dst) for c in self.cuts)

    # -- datagrams -------------------------------------------------------
    def _latency(self) -> float:
        m = self.model
        return m.latency * math.exp(self.rng.gauss(0.0, m.jitter))

    def send(self, src: int, addr: Addr, data: bytes, now: float) -> list[tuple[float, int, bytes]]:
        """Deliveries ``(time, dst, bytes)`` for one datagram (zero, one or two)."""
        m, t = self.model, self.traffic
        size = len(data)
        t.datagrams += 1
        t.bytes_sent[src] = t.bytes_sent.get(src, 0) + size
        t.max_datagram_seen = max(t.max_datagram_seen, size)
        if size > m.max_datagram:
            t.oversize.append((now, src, size))
        dst = self.node_at(addr)
        if dst is None:
            t.drop("no such address")
            return []
        if self.blocked(src, dst):
            t.drop("partition")
            return []
        copies = 2 if m.duplicate and self.rng.random() < m.duplicate else 1
        out = []
        for _ in range(copies):
            if m.loss and self.rng.random() < m.loss:
                t.drop("loss")
                continue
            delay = self._latency()
            if m.reorder and self.rng.random() < m.reorder:
                delay += self.rng.random() * m.reorder_delay
            payload = data
            if m.corrupt and self.rng.random() < m.corrupt and data:
                i = self.rng.randrange(len(data))
                payload = data[:i] + bytes([data[i] ^ (1 + self.rng.randrange(255))]) + data[i + 1:]
            out.append((now + delay, dst, payload))
        return out

    def received(self, dst: int, size: int) -> None:
        self.traffic.bytes_recv[dst] = self.traffic.bytes_recv.get(dst, 0) + size

    # -- TCP -------------------------------------------------------------
    def tcp_delay(self, src: int, dst: int, nbytes: int) -> float | None:
        """Seconds for a stream of ``nbytes`` from src to dst, or None if it cannot connect."""
        t = self.traffic
        if self.blocked(src, dst) or self.blocked(dst, src):
            t.tcp_failed += 1
            return None
        m = self.model
        t.tcp_streams += 1
        t.tcp_bytes += nbytes
        t.bytes_sent[src] = t.bytes_sent.get(src, 0) + nbytes
        rtt = 2 * m.latency
        slow = 1.0 / max(0.05, 1.0 - m.loss) ** 2  # retransmissions and backoff
        return (1.5 * rtt + self._latency() + nbytes / m.bandwidth) * slow
