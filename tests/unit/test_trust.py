"""Origin-signed ledger records: forged entries are dropped and counted, never merged.

The attacks are the ones tried against real nodes (issue 11), here against
the core: a keyed insider (it holds the cluster key and an identity of its
own) writing under another node's origin, a RESULT for someone else's trial,
a STUDY entry, and floods of held entries under origins it made up.
"""

from __future__ import annotations

import os

import pytest
from netsim import Net, make_wire

from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    EntryError,
    Report,
    Result,
    Status,
    StudyEntry,
    encode_entry,
)
from p2phpo.core.hrw import hrw
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger, TrialState
from p2phpo.core.messages import EntryMsg, to_wire
from p2phpo.core.records import Verifier, decode_record, sign_entry, signed_message
from p2phpo.core.wire import DropReason
from tests.signing import ident, signed

SPEC = {"study": {"name": "real", "direction": "minimize"}, "objective": {"name": "mnist-mlp"}}


def forgeries(victim: int, seq: int, cls: type, attacker: Identity, **fields: object) -> list[bytes]:
    """Records of ``victim``'s origin that its key never signed: bare (what an
    unsigned ledger took), with junk signature bytes, and signed by the attacker."""
    e = cls(origin=victim, seq=seq, wall=9.0, **fields)
    body = encode_entry(e)
    middle = attacker.public_key if seq == 1 else bytes(16)
    junk = body + middle + bytes(64)
    other = body + middle + attacker.sign(signed_message(middle if seq > 1 else b"", body))
    return [body, junk, other]


def merge_raws(led: Ledger, raws: list[bytes]):
    return led.merge([(decode_record(r), r) for r in raws])


# -- records ---------------------------------------------------------------------------


def test_records_round_trip_and_stay_strict() -> None:
    me = ident(1)
    e, raw = signed(me, Claim, 1, slot=0, params={"lr": 0.1})
    assert len(raw) == len(encode_entry(e)) + 32 + 64  # the first record carries the key
    e2, raw2 = signed(me, Report, 2, trial=e.key, step=1, value=0.5)
    assert len(raw2) == len(encode_entry(e2)) + 16 + 64  # later ones the hash of the one before
    assert decode_record(encode_entry(e2)) == e2  # a bare body still parses (unsigned)
    for bad in (raw2 + b"\x00", raw2[:-1], raw2 + bytes(16), raw[:-32], encode_entry(e) + bytes(80)):
        with pytest.raises(EntryError):
            decode_record(bad)
    with pytest.raises(ValueError, match="cannot sign"):
        sign_entry(ident(2), e)


def test_own_entries_are_signed_and_verify_on_another_replica() -> None:
    me = ident(1)
    a = Ledger(identity=me)
    c = a.new(me.node_id, Claim, wall=1.0, slot=0, params={"x": 1})
    a.new(me.node_id, Result, wall=2.0, trial=c.key, status=Status.COMPLETE, value=0.5)
    b = Ledger(verifier=Verifier())
    raws = [a.raw(me.node_id, s) for s in (1, 2)]
    assert len(merge_raws(b, raws).added) == 2
    assert b.trial(c.key).value == 0.5 and b.key_of(me.node_id) == me.public_key


# -- attack: writing into another node's log -------------------------------------------


def test_forged_records_under_another_origin_are_dropped_and_counted() -> None:
    c_id, x = ident(3), ident(66)
    led = Ledger(identity=ident(1))
    merge_raws(led, [signed(c_id, Claim, 1, slot=0, params={})[1]])
    for seq in (2, 3, 9):  # C's next seqs, and one far ahead (would be held)
        stats = merge_raws(led, forgeries(c_id.node_id, seq, Report, x, trial=(c_id.node_id, 1),
                                          step=seq, value=-1.0))
        assert stats.added == [] and stats.held == 0 and stats.bad_signature == 3
    assert led.vv == {c_id.node_id: 1} and led.pending_count() == 0
    assert led.counts["bad_signature"] == 9 and led.counts["conflicts"] == 0
    # C's real next entries still apply: nothing forged took their place.
    real = [signed(c_id, Report, s, trial=(c_id.node_id, 1), step=s, value=0.1)[1] for s in (2, 3)]
    assert len(merge_raws(led, real).added) == 2


def test_a_forged_first_record_with_a_key_of_another_origin_is_refused() -> None:
    victim, x = ident(3), ident(66)
    led = Ledger(identity=ident(1))
    for raw in forgeries(victim.node_id, 1, Claim, x, slot=0, params={}):
        assert merge_raws(led, [raw]).bad_signature == 1
    assert len(led) == 0 and led.key_of(victim.node_id) is None


