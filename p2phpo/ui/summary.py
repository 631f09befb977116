"""What a user wants when a study ends: the best trial and how to reproduce it.

``summary_json(snap)`` is the last JSON event of a headless node (``"event":
"summary"``); ``summary_text(snap)`` is its one-line human form (the very last
line a headless run prints names the best trial); ``render_summary(snap)`` is
the panel the live view shows once the study is done.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from p2phpo.ui.render import fmt_params, fmt_value
from p2phpo.ui.snapshot import NodeSnapshot

BUILTIN_TRAINABLE = ("mnist-mlp",)


def reproduce_command(snap: NodeSnapshot) -> str | None:
    """``p2phpo train --trial ID --state-dir DIR`` for the built-in objective, else None."""
    if snap.best_trial is None or (snap.objective and snap.objective not in BUILTIN_TRAINABLE):
        return None
    cmd = f"p2phpo train --trial {snap.best_trial}"
    if snap.state_dir:
        cmd += f" --state-dir {shlex.quote(snap.state_dir)}"
    else:
        cmd += " --state-dir DIR"
    return cmd


def summary_json(snap: NodeSnapshot) -> dict[str, Any]:
    """The ``summary`` event: study, trial counts, best trial, value, params, reproduce."""
    out: dict[str, Any] = {"event": "summary", "wall": snap.wall, "study": snap.study,
                           "done": snap.done, "direction": snap.direction,
                           "metric": snap.metric,
                           "trials": {k: v for k, v in snap.trial_counts.items() if v}}
    if snap.best_trial is None:
        out["best"] = None
        out["detail"] = "no trial completed"
        return out
    out["best"] = {"trial": snap.best_trial, "value": snap.best_value,
                   "params": dict(snap.best_params)}
    cmd = reproduce_command(snap)
    if cmd:
        out["reproduce"] = cmd
    out["detail"] = summary_text(snap)
    return out


def summary_text(snap: NodeSnapshot) -> str:
    """One line: ``best trial 1a2b…:7: val_accuracy 0.9812 with {...}``."""
    counted = sum(snap.trial_counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAILED"))
    if snap.best_trial is None:
        return f"study {snap.study!r}: no trial completed of {counted}"
    return (f"best trial {snap.best_trial}: {snap.metric} {fmt_value(snap.best_value)} of "
            f"{counted} trials, params {json.dumps(snap.best_params, sort_keys=True)}")


def render_summary(snap: NodeSnapshot) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if snap.best_trial is None:
        grid.add_row("best", Text("no trial completed", style="yellow"))
    else:
        grid.add_row("best trial", Text(snap.best_trial))
        grid.add_row(snap.metric, Text(fmt_value(snap.best_value), style="bold green"))
        grid.add_row("params", Text(fmt_params(snap.best_params)))
        cmd = reproduce_command(snap)
        if cmd:
            grid.add_row("reproduce", Text(cmd, style="cyan"))
    return Panel(grid, title="study done", title_align="left", border_style="green")
