"""The node driver: one sans-IO object that is a whole p2phpo node.

It joins the gossip core (``core/gossip.py``), the search core
(``core/search.py``), the member views the search reads, anti-entropy
completion, the persist-then-gossip hand-off and the metadata the node
advertises (ready worker + study fingerprint). The asyncio node
(``runtime/node.py``) and the simulator (``simulations/node.py``) are shells
around it: they own sockets or a virtual network, a worker process or a
simulated objective, a state dir or a simulated disk, and a clock; every
decision is made here, so what the simulator proves is what users run.

Inputs, each with the monotonic ``now`` and the wall-clock ``wall``::

    start(seeds, now, wall)                    # join the cluster
    handle_datagram(data, addr, now, wall)
    handle_timer(now, wall)                    # when get_timer() falls due
    handle_stream(now, wall)                   # after push-pull frames were fed
    handle_pushpull_done(peer, ok, now, wall)  # one push-pull session ended
    handle_worker_ready(...)                   # the worker loaded: search starts
    handle_trial_report(trial, step, value, now, wall) -> Verdict
    handle_trial_finished(trial, outcome | None, now, wall)
    handle_worker_free(now, wall)              # after handle_trial_finished(worker_free=False)
    handle_setup_failed(trial, now, wall)
    handle_persisted(now, wall)                # every Persist handed out is durable
    handle_leave(now, wall)
    handle_watch(seeds, unresolved, now, wall) # about once a second: join diagnostics

Outputs: ``datagrams_to_send(now)``, ``tcp_requests()`` (push-pulls to run),
``get_timer()`` and ``take_actions()``: :class:`Persist` (write these entries;
own ones durably, then call ``handle_persisted``), worker commands
(``StartTrial``, ``StopTrial``), ``StudyDone``, :class:`StudyFound` (start a
worker for this study), membership events, :class:`Note` (for the event log),
:class:`Incarnation` (persist it) and :class:`Fatal` (the node must stop).

Our own entries reach gossip only after the shell confirmed them durable; a
peer's entries are handed out for persisting as they merge. The actions are
defined in ``core/driver_actions.py`` (re-exported here), the member views in
``core/member_views.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2phpo.core.driver_actions import Fatal, Incarnation, MayExit, Note, Persist, StudyFound
from p2phpo.core.driver_study import StudyChecks
from p2phpo.core.durability import Linger, RepairGate
from p2phpo.core.entries import Abandon, AbandonReason, Entry, StudyEntry, TrialId
from p2phpo.core.gossip import EntriesMerged, GossipCore
from p2phpo.core.gossip_sync import SyncSession
from p2phpo.core.gossip_types import Dropped, ForeignStudy, InSync, TcpRequest
from p2phpo.core.joinwatch import JoinWatch, SeedState
from p2phpo.core.ledger import Ledger
from p2phpo.core.member_views import MemberViews
from p2phpo.core.membership import MemberDead, MemberLeft
from p2phpo.core.messages import Addr, MemberRecord, State
from p2phpo.core.search import (
    MemberView,
    Outcome,
    PlanFactory,
    SearchConfig,
    SearchCore,
    StartTrial,
    StopTrial,
    StudyDone,
)
from p2phpo.core.verdict import Verdict
from p2phpo.core.wire import study_tag


class NodeDriver(StudyChecks):
    """One node: gossip + search + views + persistence hand-off (see the module doc)."""

    def __init__(self, node_id: int, ledger: Ledger, gossip: GossipCore, *,
                 observer: bool = False, gate: RepairGate | None = None,
                 linger: Linger | None = None, study: str | None = None,
                 study_lost: str | None = None) -> None:
        """``study``: the fingerprint of the study this node's state dir runs (its
        ledger's STUDY otherwise): from the start, only that study's entries merge.
        ``study_lost``: why its STUDY entry is missing (it waits for a peer's copy)."""
        self.node_id = node_id
        self.ledger = ledger
        self.gossip = gossip
        self.observer = observer  # status / export: never runs the search
        self.gate = gate  # a (re)started node writes nothing until it opens
        self.linger = linger  # when a finished node may exit
        # A restarted node whose STUDY entry its log lost and that has no study of its
        # own: what it lacks, said (exit 2) when the gate's wait ends without the study.
        self.study_lost = study_lost
        self.search: SearchCore | None = None
        self.halted = False  # the disk failed: decide nothing more
        self.done: str | None = None
        self.fatal: Fatal | None = None
        self._actions: list[Any] = []
        self._tcp: list[TcpRequest] = []
        self.views = MemberViews(node_id, ledger, gossip.membership)
        self._meta_sent: dict[str, Any] | None = None
        self._seen_len = -1
        self._search_timer: float | None = None
        self._poke = True  # the search has an input the ledger does not show
        self._members_dirty = True
        self._warm_hold = False  # handle_warm_members(hold=True): no step until the roster
        self._unconfirmed: list[Entry] = []  # own entries handed out, not yet durable
        self._study_found = False
        self._leave_pending = False  # LEAVE waits for our ABANDONs to be durable
        self._incarnation = gossip.incarnation
        self._running: set[TrialId] = set()  # trials the worker runs for us
        self._worker_held = False  # busy after a trial (handle_worker_free)
        self._ready_search: tuple[Any, ...] | None = None  # worker ready, gate still shut
        self._exit_sent = False
        self._linger_noted = False  # the "lingering" note (crashed peers waited for) went out
        self._settled = False  # done because the budget is counted (``_advertise``)
        self._gone_new: list[int] = []  # members just DEAD or LEFT (``_sync_for_gone``)
        self._quiet = False  # this input changed nothing the exit check reads (see handle_datagram)
        self.watch: JoinWatch | None = None  # join diagnostics (handle_watch)
        self._foreign: set[str] = set()  # fingerprints of other studies met on this key
        held = study or (ledger.study.fingerprint if ledger.study is not None else None)
        if held:
            gossip.bind_study(study_tag(held))

    # ------------------------------------------------------------------ inputs
    def start(self, seeds: list[Addr], now: float, wall: float) -> None:
        """Join through ``seeds`` (none: start a cluster or wait to be joined)."""
        self.gossip.join(seeds, now)
        self._pump(now, wall)

    def handle_datagram(self, data: bytes, addr: Addr, now: float, wall: float) -> None:
        self.gossip.receive_datagram(data, addr, now)
        # Most datagrams change nothing but replay windows: unless one yields an event
        # or an entry of ours, the exit check is skipped.
        self._quiet = True
        try:
            self._pump(now, wall)
        finally:
            self._quiet = False

    def handle_timer(self, now: float, wall: float) -> None:
        self.gossip.handle_timer(now)
        if self.linger is not None and self.done is not None and not self._exit_sent:
            for node in self.linger.to_ask(now, self.gossip.profile.gossip_interval):
                self.gossip.swim.ask_digest(node, now)
        self._pump(now, wall)

    def sync_session(self, *, initiator: bool, peer: Addr | None = None) -> SyncSession:
        """A push-pull session over one stream (``peer``: the address the initiator
        connects to); feed it frames, then ``handle_stream``."""
        return self.gossip.sync_session(initiator=initiator, peer=peer)

    def handle_stream(self, now: float, wall: float) -> None:
        """Push-pull frames were fed to a session: take in what they merged."""
        self._pump(now, wall)

    def handle_pushpull_done(self, peer: int, ok: bool, now: float, wall: float) -> None:
        """A push-pull with ``peer`` (0: known only by address) ended; ``ok`` if it
        completed. A completed one is an anti-entropy exchange: orphans of members
        that died before it may now be reclaimed."""
        if ok:
            self._synced(peer, now)
        self._pump(now, wall)

    def handle_watch(self, seeds: list[SeedState], unresolved: Mapping[str, str],
                     now: float, wall: float) -> None:
        """Join diagnostics, about once a second: ``seeds`` is what the shell knows of
        each resolved seed (its name, a TCP probe's verdict), ``unresolved`` the seeds
        whose names do not resolve. What the node waits for, through which seed it
        joined, that it is alone, strays with another key: :class:`Note` actions
        (``waiting``, ``joined``, ``alone``, ``rejecting``, with ``node`` None)."""
        if self.watch is None:
            self.watch = JoinWatch(started=now)
        g = self.gossip
        m = g.membership
        notices = self.watch.step(now, joined=m.joined, peers=m.n_live() - 1,
                                  dead=len(m.ids(State.DEAD)), seeds=seeds,
                                  unresolved=unresolved, drops_by_addr=g.drops_by_addr)
        for n in notices:
            self._actions.append(Note(n.kind, None, None, n.text))
        self._pump(now, wall)

    def handle_warm_members(self, records: list[MemberRecord], now: float, wall: float,
                            study: tuple[bytes | None, tuple[bytes, ...]] = (None, ()), *,
                            hold: bool = False) -> None:
        """Learn ``records`` out of band, announcing nothing, as a node that joined long
        ago (a warm-started benchmark); ``study``: (tag, STUDY record) it holds already.
        ``hold``: open the search, adopt the study and advertise ready, but claim nothing
        until the next call brings the roster: alone, a node would claim as if it were the
        cluster."""
        self._warm_hold = hold
        membership = self.gossip.membership
        for r in records:
            if r.node != self.node_id:
                membership.apply_record(r, now)
        membership.outbox.clear()
        for ev in membership.events:
            self._member_changed(ev.node)
        membership.events.clear()
        self.gossip.assume_joined(now, *study)
        if study[0] is not None and self.gate is not None:
            self.gate.synced(now)  # joined long ago: it has synced with the cluster
        self._members_dirty = self._poke = True
        self._pump(now, wall)

    def handle_worker_ready(self, config: SearchConfig, make_plan: PlanFactory,
                            local_study: tuple[dict, str] | None, now: float, wall: float, *,
                            from_cluster: bool = False) -> None:
        """The worker loaded the study ``local_study`` = (normalized spec, fingerprint):
        start searching (None: adopt whatever STUDY the cluster has). ``from_cluster``: the spec came from the cluster's STUDY (no
        ``--study``), so a different fingerprint can only mean different data."""
        why = self._differs_from_cluster(local_study) if from_cluster else None
        if why is not None:
            self._fail(2, why)
            return
        self._ready_search = (config, make_plan, local_study)
        self._pump(now, wall)

    def handle_trial_report(self, trial: TrialId, step: int, value: float,
                            now: float, wall: float) -> Verdict:
        """An intermediate value of our running trial; answers continue, prune or stop."""
        if self.search is None:
            return Verdict.STOP
        verdict = self.search.report(trial, step, value, wall)
        self._poke = True
        self._pump(now, wall)
        return verdict

    def handle_trial_finished(self, trial: TrialId, outcome: Outcome | None,
                              now: float, wall: float, *, worker_free: bool = True) -> None:
        """The worker is done with ``trial``: its outcome, or None when it was stopped
        (superseded, timed out, node leaving) and has nothing to record.
        ``worker_free=False``: the worker has work of its own left after the trial
        (``hp.optimize`` runs its callbacks on the recorded trial): nothing new is
        claimed until ``handle_worker_free``."""
        self._running.discard(trial)
        self._worker_held = not worker_free
        if self.search is not None:
            self.search.worker_busy = self._busy()
            if outcome is not None:
                self.search.finish(trial, outcome, wall)
                self._note_recorded()
        self._poke = True
        self._pump(now, wall)

    def _busy(self) -> bool:
        """Whether the worker can take no new trial now: it runs a batch (a batch is
        claimed whole, when every member ended), or with ``SearchConfig.refill`` (lanes:
        members run on their own) when it runs ``capacity`` trials; or is held."""
        if self._worker_held:
            return True
        if self.search is not None and self.search.config.refill:
            return len(self._running) >= self.search.config.capacity
        return bool(self._running)

    def handle_worker_free(self, now: float, wall: float) -> None:
        """The worker finished what it did after its last trial: it may take the next."""
        self._worker_held = False
        if self.search is not None:
            self.search.worker_busy = self._busy()
        self._poke = True
        self._pump(now, wall)

    def handle_setup_failed(self, trial: TrialId | None, now: float, wall: float) -> None:
        """The worker cannot (re)start: abandon ``trial`` without burning budget."""
        if trial is not None:
            self._running.discard(trial)
        if self.search is not None:
            self.search.worker_busy = self._busy()
            self.search.setup_failed(trial, wall)
        self._poke = True
        self._pump(now, wall)

    def handle_disk_failed(self, now: float, wall: float) -> None:
        """The state dir refused a write: take no more work and decide nothing more
        (the shell stops gossiping: what the ledger holds unsaved must not leave)."""
        self.halted = True
        if self.search is not None:
            self.search.ready = False

    def handle_persisted(self, now: float, wall: float) -> None:
        """Every ``Persist`` handed out so far is durable: gossip our own entries."""
        own, self._unconfirmed = self._unconfirmed, []
        if own:
            self.gossip.append_local(own)
            if self.search is not None and self.search.tell:
                self._tell_losers()
            push = self.search.push_to if self.search is not None else None
            for e in own if push else ():
                nodes = push.pop(e.seq, None)
                if nodes:
                    self.gossip.push_own(e.seq, nodes)
        if self._leave_pending:
            self._gossip_leave(now)

    def handle_leave(self, now: float, wall: float) -> None:
        """Graceful exit: abandon our trials (StopTrial for each), then, once the
        ABANDONs are durable, gossip LEAVE with them and ask for a final push-pull
        (in ``tcp_requests``) so the LEAVE and our last entries spread."""
        if self.search is not None and not self.search.leaving:
            for tid in self.search.running:
                self._actions.append(Note("left", self.node_id, tid, "trial abandoned for reclaim"))
            self.search.leave(wall)
            for tid in sorted(self._running):
                self._actions.append(StopTrial(tid, Verdict.STOP, "node leaving"))
        if self.leaving or self._leave_pending:
            return
        self._take_own()
        self._leave_pending = True
        if not self._unconfirmed:
            self._gossip_leave(now)
        self._pump(now, wall)

    def _gossip_leave(self, now: float) -> None:
        self._leave_pending = False
        self.gossip.leave(now)
        peer = self.gossip.pushpull_peer()
        if peer is not None:
            self._tcp.append(peer)

    # ------------------------------------------------------------------ outputs
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return self.gossip.datagrams_to_send(now)

    def tcp_requests(self) -> list[TcpRequest]:
        out, self._tcp = self._tcp, []
        return out

    def take_actions(self) -> list[Any]:
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        times = [self.gossip.get_timer(), self._search_timer]
        if self.gate is not None and (self._ready_search is not None or self._awaits_study()):
            times.append(self.gate.timer())
        if self.linger is not None and self.done is not None and not self._exit_sent:
            times.append(self.linger.timer())
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def members(self) -> dict[int, MemberView]:
        """The member views the search reads (one per known member)."""
        return dict(self.views.views)

    @property
    def leaving(self) -> bool:
        return self.gossip.membership.leaving

    # ------------------------------------------------------------------ the pump
    def _pump(self, now: float, wall: float) -> None:
        """After every input: events in, search stepped if its inputs changed, own
        entries out for persisting, metadata advertised, push-pulls collected."""
        self._drain_events(now)
        if self.halted:
            return
        self._check_twin()
        if self._ready_search is not None and self.fatal is None:
            self._open_search(now, wall)
        search = self.search
        if search is not None and self.fatal is None:
            if self._members_dirty:
                self.views.send(search, now)
            if self._warm_hold:
                search.adopt(now, wall)  # ready, and says so; claims wait for the roster
            elif self._search_due(now):
                self._step(now, wall)
            self._take_own()
            if search.tell:
                self._tell_losers()
            self._advertise(now)
        elif not self.observer and not self._study_found and self.ledger.study is not None:
            self._study_found = True
            self._actions.append(StudyFound(dict(self.ledger.study.spec)))
        elif self._awaits_study() and self.fatal is None:
            self._check_lost_study(now)
        self._members_dirty = False
        if self._gone_new:
            self._sync_for_gone()
        if self.done is not None and self.linger is not None and not self._exit_sent and not self._quiet:
            self._check_exit(now)
        self._tcp.extend(self.gossip.tcp_requests(now))
        if self.gossip.incarnation > self._incarnation:
            self._incarnation = self.gossip.incarnation
            self._actions.append(Incarnation(self._incarnation))

    def _open_search(self, now: float, wall: float) -> None:
        """Start the search once the worker is ready and the repair gate lets us write."""
        gate = self.gate
        if gate is not None and not gate.opened:
            if not gate.due(now, peers_alive=self.views.peer_alive()):
                return
            fill = gate.open(wall)  # own seqs nobody gave back: ABANDON(LOST)
            if fill:
                self._unconfirmed.extend(fill)
                self._actions.append(Persist(fill, own=True))
            if gate.note:
                self._actions.append(Note("repaired", self.node_id, None, gate.note))
        assert self._ready_search is not None
        config, make_plan, local_study = self._ready_search
        self._ready_search = None
        if self.gossip.study_tag is None:  # ours is the cluster's first study: bind to it
            held = self.ledger.study.fingerprint if self.ledger.study is not None else None
            fp = held or (local_study[1] if local_study is not None else None)
            if fp:
                self.gossip.bind_study(study_tag(fp))
        self.search = SearchCore(self.node_id, self.ledger, config, make_plan, local_study)
        self.search.recover(wall)
        self.search.ready = True
        self._members_dirty = self._poke = True

    def _sync_soon(self) -> None:
        peer = self.gossip.pushpull_peer()
        if peer is not None:
            self._tcp.append(peer)

    def _sync_for_gone(self) -> None:
        """Members died or left after our study was done. While it runs, each death or
        leave asks for a push-pull at once (``_drain_events``), so the member's orphans
        can be reclaimed (``core/search_orphans.py``) and its last entries arrive before
        its share is stolen. Once done, only for a member that still runs a trial in our
        ledger: every node syncing the whole member table per death was the O(N^2) cost
        of a crash wave after a study at N = 1,000."""
        gone, self._gone_new = self._gone_new, []
        search = self.search
        assert search is not None
        stepped = self.fatal is None and not self._warm_hold  # so the index is current
        for node in gone:
            if not stepped or node in search.index.owners:
                self._sync_soon()

    def _check_exit(self, now: float) -> None:
        assert self.linger is not None
        if self.linger.may_exit(now, self.gossip.membership.get):
            self._exit_sent = True
            self._actions.append(MayExit())
        elif not self._linger_noted and (crashed := self.linger.crashed()):
            self._linger_noted = True  # say once why a finished node does not exit yet
            self._actions.append(Note("lingering", self.node_id, None, self.linger.crashed_note(crashed)))

    def _search_due(self, now: float) -> bool:
        """Whether the search's inputs changed (or a timer of its fell due).

        ``step`` is a function of the ledger, the member views, the sync time and
        the clock (whose effects it announces with ``get_timer``), so stepping
        only then is exact, and cheap in a simulator running thousands of nodes.
        """
        due = self._search_timer is not None and now >= self._search_timer
        return due or self._poke or self._members_dirty or len(self.ledger) != self._seen_len

    def _step(self, now: float, wall: float) -> None:
        search = self.search
        assert search is not None
        self._poke = False
        starts: list[StartTrial] = []
        for cmd in search.step(now, wall):
            if isinstance(cmd, StartTrial):
                self._running.add(cmd.trial)
                starts.append(cmd)
                continue
            if isinstance(cmd, StudyDone):
                self.done = cmd.reason
                self._settled = search.budget_counted
                self._quiet = False
                if self.linger is not None:
                    self.linger.done(now, self.views.known_metas(), settled=self._settled)
            self._actions.append(cmd)
        # A batch's StartTrials leave together, after the step's other commands, in one
        # take_actions: the shell hands them to its worker as one batch.
        self._actions.extend(starts)
        search.worker_busy = self._busy()
        self._seen_len = len(self.ledger)
        if self.done is not None and not self._settled and search.budget_counted:
            self._settled = True  # done by a timeout, and now the budget is counted too
            if self.linger is not None:
                self.linger.settle()
        if search.refused:
            self._fail(2, search.refused)
        t = search.get_timer(now, wall)
        # A deadline already past after a step means nothing is due until an input
        # changes (e.g. another node is the one to act); re-arming it would spin.
        self._search_timer = t if t is not None and t > now else None

    def _drain_events(self, now: float) -> None:
        gossip = self.gossip
        while (ev := gossip.next_event()) is not None:
            self._quiet = False
            if isinstance(ev, EntriesMerged):
                self._on_merged(ev.entries)
            elif isinstance(ev, InSync):
                self._synced(ev.peer, now)
            elif isinstance(ev, ForeignStudy):
                self._on_foreign(ev)
            elif isinstance(ev, Dropped):
                continue  # counted by the gossip core
            else:
                self._members_dirty = True
                self._member_changed(ev.node)
                self._actions.append(ev)
                if isinstance(ev, MemberDead | MemberLeft):
                    if self.search is not None and self.search.done is not None:
                        self._gone_new.append(ev.node)  # after the step: ``_sync_for_gone``
                    else:
                        self._sync_soon()  # so its orphans can be reclaimed

    def _member_changed(self, node: int) -> None:
        self.views.update(node)
        if self.linger is not None:
            self.linger.member(node, *self.views.metas.get(node, (None, None)))

    def _synced(self, peer: int, now: float) -> None:
        """An anti-entropy exchange with ``peer`` completed (digests equal, or a push-pull)."""
        if self.linger is not None:
            self.linger.synced(peer)
        if self.gate is not None:
            alone = self.gate.alone
            self.gate.synced(now)
            self._poke = True
            self._members_dirty |= alone  # strangers are members again, not DEAD
        if self.search is None:
            return
        self.search.synced_with(peer, now)
        # Only the orphans of gone or unknown owners wait for a sync: step again only then.
        if self.search.awaits_sync or self.views.any_gone():
            self._poke = True

    def _on_merged(self, entries: list[Entry]) -> None:
        if self.linger is not None:
            self.linger.changed()  # every peer must confirm it holds these before we exit
        if self.gate is not None:
            self.gate.merged(entries)  # ours from peers: repairs, or a live copy of this node
            if self.gate.refused:
                self._fail(2, self.gate.refused, leave=False)  # our id is another node's
                return
            if back := self.gate.take_returned():
                self._actions.append(Note("repaired", self.node_id, None, back))
        self._actions.append(Persist(entries, own=False))
        self._note_reclaims(entries)
        for e in entries:
            if isinstance(e, StudyEntry):
                name = e.spec.get("study", {}).get("name", "?") if isinstance(e.spec, dict) else "?"
                self._actions.append(Note("study", e.origin, None, f"adopted study {name}"))

    def _note_recorded(self) -> None:
        """A ``finished`` note for each outcome the search recorded (a stolen trial's
        waits for its result window: ``SearchCore._release_held``)."""
        recorded, self.search.recorded = self.search.recorded, []
        for trial in recorded:
            view = self.ledger.trial(trial)
            if view is not None:
                value = "" if view.value is None else f" {view.value}"
                self._actions.append(Note("finished", self.node_id, trial,
                                          f"{view.state.value}{value}"))

    def _take_own(self) -> None:
        if self.search is None:
            return
        if self.search.recorded:
            self._note_recorded()
        own = self.search.take_new_entries()
        if own:
            self._quiet = False
            if self.linger is not None:
                self.linger.changed()
            self._unconfirmed.extend(own)
            self._actions.append(Persist(own, own=True))
            self._note_reclaims(own)

    def _tell_losers(self) -> None:
        """Send the claims the search keeps against rivals to the rivals' owners
        (``SearchCore.tell``), once each claim is durable (a later persist sends it)."""
        first = min((e.seq for e in self._unconfirmed), default=None)
        later: list[tuple[int, list[int]]] = []
        for seq, nodes in self.search.tell:
            if first is not None and seq >= first:
                later.append((seq, nodes))
            else:
                self.gossip.push_own(seq, nodes)
        self.search.tell = later

    def _note_reclaims(self, entries: list[Entry]) -> None:
        """Say when a node's running trial was abandoned because the node died or left
        (by whichever node wrote the ABANDON), once this node searches: catching up on
        the study's history at a join says nothing."""
        if self.search is None:
            return
        for e in entries:
            if (isinstance(e, Abandon) and e.trial[0] != e.origin
                    and e.reason in (AbandonReason.DEAD, AbandonReason.LEFT)):
                view = self.ledger.trial(e.trial)
                why = "dead" if e.reason is AbandonReason.DEAD else "left"
                slot = "its slot" if view is None else f"slot {view.slot}"
                self._actions.append(Note("reclaimed", e.trial[0], e.trial,
                                          f"abandoned (node {why}); {slot} goes back to the budget"))

    def _advertise(self, now: float) -> None:
        if self.leaving or self._leave_pending:
            return  # a new Alive after our LEAVE would undo it
        search = self.search
        plan = search.plan if search is not None else None
        meta: dict[str, Any] = {
            "ready": bool(search is not None and search.ready and plan is not None
                          and not search.leaving),
            "study": plan.fingerprint if plan is not None else None}
        if self.done is not None and not self._settled:
            # Finished peers linger until every peer is done. Done because the budget is
            # counted, a peer in sync with us knows it from the ledger (``Linger``): no flag.
            meta["done"] = True
        if meta != self._meta_sent:
            self._meta_sent = meta
            self.gossip.set_meta(meta, now)

    def _fail(self, code: int, message: str, *, leave: bool = True) -> None:
        if self.fatal is None:
            self.fatal = Fatal(code, message, leave)
            self._actions.append(self.fatal)

