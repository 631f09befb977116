"""Join diagnostics: what a node is waiting for, in sentences, every few seconds.

Pure: the caller passes ``now`` and what the gossip core and the runtime know
(which seeds got through, drops counted per address, the verdict of a TCP
handshake probe, names that did not resolve) and gets :class:`Notice` items
back, which the node shows as events, in the live view and in node.log:

- until the node has joined, every ``every`` seconds, one sentence per seed:
  no answer; N packets from it failed authentication (is the key the same?);
  its packets carry another cluster label; it rejects our handshake; nothing
  listens there; its name does not resolve;
- once joined: through which seed;
- when every peer of a running node has vanished (``dead`` > 0: not a graceful
  leave): that it is alone now, and whether it goes back to its seeds;
- packets from an address that keep failing authentication (or carry another
  cluster label), e.g. a node started with another key trying to join us.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Addr = tuple[str, int]

AUTH = "bad_auth"
LABEL = "unknown_cluster"


@dataclass(frozen=True, slots=True)
class SeedState:
    """One resolved seed as the watcher sees it."""

    addr: Addr
    name: str
    """As the user wrote it, e.g. ``node1:7946 (10.0.0.5)``."""
    heard_at: float | None = None
    """When an authenticated datagram from it last arrived (None: never)."""
    drops: Mapping[str, int] = field(default_factory=dict)
    """Datagrams from it dropped, by reason."""
    probe: str | None = None
    """Last TCP handshake probe: ok, rejected, refused, timeout (None: not probed)."""


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str
    """``waiting`` | ``joined`` | ``alone`` | ``rejecting``."""
    text: str


@dataclass
class JoinWatch:
    """Turns the node's reachability facts into periodic sentences; see the module doc."""

    started: float
    every: float = 5.0
    joined: bool = False
    waiting_since: float | None = None
    _next: float | None = None
    _reported: dict[tuple[Addr, str], int] = field(default_factory=dict)
    _next_drops: float = 0.0
    _drop_reports: int = 0

    def step(self, now: float, *, joined: bool, peers: int, seeds: list[SeedState], dead: int = 1,
             unresolved: Mapping[str, str] | None = None,
             drops_by_addr: Mapping[Addr, Mapping[str, int]] | None = None) -> list[Notice]:
        out: list[Notice] = []
        unresolved = unresolved or {}
        if joined and not self.joined:
            out.append(Notice("joined", _joined_text(seeds)))
            self.waiting_since = self._next = None
        elif not joined and self.joined and peers == 0 and dead == 0:
            out.append(Notice("alone", "every peer left; this node carries on alone"))
        elif not joined and self.joined and peers == 0:
            again = "trying the seeds again" if seeds or unresolved else "waiting for them to return"
            out.append(Notice("alone", f"every peer is gone (none answers); {again}"))
        self.joined = joined
        if not joined and (seeds or unresolved):
            if self.waiting_since is None:
                self.waiting_since = now
                self._next = now + self.every
            elif self._next is not None and now >= self._next:
                self._next = now + self.every
                out.append(Notice("waiting", self._waiting_text(now, seeds, unresolved)))
        if drops_by_addr and now >= self._next_drops:
            seed_addrs = {s.addr for s in seeds} if not joined else set()
            text = self._strangers(drops_by_addr, seed_addrs)
            if text:  # 5, 10, 20 ... s apart, at most 5 min: a stray node must not flood the log
                self._next_drops = now + min(300.0, self.every * 2 ** self._drop_reports)
                self._drop_reports += 1
                out.append(Notice("rejecting", text))
        return out

    def _waiting_text(self, now: float, seeds: list[SeedState],
                      unresolved: Mapping[str, str]) -> str:
        since = now - (self.waiting_since if self.waiting_since is not None else now)
        parts = [_seed_text(s, since) for s in seeds] + list(unresolved.values())
        return f"not joined after {since:.0f} s: " + "; ".join(parts)

    def _strangers(self, drops: Mapping[Addr, Mapping[str, int]], skip: set[Addr]) -> str:
        """Addresses whose auth or label drops grew since the last report (at most 3)."""
        parts = []
        for addr in sorted(drops):
            if addr in skip:  # a seed's drops are in the waiting sentence already
                continue
            for reason in (AUTH, LABEL):
                n = drops[addr].get(reason, 0)
                if n > self._reported.get((addr, reason), 0):
                    self._reported[(addr, reason)] = n
                    if len(parts) < 3:
                        parts.append(_drop_text(_show(addr), reason, n, stranger=True))
        return "; ".join(parts)


def _joined_text(seeds: list[SeedState]) -> str:
    heard = [s for s in seeds if s.heard_at is not None]
    if not heard:
        return "joined the cluster (a peer reached this node first)"
    via = max(heard, key=lambda s: (s.heard_at, s.name))
    return f"joined the cluster through seed {via.name}"


def explain(s: SeedState, since: float) -> str:
    """One sentence on what is known of seed ``s`` after ``since`` seconds of trying."""
    return _seed_text(s, since)


def _seed_text(s: SeedState, since: float) -> str:
    for reason in (AUTH, LABEL):
        n = s.drops.get(reason, 0)
        if n:
            return _drop_text(s.name, reason, n, stranger=False)
    if s.heard_at is not None:
        return f"seed {s.name} answers; joining"
    if s.probe == "rejected":
        return (f"seed {s.name} rejects this node's handshake (is the key the same? "
                "is --cluster the same?)")
    if s.probe == "refused":
        return f"nothing listens at seed {s.name} (connection refused; is the port right?)"
    if s.probe == "ok":
        return (f"seed {s.name} accepts TCP but no UDP answer came back in {since:.0f} s "
                "(is UDP open in the firewall?)")
    return f"no answer from seed {s.name} for {since:.0f} s (is it running? a firewall?)"


def _drop_text(name: str, reason: str, n: int, *, stranger: bool) -> str:
    who = f"{name}" if stranger else f"seed {name}"
    packets = f"{n} packet{'s' if n != 1 else ''} from {who}"
    if reason == AUTH:
        hint = "a node with another key?" if stranger else "is the key the same?"
        return f"{packets} failed authentication ({hint})"
    hint = "a node with another --cluster?" if stranger else "is --cluster the same?"
    return f"{packets} carried another cluster label ({hint})"


def _show(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
