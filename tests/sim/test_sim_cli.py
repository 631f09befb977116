"""``p2phpo simulate``: report, JSON lines, exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from p2phpo.cli import app

runner = CliRunner()


def test_simulate_prints_invariants_and_exits_zero() -> None:
    res = runner.invoke(app, ["simulate", "kill-one", "--nodes", "5", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "all invariants hold" in res.output
    assert "crashed_dead_everywhere" in res.output


def test_simulate_json_is_one_object_per_run() -> None:
    res = runner.invoke(app, ["simulate", "steady", "--nodes", "4", "--seeds", "2", "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.splitlines() if line.strip()]
    assert [r["seed"] for r in lines] == [0, 1]
    assert all(r["scenario"] == "steady" and r["nodes"] == 4 for r in lines)
    assert all(v["ok"] for r in lines for v in r["invariants"].values())


def test_simulate_with_aes_gcm_runs_exactly_like_the_null_cipher() -> None:
    null = runner.invoke(app, ["simulate", "lossy-30", "--nodes", "4", "--json"])
    aes = runner.invoke(app, ["simulate", "lossy-30", "--nodes", "4", "--json", "--aes"])
    assert null.exit_code == aes.exit_code == 0
    a, b = json.loads(null.output), json.loads(aes.output)
    assert a["trace_hash"] == b["trace_hash"]  # same sizes, same rejections of corrupt bytes
    assert a["metrics"]["max_datagram"] == b["metrics"]["max_datagram"]


def test_unknown_scenario_is_a_usage_error() -> None:
    res = runner.invoke(app, ["simulate", "meteor-strike"])
    assert res.exit_code == 2
    assert "unknown scenario" in res.output


def test_a_failed_invariant_exits_one(monkeypatch) -> None:
    from p2phpo.core.search import SearchCore

    monkeypatch.setattr(SearchCore, "_reclaim_orphans", lambda self, now, wall: None)
    res = runner.invoke(app, ["simulate", "kill-one", "--nodes", "5"])
    assert res.exit_code == 1
    assert "FAILED" in res.output
