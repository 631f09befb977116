"""Two studies on one cluster key, and two lives of one identity, at the driver.

A node that holds a study takes ledger traffic only from peers that carry its
study tag; a joiner takes the study of the node at its seed; a node whose seed
runs another study stops naming what differs; a copy of a running node's state
dir stops before it writes, never its original.
"""

from __future__ import annotations

from typing import Any

from p2phpo.core.driver import Fatal, Note
from p2phpo.core.durability import RepairGate
from p2phpo.core.entries import Claim, StudyEntry
from p2phpo.core.ledger import Ledger
from p2phpo.core.messages import Alive, Digest, EntryMsg, encode_message
from p2phpo.core.study_diff import describe, difference
from p2phpo.core.wire import NO_STUDY, DropReason, study_tag
from tests.unit.test_driver import ADDR, FP, SPEC, A, B, Peer, make, persist_all, ready

C = 33
ADDR[C] = ("127.0.0.1", 3)
OTHER = {**SPEC, "study": {**SPEC["study"], "n_trials": 30},
         "space": {"x": {"type": "float", "low": 1.0}}}
WHAT = "search space (space.x.low) and budget (study.n_trials)"


def _other_study() -> tuple[Ledger, list[bytes]]:
    """Node B's ledger of another study: its STUDY and one claim."""
    led = Ledger()
    s = led.new(B, StudyEntry, wall=1.0, spec=OTHER, fingerprint="fp2")
    c = led.new(B, Claim, wall=2.0, slot=0, params={"x": 0.5})
    return led, [led.raw(B, s.seq), led.raw(B, c.seq)]


PEERS: dict[tuple[int, int], Peer] = {}


def _peer(d: Any, sender: int, tag: bytes | None) -> Peer:
    """``sender`` as ``d`` hears it (one sealer per pair: its counter goes on)."""
    peer = PEERS.setdefault((id(d), sender), Peer(sender))
    peer.sealer.study = tag or NO_STUDY
    return peer


def _send(d: Any, sender: int, tag: bytes | None, raws: list[bytes], now: float) -> None:
    _peer(d, sender, tag).send(d, [Alive(sender, 0, ADDR[sender], {}), *[EntryMsg(r) for r in raws]],
                               now)


def test_entries_of_another_study_are_dropped_counted_and_named_once() -> None:
    d = make()
    ready(d)
    persist_all(d)
    assert d.gossip.study_tag == study_tag(FP)
    before = len(d.ledger)
    _, raws = _other_study()
    _send(d, B, study_tag("fp2"), raws, 1.0)
    _send(d, B, study_tag("fp2"), raws, 2.0)
    actions = persist_all(d, 2.0)
    assert len(d.ledger) == before and B not in d.ledger.vv
    assert d.gossip.dropped[DropReason.OTHER_STUDY] == 4
    notes = [a for a in actions if isinstance(a, Note) and a.kind == "foreign"]
    assert len(notes) == 1 and WHAT in notes[0].detail
    assert not any(isinstance(a, Fatal) for a in actions)  # B is no seed of ours: it runs on


def test_a_node_whose_seed_runs_another_study_stops_saying_what_differs() -> None:
    d = make()
    d.start([ADDR[B]], 0.0, 1000.0)
    ready(d)
    persist_all(d)
    _, raws = _other_study()
    _send(d, B, study_tag("fp2"), raws, 1.0)
    (fatal,) = [a for a in persist_all(d, 1.0) if isinstance(a, Fatal)]
    assert fatal.code == 2 and "another study" in fatal.message
    assert WHAT in fatal.message
    assert "dataset" not in fatal.message and B not in d.ledger.vv


def test_a_digest_of_another_study_is_never_compared() -> None:
    d = make()
    ready(d)
    persist_all(d)
    _peer(d, B, study_tag("fp2")).send(d, [Alive(B, 0, ADDR[B], {}), Digest(1, 1, 1000)], 1.0)
    assert d.tcp_requests() == []  # far "ahead", but not of our study: no catch-up


