"""Status view and export benchmark: cost of one refresh and of one export.

    python benchmarks/ui.py [--trials 1000 10000]

A node refreshes its view twice a second on the event loop. Baseline, in the
same process on the same ledger: ``snapshot_from_ledger`` rescanning every
trial. Compared: the incremental ``TrialSummary`` after one new finished
trial, its first build, rendering the view to a 140-column console, and
writing every trial as jsonl and csv.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

from p2phpo.core.entries import Claim, Report, Result, Status, StudyEntry  # noqa: E402
from p2phpo.core.ledger import Ledger  # noqa: E402
from p2phpo.export import write_rows  # noqa: E402
from p2phpo.ui.render import render  # noqa: E402
from p2phpo.ui.snapshot import TrialSummary, snapshot_from_ledger  # noqa: E402

SPEC = {"study": {"name": "bench", "direction": "maximize", "n_trials": 1 << 20},
        "objective": {"max_epochs": 20}}


def build(n: int, rng: random.Random) -> Ledger:
    led = Ledger()
    led.new(1, StudyEntry, wall=0.0, spec=SPEC, fingerprint="b" * 32)
    for i in range(n):
        node = 1 + i % 16
        params = {"lr": rng.random(), "width": rng.randrange(32, 1024), "act": "relu"}
        c = led.new(node, Claim, wall=float(i), slot=i, params=params)
        for step in range(1, 4):
            led.new(node, Report, wall=float(i), trial=c.key, step=step, value=rng.random())
        if i < n - 16:
            led.new(node, Result, wall=float(i), trial=c.key, status=Status.COMPLETE,
                    value=rng.random(), duration=1.0)
    return led


def ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def one_size(n: int) -> list[list]:
    rng = random.Random(n)
    led = build(n, rng)
    full = ms(lambda: snapshot_from_ledger(led), 5)
    first = ms(lambda: snapshot_from_ledger(led, summary=TrialSummary(led)), 3)
    summary = TrialSummary(led)
    snapshot_from_ledger(led, summary=summary)
    slot = iter(range(n, 10 * n))

    def step() -> None:
        c = led.new(2, Claim, wall=1e9, slot=next(slot), params={"lr": 0.1, "width": 64, "act": "relu"})
        led.new(2, Result, wall=1e9, trial=c.key, status=Status.COMPLETE, value=0.5, duration=1.0)
        snapshot_from_ledger(led, summary=summary)

    incr = ms(step, 20)
    snap = snapshot_from_ledger(led, summary=summary)
    con = Console(file=io.StringIO(), width=140)
    draw = ms(lambda: con.print(render(snap)), 5)
    jsonl = ms(lambda: write_rows(led, "jsonl", io.StringIO()), 3)
    csv = ms(lambda: write_rows(led, "csv", io.StringIO()), 3)
    return [
        [n, "snapshot, full rescan (baseline)", full, 1.0],
        [n, "snapshot, TrialSummary first build", first, first / full],
        [n, "snapshot, TrialSummary after 1 new trial", incr, incr / full],
        [n, "render to 140 columns", draw, draw / full],
        [n, "export jsonl", jsonl, jsonl / full],
        [n, "export csv", csv, csv / full],
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    rows = [row for n in args.trials for row in one_size(n)]
    emit("ui", "status view refresh and export (best of N, ms)",
         ["trials", "what", "ms", "vs full rescan"], rows)


if __name__ == "__main__":
    main()
