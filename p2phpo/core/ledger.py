"""The trial ledger: a grow-only CRDT of per-origin logs.

Each node appends only to its own log; an entry is keyed ``(origin, seq)``
with ``seq`` counting 1, 2, 3 ... without gaps. Merge is set union, so it is
commutative, associative and idempotent. The version vector ``vv`` (origin ->
highest contiguous seq) is the whole digest: what a peer lacks is exactly the
entries above its vv.

Entries that arrive ahead of a gap are held until the gap fills: at most
``max_pending`` per origin and ``max_pending_total`` in all (when full, the
origin holding the most gives way, so no set of origins can starve the
others); an ``(origin, seq)`` that arrives again with different bytes is a
conflict: counted, never applied, with one exception: an ABANDON(LOST) filler
(what a node writes at an own seq its disk lost and no peer gave back) yields
to the origin's real record at that seq whenever one arrives, on every replica
alike, so a peer that held the original while away repairs the split when it
returns (``fillers`` lists what to ask peers for).

A signing ledger (``identity`` or ``verifier`` given) stores signed records
(``core/records.py``): it signs its own entries and checks every merged one
against its origin's key before anything else looks at it; a record without
its origin's valid signature is dropped and counted (``bad_signature``), as
is one whose origin's key is not known yet (``unknown_key``: its log's first
entry, which carries the key, has not arrived; anti-entropy sends logs in
order). Authorship also limits what an entry can say about another node's
trial: REPORTs and RESULTs count only from the trial's owner, except a FAILED
RESULT without a value (the max-retries verdict any node may write), which
never outranks one of the owner's.

Trial views (``core/trial_view.py``) are folded incrementally as entries
apply; ``changes`` is an append-only log of trial ids whose view changed, so
consumers (the samplers' column frame, the search core) update from a cursor
instead of rescanning. A retry whose original holds a counted RESULT reads as
SUPERSEDED (one slot, one count; see ``core/trial_view.py``): a change to a
trial also refreshes the retries below it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    Entry,
    Report,
    Result,
    Status,
    StudyEntry,
    TrialId,
    encode_entry,
)
from p2phpo.core.hrw import hrw
from p2phpo.core.identity import SIGNATURE_LEN, Identity, node_id_of
from p2phpo.core.records import (
    PREV_LEN,
    Verifier,
    chain_hash,
    key_matches,
    sign_entry,
    split_record,
)
from p2phpo.core.trial_view import TrialState, TrialView

__all__ = ["Ledger", "MergeStats", "TrialState", "TrialView"]

MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class MergeStats:
    added: list[Entry] = field(default_factory=list)  # applied, in application order
    replaced: int = 0  # LOST fillers that yielded to the origin's real record (in ``added``)
    duplicates: int = 0
    conflicts: int = 0
    held: int = 0  # out-of-order entries now waiting for a gap to fill
    dropped: int = 0  # out-of-order entries over the per-origin or global cap
    bad_signature: int = 0  # records without their origin's valid signature
    unknown_key: int = 0  # records of an origin whose key is not known yet


def _vv_term(origin: int, seq: int) -> int:
    data = origin.to_bytes(8, "big") + seq.to_bytes(8, "big")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ledger:
    """One replica of the study's trial ledger."""

    def __init__(
        self,
        max_pending: int = 256,
        *,
        identity: Identity | None = None,
        verifier: Verifier | None = None,
        max_pending_total: int = 4096,
        max_learned_keys: int = 4096,
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_total = max_pending_total
        self.identity = identity
        self.signed = identity is not None or verifier is not None
        self.verifier = verifier if verifier is not None else (Verifier() if self.signed else None)
        self._logs: dict[int, list[Entry]] = {}
        self._raw: dict[int, list[bytes]] = {}
        self._known: set[bytes] = set()  # the bytes of every applied entry
        self._pending: dict[int, dict[int, tuple[Entry, bytes]]] = {}
        self._pending_total = 0
        self._keys: dict[int, bytes] = {}  # origin -> public key, from its first record
        self._learned: dict[int, bytes] = {}  # keys vouched for elsewhere (signed Alive)
        self.max_learned_keys = max_learned_keys
        self._vv: dict[int, int] = {}
        self._vv_hash = 0
        self._trials: dict[TrialId, TrialView] = {}
        self._retries: dict[TrialId, list[TrialId]] = {}  # retry_of -> the retries naming it
        self._studies: list[StudyEntry] = []
        self._fillers: dict[int, set[int]] = {}  # origin -> seqs whose applied entry is a LOST filler
        self._size = 0
        self.changes: list[TrialId] = []
        self.counts = {"duplicates": 0, "conflicts": 0, "dropped_pending": 0,
                       "bad_signature": 0, "unknown_key": 0, "not_owner": 0,
                       "replaced_fillers": 0}

    # -- digest ----------------------------------------------------------
    @property
    def vv(self) -> dict[int, int]:
        """origin -> highest contiguous seq. Do not mutate."""
        return self._vv

    def vv_hash(self) -> int:
        """64-bit hash of the vv: equal vvs give equal hashes (XOR of per-origin terms)."""
        return self._vv_hash

    def next_seq(self, origin: int) -> int:
        return self._vv.get(origin, 0) + 1

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Entry]:
        for origin in sorted(self._logs):
            yield from self._logs[origin]

    def origins(self) -> list[int]:
        return sorted(self._logs)

    def get(self, origin: int, seq: int) -> Entry | None:
        log = self._logs.get(origin)
        return log[seq - 1] if log and 0 < seq <= len(log) else None

    def raw(self, origin: int, seq: int) -> bytes | None:
        raws = self._raw.get(origin)
        return raws[seq - 1] if raws and 0 < seq <= len(raws) else None

    def has_raw(self, raw: bytes) -> bool:
        """True when ``raw`` is byte for byte an entry this replica already applied:
        receivers skip decoding such duplicates (the common case in gossip)."""
        return raw in self._known

    def entries_of(self, origin: int) -> list[Entry]:
        return list(self._logs.get(origin, ()))

    def pending_count(self) -> int:
        return self._pending_total

    def key_of(self, origin: int) -> bytes | None:
        """``origin``'s public key, when this replica knows it."""
        return self._keys.get(origin) or self._learned.get(origin)

    def learn_key(self, key: bytes) -> bool:
        """Remember a public key vouched for elsewhere (e.g. a verified signed Alive),
        so records of its origin verify before that origin's first record arrives.
        Self-certifying: the key names its own origin. Bounded; False when refused."""
        if len(key) != 32:
            return False
        origin = node_id_of(key)
        if origin in self._keys or origin in self._learned:
            return True
        if len(self._learned) >= self.max_learned_keys:
            return False
        self._learned[origin] = key
        return True

    def fillers(self) -> dict[int, int]:
        """origin -> its lowest seq held as an ABANDON(LOST) filler: a peer may hold the
        real record there (the module docstring); anti-entropy asks for it."""
        return {o: min(seqs) for o, seqs in self._fillers.items()}

    def held_seqs(self, origin: int) -> list[int]:
        """Seqs of ``origin`` held out of order (waiting for a gap below them), ascending."""
        return sorted(self._pending.get(origin, ()))

    def gaps(self) -> dict[int, list[int]]:
        """origin -> the seqs missing below entries held out of order (what a peer can fill)."""
        out = {}
        for origin, held in self._pending.items():
            top = max(held, default=0)
            missing = [s for s in range(self.next_seq(origin), top) if s not in held]
            if missing:
                out[origin] = missing
        return out

    # -- writing ---------------------------------------------------------
    def append(self, entry: Entry) -> Entry:
        """Append a local entry: its seq must be exactly ``next_seq(origin)``."""
        if entry.seq != self.next_seq(entry.origin):
            raise ValueError(
                f"local append out of order: seq {entry.seq}, expected {self.next_seq(entry.origin)}"
            )
        if self.identity is not None:
            raw = sign_entry(self.identity, entry, self.raw(entry.origin, entry.seq - 1))
        elif self.signed:
            raise ValueError("a verifying ledger without an identity cannot append entries")
        else:
            raw = encode_entry(entry)
        self._apply(entry, raw)
        if entry.origin in self._pending:  # entries held above a filled gap apply now
            self._drain(entry.origin, MergeStats())
        return entry

    def new(self, origin: int, cls: type, *, wall: float, **fields: object) -> Entry:
        """Build an entry of ``cls`` with the next seq of ``origin`` and append it."""
        return self.append(cls(origin=origin, seq=self.next_seq(origin), wall=wall, **fields))

    def merge(
        self, entries: Iterable[Entry | tuple[Entry, bytes]], *, trusted: bool = False
    ) -> MergeStats:
        """Union ``entries`` into this replica, in any order; see the module docstring.

        ``trusted``: records this node verified before (its own state dir's
        log); their signatures are not checked again.
        """
        stats = MergeStats()
        items = [item if isinstance(item, tuple) else (item, encode_entry(item)) for item in entries]
        if self.signed and not trusted:
            items = self._authentic(items, stats)
        for entry, raw in items:
            self._merge_one(entry, raw, stats)
        self.counts["duplicates"] += stats.duplicates
        self.counts["conflicts"] += stats.conflicts
        self.counts["dropped_pending"] += stats.dropped
        self.counts["bad_signature"] += stats.bad_signature
        self.counts["unknown_key"] += stats.unknown_key
        self.counts["replaced_fillers"] += stats.replaced
        return stats

    def _authentic(
        self, items: list[tuple[Entry, bytes]], stats: MergeStats
    ) -> list[tuple[Entry, bytes]]:
        """The items that carry their origin's valid signature (or are applied already).

        Each origin's records are walked from the highest seq down: a record
        whose hash an authentic successor signed as ``prev`` needs no check of
        its own, so a run costs one signature check.
        """
        fresh = [p for p in items if p[1] not in self._known]
        if not fresh:
            return items
        verifier = self.verifier
        assert verifier is not None
        keys = self._batch_keys(fresh)
        named: dict[tuple[int, int], bytes] = {}  # (origin, seq) -> hash its authentic successor signed
        good: set[bytes] = set()
        for entry, raw in sorted(fresh, key=_by_origin_then_seq_down):
            origin, seq = entry.origin, entry.seq
            key = keys.get(origin)
            want = named.get((origin, seq))
            if key is not None and verifier.known(raw, key):
                pass
            elif want is not None and want == chain_hash(raw):
                if key is not None:
                    verifier.vouch(raw, key)
            elif not self._signed_by(entry, raw, key, stats):
                continue
            good.add(raw)
            if seq > 1:
                named[(origin, seq - 1)] = raw[-SIGNATURE_LEN - PREV_LEN:-SIGNATURE_LEN]
        return [p for p in items if p[1] in good or p[1] in self._known]

    def _signed_by(self, entry: Entry, raw: bytes, key: bytes | None, stats: MergeStats) -> bool:
        """Whether ``raw`` carries ``key``'s valid signature (``key``: its origin's, if known)."""
        parts = split_record(entry, raw)
        if parts is None or (key is None and entry.seq == 1):
            stats.bad_signature += 1  # too short, or a first record whose key is not its origin's
            return False
        if key is None:
            stats.unknown_key += 1
            return False
        body, prev, own, sig = parts
        if (own is not None and own != key) or not self.verifier.check(raw, key, prev, body, sig):  # type: ignore[union-attr]
            stats.bad_signature += 1
            return False
        return True

    def _batch_keys(self, fresh: list[tuple[Entry, bytes]]) -> dict[int, bytes]:
        """Known keys of the origins in ``fresh``, and self-certifying ones their first
        records carry (a key that derives the origin's id is that origin's key)."""
        keys: dict[int, bytes] = {}
        for entry, raw in fresh:
            origin = entry.origin
            if origin in keys:
                continue
            known = self.key_of(origin)
            if known is not None:
                keys[origin] = known
            elif entry.seq == 1 and (parts := split_record(entry, raw)):
                if parts[2] is not None and key_matches(parts[2], origin):
                    keys[origin] = parts[2]
        return keys

    def _merge_one(self, entry: Entry, raw: bytes, stats: MergeStats) -> None:
        origin, seq = entry.origin, entry.seq
        have = self._vv.get(origin, 0)
        if seq <= have:
            if self._raw[origin][seq - 1] == raw:
                stats.duplicates += 1
            elif seq in self._fillers.get(origin, ()) and not _is_filler(entry):
                self._replace(entry, raw)
                stats.added.append(entry)
                stats.replaced += 1
            else:
                stats.conflicts += 1
            return
        if seq > have + 1:
            self._hold(entry, raw, stats)
            return
        self._apply(entry, raw)
        stats.added.append(entry)
        self._drain(origin, stats)

    def _hold(self, entry: Entry, raw: bytes, stats: MergeStats) -> None:
        pending = self._pending.get(entry.origin, {})
        held = pending.get(entry.seq)
        if held is not None:
            if held[1] == raw:
                stats.duplicates += 1
            else:
                stats.conflicts += 1
            return
        if len(pending) >= self.max_pending:
            # Keep the entries closest to the gap: they unblock the log soonest.
            if max(pending) < entry.seq:
                stats.dropped += 1
                return
            self._unhold(entry.origin, stats)
        elif self._pending_total >= self.max_pending_total:
            hog = max(self._pending, key=lambda o: (len(self._pending[o]), o))
            if len(self._pending[hog]) <= len(pending):
                stats.dropped += 1
                return
            self._unhold(hog, stats)
        self._pending.setdefault(entry.origin, pending)[entry.seq] = (entry, raw)
        self._pending_total += 1
        stats.held += 1

    def _unhold(self, origin: int, stats: MergeStats) -> None:
        """Drop the held entry of ``origin`` farthest from its gap."""
        pending = self._pending[origin]
        del pending[max(pending)]
        if not pending:
            del self._pending[origin]
        self._pending_total -= 1
        stats.dropped += 1
        stats.held -= 1

    def _drain(self, origin: int, stats: MergeStats) -> None:
        pending = self._pending.get(origin)
        while pending:
            nxt = self._vv[origin] + 1
            item = pending.pop(nxt, None)
            if item is None:
                break
            self._pending_total -= 1
            self._apply(*item)
            stats.added.append(item[0])
            stats.held -= 1
        if pending is not None and not pending:
            del self._pending[origin]

    def _apply(self, entry: Entry, raw: bytes) -> None:
        origin = entry.origin
        old = self._vv.get(origin, 0)
        self._logs.setdefault(origin, []).append(entry)
        self._raw.setdefault(origin, []).append(raw)
        self._known.add(raw)
        if entry.seq == 1 and self.signed:
            self._remember_key(entry, raw)
        if old:
            self._vv_hash ^= _vv_term(origin, old)
        self._vv_hash ^= _vv_term(origin, entry.seq)
        self._vv[origin] = entry.seq
        self._size += 1
        if _is_filler(entry):
            self._fillers.setdefault(origin, set()).add(entry.seq)
        self._fold(entry)

    def _replace(self, entry: Entry, raw: bytes) -> None:
        """The origin's real record at a seq we hold a LOST filler for takes its place."""
        origin, i = entry.origin, entry.seq - 1
        filler = self._logs[origin][i]
        self._known.discard(self._raw[origin][i])
        self._logs[origin][i], self._raw[origin][i] = entry, raw
        self._known.add(raw)
        seqs = self._fillers[origin]
        seqs.discard(entry.seq)
        if not seqs:
            del self._fillers[origin]
        assert isinstance(filler, Abandon)
        view = self._trials.get(filler.trial)
        if view is not None and filler in view.abandons:
            view.abandons.remove(filler)
            view._refresh()
            if view.claim is not None:
                self.changes.append(view.id)
        self._fold(entry)

    def _remember_key(self, entry: Entry, raw: bytes) -> None:
        parts = split_record(entry, raw)
        if parts is not None and parts[2] is not None and key_matches(parts[2], entry.origin):
            self._keys[entry.origin] = parts[2]
            self._learned.pop(entry.origin, None)

    # -- delta -------------------------------------------------------------
    def delta_since(
        self, vv: dict[int, int], limit_bytes: int | None = None, max_entries: int | None = None
    ) -> list[Entry]:
        """Entries above ``vv``, in origin/seq order, each origin's run gap-free.

        Stops before the encoded sizes would exceed ``limit_bytes`` or the count
        ``max_entries``; the receiver's vv then advances by a prefix per origin.
        """
        out: list[Entry] = []
        used = 0
        for origin in sorted(self._vv):
            start = vv.get(origin, 0)
            if start >= self._vv[origin]:
                continue
            log, raws = self._logs[origin], self._raw[origin]
            for i in range(start, len(log)):
                size = len(raws[i])
                if limit_bytes is not None and used + size > limit_bytes:
                    return out
                if max_entries is not None and len(out) >= max_entries:
                    return out
                out.append(log[i])
                used += size
        return out

    def entry_size(self, entry: Entry) -> int:
        raw = self.raw(entry.origin, entry.seq)
        return len(raw) if raw is not None else len(encode_entry(entry))

    def missing_count(self, vv: dict[int, int]) -> int:
        """How many entries this replica holds above ``vv``."""
        return sum(max(0, s - vv.get(o, 0)) for o, s in self._vv.items())

    # -- trial views -------------------------------------------------------
    @property
    def study(self) -> StudyEntry | None:
        """The STUDY entry in force: the lowest rendezvous weight among those seen."""
        if not self._studies:
            return None
        return min(self._studies, key=lambda s: (hrw("study", s.origin, s.seq), s.origin))

    @property
    def studies(self) -> list[StudyEntry]:
        return list(self._studies)

    def trial(self, tid: TrialId) -> TrialView | None:
        view = self._trials.get(tid)
        return view if view is not None and view.claim is not None else None

    def trials(self) -> dict[TrialId, TrialView]:
        return {tid: v for tid, v in self._trials.items() if v.claim is not None}

    def _view(self, tid: TrialId) -> TrialView:
        view = self._trials.get(tid)
        if view is None:
            view = self._trials[tid] = TrialView(tid)
        return view

    def _fold(self, entry: Entry) -> None:
        if isinstance(entry, StudyEntry):
            self._studies.append(entry)
            return
        if isinstance(entry, Claim):
            view = self._view(entry.key)
            view.claim = entry
            if entry.retry_of is not None:
                self._retries.setdefault(entry.retry_of, []).append(entry.key)
        else:
            if not _may_write(entry):
                self.counts["not_owner"] += 1
                return
            view = self._view(entry.trial)
            if isinstance(entry, Report):
                view.reports[entry.step] = entry.value
            elif isinstance(entry, Result):
                view.results.append(entry)
            else:
                view.abandons.append(entry)
        view.eclipsed = self._eclipsed(view)
        view._refresh()
        if view.claim is not None:
            self.changes.append(view.id)
        if view.id in self._retries:
            self._settle_retries(view.id)

    def _eclipsed(self, view: TrialView) -> bool:
        """Whether an original of retry ``view`` (up its ``retry_of`` chain, same slot)
        holds a counted RESULT of its own."""
        seen = {view.id}
        tid = view.retry_of
        while tid is not None and tid not in seen:
            seen.add(tid)
            orig = self._trials.get(tid)
            if orig is None or orig.claim is None or orig.slot != view.slot:
                return False
            if orig.own_counted:
                return True
            tid = orig.retry_of
        return False

    def _settle_retries(self, tid: TrialId) -> None:
        """Trial ``tid`` changed: refresh the retries below it (the rule above)."""
        todo, seen = list(self._retries[tid]), {tid}
        while todo:
            rid = todo.pop()
            if rid in seen:
                continue
            seen.add(rid)
            view = self._trials.get(rid)
            if view is None:
                continue
            eclipsed = self._eclipsed(view)
            if eclipsed != view.eclipsed:
                view.eclipsed = eclipsed
                view._refresh()
                if view.claim is not None:
                    self.changes.append(rid)
            todo.extend(self._retries.get(rid, ()))


def _by_origin_then_seq_down(item: tuple[Entry, bytes]) -> tuple[int, int]:
    return item[0].origin, -item[0].seq


def _is_filler(entry: Entry) -> bool:
    """An ABANDON(LOST) its origin wrote at a seq of its own its disk lost."""
    return (isinstance(entry, Abandon) and entry.reason is AbandonReason.LOST
            and entry.trial == (entry.origin, entry.seq))


def _may_write(entry: Report | Result | Abandon) -> bool:
    """Whether ``entry`` may change its trial's view: any node may abandon a trial
    or declare it FAILED without a value (max retries); reports and results
    with a value come only from the trial's owner."""
    if entry.origin == entry.trial[0] or isinstance(entry, Abandon):
        return True
    return isinstance(entry, Result) and entry.status is Status.FAILED and entry.value is None
