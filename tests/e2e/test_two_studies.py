"""Two studies on one cluster key, real processes on 127.0.0.1 (issue 13).

Cluster X runs to the end; cluster Y starts on the same two addresses with
fresh state dirs and a changed study; an old X node restarts with its state
dir and no --seed, so it rejoins through the addresses it remembers, where Y
runs now. It must stop with one sentence naming what differs, and nothing of
X may reach Y (before the fix Y's export held X's trials, Y ran fewer of its
own and named an X trial as best).
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.cluster import COUNTED, export, wait_for, write_study


def test_a_node_of_a_finished_study_never_leaks_into_the_new_study_on_its_addresses(
        tmp_path: Path, nodes) -> None:
    x_study = write_study(tmp_path / "x.toml", n_trials=6, epochs=2, sleep=0.05)
    xa = nodes("xa", "--study", str(x_study)).start()
    xb = nodes("xb", "--seed", xa.addr).start()
    for n in (xa, xb):
        assert n.wait(120) == 0, n.err.read_text()
    x_rows = export(xb.state)
    x_nodes = {r["node"] for r in x_rows}
    assert len([r for r in x_rows if r["state"] in COUNTED]) == 6

    y_study = write_study(tmp_path / "y.toml", n_trials=10, epochs=2, sleep=0.2)
    ya = nodes("ya", "--study", str(y_study), "--linger")  # still there when X comes back
    yb = nodes("yb", "--seed", xa.addr)
    ya.port, yb.port = xa.port, xb.port  # Y takes over X's addresses
    ya.start()
    yb.start()
    wait_for(lambda: any(e["event"] == "started" for e in ya.events()), 60, "Y to run trials")
    back = nodes("back")  # xb's state dir, no --seed: it rejoins through peers.json
    back.state = xb.state
    back.start()
    assert back.wait(60) == 2, back.err.read_text()
    err = back.err.read_text().strip()
    assert "another study" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert "objective options (" in err and "objective.sleep" in err and "budget (study.n_trials)" in err
    assert "dataset" not in err
    assert yb.wait(120) == 0, yb.err.read_text()
    wait_for(lambda: any(e["event"] == "done" for e in ya.events()), 60, "Y to finish")
    ya.signal(signal.SIGINT)
    assert ya.wait(30) == 0, ya.err.read_text()
    y_rows = export(ya.state)
    assert export(yb.state) == y_rows
    assert not {r["node"] for r in y_rows} & x_nodes  # no X trial in Y's export
    assert len([r for r in y_rows if r["state"] in COUNTED]) == 10  # Y ran its whole budget
    assert export(xb.state) == x_rows  # and X's ledger took nothing of Y's
