"""Whole learning curves: what recording every epoch costs in the ledger.

    python benchmarks/curves.py [--trials 60] [--epochs 20]

Runs one ``hp.optimize`` study (the Branin "training" of
examples/custom_objective.py, ASHA, reduction factor 3) twice in the same
process: with every epoch recorded (p2phpo today) and, as the baseline,
with only the pruner's rungs recorded (p2phpo before whole curves). Reports
the encoded bytes of one REPORT entry, and the ledger's entries and bytes
per trial and per epoch in both runs. Entry bytes are ``encode_entry``'s
(what storage appends and gossip piggybacks, before the envelope and any
signature).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import emit  # noqa: E402

import p2phpo as hp  # noqa: E402
from examples.custom_objective import objective  # noqa: E402
from p2phpo import study as study_mod  # noqa: E402
from p2phpo.core.entries import Kind, encode_entry  # noqa: E402


def run(trials: int, epochs: int, curve_steps: int) -> dict:
    counted = [0]

    def counting(trial):  # counts the epochs the objective actually trained
        report = trial.report

        def counted_report(value, step):
            counted[0] += 1
            report(value, step)
        trial.report = counted_report
        return objective(trial)

    saved = study_mod.CURVE_STEPS
    study_mod.CURVE_STEPS = curve_steps
    try:
        space = hp.Space(x=hp.Float(-5.0, 10.0), y=hp.Float(0.0, 15.0))
        r = hp.optimize(counting, space, n_trials=trials, pruner="asha", seed=0,
                        objective_options={"max_epochs": epochs})
    finally:
        study_mod.CURVE_STEPS = saved
    ledger = r.ledger
    entries = ledger.delta_since({})
    sizes = [len(encode_entry(e)) for e in entries]
    reports = [s for e, s in zip(entries, sizes, strict=True) if e.kind is Kind.REPORT]
    epochs_run = counted[0]
    return {"entries": len(entries), "bytes": sum(sizes), "reports": len(reports),
            "report_bytes": sum(reports), "epochs_run": epochs_run, "trials": len(r.trials),
            "one_report": reports[0] if reports else 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=20)
    a = ap.parse_args()
    whole = run(a.trials, a.epochs, study_mod.CURVE_STEPS)
    rungs = run(a.trials, a.epochs, 0)
    rows = []
    for name, m in (("every epoch (now)", whole), ("baseline: rungs only", rungs)):
        rows.append([name, m["trials"], m["epochs_run"], m["reports"], m["entries"],
                     f"{m['bytes']:,} B", f"{m['bytes'] / m['trials']:.0f} B",
                     f"{m['report_bytes'] / max(1, m['epochs_run']):.1f} B"])
    emit("curves", f"Ledger cost of whole curves: {a.trials} trials, max {a.epochs} epochs, ASHA "
         f"(one REPORT entry = {whole['one_report']} B)",
         ["recorded", "trials", "epochs run", "REPORT entries", "entries", "ledger bytes",
          "bytes / trial", "REPORT bytes / epoch run"], rows,
         {"whole": whole, "rungs": rungs, "report_entry_bytes": whole["one_report"]})


if __name__ == "__main__":
    main()
