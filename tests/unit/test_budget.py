"""The budget rights of core/budget.py: arcs on a ring, top-down claims, stealing."""

from __future__ import annotations

import random

import numpy as np

from p2phpo.core.budget import STEAL_SALT, Ring, SlotPlanner
from p2phpo.core.hrw import mix64


def _roster(rng: random.Random, m: int) -> list[int]:
    return sorted(rng.getrandbits(63) | 1 for _ in range(m))


def test_the_ring_gives_every_slot_to_exactly_one_member() -> None:
    rng = random.Random(1)
    for n in (1, 7, 192, 4000):
        for m in (1, 2, 48, 100):
            roster = _roster(rng, m)
            ring = Ring(roster, n)
            everything = bytearray(b"\x01") * n
            slots = [s for member in roster for s in ring.queue(member, everything)]
            assert sorted(slots) == list(range(n))


def test_a_partial_view_rarely_moves_a_first_claim_onto_someone_elses() -> None:
    # A node that knows only some of the roster (a join storm) mostly starts where it
    # would start knowing everyone; ranks over the roster (r*n/m) would collide on
    # nearly every first claim, because every range start moves.
    rng = random.Random(2)
    n, everything = 400, bytearray(b"\x01") * 400
    moved = total = 0
    for _ in range(20):
        roster = _roster(rng, 100)
        full = Ring(roster, n)
        firsts = {full.head(r, everything) for r in roster}
        for member in rng.sample(roster, 10):
            partial = sorted(rng.sample([r for r in roster if r != member], 30) + [member])
            head = Ring(partial, n).head(member, everything)
            total += 1
            moved += head != full.head(member, everything) and head in firsts
    assert moved / total < 0.15


def test_thieves_that_know_each_other_never_pick_the_same_slot() -> None:
    rng = random.Random(3)
    n = 200
    roster = _roster(rng, 20)
    planner = SlotPlanner(n, lambda s: True)
    ring = planner.ring(roster)
    thieves = roster[:8]
    for t in thieves:  # the thieves have run their own rights
        for s in ring.queue(t, planner.open):
            planner.mark(s, False)
    live, busy = set(roster), set(roster[8:])
    picks = [planner.steal(t, roster, live, busy, set(), 0.0, fallback=False) for t in thieves]
    slots = [p.slot for p in picks if p is not None]
    assert slots and len(slots) == len(set(slots))
    for p in picks:
        if p is not None:  # stolen from the far end of a queue, never a busy owner's next one
            owner = next(r for r in roster if p.slot in ring.queue(r, planner.open))
            assert p.slot != ring.queue(owner, planner.open)[0]


def test_while_a_cut_may_be_in_force_thieves_steal_from_owners_they_still_hear_first() -> None:
    # Owners silent lately (maybe behind a cut, where their own side's thieves steal
    # from them too, unseen) are robbed only once the owners we hear have nothing left.
    rng = random.Random(5)
    n = 200
    roster = _roster(rng, 20)
    planner = SlotPlanner(n, lambda s: True)
    ring = planner.ring(roster)
    thieves = roster[:6]
    for t in thieves:
        for s in ring.queue(t, planner.open):
            planner.mark(s, False)
    live, busy = set(roster), set(roster[6:])

    def owner(slot: int) -> int:
        return next(r for r in roster if slot in ring.queue(r, planner.open))

    blind = [planner.steal(t, roster, live, busy, set(), 0.0, fallback=False) for t in thieves]
    quiet = {owner(p.slot) for p in blind if p is not None}  # the owners robbed first otherwise
    assert quiet and len(quiet) < len(busy)
    for _ in range(3):
        for t in thieves:
            pick = planner.steal(t, roster, live, busy, set(), 0.0, fallback=False, quiet=quiet)
            if pick is not None:
                assert owner(pick.slot) not in quiet
                planner.mark(pick.slot, False)


def test_a_gone_owners_slots_wait_until_owners_we_hear_have_nothing_left() -> None:
    # A gone owner may only be cut off, its side running its slots: a thief turns to it
    # only once no owner it hears has a slot to steal, and then to its queue's middle.
    rng = random.Random(6)
    n = 120
    roster = _roster(rng, 12)
    planner = SlotPlanner(n, lambda s: True, wait=0.5, gone_wait=2.0)
    ring = planner.ring(roster)
    thieves, gone = roster[:3], roster[3]
    for t in thieves:
        for s in ring.queue(t, planner.open):
            planner.mark(s, False)
    gone_queue = ring.queue(gone, planner.open)
    live = set(roster) - {gone}
    busy = live - set(thieves)

    def run(me: int) -> list[int]:
        taken = []
        while pick := planner.steal(me, roster, live, busy, set(), 10.0, fallback=False):
            taken.append(pick.slot)
            planner.mark(pick.slot, False)
        return taken

    first = run(thieves[0])  # the others' shares of the live owners' slots stay open
    assert first and not set(first) & set(gone_queue)
    run(thieves[1]), run(thieves[2])
    rest = run(thieves[0]) + run(thieves[1]) + run(thieves[2])
    assert set(rest) & set(gone_queue)  # once the live owners had nothing left
    middle = [s for s in rest if s in gone_queue][0]
    assert middle not in (gone_queue[0], gone_queue[-1])


def test_a_claims_rivals_are_its_slots_owner_and_the_first_members_by_steal_weight() -> None:
    roster = list(range(1, 41))
    planner = SlotPlanner(200, lambda s: True)
    ring = planner.ring(roster)
    for slot in range(0, 200, 7):
        owner = ring.owner_of[slot]
        me = 1 if owner != 1 else 2
        alive = set(roster) - {me}
        rivals = planner.rivals(slot, me, roster, alive, 4)
        others = [m for m in roster if m != me]
        weights = mix64(np.uint64(slot) ^ np.uint64(STEAL_SALT), np.array(others, dtype=np.uint64))
        first = sorted((int(w), m) for w, m in zip(weights, others, strict=True))[:4]
        assert rivals[:4] == [m for _, m in first]
        assert owner in rivals and me not in rivals and len(rivals) <= 5
        gone = set(rivals)
        assert not set(planner.rivals(slot, me, roster, alive - gone, 4)) & gone  # live only
    assert planner.rivals(0, 1, roster, set(roster), 0) == []
    assert planner.rivals(0, 1, [1], {1}, 4) == []  # alone: nobody to tell


def test_a_stolen_slots_claim_goes_to_every_contender_and_its_owner() -> None:
    # Which thief is idle is what views disagree on most: any contender may take it.
    roster = list(range(1, 41))
    planner = SlotPlanner(200, lambda s: True)
    owner = planner.ring(roster).owner_of[7]
    contenders = [m for m in range(1, 31) if m != owner]
    me = contenders[0]
    alive = set(roster) - {contenders[1]}
    rivals = planner.rivals(7, me, roster, alive, 2, contenders)
    assert set(rivals) == (set(contenders) | {owner}) - {me, contenders[1]}
    assert len(planner.rivals(7, me, roster, alive, 2)) <= 3  # a home claim: the first k
