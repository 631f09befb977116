"""Real nodes on 127.0.0.1: shared budget, crashes, pauses, refusals, graceful exit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.e2e.cluster import (
    REPO,
    NodeProc,
    counted_slots,
    export,
    status_json,
    wait_for,
    write_study,
)


def started(n: NodeProc) -> bool:
    return any(e["event"] == "started" for e in n.events())


def test_three_nodes_share_the_budget_exactly(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=12, epochs=2, sleep=0.1)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    c = nodes("c", "--seed", f"localhost:{a.port}").start()  # a host name, not an IP
    for n in (a, b, c):
        assert n.wait(90) == 0, n.err.read_text()
    rows = [export(n.state) for n in (a, b, c)]
    assert rows[0] == rows[1] == rows[2]  # identical replicas
    slots = counted_slots(rows[0])
    assert sorted(slots) == list(range(12)) and set(slots.values()) == {1}
    workers = {r["node"] for r in rows[0] if r["state"] == "COMPLETE"}
    assert len(workers) == 3  # every node took part


def test_the_example_cluster_never_overshoots_its_budget(nodes) -> None:
    # examples/three_nodes.sh's study: many trials are pruned within milliseconds, so idle
    # thieves see each other busy (their RESULTs still in flight); a stolen slot must meet
    # its rivals before it runs, or both run and both count (24 of 24, not 25-30).
    study = REPO / "examples" / "custom_objective.toml"
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    c = nodes("c", "--seed", a.addr).start()
    for n in (a, b, c):
        assert n.wait(90) == 0, n.err.read_text()
    slots = counted_slots(export(a.state))
    assert sorted(slots) == list(range(24)) and set(slots.values()) == {1}, slots


def test_killed_node_is_reclaimed_and_restarts_from_its_state_dir(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=10, epochs=4, sleep=0.25)
    a = nodes("a", "--study", str(study), "--grace", "2").start()  # c stays dead: don't wait
    b = nodes("b", "--seed", a.addr, "--grace", "2").start()
    c = nodes("c", "--seed", a.addr).start()
    wait_for(lambda: started(c), 60, "node c to start a trial")
    time.sleep(0.3)
    c.proc.kill()  # SIGKILL mid-trial
    c.proc.wait(10)
    killed_rows = export(c.state)
    for n in (a, b):
        assert n.wait(120) == 0, n.err.read_text()
    survivors = export(a.state)
    assert export(b.state) == survivors
    slots = counted_slots(survivors)
    assert sorted(slots) == list(range(10))
    c_id = c.events()[0]["node"]
    lost = [r for r in killed_rows if r["node"] == c_id and r["state"] == "RUNNING"]
    assert lost
    by_trial = {r["trial"]: r for r in survivors}
    for r in lost:  # the trial c was running is abandoned and retried elsewhere
        assert by_trial[r["trial"]]["state"] == "ABANDONED"
        assert any(x["retry_of"] == r["trial"] for x in survivors)
    for n in (a, b):  # each survivor says so: one wrote the ABANDON, the other merged it
        said = [e for e in n.events() if e.get("event") == "reclaimed"]
        assert {e["trial"] for e in said} >= {r["trial"] for r in lost}, said
        assert all(e["node"] == c_id and "(node dead)" in e["detail"] for e in said), said
    for r in killed_rows:  # every result ever written reached the survivors
        if r["state"] in ("COMPLETE", "PRUNED", "FAILED"):
            assert by_trial[r["trial"]]["state"] == r["state"]
    # Restart c from its state dir with a survivor lingering: it catches up, its log intact.
    a2 = nodes("a2", "--seed", b.addr, "--linger")
    a2.state = a.state
    a2.start()
    c.args = ["--seed", a2.addr]
    c.start()
    wait_for(lambda: len(export(c.state)) >= len(survivors), 60, "c to catch up")
    after = {r["trial"]: r for r in export(c.state)}
    for r in killed_rows:
        if r["state"] != "RUNNING":
            assert after[r["trial"]] == r
    c.signal(signal.SIGINT)
    assert c.wait(30) == 0
    a2.signal(signal.SIGINT)
    assert a2.wait(30) == 0


def test_paused_node_refutes_and_rejoins(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=40, epochs=3, sleep=0.3)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    wait_for(lambda: started(b), 60, "node b to start a trial")
    b.signal(signal.SIGSTOP)
    wait_for(lambda: any(e["event"] == "dead" for e in a.events()), 30, "a to declare b dead")
    b.signal(signal.SIGCONT)
    wait_for(lambda: any(e["event"] == "refuted" for e in b.events() + a.events()), 30,
             "b to refute its death")

    def b_alive() -> bool:
        members = {m["id"]: m for m in status_json(f"localhost:{a.port}")["members"]}
        node_b = b.events()[0]["node"]
        return members.get(node_b, {}).get("state") == "ALIVE"

    wait_for(b_alive, 30, "b to be ALIVE again in the cluster view")
    for n in (a, b):
        n.signal(signal.SIGINT)
        assert n.wait(30) == 0


def test_different_study_is_refused_with_the_differing_fields(tmp_path: Path, nodes) -> None:
    a = nodes("a", "--study", str(write_study(tmp_path / "a.toml", n_trials=50, sleep=0.3))).start()
    wait_for(lambda: started(a), 60, "node a to start")
    other = write_study(tmp_path / "b.toml", n_trials=7, sleep=0.3)
    b = nodes("b", "--study", str(other), "--seed", a.addr).start()
    assert b.wait(60) == 2
    err = b.err.read_text()
    assert "differs" in err and "study.n_trials" in err and "Traceback" not in err
    a.signal(signal.SIGINT)
    assert a.wait(30) == 0


def test_ctrl_c_exits_zero_and_leaves_gracefully(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=50, epochs=3, sleep=0.3)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    wait_for(lambda: started(b), 60, "node b to start a trial")
    b.signal(signal.SIGINT)
    assert b.wait(30) == 0
    node_b = b.events()[0]["node"]
    wait_for(lambda: any(e["event"] == "left" and e.get("node") == node_b for e in a.events()),
             20, "a to see b leave")
    rows = export(a.state)
    abandoned = [r for r in rows if r["node"] == node_b and r["state"] == "ABANDONED"]
    assert abandoned  # b handed its running trial back instead of leaving it RUNNING
    assert not [r for r in rows if r["node"] == node_b and r["state"] == "RUNNING"]
    a.signal(signal.SIGINT)
    assert a.wait(30) == 0


def test_bad_input_ends_with_one_sentence_and_exit_2(tmp_path: Path, nodes) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname=")
    n = nodes("x", "--study", str(bad)).start()
    assert n.wait(60) == 2
    err = n.err.read_text()
    assert "not valid TOML" in err and "Traceback" not in err
    k = nodes("k", "--key-file", str(tmp_path / "missing.key")).start()
    assert k.wait(60) == 2
    assert "Traceback" not in k.err.read_text()


MNIST_STUDY = """
[study]
name = "mnist-e2e"
direction = "maximize"
metric = "val_accuracy"
n_trials = 2

