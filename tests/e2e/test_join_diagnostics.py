"""A node that cannot join says why within 30 s, naming the seed (real processes, 127.0.0.1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import REPO, NodeProc, free_port, wait_for, write_study


def keygen(path: Path) -> str:
    subprocess.run([sys.executable, "-m", "p2phpo", "keygen", "--out", str(path)], cwd=REPO,
                   check=True, capture_output=True)
    return str(path)


def said(n: NodeProc, kind: str, words: str) -> bool:
    return any(e["event"] == kind and words in e.get("detail", "") for e in n.events())


def test_silent_seed_wrong_key_and_wrong_label_are_each_reported(tmp_path: Path, nodes) -> None:
    k1, k2 = keygen(tmp_path / "k1"), keygen(tmp_path / "k2")
    study = write_study(tmp_path / "s.toml", n_trials=500, epochs=2, sleep=0.3)
    a = nodes("a", "--study", str(study), "--key-file", k1).start()
    seed = f"localhost:{a.port}"
    wrong_key = nodes("wrong_key", "--seed", seed, "--key-file", k2).start()
    wrong_label = nodes("wrong_label", "--seed", seed, "--key-file", k1,
                        "--cluster", "another").start()
    silent = nodes("silent", "--seed", f"localhost:{free_port()}", "--key-file", k1).start()
    good = nodes("good", "--seed", seed, "--key-file", k1).start()

    for n in (wrong_key, wrong_label):
        wait_for(lambda n=n: said(n, "waiting", f"seed {seed} (127.0.0.1) rejects"), 30,
                 f"{n.name} to say the seed rejects it")
    wait_for(lambda: said(silent, "waiting", "nothing listens at seed localhost:"), 30,
             "the node with a silent seed to say so")
    # The seed's side names the strays, and tells a wrong key from a wrong label.
    wait_for(lambda: said(a, "rejecting", f"from 127.0.0.1:{wrong_key.port} failed authentication"),
             30, "the seed to report the wrong key")
    wait_for(lambda: said(a, "rejecting", f"from 127.0.0.1:{wrong_label.port} carried another"),
             30, "the seed to report the wrong label")
    wait_for(lambda: said(good, "joined", f"joined the cluster through seed {seed}"), 30,
             "the good node to name its seed")
    assert (a.state / "node.log").read_text().count("failed authentication") >= 1
    assert "waiting" in (wrong_key.state / "node.log").read_text()
