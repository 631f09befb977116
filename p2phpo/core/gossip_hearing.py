"""What a gossip node hears and what it drops: the study binding of its ledger
traffic (``core/study_bind.py``), entries of a foreign study, and the drop counters
(per reason, and per address for the most recent ``MAX_DROP_ADDRS`` addresses).

A mixin of :class:`p2phpo.core.gossip.GossipCore`, which sets the attributes it
reads (``study``, ``sealer``, ``membership``, ``seeds``, ``dropped``,
``drops_by_addr``, ``_events``).
"""

from __future__ import annotations

from typing import Any

from p2phpo.core.entries import Entry, StudyEntry
from p2phpo.core.gossip_types import Dropped, ForeignStudy
from p2phpo.core.messages import Addr
from p2phpo.core.wire import DropReason

MAX_DROP_ADDRS = 256
"""Addresses whose drops are counted one by one (the oldest is forgotten first)."""


class Hearing:
    """Study binding and drop accounting of a gossip core (see the module doc)."""

    study: Any
    sealer: Any
    membership: Any
    seeds: Any
    dropped: Any
    drops_by_addr: dict[Addr, dict[str, int]]
    _events: list[Any]

    def bind_study(self, tag: bytes) -> None:
        """Our ledger belongs to the study with ``tag`` (``study_tag(fingerprint)``): tag
        what we send with it and merge ledger traffic only from peers of that study
        (see ``core/study_bind.py``). Until then only the nodes at our seed addresses
        are heard, and the first tag one of them sends binds us."""
        self.study.bind(tag)
        self.sealer.study = tag  # every datagram's label carries it from now on

    @property
    def study_tag(self) -> bytes | None:
        return self.study.tag

    def classify(self, tag: bytes | None, addr: Addr | None, node: int = 0) -> str:
        """OURS, BLANK or FOREIGN: how to treat the ledger traffic of a peer at ``addr``
        whose datagram or push-pull carried ``tag``. A member ``node`` that advertises a
        seed's address is that seed, whatever address it answered from."""
        m = self.membership.get(node) if node and addr not in self.seeds else None
        if m is not None and m.addr in self.seeds:
            addr = m.addr
        kind = self.study.classify(tag, addr, self.seeds)
        if self.study.tag is not None:
            self.sealer.study = self.study.tag  # a joiner took its seed's study just now
        return kind

    def seed_runs_ours(self) -> bool:
        return self.study.seed_runs_ours(self.seeds)

    def drop_foreign(self, pairs: list[tuple[Entry, bytes]], sender: int, addr: Addr | None) -> None:
        """Entries of a peer whose study is not ours: count them, never merge them, and
        report a STUDY among them (what the driver says to the user)."""
        if not pairs:
            return
        self.count_drop_n(DropReason.OTHER_STUDY, len(pairs))
        seed = addr is not None and addr in self.seeds
        for e, _ in pairs:
            if isinstance(e, StudyEntry):
                self._events.append(ForeignStudy(e, sender, addr, seed))

    def count_drop(self, reason: DropReason, addr: Addr | None = None) -> None:
        self.dropped.add(reason)
        if addr is not None:
            self._count_from(addr, reason)
        self._events.append(Dropped(reason, addr))

    def count_drop_n(self, reason: DropReason, n: int) -> None:
        """Count ``n`` ledger records dropped by the ledger (one event for all)."""
        self.dropped.add(reason, n)
        self._events.append(Dropped(reason, None))

    def _count_from(self, addr: Addr, reason: DropReason) -> None:
        by = self.drops_by_addr
        counts = by.pop(addr, None)
        if counts is None:
            counts = {}
            if len(by) >= MAX_DROP_ADDRS:
                del by[next(iter(by))]
        by[addr] = counts  # most recently dropping address last
        counts[reason.value] = counts.get(reason.value, 0) + 1

    def drops_from(self, addr: Addr) -> dict[str, int]:
        """``{reason: count}`` of what was dropped from ``addr`` (empty if nothing)."""
        return dict(self.drops_by_addr.get(addr, {}))
