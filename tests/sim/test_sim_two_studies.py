"""Two studies on one cluster key (issue 13): their ledgers never mix.

The bug this pins: a study X ran to the end; a new study Y started on the
same addresses; a node of X restarted with its state dir and rejoined through
the addresses it remembered. Every node sealed with the bare cluster label
and merged every peer's entries, so X's whole ledger flowed into Y: Y's
nodes counted X's trials toward Y's budget and named an X trial as best.
"""

from __future__ import annotations

from p2phpo.core.ledger import Ledger
from p2phpo.core.wire import DropReason, pack, unpack_strict
from simulations.objective import SimObjective
from simulations.plan import fingerprint, study_spec
from simulations.sim import SimConfig, Simulation

X_TRIALS, Y_TRIALS = 6, 10


def _run(sim: Simulation, until: float, done: list) -> None:
    t = sim.heap.now
    while t < until and not all(n.done for n in done):
        t += 1.0
        sim.run_until(t)


def _counted(ledger: Ledger) -> int:
    return sum(1 for v in ledger.trials().values() if v.state.counted)


def _two_studies(seed: int) -> tuple[Simulation, list, object, set[int], int]:
    cfg = SimConfig(nodes=2, seed=seed, n_trials=X_TRIALS, profile="local",
                    objective=SimObjective(mean_duration=2.0))
    sim = Simulation(cfg)
    sim.start()  # study X on hosts 0 and 1
    sim.run_until(0.5)
    _run(sim, 300.0, list(sim.nodes.values()))
    xs = list(sim.nodes.values())
    assert all(n.done for n in xs)
    x = xs[1]
    x_origins, x_len = set(x.ledger.vv), len(x.ledger)
    for n in xs:
        sim.crash(n.id)
    # Study Y, another budget, on the same two addresses with fresh state dirs.
    spec = study_spec(cfg.objective, Y_TRIALS, cfg.seed)
    sim.study = (spec, fingerprint(spec))
    sim.seed_addrs = []
    t0 = sim.heap.now
    ys = [sim.boot(0), sim.boot(1)]
    sim.run_until(t0 + 2.0)
    # The X node comes back with its disk; the peers it remembers are Y's nodes now.
    disk = sim.disks[x.id]
    disk.restarts += 1
    disk.incarnation += 1
    back = sim.boot(2, disk)
    assert back.ledger.study is not None and back.ledger.study.fingerprint != sim.study[1]
    _run(sim, sim.heap.now + 300.0, ys)
    return sim, ys, back, x_origins, x_len


def test_a_node_of_another_study_is_refused_and_neither_ledger_takes_the_others_entries() -> None:
    for seed in range(3):
        sim, ys, back, x_origins, x_len = _two_studies(seed)
        for y in ys:  # Y unharmed: none of X's entries, its own full budget, done
            assert not x_origins & set(y.ledger.vv), f"seed {seed}: X entries in Y's ledger"
            assert _counted(y.ledger) == Y_TRIALS and y.done, f"seed {seed}"
            assert y.ledger.study is not None and y.ledger.study.spec["study"]["n_trials"] == Y_TRIALS
        # The X node merged nothing of Y's and stopped with one sentence naming the study.
        assert len(back.ledger) == x_len and set(back.ledger.vv) <= x_origins
        assert back.fatal is not None, f"seed {seed}"
        assert "another study" in back.fatal and "budget (study.n_trials)" in back.fatal
        assert "dataset" not in back.fatal
        dropped = sum(n.gossip.dropped[DropReason.OTHER_STUDY] for n in [*ys, back])
        assert dropped >= 1  # at least the STUDY entries each side showed the other


def test_a_push_pull_across_studies_exchanges_members_and_study_only() -> None:
    sim, ys, back, x_origins, _ = _two_studies(0)
    y = ys[0]
    before = (len(y.ledger), len(back.ledger))
    a = back.gossip.sync_session(initiator=True, peer=y.addr)
    b = y.gossip.sync_session(initiator=False)
    frames, side = a.start(sim.heap.now), b
    while frames:  # the frames go back and forth as over one TCP stream
        frames = [out for f in frames for out in side.receive(unpack_strict(pack(f)), sim.heap.now)]
        side = a if side is b else b
    assert a.done and b.done and a.failed is None and b.failed is None
    assert not a.synced and not b.synced  # no anti-entropy credit across studies
    assert (len(y.ledger), len(back.ledger)) == before
