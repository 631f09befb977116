"""Crash consistency: SIGKILLs at random moments of a busy study, and a flipped byte at a
random offset of the killed node's log before each restart.

After the restarts and their repairs every node's export equals the others', no
RESULT that two nodes held is ever lost, and no slot is counted twice in the
exports: every slot of the budget shows exactly one counted trial. (When an owner
died between persisting its RESULT and gossiping it, the others retried the
trial; once the RESULT surfaces the retry reads SUPERSEDED: see the assertion.)
The default suite runs 3 kills and 3 flips; ``pytest -m slow`` runs the full 20 + 20.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import COUNTED, counted_slots, export, wait_for, write_study


def _flip(path: Path, rng: random.Random) -> int:
    data = bytearray(path.read_bytes())
    pos = rng.randrange(len(data))
    data[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return pos


def crash_and_flip(tmp_path: Path, nodes, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    n_trials = 30 + 40 * rounds  # busy until every kill is done
    study = write_study(tmp_path / "s.toml", n_trials=n_trials, epochs=2, sleep=0.1, seed=seed)
    a = nodes("a", "--study", str(study), "--grace", "30").start()
    ring = [a, nodes("b", "--seed", a.addr, "--grace", "30").start(),
            nodes("c", "--seed", a.addr, "--grace", "30").start()]
    wait_for(lambda: all(any(e.get("event") == "started" for e in n.events()) for n in ring),
             90, "every node to start a trial")
    held_twice: dict[str, dict] = {}  # counted results two nodes held at some moment
    done_rounds = 0
    for _ in range(rounds):
        time.sleep(rng.uniform(0.1, 1.2))
        victim = rng.choice(ring)
        if any(e.get("event") == "done" for n in ring for e in n.events()):
            break  # the study is over (a kill now would be of a lone node: nobody to repair from)
        victim.proc.kill()  # SIGKILL
        victim.proc.wait(10)
        other = rng.choice([n for n in ring if n is not victim])
        theirs = {r["trial"]: r for r in export(other.state)}
        for r in export(victim.state):
            if r["state"] in COUNTED and theirs.get(r["trial"]) == r:
                held_twice[r["trial"]] = r
        _flip(victim.state / "ledger.log", rng)
        victim.args = ["--grace", "30"]  # the same node: its state dir knows study and peers
        victim.start()
        done_rounds += 1
    assert done_rounds == rounds, f"the study ended after {done_rounds} of {rounds} kills"
    for n in ring:
        assert n.wait(180) == 0, n.err.read_text()
        assert "Traceback" not in n.err.read_text()
    finals = [export(n.state) for n in ring]
    assert finals[0] == finals[1] == finals[2]
    everything = {r["trial"]: r for r in export(ring[0].state, include_all=True)}
    by_trial = {r["trial"]: r for r in finals[0]}
    lost = [t for t, r in held_twice.items() if by_trial.get(t) != r and not _eclipsed(
        everything.get(t, r), everything, by_trial)]
    assert not lost, lost
    slots = counted_slots(finals[0])
    # No slot counted twice, none beyond the budget, none missing.
    assert slots == dict.fromkeys(range(n_trials), 1), {s: k for s, k in slots.items() if k != 1}


def _eclipsed(row: dict, everything: dict[str, dict], shown: dict[str, dict]) -> bool:
    """A retry that reads SUPERSEDED because an original up its retry chain has a counted
    RESULT (its owner was killed after persisting it and before gossiping it, and the
    RESULT surfaced on restart): not lost, the slot counts the original."""
    up = row["retry_of"]
    while row["state"] == "SUPERSEDED" and up in everything:
        if shown.get(up, {}).get("state") in COUNTED:
            return True
        up = everything[up]["retry_of"]
    return False


def test_a_few_kills_and_flips_lose_nothing(tmp_path: Path, nodes) -> None:
    crash_and_flip(tmp_path, nodes, rounds=3, seed=1)


@pytest.mark.slow
def test_twenty_kills_and_twenty_flips_lose_nothing(tmp_path: Path, nodes) -> None:
    crash_and_flip(tmp_path, nodes, rounds=20, seed=2)
