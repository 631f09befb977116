"""Same seed, same trace hash: in one process and across PYTHONHASHSEED values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from simulations.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ("from simulations.runner import run_scenario;"
           "print(run_scenario('churn', nodes=6, seed=5)['trace_hash'])")


def _hash_in_subprocess(hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run([sys.executable, "-c", SNIPPET], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    return out.stdout.strip()


def test_same_seed_same_trace_and_a_different_seed_differs() -> None:
    a = run_scenario("partition-heal", nodes=6, seed=3)
    b = run_scenario("partition-heal", nodes=6, seed=3)
    c = run_scenario("partition-heal", nodes=6, seed=4)
    assert a["trace_hash"] == b["trace_hash"]
    assert a["metrics"]["events"] == b["metrics"]["events"]
    assert c["trace_hash"] != a["trace_hash"]


def test_trace_hash_does_not_depend_on_pythonhashseed() -> None:
    here = run_scenario("churn", nodes=6, seed=5)["trace_hash"]
    assert _hash_in_subprocess("1") == _hash_in_subprocess("2") == here
