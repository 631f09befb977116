"""Timing profiles for SWIM + Lifeguard gossip (table: docs/architecture.md).

``lan`` takes memberlist's LAN constants; ``local`` is for tests and clusters
on one host; ``wan`` for clusters across data centres. Every duration is in
seconds of the monotonic clock the core is driven with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    """Protocol constants; see the table in docs/architecture.md ("Protocol constants")."""

    name: str
    probe_interval: float
    """Time between two probes sent by one node (scaled by the Local Health Multiplier)."""
    probe_timeout: float
    """Wait for a direct ack before asking others to probe indirectly."""
    indirect_checks: int
    """Members asked to probe a silent target on our behalf."""
    suspicion_mult: int
    """Suspicion timeout floor = mult * max(1, log10 N) * probe_interval."""
    gossip_interval: float
    """Time between two gossip rounds."""
    gossip_nodes: int
    """Fan-out: random members each gossip round goes to."""
    suspicion_max_mult: int = 6
    """Suspicion timeout ceiling, as a multiple of the floor (Lifeguard)."""
    retransmit_mult: int = 4
    """Each update is piggybacked mult * ceil(log10(N + 1)) times."""
    awareness_max: int = 8
    """Local Health Multiplier ceiling: timeouts scale by up to this factor."""
    gossip_to_dead: float = 30.0
    """Keep gossiping to a member this long after it was declared DEAD."""
    reconnect_interval: float = 30.0
    """Contact one random DEAD member this often so partitions heal."""
    pushpull_interval: float = 30.0
    """Periodic TCP push-pull with one random member."""

    def suspicion_bounds(self, n_members: int) -> tuple[float, float]:
        """(min, max) suspicion timeout for a cluster of ``n_members``."""
        scale = max(1.0, math.log10(max(1, n_members)))
        lo = self.suspicion_mult * scale * self.probe_interval
        return lo, lo * self.suspicion_max_mult

    def pushpull_every(self, n_members: int) -> float:
        """Push-pull period, stretched past 32 members so TCP load per node stays flat."""
        if n_members <= 32:
            return self.pushpull_interval
        return self.pushpull_interval * (math.ceil(math.log2(n_members) - 5) + 1)

    def retransmit_limit(self, n_members: int) -> int:
        """How many times one update is piggybacked before it is retired."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n_members + 1)))


LAN = Profile(
    name="lan",
    probe_interval=1.0,
    probe_timeout=0.5,
    indirect_checks=3,
    suspicion_mult=4,
    gossip_interval=0.2,
    gossip_nodes=3,
)

LOCAL = Profile(
    name="local",
    probe_interval=0.2,
    probe_timeout=0.1,
    indirect_checks=2,
    suspicion_mult=3,
    gossip_interval=0.1,
    gossip_nodes=3,
    gossip_to_dead=5.0,
    reconnect_interval=2.0,
    pushpull_interval=10.0,
)

WAN = Profile(
    name="wan",
    probe_interval=5.0,
    probe_timeout=3.0,
    indirect_checks=3,
    suspicion_mult=6,
    gossip_interval=0.5,
    gossip_nodes=4,
    gossip_to_dead=60.0,
    reconnect_interval=60.0,
    pushpull_interval=60.0,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (LAN, LOCAL, WAN)}


def profile(name: str) -> Profile:
    """The profile called ``name``; raises ValueError naming the choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown gossip profile {name!r}: choose lan, local or wan") from None
