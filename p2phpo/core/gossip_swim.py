"""SWIM failure detection with Lifeguard's awareness: probes, indirect probes, relays.

:class:`Swim` owns one node's probe state: the probe in flight (direct, then
through ``indirect_checks`` relays), the PINGs we relay for others (with
Lifeguard's NACK a little before the prober's deadline) and the unbound PINGs
of joins and reconnects (an ACK to one asks for a push-pull). The gossip core
owns one as ``self.swim``, hands it PING, PING-REQ, ACK and NACK, and calls
``timers(now)`` on each timer; it sends through the core's
:class:`~p2phpo.core.gossip_sync.Link` ``send``, so this module never imports
the gossip core. Every sample is drawn from the core's rng in the order the
core always drew it, so a seeded run replays exactly.
"""

from __future__ import annotations

import random
from typing import Any

from p2phpo.core.gossip_sync import AntiEntropy, Link
from p2phpo.core.gossip_types import GossipConfig, _Probe, _Relay
from p2phpo.core.membership import Membership
from p2phpo.core.messages import Ack, Addr, Message, Nack, Ping, PingReq, State


class Swim:
    """One node's probes, relays and join/reconnect pings (see the module doc)."""

    def __init__(self, node_id: int, membership: Membership, config: GossipConfig,
                 rng: random.Random, ae: AntiEntropy, link: Link) -> None:
        self.node_id = node_id
        self.membership = membership
        self.config = config
        self.profile = config.profile
        self.rng = rng
        self.ae = ae
        self.link = link
        self.seq = 0
        self.probe: _Probe | None = None
        self.relays: dict[int, _Relay] = {}
        self.pings: dict[int, tuple[str, float]] = {}  # seq -> (join|reconnect, expiry)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def sample(self, pool: list[int], k: int) -> list[int]:
        return self.rng.sample(pool, min(k, len(pool)))

    def ping(self, kind: str, expiry: float) -> int:
        """A new unbound PING's seq (``kind``: join or reconnect, whose ACK asks for a
        push-pull, or digest)."""
        seq = self.next_seq()
        self.pings[seq] = (kind, expiry)
        return seq

    def deadlines(self, ts: list[float]) -> None:
        """Append the probe's and the relays' next deadlines to ``ts``."""
        p = self.probe
        if p is not None:
            ts.append(p.end_at if p.indirect else p.timeout_at)
        for r in self.relays.values():
            ts.append(r.expire_at if not r.nack else min(r.nack_at, r.expire_at))

    def stop(self) -> None:
        """Leaving: no probe in flight."""
        self.probe = None

    def expire_pings(self, now: float) -> None:
        for seq in [s for s, (_, exp) in sorted(self.pings.items()) if exp <= now]:
            del self.pings[seq]

    # ------------------------------------------------------------------ timers
    def probe_timers(self, now: float) -> None:
        p = self.probe
        if p is None:
            return
        if not p.indirect and now >= p.timeout_at:
            p.indirect = True
            others = [n for n in self.membership.ids(State.ALIVE) if n != p.target]
            p.relays = self.sample(others, self.profile.indirect_checks)
            for node in p.relays:
                self.link.send(self._addr_of(node), [PingReq(p.seq, p.target, p.addr, True)], to=node)
        if now >= p.end_at:
            self.probe = None
            expected = len(p.relays)
            self.membership.adjust_awareness(max(0, expected - p.nacks) if expected else 1)
            self.membership.suspect(p.target, now)

    def relay_timers(self, now: float) -> None:
        for seq in sorted(self.relays):
            r = self.relays[seq]
            if r.nack and now >= r.nack_at:
                r.nack = False
                self.link.send(r.addr, [Nack(r.seq)], piggyback=False, to=r.origin)
            if now >= r.expire_at:
                del self.relays[seq]

    def start_probe(self, now: float) -> None:
        if self.probe is not None or self.membership.leaving:
            return
        target = self.membership.next_probe_target()
        if target is None:
            return
        addr = self._addr_of(target)
        seq = self.next_seq()
        scale = self.membership.scale()
        self.probe = _Probe(
            seq, target, addr,
            timeout_at=now + self.profile.probe_timeout * scale,
            end_at=now + self.profile.probe_interval * scale,
        )
        self.link.send(addr, [Ping(seq, target), self.ae.digest()], to=target)

    def ask_digest(self, node: int, now: float) -> None:
        """A PING outside the probe cycle, our digest with it; the ACK brings ``node``'s.
        A finished node asks the peers its exit waits for (``core/durability.py``)."""
        m = self.membership.get(node)
        if m is None or m.state != State.ALIVE or self.membership.leaving:
            return
        seq = self.ping("digest", now + self.profile.probe_interval)
        self.link.send(m.addr, [Ping(seq, node), self.ae.digest()], to=node)

    def reconnect(self, now: float) -> None:
        dead = self.membership.ids(State.DEAD)
        if not dead or self.membership.leaving:
            return
        node = self.rng.choice(dead)
        m = self.membership.get(node)
        assert m is not None
        seq = self.ping("reconnect", now + self.profile.probe_interval)
        # Unbound: a node back from the dead may be a new life with a new boot salt.
        self.link.send(m.addr, [Ping(seq, node)], to=0)

    # ------------------------------------------------------------------ receive
    def on_ping(self, sender: int, m: Ping, addr: Addr, stranger: bool) -> None:
        if m.target not in (0, self.node_id):
            return
        head: list[Message] = [Ack(m.seq), self.ae.digest()]
        if stranger or m.target == 0:
            head.insert(0, self.membership.self_alive())
        self.link.send(addr, head, to=sender)

    def on_ping_req(self, sender: int, m: PingReq, addr: Addr, now: float) -> None:
        if len(self.relays) >= self.config.max_relays or self.membership.get(sender) is None:
            return
        seq = self.next_seq()
        p = self.profile
        # Nack a little before the prober's own deadline so Lifeguard can count it.
        nack_at = now + 0.8 * p.probe_timeout
        self.relays[seq] = _Relay(sender, addr, m.seq, nack_at, now + p.probe_interval, m.nack)
        self.link.send(m.addr, [Ping(seq, m.target), self.ae.digest()], to=m.target)

    def on_nack(self, sender: int, seq: int) -> None:
        p = self.probe
        if p and p.seq == seq and sender in p.relays:
            p.nacks += 1

    def on_ack(self, sender: int, seq: int, addr: Addr, now: float) -> None:
        p = self.probe
        if p is not None and seq == p.seq and (sender == p.target or sender in p.relays):
            self.probe = None
            self.membership.record_ack(p.target, now)
            self.membership.adjust_awareness(-1)
            return
        r = self.relays.get(seq)
        if r is not None:
            del self.relays[seq]
            self.link.send(r.addr, [Ack(r.seq)], to=r.origin)
            return
        ping = self.pings.pop(seq, None)
        if ping is not None and ping[0] != "digest":  # a join's or reconnect's: push-pull
            self.ae.want_tcp(sender, addr, now)

    def _addr_of(self, node: int) -> Addr:
        m = self.membership.get(node)
        assert m is not None
        return m.addr

    def dump(self) -> list[Any]:
        """[probe, relays, pings] for the core's ``dump`` (seq comes separately)."""
        p = self.probe
        probe = None if p is None else [p.seq, p.target, p.timeout_at, p.end_at, p.relays, p.nacks, p.indirect]
        relays = [[s, r.origin, r.seq, r.nack_at, r.expire_at, r.nack] for s, r in sorted(self.relays.items())]
        return [probe, relays, sorted(self.pings.items())]
