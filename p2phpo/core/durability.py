"""A node's own history across restarts: repair from peers first, linger when done.

Pure (no clock, no I/O): the shell feeds time, merged entries and sync events.

:class:`RepairGate` decides when a (re)started node may write. Until it opens
the node writes nothing (no ABANDON of its old trials, no CLAIM):

- It opens at once when no peer is expected (no ``--seed``, no remembered
  peer): a lone node.
- Otherwise it waits for an anti-entropy exchange that finds a peer in sync
  (``InSync``): the node then holds everything that peer holds, its own
  entries included, so it continues after the highest seq anyone it reached
  holds. If peers gave back entries of its own, it waits ``quiet`` seconds
  more, so that a live twin (a copy of its state dir running elsewhere) shows
  itself by writing on.
- After ``sync_wait`` without a sync, and with no other member alive, it
  opens alone and says so. While some peer is alive, or while entries of its
  own are missing from its log (a damaged record: going on alone would fill
  them with ABANDON(LOST) while a peer that answers late holds the real ones),
  it keeps waiting for a sync (push-pull or equal digests) up to four times
  as long: never a stall. A damaged *last* record counts as a missing own seq
  when it may have been ours (``Recovery.tail_own``): reusing its seq would
  give one ``(origin, seq)`` two contents. A filler written while the peer
  holding the real record is away yields to that record when the peer
  returns (``core/ledger.py``), so the replicas converge again.

Entries of this node that arrive from peers before it opens are repairs,
unless they were written after this process started (a wall time at or after
``start_wall``, on this node's own clock): then another live node holds this
identity, and the gate refuses. Once open, every entry of ours that arrives
from a peer was written by someone else: refused too. On opening, own seqs
that nobody gave back (lost for good: a lone node, or peers that never got
them) are filled with ABANDON(LOST) entries so the intact entries above
them apply and no ``(origin, seq)`` is ever reused.

:class:`Linger` decides when a node whose study is done may exit: once every
known member that ran the study is done too (or left), and at the latest
``grace`` seconds after it was done, so that a node restarting shortly after
learns the study is over instead of running it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from p2phpo.core.entries import Abandon, AbandonReason, Entry
from p2phpo.core.ledger import Ledger

MAX_WAIT_FACTOR = 4  # live peers but no sync yet: wait up to this many sync_waits


@dataclass(frozen=True, slots=True)
class GateConfig:
    sync_wait: float = 15.0  # how long to look for a peer before going on alone
    quiet: float = 2.0  # after a repair: how long no fresh entry of ours may arrive

    @classmethod
    def for_profile(cls, profile: object) -> GateConfig:
        probe = float(getattr(profile, "probe_interval", 1.0))
        gossip = float(getattr(profile, "gossip_interval", 0.2))
        return cls(sync_wait=15 * probe, quiet=10 * gossip)


def seq_ranges(seqs: Iterable[int]) -> str:
    """'seq 3, 7-9' for [3, 7, 8, 9]."""
    out: list[str] = []
    run: list[int] = []
    for s in sorted(seqs):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [s]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return "seq " + ", ".join(out)


class RepairGate:
    """When may a restarted node write? See the module docstring."""

    def __init__(self, node_id: int, ledger: Ledger, *, expect_peers: bool, now: float,
                 start_wall: float, config: GateConfig | None = None, tail_own: bool = False) -> None:
        self.node_id = node_id
        self.ledger = ledger
        self.expect_peers = expect_peers
        self.config = config or GateConfig()
        self.start_wall = start_wall
        self.opened = False
        self.refused: str | None = None
        self.note = ""  # one line, set when the gate opens
        self._started = now
        self._synced_at: float | None = None
        self._repaired: list[int] = []  # own seqs peers gave back before opening
        self._saw_peers = False  # a live peer was seen while waiting
        self._filled: set[int] = set()  # own seqs filled with ABANDON(LOST) on opening
        self.returned: list[int] = []  # of those, seqs whose real record a peer gave back since
        self._gaps = ledger.gaps()  # what the log lost below intact entries, every origin
        self._held_own = set(ledger.held_seqs(node_id))  # on disk already: not repairs
        # The log's damaged last record may have been our next seq (``Recovery.tail_own``),
        # which a peer may hold: missing like a gap until a peer gives it back.
        self._tail = max([ledger.next_seq(node_id), *self._held_own]) + (1 if self._held_own else 0)
        self._tail_own = tail_own

    # -- inputs ---------------------------------------------------------------
    def merged(self, entries: Iterable[Entry]) -> None:
        """Entries a peer gave us (``EntriesMerged``): ours among them are repairs or a twin."""
        for e in entries:
            if e.origin != self.node_id or self.refused is not None:
                continue
            if e.seq in self._filled and e.wall < self.start_wall:
                self._filled.discard(e.seq)  # a record we filled as lost, back from a peer
                self.returned.append(e.seq)
                continue
            if self.opened or e.wall >= self.start_wall:
                self.refused = (
                    "stale state dir: another live node runs with this node's identity (a peer "
                    f"sent seq {e.seq} of this node, written elsewhere after this one started); "
                    "the state dir was copied from a running node: start this copy with a new "
                    "--state-dir")
                return
            if e.seq not in self._held_own:
                self._repaired.append(e.seq)

    def take_returned(self) -> str:
        """One line on own records filled as lost that peers gave back since the last call."""
        if not self.returned:
            return ""
        seqs, self.returned = self.returned, []
        n = len(seqs)
        return (f"{n} entr{'y' if n == 1 else 'ies'} of this node filled as lost came back from a "
                f"peer ({seq_ranges(seqs)}): the real record{'s' if n != 1 else ''} replace the filler")

    def synced(self, now: float) -> None:
        """An anti-entropy exchange found a peer's ledger equal to ours."""
        if self._synced_at is None:
            self._synced_at = now

    @property
    def alone(self) -> bool:
        """Opened without reaching any peer (and none reached since): the origins this
        node knows only from its ledger are not alive as far as it can tell."""
        return self.opened and self._synced_at is None

    # -- decision ---------------------------------------------------------------
    def due(self, now: float, peers_alive: bool = False) -> bool:
        """Whether the gate opens now (call :meth:`open` then). ``peers_alive``: some
        other member is ALIVE; then the node keeps waiting for a sync with the cluster
        (its lost entries are out there) up to ``MAX_WAIT_FACTOR`` times ``sync_wait``."""
        if self.opened or self.refused is not None:
            return False
        if not self.expect_peers:
            return True
        if self._synced_at is not None:
            return not self._repaired or now >= self._synced_at + self.config.quiet
        if peers_alive:
            self._saw_peers = True
        return now - self._started >= self._wait()

    def _wait(self) -> float:
        """How long to look for a peer before going on without one (module docstring)."""
        if self._saw_peers or self._missing():
            return MAX_WAIT_FACTOR * self.config.sync_wait
        return self.config.sync_wait

    def open(self, wall: float) -> list[Entry]:
        """Open the gate: fill own seqs lost for good; returns those new entries (ours,
        already in the ledger) for the shell to persist and gossip."""
        self.opened = True
        missing = self._missing()
        fill: list[Entry] = []
        for seq in missing:
            entry = Abandon(origin=self.node_id, seq=seq, wall=wall, trial=(self.node_id, seq),
                            reason=AbandonReason.LOST)
            self.ledger.append(entry)
            fill.append(entry)
            self._filled.add(seq)
        self.note = self._describe(missing)
        return fill

    def waited(self, now: float) -> float:
        """Seconds since this node started looking for a peer."""
        return now - self._started

    def timer(self) -> float | None:
        """The next moment :meth:`due` may change without an input."""
        if self.opened or self.refused is not None or not self.expect_peers:
            return None
        if self._synced_at is not None:
            return self._synced_at + self.config.quiet if self._repaired else None
        return self._started + self._wait()

    # -- helpers ------------------------------------------------------------------
    def _missing(self) -> list[int]:
        gaps = self.ledger.gaps().get(self.node_id, [])
        if self._tail_own and self.ledger.next_seq(self.node_id) <= self._tail:
            return [*gaps, self._tail]
        return gaps

    def _describe(self, lost: list[int]) -> str:
        parts = []
        others = sum(1 for o, seqs in self._gaps.items() if o != self.node_id
                     for s in seqs if self.ledger.get(o, s) is not None)
        if self._repaired or others:
            own = (f" ({len(self._repaired)} of this node's own: {seq_ranges(self._repaired)})"
                   if self._repaired else "")
            n = len(self._repaired) + others
            parts.append(f"repaired {n} entr{'y' if n == 1 else 'ies'} from peers{own}")
        wait = MAX_WAIT_FACTOR * self.config.sync_wait if lost else self.config.sync_wait
        if self.expect_peers and self._synced_at is None and self._saw_peers:
            parts.append(f"no sync with the live peers within "
                         f"{MAX_WAIT_FACTOR * self.config.sync_wait:g} s: going on without one")
        elif self.expect_peers and self._synced_at is None:
            parts.append(f"no peer reached within {wait:g} s: going on alone")
        if lost:
            parts.append(f"{len(lost)} entr{'y' if len(lost) == 1 else 'ies'} of this node lost "
                         f"for good ({seq_ranges(lost)}; their trials will run again)")
        if not parts:
            return ""
        return "; ".join(parts) + f"; continuing at seq {self.ledger.next_seq(self.node_id)}"


