"""``status --seed X --json`` shows X's own drop counters and health, not the observer's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import REPO, NodeProc, wait_for, write_study


def test_status_shows_the_seeds_own_drops_after_junk_is_thrown_at_it(tmp_path: Path) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=300, epochs=3, sleep=0.3)
    a = NodeProc("a", tmp_path, ["--study", str(study)]).start()
    try:
        wait_for(lambda: any(e["event"] == "started" for e in a.events()), 60, "a trial to start")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(200):  # hostile datagrams straight at the node
                s.sendto(os.urandom(90), ("127.0.0.1", a.port))
        out = subprocess.run([sys.executable, "-m", "p2phpo", "status", "--seed",
                              f"localhost:{a.port}", "--json"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert sum(doc["dropped"].values()) >= 150  # the seed's count, where the junk went
        h = doc["health"]
        assert h["of"] == f"localhost:{a.port} (127.0.0.1)" and h["addr"] == a.addr
        assert h["dropped"] == doc["dropped"] and h["role"] == "worker" and h["study"] == "e2e"
        assert h["ledger"]["entries"] > 0 and h["traffic"]["datagrams_in"] >= 150
        assert h["members"]["ALIVE"] >= 2 and len(h["running"]) <= 1
    finally:
        a.kill()


def test_metrics_serves_the_same_counters_to_prometheus(tmp_path: Path) -> None:
    import urllib.request

    from tests.e2e.cluster import free_port

    port = free_port()
    study = write_study(tmp_path / "s.toml", n_trials=300, epochs=3, sleep=0.3)
    a = NodeProc("a", tmp_path, ["--study", str(study), "--metrics", str(port)]).start()
    try:
        wait_for(lambda: any(e["event"] == "metrics" for e in a.events()), 60, "metrics")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(os.urandom(90), ("127.0.0.1", a.port))

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        def dropped() -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in scrape().splitlines()
                       if line.startswith("p2phpo_dropped_total{"))

        wait_for(lambda: dropped() >= 40, 20, "the junk to show in the scraped drop counters")
        text = scrape()
        assert 'p2phpo_members{state="ALIVE"} 1.0' in text
        assert "p2phpo_ledger_entries" in text and 'p2phpo_bytes_total{direction="in"}' in text
    finally:
        a.kill()
