"""Real nodes on 127.0.0.1 against forged ledger records and network-chosen code.

The attacks of issue 11, as a local user (unkeyed loopback mode: the sealing
key is public) and as a holder of the cluster key would send them: REPORTs
under another node's id at its next seqs (a node that sees peers hold seqs it
never wrote stops as a copied state dir), a RESULT for another node's trial
(it became the best), and a STUDY entry naming ``builtins:print`` (a fresh
joiner imported it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from p2phpo.core.entries import Report, Result, Status, StudyEntry, encode_entry
from p2phpo.core.hrw import hrw
from p2phpo.storage import read_state
from tests.e2e.cluster import NodeProc, export, wait_for, write_study
from tests.e2e.forge import send_records


def node_id(n: NodeProc) -> int:
    return int(json.loads((n.state / "node.json").read_text())["node_id"], 16)


def insider_records(victim_study: StudyEntry, target: tuple[int, int]) -> tuple[int, list[bytes]]:
    """What a holder of the cluster key signs with an identity of its own: a RESULT
    for someone else's trial and a STUDY that wins the rendezvous (its id, records)."""
    from p2phpo.core.identity import Identity
    from p2phpo.core.records import sign_entry

    weight = hrw("study", victim_study.origin, victim_study.seq)
    while True:
        me = Identity(os.urandom(32))
        if hrw("study", me.node_id, 1) < weight:
            break
    spec = dict(victim_study.spec, objective={"name": "builtins:print"})
    study = sign_entry(me, StudyEntry(origin=me.node_id, seq=1, wall=1.0, spec=spec, fingerprint="e" * 32))
    fake = Result(origin=me.node_id, seq=2, wall=2.0, trial=target, status=Status.COMPLETE, value=-1e6)
    return me.node_id, [study, sign_entry(me, fake, study)]


def forged_records(a_study: StudyEntry, c: int, c_seq: int, target: tuple[int, int]) -> list[bytes]:
    """Records under ids the attacker does not hold (unsigned, as an unsigned ledger took them)."""
    reports = [encode_entry(Report(origin=c, seq=c_seq + k, wall=9.0, trial=(c, 1), step=50 + k, value=-1e6))
               for k in (1, 2, 3)]
    fake = encode_entry(Result(origin=1, seq=1, wall=9.0, trial=target, status=Status.COMPLETE, value=-1e6))
    weight = hrw("study", a_study.origin, a_study.seq)
    origin = next(o for o in range(2, 100_000) if hrw("study", o, 1) < weight)
    spec = dict(a_study.spec, objective={"name": "builtins:print"})
    study = encode_entry(StudyEntry(origin=origin, seq=1, wall=9.0, spec=spec, fingerprint="e" * 32))
    return [*reports, fake, study]


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-loopback", "keyed-insider"])
def test_forged_entries_neither_wedge_nor_rewrite_nor_choose_code(tmp_path: Path, nodes, keyed) -> None:
    key_args: list[str] = []
    key_file = None
    if keyed:
        from p2phpo.keys import write_key_file

        key_file = tmp_path / "cluster.key"
        write_key_file(key_file)
        key_args = ["--key-file", str(key_file)]
    study = write_study(tmp_path / "s.toml", n_trials=30, epochs=3, sleep=0.15)
    a = nodes("a", "--study", str(study), *key_args).start()
    b = nodes("b", "--seed", a.addr, *key_args).start()
    c = nodes("c", "--seed", a.addr, *key_args).start()
    wait_for(lambda: all((n.state / "node.json").exists() for n in (a, b, c)), 60, "state dirs")
    a_id, b_id, c_id = node_id(a), node_id(b), node_id(c)

    def a_ready() -> object:
        led = read_state(a.state).ledger
        done = [t for t, v in led.trials().items() if t[0] == a_id and v.state.finished]
        joined = led.vv.get(b_id, 0) >= 2 and led.vv.get(c_id, 0) >= 2  # b and c run the study
        return joined and done and (led, done[0])

    led, target = wait_for(a_ready, 90, "a finished trial of a and entries of b and c")  # type: ignore[misc]
    real = led.study
    insider, own = insider_records(real, target)
    raws = forged_records(real, c_id, led.vv[c_id], target) + own
    for n in (a, b):
        send_records(n.port, raws, key_file)
    # A fresh joiner (its operator allows the example objective, nothing else).
    d = nodes("d", "--seed", a.addr, *key_args).start()
    # The attacker's own STUDY may win the rendezvous: the joiner still imports nothing and
    # runs nothing. (Which STUDY it hears first is a race: it refuses the attacker's objective
    # as not allowed, or refuses the cluster as running two studies.)
    assert d.wait(60) == 2
    err = d.err.read_text()
    assert "Traceback" not in err
    assert ("builtins:print" in err and "--allow-objective" in err) or "study" in err, err
    assert not [t for t in read_state(d.state).ledger.trials() if t[0] == node_id(d)]
    for n in (a, b, c):
        assert n.wait(120) == 0, n.err.read_text()
    assert "stale state dir" not in c.err.read_text()
    rows = export(a.state)
    assert all(r["value"] is None or r["value"] > -1e5 for r in rows)
    hit = next(r for r in rows if r["trial"] == f"{target[0]:016x}:{target[1]}")
    assert hit["node"] == f"{a_id:016x}" and hit["value"] == led.trial(target).value
    final = read_state(a.state).ledger
    assert final.vv.get(1) is None and final.vv[c_id] == read_state(c.state).ledger.vv[c_id]
    assert final.vv[insider] == 2  # delivered: the attacker's own signed entries are in the log
    assert [s.origin for s in final.studies] == sorted([real.origin, insider], key=lambda o: o != real.origin)


def test_a_joiner_refuses_an_objective_its_operator_did_not_allow(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=40, epochs=2, sleep=0.2)
    a = nodes("a", "--study", str(study)).start()
    d = nodes("d", "--seed", a.addr, allow=False).start()
    assert d.wait(60) == 2
    err = d.err.read_text()
    assert "examples.custom_objective:objective" in err and "--allow-objective" in err
    assert "Traceback" not in err
    led = read_state(d.state).ledger
    assert all(v.origin != node_id(d) for v in led.trials().values())  # it ran nothing
    a.kill()
