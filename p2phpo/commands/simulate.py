"""``p2phpo simulate``: run a fault scenario in the deterministic simulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer
from rich.console import Console

from p2phpo.core.profiles import PROFILES
from p2phpo.ui.errors import fail

# The scenarios of simulations/scenarios.py, for --help without importing the simulator
# (tests/unit/test_cli_hygiene.py checks that the two lists agree).
SCENARIO_HELP = {
    "steady": "no faults; node speeds differ 3x",
    "kill-one": "one node crashes for good",
    "kill-half": "half the nodes crash at once",
    "rolling-restart": "every node restarts in turn, disk kept",
    "partition-heal": "two halves cut apart, then healed",
    "one-way-partition": "one half cannot reach the other",
    "majorities-ring": "each node sees a different majority",
    "lossy-30": "30% loss, duplicates, reordering, corruption",
    "pause": "one process stopped (SIGSTOP) past its suspicion timeout",
    "churn": "random crashes, restarts, joins and leaves",
    "late-join": "nodes join mid-study with an empty ledger",
    "disk-loss": "a node loses its disk and rejoins as a new id",
}


def simulate(
    scenario: Annotated[str, typer.Argument(help="Scenario name, or 'all'.")],
    *,
    nodes: Annotated[int, typer.Option("--nodes", help="Nodes at the start.", min=2)] = 8,
    seed: Annotated[int, typer.Option("--seed", help="First seed.")] = 0,
    seeds: Annotated[int, typer.Option("--seeds", help="Run this many seeds: seed, seed+1, ...",
                                       min=1)] = 1,
    trials: Annotated[int | None, typer.Option("--trials", help="Cluster budget (default 4 per node).",
                                               min=1)] = None,
    profile: Annotated[str, typer.Option("--profile", help="Gossip profile: lan, local or wan.")] = "lan",
    aes: Annotated[bool, typer.Option("--aes", help="Seal datagrams with real AES-GCM "
                                      "(default: the size-matched null cipher).")] = False,
    batch: Annotated[int, typer.Option("--batch", help="Trials each node claims and runs at once "
                                       "(as p2phpo node --batch).", min=1, max=64)] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per run.")] = False,
) -> None:
    """Run SCENARIO and check every invariant; exit code 1 when one fails."""
    try:
        from simulations.report import failed, render, render_sweep, to_json
        from simulations.runner import run_scenario
        from simulations.scenarios import SCENARIOS
        from simulations.sim import SimConfig
    except ImportError:
        fail("the simulator ships with the source tree; run it from a checkout "
             "installed with `pip install -e .`")
        raise typer.Exit(2) from None
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    if any(n not in SCENARIOS for n in names):
        fail(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)} or all")
        raise typer.Exit(2)
    if profile not in PROFILES:
        fail(f"unknown profile {profile!r}; choose lan, local or wan")
        raise typer.Exit(2)
    config = replace(SimConfig(), n_trials=trials, profile=profile,
                     cipher="aes-gcm" if aes else "null", capacity=batch)
    out = Console()
    results = []
    for name in names:
        for s in range(seed, seed + seeds):
            result = run_scenario(name, nodes, s, config=config)
            results.append(result)
            if json_out:
                typer.echo(to_json(result))
            elif len(names) * seeds == 1:
                out.print(render(result))
    if not json_out and len(results) > 1:
        out.print(render_sweep(results))
    if any(failed(r) for r in results):
        raise typer.Exit(1)


simulate.__doc__ = ("Run SCENARIO and check every invariant; exit code 1 when one fails.\n\n"
                    "\b\nScenarios ('all' runs every one):\n"
                    + "\n".join(f"  {k:<18} {v}" for k, v in SCENARIO_HELP.items()))