def test_an_unknown_origin_is_counted_until_its_first_record_arrives() -> None:
    c = ident(3)
    led = Ledger(identity=ident(1))
    first = signed(c, Claim, 1, slot=0, params={})
    later = signed(c, Report, 2, trial=first[0].key, step=1, value=0.5)
    assert merge_raws(led, [later[1]]).unknown_key == 1 and len(led) == 0
    assert len(merge_raws(led, [later[1], first[1]]).added) == 2  # the key rides in the same batch
    early = Ledger(identity=ident(2))
    assert early.learn_key(c.public_key)  # e.g. from C's signed Alive
    stats = merge_raws(early, [later[1]])
    assert stats.held == 1 and len(merge_raws(early, [first[1]]).added) == 2


# -- attack: a RESULT for someone else's trial -------------------------------------------


def test_a_result_from_another_origin_cannot_rewrite_a_pruned_trial() -> None:
    a, x = ident(1), ident(66)
    led = Ledger(identity=ident(2))
    claim = signed(a, Claim, 1, slot=0, params={"lr": 0.1})
    pruned = signed(a, Result, 2, trial=claim[0].key, status=Status.PRUNED, value=0.3)
    merge_raws(led, [claim[1], pruned[1]])
    fake = signed(x, Result, 1, trial=claim[0].key, status=Status.COMPLETE, value=-1e6)
    assert len(merge_raws(led, [fake[1]]).added) == 1  # a valid entry of X's own log...
    view = led.trial(claim[0].key)
    assert view.state is TrialState.PRUNED and view.value == 0.3  # ...that says nothing about A's trial
    assert led.counts["not_owner"] == 1
    rep = signed(x, Report, 2, trial=claim[0].key, step=1, value=-1e6)
    merge_raws(led, [rep[1]])
    assert view.reports == {} and led.counts["not_owner"] == 2
    for raw in forgeries(a.node_id, 3, Result, x, trial=claim[0].key, status=Status.COMPLETE, value=-1e6):
        assert merge_raws(led, [raw]).bad_signature == 1
    assert led.trial(claim[0].key).value == 0.3


def test_any_node_may_still_fail_an_orphan_but_never_outrank_its_owner() -> None:
    a, b = ident(1), ident(2)
    led = Ledger(identity=ident(3))
    claim = signed(a, Claim, 1, slot=0, params={})
    merge_raws(led, [claim[1]])
    tid = claim[0].key
    merge_raws(led, [signed(b, Abandon, 1, trial=tid, reason=AbandonReason.DEAD)[1]])
    assert led.trial(tid).state is TrialState.ABANDONED
    merge_raws(led, [signed(b, Result, 2, trial=tid, status=Status.FAILED, error="max retries")[1]])
    assert led.trial(tid).state is TrialState.FAILED  # the max-retries verdict counts
    merge_raws(led, [signed(a, Result, 2, trial=tid, status=Status.SUPERSEDED)[1]])
    assert led.trial(tid).state is TrialState.SUPERSEDED  # the owner's own word wins


# -- attack: a STUDY entry -------------------------------------------------------------


def test_a_forged_study_entry_never_becomes_the_study() -> None:
    a, x = ident(1), ident(66)
    led = Ledger(identity=ident(2))
    real = signed(a, StudyEntry, 1, spec=SPEC, fingerprint="f" * 32)
    merge_raws(led, [real[1]])
    evil = dict(SPEC, objective={"name": "builtins:print"})
    # Any origin whose rendezvous weight beats the real study's would have won.
    origin = next(o for o in range(1, 10_000) if hrw("study", o, 1) < hrw("study", a.node_id, 1))
    for raw in forgeries(origin, 1, StudyEntry, x, spec=evil, fingerprint="e" * 32):
        assert merge_raws(led, [raw]).bad_signature == 1
    assert led.study == real[0] and led.studies == [real[0]]


# -- bounded state ---------------------------------------------------------------------


def test_held_entries_have_a_global_cap_and_no_origin_starves_the_rest() -> None:
    led = Ledger(identity=ident(0), max_pending=256, max_pending_total=1000)
    attackers = [ident(100 + i) for i in range(40)]
    for x in attackers:  # each made-up origin: a first record, then a gap and 255 held
        first = signed(x, Claim, 1, slot=0, params={})
        merge_raws(led, [first[1]] + [signed(x, Report, s, trial=first[0].key, step=s, value=0.0)[1]
                                      for s in range(3, 258)])
    assert led.pending_count() == 1000
    honest = ident(7)
    c = signed(honest, Claim, 1, slot=0, params={})
    held = [signed(honest, Report, s, trial=c[0].key, step=s, value=0.0)[1] for s in range(3, 13)]
    merge_raws(led, [c[1]] + held)
    assert led.pending_count() == 1000  # still capped...
    assert len(merge_raws(led, [signed(honest, Report, 2, trial=c[0].key, step=2, value=0.0)[1]]).added) == 11
    # ...and the honest origin's held entries were kept: its gap filled in one go.