[sampler]
name = "random"

[objective]
name = "mnist-mlp"
dataset = "mnist"
max_epochs = 1

[space]
lr = { type = "float", low = 1e-3, high = 3e-3, log = true }
width = { type = "int", low = 64, high = 128 }
batch_size = { type = "choice", values = [128] }
"""


def test_two_nodes_train_the_mnist_mlp_on_the_offline_sample(tmp_path: Path, nodes) -> None:
    study = tmp_path / "mnist.toml"
    study.write_text(MNIST_STUDY)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    for n in (a, b):
        assert n.wait(240) == 0, n.err.read_text()
    rows = export(a.state)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(done) == 2
    for r in done:
        assert 0.7 < r["value"] < 1.0  # learned something, and the labels were not misread
    ready = [e for e in a.events() if e["event"] == "ready"]
    assert ready and "mnist" in ready[0]["detail"]


def test_a_copied_state_dir_is_refused_as_stale(tmp_path: Path, nodes) -> None:
    import shutil

    study = write_study(tmp_path / "s.toml", n_trials=200, epochs=2, sleep=0.2)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    wait_for(lambda: started(b), 60, "node b to start a trial")
    b.signal(signal.SIGINT)
    assert b.wait(30) == 0
    shutil.copytree(b.state, tmp_path / "b-copy")
    b.start()  # the original moves on and writes more entries
    wait_for(lambda: sum(e["event"] == "started" for e in b.events()) >= 3, 60, "b to run on")
    copy = nodes("copy", "--seed", a.addr)
    copy.state = tmp_path / "b-copy"
    copy.start()
    # Two live nodes with one identity: the copy is refused ("stale state dir") before it
    # writes anything, and the original, which never stopped being the node, runs on.
    assert copy.wait(60) == 2, copy.err.read_text()
    assert "stale state dir" in copy.err.read_text()
    assert b.proc.poll() is None, b.err.read_text()
    n = len(b.events())
    wait_for(lambda: any(e["event"] == "started" for e in b.events()[n:]), 60,
             "the original to go on running trials")
    b.signal(signal.SIGINT)
    assert b.wait(30) == 0, b.err.read_text()
    a.signal(signal.SIGINT)
    assert a.wait(30) == 0  # the rest of the cluster is unharmed
