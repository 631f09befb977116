"""The ledger is a CRDT: replicas fed the same entries in any order agree."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    EntryError,
    Report,
    Result,
    Status,
    StudyEntry,
    cap_error,
    decode_entry,
    encode_entry,
    parse_trial_id,
    trial_id_str,
)
from p2phpo.core.ledger import Ledger, TrialState

ORIGINS = [0x1111, 0x2222, 0x3333]


def make_history(rng: random.Random, n: int) -> list:
    """A plausible multi-origin history: claims, reports, results, abandons."""
    seqs = dict.fromkeys(ORIGINS, 0)
    open_trials: dict[int, list] = {o: [] for o in ORIGINS}
    all_trials: list = []
    out = []
    for i in range(n):
        o = rng.choice(ORIGINS)
        seqs[o] += 1
        s, wall = seqs[o], float(i)
        roll = rng.random()
        if roll < 0.4 or not all_trials:
            e = Claim(origin=o, seq=s, wall=wall, slot=i, params={"x": rng.random(), "act": "relu"})
            open_trials[o].append(e.key)
            all_trials.append(e.key)
        elif roll < 0.6 and open_trials[o]:
            e = Report(origin=o, seq=s, wall=wall, trial=open_trials[o][-1], step=i, value=rng.random())
        elif roll < 0.9:
            tid = rng.choice(all_trials)
            status = rng.choice(list(Status))
            e = Result(origin=o, seq=s, wall=wall, trial=tid, status=status,
                       value=rng.random(), duration=1.0)
        else:
            e = Abandon(origin=o, seq=s, wall=wall, trial=rng.choice(all_trials),
                        reason=rng.choice(list(AbandonReason)))
        out.append(e)
    return out


def summary(led: Ledger) -> tuple:
    views = {
        tid: (v.state, v.value, tuple(sorted(v.reports.items())), v.params == v.claim.params)
        for tid, v in led.trials().items()
    }
    return dict(led.vv), led.vv_hash(), views, len(led)


def replica(entries) -> Ledger:
    led = Ledger()
    led.merge(entries)
    return led


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 80))
def test_merge_commutative_associative_idempotent(seed: int, n: int) -> None:
    rng = random.Random(seed)
    hist = make_history(rng, n)
    a, b, c = (hist[i::3] for i in range(3))
    ab_c = replica(a + b + c)
    c_ba = replica(c + b + a)
    a_cb = replica(a + c + b)
    twice = replica(hist + hist)
    assert summary(ab_c) == summary(c_ba) == summary(a_cb) == summary(twice) == summary(replica(hist))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 120))
def test_replicas_with_shuffles_duplicates_and_drops_converge_via_delta(seed: int, n: int) -> None:
    rng = random.Random(seed)
    hist = make_history(rng, n)
    replicas = []
    for _ in range(3):
        feed = [e for e in hist if rng.random() > 0.3]  # drops
        feed += rng.sample(feed, k=len(feed) // 3)  # duplicates
        rng.shuffle(feed)
        replicas.append(replica(feed))
    source = replica(hist)
    for r in replicas:
        while r.vv != source.vv:  # anti-entropy rounds in small MTU-bounded batches
            delta = source.delta_since(r.vv, limit_bytes=200)
            assert delta, "delta must make progress"
            r.merge(delta)
    sums = [summary(r) for r in replicas]
    assert sums[0] == sums[1] == sums[2] == summary(source)


def test_delta_since_is_gap_free_in_origin_seq_order() -> None:
    led = replica(make_history(random.Random(1), 60))
    delta = led.delta_since({ORIGINS[0]: 3})
    keys = [(e.origin, e.seq) for e in delta]
    assert keys == sorted(keys)
    for origin in ORIGINS:
        seqs = [s for o, s in keys if o == origin]
        start = 4 if origin == ORIGINS[0] else 1
        assert seqs == list(range(start, start + len(seqs)))
    limited = led.delta_since({}, limit_bytes=100)
    assert sum(len(encode_entry(e)) for e in limited) <= 100


def test_out_of_order_entries_wait_for_the_gap() -> None:
    hist = [Claim(origin=7, seq=s, wall=0.0, slot=s, params={}) for s in range(1, 6)]
    led = Ledger()
    stats = led.merge(hist[2:])
    assert stats.added == [] and stats.held == 3 and led.vv == {}
    stats = led.merge(hist[:2])
    assert [e.seq for e in stats.added] == [1, 2, 3, 4, 5]
    assert led.vv == {7: 5} and led.pending_count() == 0


def test_pending_is_capped_per_origin() -> None:
    led = Ledger(max_pending=4)
    far = [Claim(origin=7, seq=s, wall=0.0, slot=s, params={}) for s in range(3, 12)]
    stats = led.merge(far)
    assert led.pending_count() == 4 and stats.dropped == 5
    # The held ones are those right after the gap, so filling it makes progress.
    led.merge([Claim(origin=7, seq=s, wall=0.0, slot=s, params={}) for s in (1, 2)])
    assert led.vv == {7: 6}


def test_conflicting_content_is_counted_and_never_overwrites() -> None:
    led = Ledger()
    orig = Claim(origin=9, seq=1, wall=1.0, slot=0, params={"x": 1})
    led.merge([orig])
    evil = Claim(origin=9, seq=1, wall=1.0, slot=0, params={"x": 2})
    stats = led.merge([evil])
    assert stats.conflicts == 1 and led.get(9, 1) == orig
    assert led.trial((9, 1)).params == {"x": 1}


def test_result_beats_abandon_whatever_the_order() -> None:
    claim = Claim(origin=1, seq=1, wall=0.0, slot=0, params={})
    abandon = Abandon(origin=2, seq=1, wall=5.0, trial=(1, 1), reason=AbandonReason.DEAD)
    result = Result(origin=1, seq=2, wall=4.0, trial=(1, 1), status=Status.COMPLETE, value=0.5)
    for order in ([claim, abandon, result], [result, abandon, claim], [abandon, claim, result]):
        view = replica(order).trial((1, 1))
        assert view.state is TrialState.COMPLETE and view.value == 0.5


def test_abandon_alone_marks_abandoned_and_does_not_count() -> None:
    led = replica([Claim(origin=1, seq=1, wall=0.0, slot=3, params={}),
                   Abandon(origin=2, seq=1, wall=1.0, trial=(1, 1), reason=AbandonReason.LEFT)])
    view = led.trial((1, 1))
    assert view.state is TrialState.ABANDONED and not view.state.counted and view.slot == 3


def test_changes_log_lists_every_trial_update() -> None:
    led = Ledger()
    c = led.new(4, Claim, wall=0.0, slot=0, params={"x": 0.5})
    led.new(4, Report, wall=1.0, trial=c.key, step=1, value=0.1)
    led.new(4, Result, wall=2.0, trial=c.key, status=Status.PRUNED, value=0.1, duration=2.0)
    assert led.changes == [c.key] * 3
    assert led.trial(c.key).last_report == (1, 0.1)


def test_canonical_bytes_round_trip_and_strict_decode() -> None:
    e = Claim(origin=3, seq=2, wall=1.5, slot=4, params={"b": 1, "a": "x", "c": 0.25}, retry_of=(5, 6))
    raw = encode_entry(e)
    assert decode_entry(raw) == e
    same = Claim(origin=3, seq=2, wall=1.5, slot=4, params={"c": 0.25, "a": "x", "b": 1}, retry_of=(5, 6))
    assert encode_entry(same) == raw  # key order does not matter
    for bad in (b"", b"\xc1", raw[:-1], raw + b"\x00", b"\x93\x02\x01\x01", b"\xd4\x01\x00"):
        with pytest.raises(EntryError):
            decode_entry(bad)


def test_invalid_fields_are_rejected_on_construction() -> None:
    with pytest.raises(EntryError):
        Claim(origin=0, seq=1, wall=0.0, slot=0, params={})
    with pytest.raises(EntryError):
        Report(origin=1, seq=1, wall=0.0, trial=(1, 1), step=0, value=float("nan"))
    with pytest.raises(EntryError):
        Result(origin=1, seq=1, wall=0.0, trial=(1, 1), error="x" * 300)
    capped = cap_error("é" * 300)
    assert len(capped.encode()) <= 256
    Result(origin=1, seq=1, wall=0.0, trial=(1, 1), status=Status.FAILED, error=capped)


def test_trial_id_text_round_trip() -> None:
    assert parse_trial_id(trial_id_str((0xABC, 7))) == (0xABC, 7)
    with pytest.raises(ValueError):
        parse_trial_id("nonsense")


def test_study_in_force_is_the_same_on_every_replica() -> None:
    s1 = StudyEntry(origin=1, seq=1, wall=0.0, spec={"n": 1}, fingerprint="aa")
    s2 = StudyEntry(origin=2, seq=1, wall=0.0, spec={"n": 2}, fingerprint="bb")
    assert replica([s1, s2]).study == replica([s2, s1]).study


# -- one slot, one count: a retry whose original's RESULT surfaced ------------------------

A, B, C = 0xA, 0xB, 0xC


def _crash_history() -> list:
    """A persisted its RESULT for slot 3 and died before gossiping it; B abandoned the
    trial and ran it again (same params, retry_of); A's RESULT surfaced on restart."""
    return [
        Claim(origin=A, seq=1, wall=0.0, slot=3, params={"x": 0.25}),
        Result(origin=A, seq=2, wall=9.0, trial=(A, 1), status=Status.COMPLETE, value=0.5),
        Abandon(origin=B, seq=1, wall=12.0, trial=(A, 1), reason=AbandonReason.DEAD),
        Claim(origin=B, seq=2, wall=13.0, slot=3, params={"x": 0.25}, retry_of=(A, 1)),
        Result(origin=B, seq=3, wall=20.0, trial=(B, 2), status=Status.COMPLETE, value=0.4),
    ]