def test_unsigned_floods_of_made_up_origins_hold_nothing_on_a_signing_ledger() -> None:
    led = Ledger(identity=ident(0))
    raws = [encode_entry(Report(origin=o, seq=5, wall=1.0, trial=(o, 1), step=1, value=0.0))
            + bytes(80) * (o % 2) for o in range(1, 10_001)]
    stats = merge_raws(led, raws)
    assert stats.unknown_key == 5_000 and stats.bad_signature == 5_000
    assert led.pending_count() == 0 and len(led) == 0


def test_a_plain_ledger_caps_held_entries_across_origins_too() -> None:
    led = Ledger(max_pending_total=500)
    led.merge([Report(origin=o, seq=5, wall=1.0, trial=(o, 1), step=1, value=0.0) for o in range(1, 10_001)])
    assert led.pending_count() == 500 and led.counts["dropped_pending"] == 9_500


def test_each_distinct_record_is_verified_once_with_a_shared_verifier() -> None:
    a = ident(1)
    raws = [signed(a, Claim, 1, slot=0, params={})[1]]
    raws += [signed(a, Report, s, trial=(a.node_id, 1), step=s, value=0.0)[1] for s in range(2, 50)]
    shared = Verifier()
    replicas = [Ledger(identity=ident(10 + i), verifier=shared) for i in range(5)]
    for led in replicas:  # one record per datagram, as gossip delivers them
        for raw in raws:
            merge_raws(led, [raw])
            merge_raws(led, [raw])  # a duplicate: no second check
    assert shared.checked == len(raws)
    assert {led.vv_hash() for led in replicas} == {replicas[0].vv_hash()}


def test_a_catch_up_run_costs_one_signature_check_per_origin() -> None:
    logs = [ident(20 + i) for i in range(3)]
    raws = []
    for x in logs:
        raws.append(signed(x, Claim, 1, slot=0, params={})[1])
        raws += [signed(x, Report, s, trial=(x.node_id, 1), step=s, value=0.0)[1] for s in range(2, 400)]
    led = Ledger(identity=ident(0))
    assert len(merge_raws(led, raws).added) == 3 * 399 and led.verifier.checked == 3
    # One record of the run altered (its signature bytes): it and all below it in
    # the chain must verify on their own; the altered one is dropped.
    fresh = Ledger(identity=ident(0))
    bad = bytearray(raws[100])
    bad[-1] ^= 1
    stats = merge_raws(fresh, raws[:100] + [bytes(bad)] + raws[101:399])
    assert stats.bad_signature == 1 and fresh.vv == {logs[0].node_id: 100}
    assert fresh.pending_count() == 256  # the run above the gap is held (per-origin cap)


# -- through the gossip core -----------------------------------------------------------


def signed_net(n: int) -> tuple[Net, list]:
    net = Net(seed=5)
    ids = [ident(i + 1) for i in range(n)]
    first = net.add(ids[0].node_id, ledger=Ledger(identity=ids[0]))
    nodes = [first] + [net.add(i.node_id, seeds=[first.addr], ledger=Ledger(identity=i)) for i in ids[1:]]
    return net, list(zip(nodes, ids, strict=True))


def test_keyed_insider_cannot_write_into_a_node_log_through_gossip() -> None:
    net, nodes = signed_net(3)
    (a, _), (b, _), (c, c_id) = nodes
    cl = c.ledger.new(c.node_id, Claim, wall=1.0, slot=0, params={})
    c.core.append_local([cl])
    net.run_for(3.0)
    assert all(n.ledger.vv == c.ledger.vv for n, _ in nodes)
    x = ident(66)  # holds the cluster key (make_wire) and a key pair of its own
    sealer, _ = make_wire(x.node_id, restart=int.from_bytes(os.urandom(2), "big"))
    raws = forgeries(c.node_id, 2, Report, x, trial=cl.key, step=1, value=-1.0)
    for target in (a, b):  # bound to the receiver's life, as entries must be
        to = (target.node_id, target.core.sealer.epoch.salt)
        data = sealer.seal([to_wire(EntryMsg(r)) for r in raws], to=to)
        target.core.receive_datagram(data, ("10.9.9.9", 7946), net.now)
        net._pump(target)
    net.run_for(3.0)
    assert all(n.ledger.vv == {c.node_id: 1} for n, _ in nodes)
    assert a.core.dropped[DropReason.BAD_SIGNATURE] == 3 == b.core.dropped[DropReason.BAD_SIGNATURE]
    assert a.core.dropped[DropReason.BAD_AUTH] == 0  # the datagrams themselves were accepted
