"""A headless node, as a script runs it: its last line names the best trial, and the
same seed on a fresh node (a new node id) runs the same sequence of trials."""

from __future__ import annotations

import json

from tests.e2e.cluster import NodeProc, export, write_study


def _run(tmp_path, name: str, study) -> NodeProc:
    node = NodeProc(name, tmp_path, ["--study", str(study)]).start()
    try:
        assert node.wait(180) == 0, node.err.read_text()[-2000:]
    finally:
        node.kill()
    return node


def test_last_line_names_the_best_trial_and_the_seed_replays(tmp_path):
    study = write_study(tmp_path / "study.toml", n_trials=6, epochs=3, sleep=0.0, seed=3)
    a = _run(tmp_path, "a", study)
    last = json.loads(a.out.read_text().splitlines()[-1])
    rows = export(a.state)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = min(complete, key=lambda r: (r["value"], r["trial"]))
    assert last["event"] == "summary" and last["done"] is True
    assert last["best"] == {"trial": best["trial"], "value": best["value"],
                            "params": best["params"]}
    assert last["detail"].startswith(f"best trial {best['trial']}: value ")
    assert sum(last["trials"].values()) == len(rows) == 6

    b = _run(tmp_path, "b", study)  # a fresh state dir: another node id, same seed
    rows_b = export(b.state)
    assert rows_b[0]["node"] != rows[0]["node"]
    assert [r["params"] for r in rows_b] == [r["params"] for r in rows]


def test_plot_reads_a_running_node_and_ctrl_c_still_ends_with_the_summary(tmp_path):
    import signal
    import subprocess
    import sys

    from tests.e2e.cluster import REPO, wait_for

    study = write_study(tmp_path / "study.toml", n_trials=5, epochs=3, sleep=0.0)
    node = NodeProc("a", tmp_path, ["--study", str(study), "--linger"]).start()
    try:
        wait_for(lambda: any(e.get("event") == "done" for e in node.events()), 120,
                 "the study to finish")
        out = tmp_path / "study.svg"
        res = subprocess.run([sys.executable, "-m", "p2phpo", "plot", "--seed", node.addr,
                              "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        assert "<svg" in out.read_text() and "wrote" in res.stderr
        node.signal(signal.SIGINT)
        node.wait(60)
    finally:
        node.kill()
    last = json.loads(node.out.read_text().splitlines()[-1])
    assert last["event"] == "summary" and last["best"]["trial"]
