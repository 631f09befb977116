"""Configuration, events and requests of the gossip core (re-exported by ``gossip``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2phpo.core.entries import Entry, StudyEntry
from p2phpo.core.membership import MemberEvent
from p2phpo.core.messages import Addr
from p2phpo.core.profiles import LAN, Profile
from p2phpo.core.wire import DEFAULT_MAX_DATAGRAM, DropReason


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Knobs of one node's gossip core (the limits listed in docs/architecture.md)."""

    profile: Profile = LAN
    addr: Addr = ("127.0.0.1", 7946)
    """Address peers should use to reach this node (``--advertise``)."""
    incarnation: int = 0
    """Starting incarnation (the node persists it and passes the last one + 1)."""
    max_datagram: int = DEFAULT_MAX_DATAGRAM
    queue_bytes: int = 256 * 1024
    """Byte budget of the piggyback queue; what it forgets, anti-entropy carries."""
    eager_sends: int = 3
    """Times a node sends an entry whole; the rest of its retransmissions only announce
    it (``Have``), and a receiver that lacks it fetches it (lazy push)."""
    far_behind: int = 64
    """A peer this many entries ahead (or twice the live members, if more) is caught
    up over TCP instead of UDP."""
    sync_bytes: int = 16 * 1024
    """Most entry bytes one UDP anti-entropy exchange sends."""
    sync_burst: int = 4
    """Most anti-entropy datagrams sent to one peer per gossip tick."""
    frame_bytes: int = 1 << 20
    """Most entry bytes in one push-pull frame."""
    max_members: int = 8192
    """Member table cap (peer-chosen ids): a full table evicts the longest-gone member."""
    reap_after: float | None = None
    """Seconds a DEAD or LEFT member stays listed; None: 10 x ``profile.gossip_to_dead``."""
    max_relays: int = 256
    """Most indirect probes relayed for others at once."""


@dataclass(frozen=True, slots=True)
class EntriesMerged:
    entries: list[Entry]
    sender: int


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason
    addr: Addr | None


@dataclass(frozen=True, slots=True)
class InSync:
    """``peer``'s ledger digest equals ours: an anti-entropy exchange found nothing missing.

    The search core reclaims a dead member's trials only after such an exchange,
    so that the member's last RESULTs had a chance to arrive first.
    """

    peer: int


@dataclass(frozen=True, slots=True)
class ForeignStudy:
    """A peer on this cluster key runs another study: its entries were dropped (counted
    as ``other_study``), never merged. ``entry`` is its STUDY entry (for saying what
    differs); ``from_seed``: it answered at one of our seed addresses."""

    entry: StudyEntry
    node: int  # 0: not known (the other end of a push-pull we did not start)
    addr: Addr | None
    from_seed: bool


@dataclass(frozen=True, slots=True)
class TcpRequest:
    """Run a push-pull with ``node`` (0 when only the address is known: a seed)."""

    node: int
    addr: Addr


Event = MemberEvent | EntriesMerged | Dropped | InSync | ForeignStudy


@dataclass(slots=True)
class _Probe:
    seq: int
    target: int
    addr: Addr
    timeout_at: float
    end_at: float
    relays: list[int] = field(default_factory=list)
    nacks: int = 0
    indirect: bool = False


@dataclass(slots=True)
class _Relay:
    origin: int
    addr: Addr
    seq: int
    nack_at: float
    expire_at: float
    nack: bool
