"""Node benchmark: idle CPU and RSS, event-loop lateness while training, catch-up time.

    python benchmarks/node.py [--trials 10000] [--idle-seconds 10]

1. Idle node: a node that finished its study and lingers (gossiping with
   two peers), CPU% and RSS of the node process (the worker excluded),
   sampled from /proc over ``--idle-seconds``; baseline: a bare Python
   process that imports the same libraries.
2. Timer lateness: an in-process node trains the MNIST MLP (1 epoch trials)
   in its worker subprocess while a probe task measures how late a 20 ms
   timer fires on the node's event loop; baseline: the same probe with no
   node running.
3. Catch-up: node A holds a ledger of ``--trials`` finished trials (three
   entries each) and lingers; an in-process node B joins with ``--seed`` and
   we time until B's ledger equals A's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import emit  # noqa: E402

from p2phpo.commands.node_options import node_options  # noqa: E402
from p2phpo.core.entries import Claim, Report, Result, Status, StudyEntry  # noqa: E402
from p2phpo.runtime.node import Node  # noqa: E402
from p2phpo.runtime.udp import new_event_loop  # noqa: E402
from p2phpo.storage import Storage  # noqa: E402
from p2phpo.study import StudySpec  # noqa: E402
from tests.e2e.cluster import REPO, free_port, write_study  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample(pid: int, seconds: float) -> tuple[float, float]:
    c0, t0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (proc_cpu_seconds(pid) - c0) / (time.monotonic() - t0), proc_rss_mb(pid)


def node_cmd(port: int, state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "p2phpo", "node", "--bind", f"127.0.0.1:{port}",
            "--state-dir", str(state), "--no-ui", *args]


def idle(tmp: Path, seconds: float) -> list[list]:
    study = write_study(tmp / "idle.toml", n_trials=3, epochs=1, sleep=0.0)
    ports = [free_port() for _ in range(3)]
    procs = []
    for i, port in enumerate(ports):
        extra = ["--study", str(study)] if i == 0 else ["--seed", f"127.0.0.1:{ports[0]}"]
        procs.append(subprocess.Popen(node_cmd(port, tmp / f"idle{i}", "--linger", *extra),
                                      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(8)  # join, run the 3 trials, settle
    cpu, rss = sample(procs[1].pid, seconds)
    base = subprocess.Popen([sys.executable, "-c", "import numpy, msgpack, rich, typer, "
                             "cryptography, uvloop, p2phpo.runtime.node, time; time.sleep(60)"])
    time.sleep(3)
    bcpu, brss = sample(base.pid, 2)
    for p in procs + [base]:
        p.terminate()
    for p in procs + [base]:
        p.wait(20)
    return [["idle node (lan profile, 3 members), CPU", f"{cpu:.2f} %", "< 2 %", f"{bcpu:.2f} %"],
            ["idle node RSS (worker excluded)", f"{rss:.0f} MB", "< 150 MB", f"{brss:.0f} MB"]]


async def lateness_probe(stop: asyncio.Event, period: float = 0.02) -> list[float]:
    loop = asyncio.get_running_loop()
    late = []
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(period)
        late.append(loop.time() - t - period)
    return late


async def lateness(tmp: Path, seconds: float) -> list[list]:
    stop = asyncio.Event()
    probe = asyncio.create_task(lateness_probe(stop))
    await asyncio.sleep(3)
    stop.set()
    base = await probe
    study = tmp / "mnist.toml"
    study.write_text((REPO / "examples" / "mnist_mlp.toml").read_text()
                     .replace("max_epochs = 5", "max_epochs = 2").replace("n_trials = 30", "n_trials = 200"))
    node = Node(node_options(study=study, bind=f"127.0.0.1:{free_port()}", state_dir=tmp / "late"))
    run = asyncio.create_task(node.run())
    while node.driver is None or node.driver.search is None or not node.driver.search.running:
        await asyncio.sleep(0.1)
    stop = asyncio.Event()
    probe = asyncio.create_task(lateness_probe(stop))
    await asyncio.sleep(seconds)
    stop.set()
    late = await probe
    trials = len(node.ledger.trials())
    node.request_stop()
    await run

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(0.99 * (len(xs) - 1))] * 1e3

    return [[f"timer lateness p99 while training ({trials} MNIST trials)", f"{p99(late):.1f} ms",
             "< 50 ms", f"{p99(base):.1f} ms"],
            ["timer lateness p50 while training", f"{statistics.median(late) * 1e3:.1f} ms", "",
             f"{statistics.median(base) * 1e3:.1f} ms"]]


def big_ledger(state: Path, study: Path, n: int) -> int:
    spec = StudySpec.load(study)
    rng = random.Random(0)
    with Storage.open(state) as st:
        led = st.ledger
        origins = [0x1000 + i for i in range(8)]
        st.append([led.new(st.node_id, StudyEntry, wall=time.time(), spec=spec.to_dict(),
                           fingerprint=spec.fingerprint(""))])
        batch = []
        for i in range(n):
            o = origins[i % len(origins)]
            c = Claim(origin=o, seq=led.next_seq(o), wall=1.7e9 + i, slot=i,
                      params={"x": rng.uniform(-5, 10), "y": rng.uniform(0, 15)})
            r = Report(origin=o, seq=c.seq + 1, wall=1.7e9 + i, trial=c.key, step=1, value=rng.random())
            res = Result(origin=o, seq=c.seq + 2, wall=1.7e9 + i, trial=c.key,
                         status=Status.COMPLETE, value=rng.random(), duration=1.0)
            batch += led.merge([c, r, res]).added
        st.append(batch)
        return len(led)


async def catch_up(tmp: Path, n: int) -> list[list]:
    study = write_study(tmp / "big.toml", n_trials=n, epochs=1, sleep=0.0)
    entries = big_ledger(tmp / "bigA", study, n)
    port = free_port()
    a = subprocess.Popen(node_cmd(port, tmp / "bigA", "--study", str(study), "--linger"),
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(4)
    node = Node(node_options(seeds=[f"127.0.0.1:{port}"], bind=f"127.0.0.1:{free_port()}",
                             state_dir=tmp / "bigB", linger=True))
    t0 = time.monotonic()
    run = asyncio.create_task(node.run())
    while len(node.ledger) < entries and time.monotonic() - t0 < 120:
        await asyncio.sleep(0.02)
    took = time.monotonic() - t0
    node.request_stop()
    await run
    a.terminate()
    a.wait(20)
    return [[f"catch-up of a {n:,}-trial ledger ({entries:,} entries), loopback",
             f"{took:.2f} s", "≤ 5 s", ""]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--train-seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = idle(tmp, args.idle_seconds)
        loop = new_event_loop()
        rows += loop.run_until_complete(lateness(tmp, args.train_seconds))
        rows += loop.run_until_complete(catch_up(tmp, args.trials))
        loop.close()
    emit("node", "Node: idle cost, loop lateness, catch-up",
         ["what", "measured", "goal", "baseline (same run)"], rows)


if __name__ == "__main__":
    main()
