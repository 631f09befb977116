"""Orphans: RUNNING trials whose owner is gone, and who reclaims them.

Orphans. A RUNNING trial whose owner is DEAD or LEFT is abandoned (ABANDON
DEAD/LEFT) by the rendezvous winner among live ready members, once an
anti-entropy exchange has completed after the owner's death (so its last
RESULT had a chance to arrive). An owner that is no member at all (reaped
after its death, or never seen by a node that restarted after it died) counts
as DEAD once it stayed unknown for ``reclaim_fallback`` seconds and an
anti-entropy exchange completed since (a push-pull hands over the peer's
member table), or for twice that alone; each entry of its log that arrives
restarts the wait, as it may be alive and only not announced yet. Its slot reopens and is retried with the same
params (``retry_of``); after ``max_retries`` abandonments the trial is FAILED.
A RESULT beats ABANDON, and a running retry stops as soon as any counted
RESULT for its slot arrives.

:class:`OrphanRules` is the part of :class:`~p2phpo.core.search.SearchCore` that
keeps these rules (a mixin: it shares the core's state, set up in its
``__init__``).
"""

from __future__ import annotations

from typing import Any

from p2phpo.core.entries import Abandon, AbandonReason, TrialId
from p2phpo.core.hrw import hrw_order
from p2phpo.core.search_types import GONE, MemberView


class OrphanRules:
    """Gone and unknown owners of running trials, and the reclaim of their trials."""

    # The core's state these rules read and keep (set up by ``SearchCore.__init__``):
    node_id: int
    config: Any  # SearchConfig
    ledger: Any  # Ledger
    index: Any  # SlotIndex
    members: dict[int, MemberView]
    ready: bool
    leaving: bool
    _gone_since: dict[int, float]  # gone member -> since when (monotonic)
    _unknown_since: dict[int, float]  # owner of a running trial, no member -> since when
    _unknown_seq: dict[int, int]  # its log's length when the wait (re)started
    _unknown_key: tuple[int, int] | None
    _unknown_owners: set[int]
    _last_sync: float
    _abandoned_by_me: set[TrialId]
    _keys_gen: int

    def _note_gone(self, mid: int, view: MemberView, now: float) -> None:
        gone = self._gone_since
        if view.state in GONE:
            if mid not in gone:
                gone[mid] = now
                self._keys_gen += 1
        elif gone.pop(mid, None) is not None:
            self._keys_gen += 1

    def synced_with(self, peer: int, now: float) -> None:
        """An anti-entropy exchange with ``peer`` completed at ``now``."""
        self._last_sync = now

    @property
    def awaits_sync(self) -> bool:
        """Some running trial's owner is gone or unknown: a sync may let it be reclaimed."""
        return bool(self._gone_since or self._unknown_since)

    def _owner_gone(self, owner: int, now: float) -> bool:
        """DEAD or LEFT, and either synced since, or gone long enough that no peer is left
        to sync with (a lone survivor must not wait forever). An owner that is no member
        counts once unknown long enough (the module docstring)."""
        since = self._gone_since.get(owner)
        if since is None:
            since = self._unknown_since.get(owner)
            if since is None:
                return False
            wait = self.config.reclaim_fallback
            return now - since >= wait and (self._last_sync >= since or now - since >= 2 * wait)
        return self._last_sync >= since or now - since >= self.config.reclaim_fallback

    def _track_unknown(self, now: float) -> None:
        """Since when each owner of a RUNNING trial has been no member (restarted when
        its log grows: an entry of it arriving means it may well be alive)."""
        if not self.index.running and not self._unknown_since:
            return
        key = (self.index.seen, self._keys_gen)  # what the owners below depend on
        if key != self._unknown_key:
            self._update_unknown_owners(key)
        owners = self._unknown_owners
        for owner in [o for o in self._unknown_since if o not in owners]:
            del self._unknown_since[owner], self._unknown_seq[owner]
        for owner in owners:
            seq = self.ledger.vv.get(owner, 0)
            if self._unknown_seq.get(owner) != seq:
                self._unknown_seq[owner] = seq
                self._unknown_since[owner] = now

    def _update_unknown_owners(self, key: tuple[int, int]) -> None:
        """The owners of running trials that are neither members, gone nor us. With the
        same member keys as last time, only the owners of the trials changed since (the
        ledger's change log) can have come or gone: a 1,000-node cluster changes a few
        trials per datagram, and a full pass costs one look per running trial."""
        members, gone, me = self.members, self._gone_since, self.node_id
        last = self._unknown_key
        changed = self.ledger.changes[last[0] : key[0]] if last is not None and last[1] == key[1] else None
        if changed is None or len(changed) > len(self.index.owners):
            self._unknown_owners = {o for o in self.index.owners
                                    if o not in members and o not in gone and o != me}
        else:
            running, owners = self.index.owners, self._unknown_owners
            for owner in {tid[0] for tid in changed}:
                if owner in members or owner in gone or owner == me:
                    continue
                if owner in running:
                    owners.add(owner)
                else:
                    owners.discard(owner)
        self._unknown_key = key

    def _reclaim_orphans(self, now: float, wall: float) -> None:
        if not (self._gone_since or self._unknown_since) or not self.ready or self.leaving:
            return  # the common case: nobody is gone, nothing to look at
        gone, unknown = self._gone_since, self._unknown_since  # _owner_gone is False for others
        maybe = [tid for tid in self.index.running if tid[0] in gone or tid[0] in unknown]
        orphans = [tid for tid in sorted(maybe)
                   if tid[0] != self.node_id and tid not in self._abandoned_by_me
                   and self._owner_gone(tid[0], now)]
        live = self._ready_members() if orphans else []
        for tid in orphans:
            owner = tid[0]
            if rendezvous(("orphan", tid), live) != self.node_id:
                continue
            member = self.members.get(owner)  # None: reaped, or never a member here
            reason = AbandonReason.LEFT if member and member.state == "LEFT" else AbandonReason.DEAD
            self._write(Abandon, wall, trial=tid, reason=reason)
            self._abandoned_by_me.add(tid)


def rendezvous(key: object, candidates: list[int]) -> int | None:
    """The candidate that ranks first for ``key`` (highest random weight), if any."""
    order = hrw_order(key, candidates)
    return order[0] if order else None
