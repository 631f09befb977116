"""Four keyed nodes on four "machines" (network namespaces), reached by host name.

Each node has its own non-loopback address (10.77.0.k, inside the namespaces
only) and finds the others through names in its hosts file. One node is cut
off and healed, one is killed and restarted from its state dir; the study
still uses its budget exactly, every node ends with the same ledger and every
result is in every export. Skips with the reason where namespaces cannot be
made (not Linux, not root, no iproute2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cluster import (
    ALLOW_EXAMPLE,
    COUNTED,
    REPO,
    counted_slots,
    export,
    wait_for,
    write_study,
)
from tests.e2e.netns import Lab, LabUnavailable

HOSTS = ["node1", "node2", "node3", "node4"]
PORT = 7946
N_TRIALS = 40


@pytest.fixture
def lab():
    try:
        made = Lab.create(HOSTS)
    except LabUnavailable as exc:
        pytest.skip(str(exc))
    yield made
    made.destroy()


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


class Machine:
    def __init__(self, lab: Lab, host: str, root: Path, args: list[str]) -> None:
        self.lab, self.host, self.args = lab, host, args
        self.state = root / host
        self.out = root / f"{host}.jsonl"
        self.err = root / f"{host}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Machine:
        argv = [sys.executable, "-m", "p2phpo", "node", "--bind", f"{self.host}:{PORT}",
                "--state-dir", str(self.state), "--profile", "local", "--no-ui", *self.args]
        full = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = self.lab.run(self.host, argv, stdout=self.out, stderr=self.err, env=full,
                                 cwd=REPO)
        return self

    def events(self) -> list[dict]:
        return _events(self.out)

    def started_trial(self) -> bool:
        return any(e["event"] == "started" for e in self.events())

    def busy(self) -> bool:
        evs = self.events()
        return sum(e["event"] == "started" for e in evs) > sum(
            e["event"] in ("finished", "stopped") for e in evs)


def test_four_machines_by_name_survive_a_cut_and_a_restart(lab: Lab, tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    subprocess.run([sys.executable, "-m", "p2phpo", "keygen", "--out", str(key)], cwd=REPO,
                   check=True, capture_output=True)
    # ~1.5 s a trial: the study outlasts a cut, a failure detection and a restart.
    study = write_study(tmp_path / "study.toml", n_trials=N_TRIALS, epochs=3, sleep=0.5)
    keyed = ["--key-file", str(key)]
    n1 = Machine(lab, "node1", tmp_path, ["--study", str(study), *keyed]).start()
    joiners = {h: Machine(lab, h, tmp_path, [*keyed, "--seed", f"node1:{PORT}", *ALLOW_EXAMPLE])
               for h in ("node2", "node3")}
    # node4 finds its seeds in P2PHPO_SEEDS, as under a job scheduler.
    n4 = Machine(lab, "node4", tmp_path, [*keyed, *ALLOW_EXAMPLE])
    for m in joiners.values():
        m.start()
    n4.start(env={"P2PHPO_SEEDS": f"node2:{PORT},node1:{PORT}"})
    n2, n3 = joiners["node2"], joiners["node3"]
    machines = [n1, n2, n3, n4]

    wait_for(lambda: n2.busy(), 120, "node2 to be running a trial")
    assert n2.proc is not None and n2.proc.poll() is None
    n2.proc.kill()  # node2 crashes mid-trial ...
    n2.proc.wait(10)
    n2.start()  # ... and comes back from its state dir

    wait_for(lambda: n3.started_trial(), 120, "node3 to start a trial")
    lab.cut("node3")  # node3 is cut off mid-study ...
    node3_id = n3.events()[0]["node"]
    wait_for(lambda: any(e["event"] == "dead" and e.get("node") == node3_id
                         for e in n1.events()), 120, "node1 to declare node3 dead")
    lab.heal("node3")  # ... and healed

    for m in machines:
        assert m.proc is not None
        code = m.proc.wait(180)
        assert code == 0, f"{m.host} exited {code}: {m.err.read_text()[-2000:]}"

    rows = {m.host: export(m.state) for m in machines}
    assert rows["node1"] == rows["node2"] == rows["node3"] == rows["node4"]  # equal ledgers
    slots = counted_slots(rows["node1"])
    assert sorted(slots) == list(range(N_TRIALS))  # the budget, exactly: every slot, no more
    results = {r["trial"] for r in rows["node1"] if r["state"] in COUNTED}
    for host, own in rows.items():  # every RESULT anyone wrote is in every export
        assert {r["trial"] for r in own if r["state"] in COUNTED} == results, host
    addrs = {e["detail"] for m in machines for e in m.events() if e["event"] == "listening"}
    assert {f"{lab.hosts[h]}:{PORT}" for h in HOSTS} <= {a.split()[-1] for a in addrs}
    workers = {r["node"] for r in rows["node1"] if r["state"] == "COMPLETE"}
    _report(lab, machines, rows["node1"], slots, workers)


def _report(lab: Lab, machines: list[Machine], rows: list[dict], slots: dict[int, int],
            workers: set[str]) -> None:
    """What a reader of the CI log (or the closing note) wants to see of the run."""
    print(f"\nmulti-host run: {len(machines)} namespaces, hosts "
          + ", ".join(f"{h}={a}" for h, a in lab.hosts.items()))
    for m in machines:
        evs = m.events()
        kinds: dict[str, int] = {}
        for e in evs:
            kinds[e["event"]] = kinds.get(e["event"], 0) + 1
        print(f"  {m.host}: {len(evs)} events {dict(sorted(kinds.items()))}")
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    dup = sum(n - 1 for n in slots.values())
    print(f"  ledger: {len(rows)} trials {dict(sorted(states.items()))}; "
          f"{len(slots)} counted slots of {N_TRIALS}, {dup} slot(s) with a second result; "
          f"{len(workers)} nodes completed trials")


def test_status_and_export_reach_a_machine_by_name(lab: Lab, tmp_path: Path) -> None:
    """An observer on another machine: by name, keyed; unkeyed needs --insecure."""
    key = tmp_path / "cluster.key"
    subprocess.run([sys.executable, "-m", "p2phpo", "keygen", "--out", str(key)], cwd=REPO,
                   check=True, capture_output=True)
    study = write_study(tmp_path / "study.toml", n_trials=200, epochs=3, sleep=0.3)
    n1 = Machine(lab, "node1", tmp_path, ["--study", str(study), "--key-file", str(key)]).start()
    wait_for(lambda: any(e["event"] == "finished" for e in n1.events()), 90,
             "node1 to finish a trial")
    cli = [sys.executable, "-m", "p2phpo"]
    st = lab.check("node2", [*cli, "status", "--seed", f"node1:{PORT}", "--json", "--key-file",
                             str(key)], cwd=REPO)
    assert st.returncode == 0, st.stderr
    snap = json.loads(st.stdout)
    assert f"{lab.hosts['node1']}:{PORT}" in {m["addr"] for m in snap["members"]}
    # The observer bound 0.0.0.0: it advertises its address on the way to the seed
    # (these namespaces have no default route, so "the outward interface" would be wrong).
    assert any(m["addr"].startswith(f"{lab.hosts['node2']}:") for m in snap["members"])
    ex = lab.check("node3", [*cli, "export", "--seed", f"node1:{PORT}", "--format", "jsonl",
                             "--key-file", str(key)], cwd=REPO)
    assert ex.returncode == 0, ex.stderr
    assert any(json.loads(line)["state"] == "COMPLETE" for line in ex.stdout.splitlines())
    bare = lab.check("node2", [*cli, "status", "--seed", f"node1:{PORT}", "--json"], cwd=REPO)
    assert bare.returncode == 2
    assert "--insecure" in bare.stderr and "Traceback" not in bare.stderr
    assert n1.proc is not None
    n1.proc.send_signal(signal.SIGINT)
    assert n1.proc.wait(30) == 0