class Linger:
    """When may a node whose study is done exit? See the module docstring.

    A member that ever advertised the study must be gone (LEFT) or done; a live
    one must also have been found in sync with us since our ledger last changed,
    so nothing either of us wrote is lost when we go. DEAD members may restart:
    they are waited for, up to ``grace``.

    A member is done when its metadata says so, or (``settled``: our study ended
    because its whole budget is counted, a fact of the ledger) once it was found
    in sync with us after that: it holds the same ledger, which only grows, so it
    is done too. A node whose budget is used therefore advertises nothing more
    (``NodeDriver._advertise``): at N = 1,000, every node's done flag, a signed
    Alive each node retransmits a dozen times, was ~1.4 MB per node after a study.

    Kept incrementally (every datagram with a member event asks, and a scan of
    1,000 members per datagram was the post-study cost at N = 1,000): the shell
    hands every member at :meth:`done`, then each member change (:meth:`member`);
    the workers are split into *blocked* (neither LEFT nor done) and *awaiting*
    (done and ALIVE/SUSPECT: they need a sync), with a count of the awaiting ones
    in sync. A member the table forgot without an event (reaped or evicted: only
    DEAD and LEFT ones are) is dropped from *blocked* when :meth:`may_exit` meets it.
    """

    def __init__(self, grace: float, forever: bool = False) -> None:
        self.grace = grace
        self.forever = forever
        self.done_at: float | None = None
        self.settled = False  # our study ended with its budget counted (``done``)
        self._workers: dict[int, tuple[str | None, Mapping | None]] = {}  # ran the study: last view
        self._finished: set[int] = set()  # peers in sync with us while we were settled
        self._in_sync: set[int] = set()  # peers in sync since our ledger last changed
        self._blocked: set[int] = set()  # known workers neither LEFT nor done
        self._crashed: set[int] = set()  # the blocked ones that are DEAD (``crashed``)
        self._awaiting: set[int] = set()  # known workers done and not DEAD/LEFT
        self._n_synced = 0  # len(self._awaiting & self._in_sync)
        self._ask_at: float | None = None  # when :meth:`to_ask` names the next peer
        self._asked = -1  # the last peer it named (round robin by id)

    def done(self, now: float, members: Mapping[int, tuple[str, Mapping]] | None = None,
             settled: bool = False) -> None:
        """Our study is done; ``members``: (state, meta) of every other known member;
        ``settled``: because its budget is counted (the class docstring)."""
        if self.done_at is not None:
            return
        self.done_at = now
        self.settled = settled
        if settled:  # in sync since our ledger last changed: they hold the whole budget
            self._finished.update(self._in_sync)
        for node, (state, meta) in (members or {}).items():
            self.member(node, state, meta)

    def settle(self) -> None:
        """Done for another reason (a timeout), our ledger now shows the budget counted:
        settled after all, so peers in sync with us are done (the class docstring)."""
        if self.done_at is None or self.settled:
            return
        self.settled = True
        self._finished.update(self._in_sync)
        for peer in sorted(self._in_sync & self._blocked):
            self.member(peer, *self._workers[peer])

    def member(self, node: int, state: str | None, meta: Mapping | None) -> None:
        """``node``'s (state, meta) changed (``state`` None: no longer a member)."""
        if self.done_at is None:
            return  # the workers are taken from the members at :meth:`done`
        if node not in self._workers and not (meta is not None and meta.get("study")):
            return
        self._workers[node] = (state, meta)
        self._blocked.discard(node)
        self._crashed.discard(node)
        if node in self._awaiting:
            self._awaiting.discard(node)
            self._n_synced -= node in self._in_sync
        if state is None or state == "LEFT":
            return
        if not ((meta or {}).get("done") or node in self._finished):
            self._blocked.add(node)
            if state == "DEAD":
                self._crashed.add(node)
        elif state != "DEAD":
            self._awaiting.add(node)
            self._n_synced += node in self._in_sync

    def changed(self) -> None:
        """Our ledger took new entries: every peer must confirm it again."""
        self._in_sync.clear()
        self._n_synced = 0

    def synced(self, peer: int) -> None:
        if peer in self._in_sync:
            return
        self._in_sync.add(peer)
        self._n_synced += peer in self._awaiting
        if self.settled and peer not in self._finished:
            self._finished.add(peer)
            if peer in self._blocked:
                self.member(peer, *self._workers[peer])  # done now: awaiting, and in sync

    def may_exit(self, now: float, known: Callable[[int], object]) -> bool:
        """``known(node)``: not None while ``node`` is a member."""
        if self.done_at is None or self.forever:
            return False
        if now >= self.done_at + self.grace:
            return True
        if self._blocked:
            forgotten = []
            for node in self._blocked:
                if known(node) is not None:
                    break
                forgotten.append(node)
            for node in forgotten:
                self.member(node, None, None)
            if self._blocked:
                return False
        return self._n_synced == len(self._awaiting)

    def crashed(self) -> list[int]:
        """The peers that ran the study, are not done and are DEAD: waited for until the
        grace ends (they may restart), so a finished node does not exit yet."""
        if self.done_at is None or self.forever or not self._crashed:
            return []  # O(1) while nobody crashed: asked on every datagram after the study
        return sorted(self._crashed)

    def crashed_note(self, crashed: list[int]) -> str:
        """One sentence for the event log: why this finished node waits, and how long."""
        assert self.done_at is not None
        names = ", ".join(f"{n:016x}" for n in crashed[:3]) + (", ..." if len(crashed) > 3 else "")
        return (f"study done; waiting up to {self.grace:g} s after it for {len(crashed)} crashed "
                f"peer(s) that ran it ({names}) in case one restarts (--grace sets the wait)")

    def timer(self) -> float | None:
        if self.done_at is None or self.forever:
            return None
        end = self.done_at + self.grace
        return end if self._ask_at is None else min(end, self._ask_at)

    def to_ask(self, now: float, interval: float) -> list[int]:
        """The peer to ask for its digest now, if any (the shell sends it a PING whose
        ACK carries it; ours goes with the PING). Left to the probes, whose digests
        reach ~2 random peers a second, from about N = 48 up every exit came at the
        grace. One peer per gossip ``interval``, round robin over the peers a sync
        would release (awaiting, and blocked ones too when ``settled``), and only
        while all of them can be asked before the grace ends: past that the grace
        decides anyway, and the datagrams would be spent for nothing."""
        if self.done_at is None or self.forever or (self._ask_at is not None and now < self._ask_at):
            return []
        self._ask_at = None
        left = len(self._awaiting) - self._n_synced + (len(self._blocked) if self.settled else 0)
        if left <= 0 or left * interval > self.done_at + self.grace - now:
            return []  # nobody to ask, or too many: asked again on the next timer
        self._ask_at = now + interval
        pool = self._awaiting | self._blocked if self.settled else self._awaiting
        waiting = sorted(pool - self._in_sync)
        if not waiting:
            return []
        after = [n for n in waiting if n > self._asked]
        self._asked = after[0] if after else waiting[0]
        return [self._asked]