def _counted_per_slot(led: Ledger) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in led.trials().values():
        out[v.slot] = out.get(v.slot, 0) + int(v.state.counted)
    return out


def test_a_retry_whose_original_has_a_result_reads_superseded_in_any_order() -> None:
    from itertools import permutations

    from p2phpo.export import trial_rows

    hist = _crash_history()
    for order in permutations(hist):
        led = replica(order)
        orig, retry = led.trial((A, 1)), led.trial((B, 2))
        assert orig.state is TrialState.COMPLETE and orig.value == 0.5
        assert retry.state is TrialState.SUPERSEDED and retry.value == 0.4  # kept for --all
        assert _counted_per_slot(led) == {3: 1}
        rows = trial_rows(led)
        assert [(r["trial"], r["state"]) for r in rows] == [(trial_id_str((A, 1)), "COMPLETE")]
        assert len(trial_rows(led, include_all=True)) == 2
    # Until A's RESULT arrives the retry is the slot's one counted trial.
    led = replica([e for e in hist if not isinstance(e, Result) or e.origin != A])
    assert led.trial((B, 2)).state is TrialState.COMPLETE and _counted_per_slot(led) == {3: 1}


def test_the_eclipsed_retry_is_announced_in_the_change_log() -> None:
    hist = _crash_history()
    led = replica(hist[:1] + hist[2:])  # everything but A's RESULT
    mark = len(led.changes)
    led.merge([hist[1]])
    assert (B, 2) in led.changes[mark:]  # consumers (views, frame, search core) see it


