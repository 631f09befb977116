"""Rich renderers and JSON for simulation results (pure: result dicts in, renderables out).

``render(result)`` shows one run: the invariants with their details, then the
numbers a reader checks first (detection, dissemination, bandwidth, busy
fraction, trials, best value over time). ``render_sweep(results)`` shows one
line per scenario over many seeds. ``to_json(result)`` is the
``p2phpo simulate --json`` object (docs/formats.md), one per line.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_SHOWN = [
    ("simulated_seconds", "simulated time (s)"),
    ("speed_x_realtime", "simulator speed (x real time)"),
    ("study_done_at", "study done at (s)"),
    ("trials_started", "trials started"),
    ("counted", "counted trials"),
    ("overshoot", "overshoot"),
    ("duplicates", "duplicates"),
    ("superseded", "superseded"),
    ("busy_fraction", "cluster busy fraction"),
    ("busy_fraction_until_last_claim", "busy fraction until the last claim"),
    ("detection_seconds_p50", "crash detected everywhere p50 (s)"),
    ("detection_seconds_p99", "crash detected everywhere p99 (s)"),
    ("dissemination_rounds_p50", "dissemination p50 (gossip rounds)"),
    ("dissemination_rounds_p99", "dissemination p99 (gossip rounds)"),
    ("false_dead", "healthy nodes declared DEAD"),
    ("bytes_per_second_per_node", "bytes/s per node"),
    ("max_datagram", "largest datagram (bytes)"),
    ("pushpull_syncs", "push-pull syncs"),
    ("best_value", "best value"),
]


def failed(result: dict[str, Any]) -> list[str]:
    return [name for name, v in result["invariants"].items() if not v["ok"]]


def render(result: dict[str, Any]) -> Group:
    """One run: header, invariants, metrics and the best value over time."""
    bad = failed(result)
    head = Text.assemble(
        (f"{result['scenario']}", "bold"), f"  nodes={result['nodes']} seed={result['seed']}  ",
        ("all invariants hold" if not bad else f"{len(bad)} invariant(s) FAILED",
         "green" if not bad else "bold red"),
        f"  trace {result['trace_hash'][:16]}")
    inv = Table(title="invariants", show_header=True, title_justify="left")
    inv.add_column("invariant")
    inv.add_column("ok", justify="center")
    inv.add_column("detail", overflow="fold")
    for name, v in result["invariants"].items():
        inv.add_row(name, Text("yes", "green") if v["ok"] else Text("NO", "bold red"), v["detail"])
    met = Table(title="metrics", show_header=False, title_justify="left")
    met.add_column("metric")
    met.add_column("value", justify="right")
    m = result["metrics"]
    for key, label in _SHOWN:
        if m.get(key) is not None:
            met.add_row(label, _fmt(m[key]))
    if m.get("dropped"):
        met.add_row("datagrams dropped by the network", ", ".join(f"{k} {v}" for k, v in m["dropped"].items()))
    curve = m.get("best_over_time") or []
    if curve:
        met.add_row("best value over time", "  ".join(f"{t:g}s:{v:.4g}" for t, v in curve[-6:]))
    return Group(head, inv, met)


def render_sweep(results: list[dict[str, Any]]) -> Table:
    """One row per scenario: runs passed, failing invariants, median numbers."""
    table = Table(title="simulation sweep", title_justify="left")
    for col in ("scenario", "runs ok", "failed invariants", "busy", "overshoot max",
                "detect p50 (s)", "wall max (s)"):
        table.add_column(col, justify="left" if col in ("scenario", "failed invariants") else "right")
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["scenario"], []).append(r)
    for name, runs in by.items():
        oks = sum(1 for r in runs if not failed(r))
        bad = sorted({f"{n} (seed {r['seed']})" for r in runs for n in failed(r)})
        busy = _median([r["metrics"]["busy_fraction"] for r in runs])
        det = _median([r["metrics"]["detection_seconds_p50"] for r in runs])
        table.add_row(name, Text(f"{oks}/{len(runs)}", "green" if oks == len(runs) else "bold red"),
                      ", ".join(bad[:4]) or "-", _fmt(busy),
                      str(max(r["metrics"].get("overshoot", 0) for r in runs)), _fmt(det),
                      _fmt(max(r["metrics"]["wall_seconds"] for r in runs)))
    return table


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=False, separators=(",", ":"))


def _median(values: list[Any]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    return vals[len(vals) // 2] if vals else None


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