def test_a_joiner_takes_the_study_of_its_seed_and_nothing_from_others_first() -> None:
    d = make()
    d.start([ADDR[B]], 0.0, 1000.0)
    other, raws = _other_study()
    _send(d, C, study_tag("fp2"), raws, 1.0)  # not our seed: we hold no study yet
    assert d.gossip.study_tag is None and len(d.ledger) == 0
    ours = Ledger()
    s = ours.new(B, StudyEntry, wall=1.0, spec=SPEC, fingerprint=FP)
    _send(d, B, study_tag(FP), [ours.raw(B, s.seq)], 2.0)
    assert d.gossip.study_tag == study_tag(FP) and d.ledger.study is not None
    assert d.ledger.study.fingerprint == FP
    _send(d, C, study_tag("fp2"), raws, 3.0)  # still nothing of the other study
    assert C not in d.ledger.vv and d.ledger.study.fingerprint == FP


def test_a_restarted_node_holds_its_study_from_the_first_datagram() -> None:
    led = Ledger()
    led.new(A, StudyEntry, wall=1.0, spec=SPEC, fingerprint=FP)
    d = make(ledger=led)
    assert d.gossip.study_tag == study_tag(FP)


def test_a_copy_that_meets_its_live_original_stops_before_it_writes() -> None:
    led = Ledger()
    led.new(A, StudyEntry, wall=1.0, spec=SPEC, fingerprint=FP)
    gate = RepairGate(A, led, expect_peers=True, now=0.0, start_wall=1000.0)
    d = make(ledger=led, gate=gate)
    ready(d)
    persist_all(d)
    # B relays the original's signed Alive: our id, another boot, our incarnation.
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {}), Alive(A, d.gossip.incarnation, ("10.0.0.9", 7), {}, 77)],
                 1.0)
    (fatal,) = [a for a in persist_all(d, 1.0) if isinstance(a, Fatal)]
    assert "stale state dir" in fatal.message and "10.0.0.9:7" in fatal.message
    assert fatal.leave is False  # a LEAVE of our id would take the original out
    assert len(led) == 1  # nothing written


def test_the_original_that_meets_a_copy_runs_on() -> None:
    led = Ledger()
    led.new(A, StudyEntry, wall=1.0, spec=SPEC, fingerprint=FP)
    d = make(ledger=led, gate=RepairGate(A, led, expect_peers=False, now=0.0, start_wall=1000.0))
    ready(d)
    persist_all(d)
    assert d.search is not None  # the gate opened: this node is writing
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {}), Alive(A, d.gossip.incarnation, ("10.0.0.9", 7), {}, 77)],
                 1.0)
    assert not any(isinstance(a, Fatal) for a in persist_all(d, 1.0))


def test_an_alive_of_an_earlier_life_is_no_twin() -> None:
    led = Ledger()
    led.new(A, StudyEntry, wall=1.0, spec=SPEC, fingerprint=FP)
    gate = RepairGate(A, led, expect_peers=True, now=0.0, start_wall=1000.0)
    d = make(ledger=led, gate=gate)
    d.gossip.membership.incarnation = 5  # this life started above the persisted 4
    Peer(B).send(d, [Alive(B, 0, ADDR[B], {}), Alive(A, 4, ("10.0.0.9", 7), {}, 77)], 1.0)
    assert not any(isinstance(a, Fatal) for a in persist_all(d, 1.0))


def test_what_differs_is_named_by_what_a_user_changes() -> None:
    assert difference(SPEC, OTHER) == WHAT
    ours, theirs = {"objective": {"name": "f", "sleep": 0.1}}, {"objective": {"name": "f", "sleep": 1.5}}
    assert difference(ours, theirs) == "objective options (objective.sleep)"
    assert describe(["space.lr", "sampler.name", "study.seed"]) == (
        "search space (space.lr), sampler (sampler.name) and seed (study.seed)")
    assert describe([]).startswith("the dataset")


def test_a_seed_answering_from_another_source_address_still_gives_its_study() -> None:
    d = make()
    d.start([ADDR[B]], 0.0, 1000.0)
    peer = _peer(d, B, study_tag(FP))
    to = (d.node_id, d.gossip.sealer.epoch.salt)
    for now in (1.0, 2.0):  # a multi-homed seed: replies leave from another interface
        data = peer.sealer.seal_packed([encode_message(Alive(B, 0, ADDR[B], {}))], to)
        d.handle_datagram(data, ("127.0.0.9", 2), now, 1000.0 + now)
    assert d.gossip.study_tag == study_tag(FP)  # its Alive names the seed's address
