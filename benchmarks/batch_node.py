"""Batched trials on one real node: trials per hour for ``p2phpo node --batch K``.

For each width cap (the built-in study's ``width`` parameter with its upper bound
set to W; everything else as ``p2phpo/default_study.toml``: TPE, ASHA, 5 epochs)
and each K, start ``p2phpo node --batch K`` on 127.0.0.1 with the built-in
``mnist-mlp`` objective (its packed batch hook) on a dataset, ``--grace 0``, and
wait for it to exit once its budget is spent. Runs of one repetition go round the
K values in a rotated order, so load from other jobs hits every K. Per run, from
the node's own export:

- node wall: spawning the node to its exit (startup, worker, data included);
- span: the first CLAIM to the last RESULT (the steady search, startup excluded);
- trials per hour = trials / span x 3600 (and / node wall); epochs per hour
  (ASHA prunes: a faster run may have pruned more, so epochs count the work);
- best validation accuracy of a COMPLETE trial (the study maximizes it);
- batches: how many trials started in a batch of more than one (node events).

A K given as ``K/L`` caps the node's worker lanes at L (``P2PHPO_WORKER_LANES``):
``4/1`` is K = 4 on one worker (batches packed or member after member), plain ``4``
one worker per core with each member on its own (``p2phpo/train/lanes.py``).

    python benchmarks/batch_node.py --ks 1 2 4 8 --widths 256 1024 --trials 32 --reps 2
    python benchmarks/batch_node.py --ks 1 4 4/1 --widths 256 --trials 32 --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
STUDY = REPO / "p2phpo" / "default_study.toml"
OUT = BENCH / "out"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_text(dataset: str, n_trials: int, width: int, epochs: int) -> str:
    text = STUDY.read_text()
    text = text.replace('dataset = "mnist"', f'dataset = "{dataset}"')
    text = text.replace("max_epochs = 5", f"max_epochs = {epochs}")
    text = text.replace("target = 0.985", "")  # run the whole budget
    text = text.replace('timeout = "2h"', "")
    text = text.replace("high = 1024, log = true", f"high = {width}, log = true")
    return text.replace("n_trials = 30", f"n_trials = {n_trials}")


def run_node(k: int, dataset: str, n_trials: int, width: int, epochs: int, tmp: Path,
             data_dir: str | None, lanes: int | None = None) -> dict:
    tmp.mkdir(parents=True)
    study = tmp / "study.toml"
    study.write_text(study_text(dataset, n_trials, width, epochs))
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "P2PHPO_OFFLINE": "1",
           "XDG_CACHE_HOME": str(tmp / "cache")}
    if lanes is not None:  # the most workers the node starts (p2phpo/train/lanes.py)
        env["P2PHPO_WORKER_LANES"] = str(lanes)
    cmd = [sys.executable, "-m", "p2phpo", "node", "--study", str(study), "--bind",
           f"127.0.0.1:{free_port()}", "--state-dir", str(tmp / "state"), "--grace", "0",
           "--no-ui", "--batch", str(k),
           *(["--data-dir", str(Path(data_dir).resolve())] if data_dir else [])]
    t0 = time.time()
    with open(tmp / "events.jsonl", "wb") as out, open(tmp / "stderr.txt", "wb") as err:
        code = subprocess.run(cmd, env=env, cwd=tmp, stdout=out, stderr=err, timeout=3600).returncode
    wall = time.time() - t0
    rows = [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "p2phpo", "export", "--state-dir", str(tmp / "state"), "--format",
         "jsonl"], env=env, capture_output=True, text=True).stdout.splitlines()]
    events = [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()
              if line.startswith("{")]
    if not rows:
        why = (tmp / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"the K = {k} node ran no trial (exit {code}): {' '.join(why) or 'no error printed'}")
    return summarize(k, width, rows, events, wall, code)


def parse_k(text: str) -> tuple[int, int | None]:
    """``K`` or ``K/L``: batch capacity K, at most L worker lanes (default: the node's)."""
    k, _, lanes = text.partition("/")
    return int(k), (int(lanes) if lanes else None)


def summarize(k: int, width: int, rows: list[dict], events: list[dict], wall: float,
              code: int) -> dict:
    done = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED", "FAILED")]
    first = min(r["started"] for r in rows)
    # a trial's end: its "finished" event (a batch member may wait for a worker lane
    # after its claim, so started + duration would end it early); else started + duration
    ends = [e["wall"] for e in events if e.get("event") == "finished" and "wall" in e]
    last = max(ends) if ends else max(r["started"] + (r["duration"] or 0.0) for r in done)
    span = last - first
    epochs = sum(len(r["reports"]) for r in done)
    best = max((r["value"] for r in done if r["state"] == "COMPLETE"), default=None)
    batched = sum(1 for e in events if e.get("event") == "started" and "(batch of" in e.get("detail", ""))
    return {"k": k, "width_max": width, "exit": code, "node_wall_s": wall, "span_s": span,
            "trials": len(done), "epochs": epochs,
            "complete": sum(1 for r in done if r["state"] == "COMPLETE"),
            "failed": sum(1 for r in done if r["state"] == "FAILED"),
            "trials_per_hour": len(done) / span * 3600, "trials_per_hour_wall": len(done) / wall * 3600,
            "epochs_per_hour": epochs / span * 3600, "best_val_accuracy": best,
            "started_in_a_batch": batched}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", nargs="+", default=["1", "2", "4", "8"],
                    help="batch capacities; K/L caps the node's worker lanes at L (4/1: one worker)")
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(OUT / "batch_node.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="p2phpo-batch-node-"))
    runs = []
    for rep in range(args.reps):
        for width in args.widths:
            order = args.ks[rep % len(args.ks):] + args.ks[:rep % len(args.ks)]
            for k in order:
                kk, lanes = parse_k(k)
                r = run_node(kk, args.dataset, args.trials, width, args.epochs,
                             tmp / f"w{width}-k{k.replace('/', 'l')}-r{rep}", args.data_dir, lanes)
                r["rep"], r["k"] = rep, k
                runs.append(r)
                print(json.dumps(r), flush=True)
    table = []
    for width in args.widths:
        base = None
        for k in args.ks:
            mine = [r for r in runs if r["k"] == k and r["width_max"] == width]
            tph = statistics.median(r["trials_per_hour"] for r in mine)
            eph = statistics.median(r["epochs_per_hour"] for r in mine)
            base = base or (tph, eph)
            table.append({"width_max": width, "k": k, "trials_per_hour": tph,
                          "vs_k1": tph / base[0], "epochs_per_hour": eph, "epochs_vs_k1": eph / base[1],
                          "trials_per_hour_wall": statistics.median(r["trials_per_hour_wall"] for r in mine),
                          "best_val_accuracy": [r["best_val_accuracy"] for r in mine],
                          "started_in_a_batch": [r["started_in_a_batch"] for r in mine]})
    print(f"{'W':>5} {'K':>4} {'trials/h':>9} {'x K=1':>6} {'epochs/h':>9} {'x K=1':>6} "
          f"{'trials/h (wall)':>15}  best val acc")
    for t in table:
        print(f"{t['width_max']:>5} {t['k']:>4} {t['trials_per_hour']:>9.0f} {t['vs_k1']:>6.2f} "
              f"{t['epochs_per_hour']:>9.0f} {t['epochs_vs_k1']:>6.2f} {t['trials_per_hour_wall']:>15.0f}  "
              + " ".join(f"{v:.4f}" if v is not None else "-" for v in t["best_val_accuracy"]))
    OUT.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "args": vars(args), "runs": runs, "table": table, "runs_dir": str(tmp),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load": os.getloadavg()}}, indent=1))


if __name__ == "__main__":
    main()
