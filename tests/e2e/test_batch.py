"""Real nodes with ``--batch K``: the exact budget, each member's reports and pruning its
own (a member pruned early leaves its batch, the others go on), and a node killed
mid-batch has every trial of its batch reclaimed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from examples.custom_objective import branin
from tests.e2e.cluster import NodeProc, counted_slots, export, wait_for

STUDY = """
[study]
name = "batch-e2e"
direction = "minimize"
n_trials = 28

[sampler]
name = "random"

[pruner]
name = "median"
n_startup_trials = 2
n_warmup_steps = 1

[objective]
name = "examples.custom_objective:objective"
max_epochs = 4
sleep = 0.25
noise = 0.0

[space]
x = { type = "float", low = -5.0, high = 10.0 }
y = { type = "float", low = 0.0, high = 15.0 }
"""


def batches(n: NodeProc, k: int) -> list[list[str]]:
    """The trials of each batch of ``k`` the node started (its events, in order)."""
    started = [e["trial"] for e in n.events()
               if e["event"] == "started" and f"(batch of {k})" in e.get("detail", "")]
    return [started[i:i + k] for i in range(0, len(started) - k + 1, k)]


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(p.name))
    return out


def test_batched_nodes_run_the_exact_budget_and_a_node_killed_mid_batch_is_reclaimed(
        tmp_path: Path, nodes) -> None:
    study = tmp_path / "s.toml"
    study.write_text(STUDY)
    a = nodes("a", "--study", str(study), "--batch", "4", "--grace", "2").start()
    c = nodes("c", "--seed", a.addr, "--batch", "3").start()
    wait_for(lambda: batches(c, 3), 60, "node c to start a batch of 3")
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:  # one worker per core: members train side by side
        assert len(children(a.proc.pid)) == 2 and len(children(c.proc.pid)) == 2
    time.sleep(0.4)
    c.proc.kill()  # SIGKILL mid-batch
    c.proc.wait(10)
    killed = export(c.state)
    assert a.wait(120) == 0, a.err.read_text()
    rows = export(a.state)
    slots = counted_slots(rows)
    assert sorted(slots) == list(range(28)) and set(slots.values()) == {1}, slots
    by_trial = {r["trial"]: r for r in rows}
    c_id = c.events()[0]["node"]
    lost = [r["trial"] for r in killed if r["state"] == "RUNNING" and r["node"] == c_id]
    assert len(lost) >= 2  # the batch c was training
    for tid in lost:  # each one abandoned and retried elsewhere
        assert by_trial[tid]["state"] == "ABANDONED"
        assert any(r["retry_of"] == tid for r in rows)
    runs = batches(a, 4)
    assert runs, "node a ran no batch of 4"
    ended_early = 0
    for batch in runs:
        members = [by_trial[t] for t in batch]
        for r in members:  # each member's curve is its own params' (noise 0)
            target = branin(r["params"]["x"], r["params"]["y"])
            for step, value in r["reports"].items():
                assert value == pytest.approx(target * (1 + 2 * 0.5 ** int(step)))
        full = [r for r in members if r["state"] == "COMPLETE"]
        early = [r for r in members if r["state"] == "PRUNED" and len(r["reports"]) < 4]
        if full and early:
            ended_early += 1
            assert all(len(r["reports"]) == 4 for r in full)
    assert ended_early, "no batch had a member pruned early beside one that completed"