def test_a_chain_of_retries_counts_its_first_result_only() -> None:
    hist = _crash_history()[:4] + [
        Abandon(origin=C, seq=1, wall=21.0, trial=(B, 2), reason=AbandonReason.DEAD),
        Claim(origin=C, seq=2, wall=22.0, slot=3, params={"x": 0.25}, retry_of=(B, 2)),
        Result(origin=C, seq=3, wall=30.0, trial=(C, 2), status=Status.COMPLETE, value=0.3),
    ]
    for order in (hist, hist[::-1], hist[2:] + hist[:2]):
        led = replica(order)
        states = {tid: v.state for tid, v in led.trials().items()}
        assert states == {(A, 1): TrialState.COMPLETE, (B, 2): TrialState.ABANDONED,
                          (C, 2): TrialState.SUPERSEDED}
    # Without A's RESULT, C's retry counts.
    led = replica([e for e in hist if e is not hist[1]])
    assert led.trial((C, 2)).state is TrialState.COMPLETE and _counted_per_slot(led) == {3: 1}


def test_a_retry_naming_another_slot_or_a_cycle_changes_nothing() -> None:
    led = replica([
        Claim(origin=A, seq=1, wall=0.0, slot=1, params={}),
        Result(origin=A, seq=2, wall=1.0, trial=(A, 1), status=Status.COMPLETE, value=1.0),
        Claim(origin=B, seq=1, wall=2.0, slot=2, params={}, retry_of=(A, 1)),  # other slot
        Result(origin=B, seq=2, wall=3.0, trial=(B, 1), status=Status.COMPLETE, value=2.0),
        Claim(origin=C, seq=1, wall=2.0, slot=4, params={}, retry_of=(C, 1)),  # names itself
        Result(origin=C, seq=2, wall=3.0, trial=(C, 1), status=Status.COMPLETE, value=3.0),
    ])
    assert _counted_per_slot(led) == {1: 1, 2: 1, 4: 1}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_replicas_agree_on_retries_and_a_retry_chain_counts_once(seed: int) -> None:
    rng = random.Random(seed)
    hist, seqs, slots = [], dict.fromkeys(ORIGINS, 0), {}
    for i in range(40):
        o = rng.choice(ORIGINS)
        seqs[o] += 1
        s = seqs[o]
        known = [e for e in hist if isinstance(e, Claim)]
        if known and rng.random() < 0.5:
            target = rng.choice(known)
            if rng.random() < 0.5:
                e = Claim(origin=o, seq=s, wall=float(i), slot=target.slot, params={},
                          retry_of=target.key)
            else:
                e = Result(origin=target.origin, seq=s, wall=float(i), trial=target.key,
                           status=rng.choice([Status.COMPLETE, Status.PRUNED]), value=1.0) \
                    if target.origin == o else \
                    Abandon(origin=o, seq=s, wall=float(i), trial=target.key,
                            reason=AbandonReason.DEAD)
        else:
            e = Claim(origin=o, seq=s, wall=float(i), slot=len(slots), params={})
            slots[len(slots)] = e.key
        hist.append(e)
    full = replica(hist)
    shuffled = hist[:]
    rng.shuffle(shuffled)
    assert summary(replica(shuffled)) == summary(full)
    # No counted trial has a counted trial above it in its retry chain.
    views = full.trials()
    for v in views.values():
        up, seen = v.retry_of, {v.id}
        while v.state.counted and up in views and up not in seen:
            seen.add(up)
            assert not views[up].state.counted
            up = views[up].retry_of
