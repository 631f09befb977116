"""Which study a node holds, and when it must stop over it: a peer of another study
on our cluster key (said once; fatal when our seed runs it and none runs ours), a
twin running with our identity, a STUDY entry lost and not given back in time.

:class:`StudyChecks` is the part of :class:`~p2phpo.core.driver.NodeDriver` that keeps
these checks (a mixin: it shares the driver's state, set up in its ``__init__``).
"""

from __future__ import annotations

from typing import Any

from p2phpo.core.driver_actions import Note
from p2phpo.core.gossip_types import ForeignStudy
from p2phpo.core.study_diff import difference, spec_diff, study_name


class StudyChecks:
    """The driver's study checks (see the module doc)."""

    gossip: Any
    ledger: Any
    gate: Any
    fatal: Any
    search: Any
    views: Any
    observer: bool
    study_lost: str | None
    _foreign: set[str]
    _actions: list[Any]
    _ready_search: Any
    _fail: Any  # NodeDriver._fail(code, message, *, leave=True)

    def _on_foreign(self, ev: ForeignStudy) -> None:
        """A peer on our cluster key runs another study; its entries were dropped, ours
        never reach it. Said once per study; a node whose seed runs another study (and
        no seed runs ours: a state dir restarted where a new study now runs, or
        ``--study`` pointed at another study's node) stops with exit 2."""
        if self.gossip.study_tag is None:
            return  # we hold no study yet: not "another" one, only not (yet) ours
        theirs = ev.entry
        mine = self._own_study()
        what = difference(mine[0], theirs.spec) if mine is not None else "their fingerprint"
        other = f"'{study_name(theirs.spec)}' ({theirs.fingerprint[:12]})"
        if theirs.fingerprint not in self._foreign:
            self._foreign.add(theirs.fingerprint)
            self._actions.append(Note("foreign", ev.node or None, None,
                                      f"ignoring a node of another study {other} on this "
                                      f"cluster key (it differs in {what})"))
        if ev.from_seed and not self.observer and not self.gossip.seed_runs_ours():
            at = f"{ev.addr[0]}:{ev.addr[1]}" if ev.addr is not None else "its seed"
            ours = (f"'{study_name(mine[0])}' ({mine[1][:12]})" if mine is not None
                    else f"({self.gossip.study_tag.hex() if self.gossip.study_tag else '?'})")
            self._fail(2, f"this node belongs to study {ours}, but the node at {at} runs "
                          f"another study on this cluster key, {other}, which differs in "
                          f"{what}; nothing was merged (to join that study, start this node with a "
                          "fresh --state-dir; to keep both, give each its own --cluster)")

    def _differs_from_cluster(self, local_study: tuple[dict, str] | None) -> str | None:
        """Why a worker that loaded the cluster's STUDY (no ``--study``) holds another
        fingerprint, if it does: a different spec, or else different data."""
        entry = self.ledger.study
        fp = local_study[1] if local_study is not None else ""
        if entry is None or entry.fingerprint == fp:
            return None
        assert local_study is not None
        if spec_diff(local_study[0], entry.spec):
            return ("this node's study differs from the cluster's study in: "
                    + difference(local_study[0], entry.spec))
        return ("this node's dataset differs from the cluster's (study fingerprint "
                f"{fp[:12]} here, {entry.fingerprint[:12]} in the cluster); check --data-dir")

    def _check_twin(self) -> None:
        """A live node signs Alives with our identity (a copy of this state dir, or this
        one's original): the newcomer — the one whose gate has not opened, so it wrote
        nothing yet — stops and leaves the identity to the other, without a LEAVE."""
        twin = self.gossip.membership.twin
        gate = self.gate
        if twin is None or gate is None or gate.opened or self.fatal is not None:
            return
        self._fail(2, "stale state dir: another live node runs with this node's identity (at "
                      f"{twin.addr[0]}:{twin.addr[1]}); the state dir was copied from a running "
                      "node: start this copy with a new --state-dir", leave=False)

    def _own_study(self) -> tuple[dict, str] | None:
        """(normalized spec, fingerprint) of the study this node holds, if it knows it."""
        if self.ledger.study is not None:
            return dict(self.ledger.study.spec), self.ledger.study.fingerprint
        pending = self._ready_search[2] if self._ready_search is not None else None
        return pending or (self.search.local_study if self.search is not None else None)

    def _awaits_study(self) -> bool:
        return (self.study_lost is not None and self.ledger.study is None
                and self.search is None and self._ready_search is None)

    def _check_lost_study(self, now: float) -> None:
        """Never stall on a lost STUDY entry: once the repair gate would go on alone (no
        peer gave it back in time), stop with one sentence saying what is missing."""
        gate = self.gate
        if gate is None or not gate.due(now, peers_alive=self.views.peer_alive()):
            return
        self._fail(2, f"{self.study_lost} and no peer gave it back within "
                      f"{gate.waited(now):.0f} s; start the node with --study FILE (the study "
                      "it ran) or with --seed HOST:PORT of a node that runs it")
