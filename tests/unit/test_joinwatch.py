"""Join diagnostics on a virtual clock: the sentences a user sees while a node cannot join."""

from __future__ import annotations

from p2phpo.core.joinwatch import JoinWatch, SeedState

SEED = ("10.0.0.5", 7946)
NAME = "node1:7946 (10.0.0.5)"


def run(watch: JoinWatch, until: float, **facts) -> list:
    out = []
    t = watch.started
    while t <= until:
        out += [(t, n) for n in watch.step(t, **facts)]
        t += 1.0
    return out


def test_a_silent_seed_is_named_every_few_seconds() -> None:
    w = JoinWatch(started=0.0)
    notes = run(w, 30, joined=False, peers=0, seeds=[SeedState(SEED, NAME)])
    waiting = [(t, n.text) for t, n in notes if n.kind == "waiting"]
    assert waiting[0][0] <= 10 and len(waiting) >= 5
    assert f"no answer from seed {NAME}" in waiting[0][1]


def test_a_wrong_key_and_a_wrong_label_are_told_apart() -> None:
    key = SeedState(SEED, NAME, drops={"bad_auth": 7})
    label = SeedState(("10.0.0.6", 7946), "node2:7946", drops={"unknown_cluster": 1})
    notes = run(JoinWatch(started=0.0), 10, joined=False, peers=0, seeds=[key, label])
    text = next(n.text for _, n in notes if n.kind == "waiting")
    assert f"7 packets from seed {NAME} failed authentication (is the key the same?)" in text
    assert "1 packet from seed node2:7946 carried another cluster label" in text


def test_probe_verdicts_explain_silence() -> None:
    cases = {"rejected": "rejects this node's handshake", "refused": "nothing listens",
             "ok": "is UDP open in the firewall", None: "no answer"}
    for probe, words in cases.items():
        notes = run(JoinWatch(started=0.0), 6, joined=False, peers=0,
                    seeds=[SeedState(SEED, NAME, probe=probe)])
        assert words in notes[0][1].text, probe


def test_joining_names_the_seed_and_losing_every_peer_says_so() -> None:
    w = JoinWatch(started=0.0)
    assert run(w, 3, joined=False, peers=0, seeds=[SeedState(SEED, NAME)]) == []
    heard = SeedState(SEED, NAME, heard_at=3.5)
    [joined] = w.step(4.0, joined=True, peers=2, seeds=[heard])
    assert joined.kind == "joined" and joined.text == f"joined the cluster through seed {NAME}"
    assert w.step(5.0, joined=True, peers=2, seeds=[heard]) == []
    [alone] = w.step(6.0, joined=False, peers=0, seeds=[heard])
    assert alone.kind == "alone" and "every peer is gone" in alone.text
    later = [n for t in range(7, 20) for n in w.step(float(t), joined=False, peers=0,
                                                       seeds=[heard])]
    assert any(n.kind == "waiting" for n in later)


def test_a_founder_without_seeds_waits_silently_but_reports_strangers_with_backoff() -> None:
    w = JoinWatch(started=0.0)
    stranger = ("10.0.0.9", 7946)
    reports = []
    for t in range(0, 120):
        drops = {stranger: {"bad_auth": 10 * (t + 1)}}
        reports += [(t, n) for n in w.step(float(t), joined=False, peers=0, seeds=[],
                                           drops_by_addr=drops)]
    assert all(n.kind == "rejecting" for _, n in reports)
    assert "packets from 10.0.0.9:7946 failed authentication (a node with another key?)" \
        in reports[0][1].text
    gaps = [b[0] - a[0] for a, b in zip(reports, reports[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # the reports thin out
    assert len(reports) < 10


def test_unresolved_seed_names_are_reported() -> None:
    notes = run(JoinWatch(started=0.0), 6, joined=False, peers=0, seeds=[],
                unresolved={"node9:7946": "cannot resolve node9: Name or service not known"})
    assert "cannot resolve node9" in notes[0][1].text


def test_the_node_driver_turns_its_gossip_state_into_join_notes() -> None:
    """The driver feeds the watcher from its own gossip core (drops per address, joined)."""
    from p2phpo.core.driver import NodeDriver, Note
    from tests.unit.netsim import Net

    net = Net(seed=2)
    a = net.add()
    driver = NodeDriver(a.node_id, a.ledger, a.core)
    seed = SeedState(SEED, NAME, drops={"bad_auth": 4})
    for t in range(8):
        driver.handle_watch([seed], {}, float(t), 1000.0 + t)
    notes = [x for x in driver.take_actions() if isinstance(x, Note)]
    assert [n.kind for n in notes] == ["waiting"]
    assert "4 packets from seed node1:7946 (10.0.0.5) failed authentication" in notes[0].detail
