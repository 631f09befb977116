"""``p2phpo plot``: one picture of a study, from any node's ledger.

Four panels, as a person tuning a model looks at a study:

1. optimization history: every finished trial's value in finish order
   (pruned ones at their last report), with the best-so-far line;
2. learning curves: every trial's reports by step, pruned and complete in
   two colours, the best trial on top;
3. parallel coordinates: one axis per parameter (log axes where the space is
   log), one line per complete trial coloured by its value;
4. parameter importance (``p2phpo.importance``, PED-ANOVA style).

:func:`plot_data` turns a ledger into plain lists (no matplotlib, tested on
its own); :func:`draw` renders them with matplotlib (the ``plots`` extra)
to ``.png``, ``.svg`` or ``.html`` (the SVG inline, with the best trial's
summary), by the file's suffix.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phpo.core.best import best_trial
from p2phpo.core.entries import trial_id_str
from p2phpo.core.frame import FrameBuilder
from p2phpo.core.ledger import Ledger, TrialState, TrialView
from p2phpo.export import exported
from p2phpo.importance import importance
from p2phpo.space import Choice, Space
from p2phpo.ui.snapshot import study_fields

SUFFIXES = (".png", ".svg", ".html")


class PlotError(Exception):
    """A plot that cannot be drawn; the message is one sentence for the user."""


@dataclass
class Curve:
    trial: str
    state: str  # COMPLETE | PRUNED | FAILED | RUNNING | ABANDONED
    steps: list[int]
    values: list[float]


@dataclass
class PlotData:
    study: str
    direction: str
    metric: str
    n_trials: int  # finished trials shown (COMPLETE, PRUNED, FAILED)
    history: list[tuple[int, float, str]]  # (finish order, value, state) of COMPLETE/PRUNED
    best_so_far: list[tuple[int, float]]
    curves: list[Curve]
    best: dict[str, Any] | None
    axes: list[dict[str, Any]] = field(default_factory=list)  # parallel coordinates
    lines: list[tuple[list[float], float]] = field(default_factory=list)  # (unit coords, value)
    pruned_lines: list[list[float]] = field(default_factory=list)
    importance: dict[str, float] | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _space(ledger: Ledger) -> Space | None:
    entry = ledger.study
    if entry is None:
        return None
    try:
        return Space.from_dict(entry.spec.get("space") or {})
    except Exception:  # a spec we cannot read still gets history and curves
        return None


def _finish_order(views: list[TrialView]) -> list[TrialView]:
    done = [v for v in views if v.state.finished and v.finished_wall is not None]
    return sorted(done, key=lambda v: (v.finished_wall, v.id))


def plot_data(ledger: Ledger) -> PlotData:
    """Everything the four panels show, as plain data."""
    fields = study_fields(ledger)
    direction = fields.get("direction", "minimize")
    views = exported(ledger)
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state.value] = counts.get(v.state.value, 0) + 1
    history, best_line, best_value = [], [], None
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    for i, v in enumerate(_finish_order(views)):
        value = v.value if v.value is not None else (v.last_report or (None, None))[1]
        if v.state in (TrialState.COMPLETE, TrialState.PRUNED) and value is not None:
            history.append((i, float(value), v.state.value))
        if v.state is TrialState.COMPLETE and v.value is not None:
            if best_value is None or better(v.value, best_value):
                best_value = v.value
            best_line.append((i, best_value))
    curves = [Curve(trial_id_str(v.id), v.state.value, sorted(v.reports),
                    [v.reports[s] for s in sorted(v.reports)]) for v in views if v.reports]
    best = best_trial(views, direction)
    data = PlotData(fields.get("study", "study"), direction, fields.get("metric", "value"),
                    sum(1 for v in views if v.state.counted), history, best_line, curves,
                    None if best is None else {"trial": trial_id_str(best.id),
                                               "value": best.value, "params": dict(best.params)},
                    counts=counts)
    space = _space(ledger)
    if space is not None and len(space):
        _parallel(data, space, views)
        data.importance = importance(FrameBuilder(space, direction).sync(ledger))
    return data


def _parallel(data: PlotData, space: Space, views: list[TrialView]) -> None:
    for name, p in space.params.items():
        if isinstance(p, Choice):
            data.axes.append({"name": name, "kind": "choice", "labels": [str(c) for c in p.values]})
        else:
            data.axes.append({"name": name, "kind": p.kind, "low": p.low, "high": p.high,
                              "log": bool(p.log)})
    for v in views:
        if v.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        try:
            u = [float(x) for x in space.encode(v.params)]
        except Exception:  # a peer's params outside the space: leave the line out
            continue
        if v.state is TrialState.PRUNED:
            data.pruned_lines.append(u)
        elif v.value is not None:
            data.lines.append((u, float(v.value)))


# -- drawing (matplotlib) -------------------------------------------------------------

def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError("p2phpo plot needs matplotlib; install it with "
                        "pip install 'p2phpo[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COMPLETE, PRUNED, BEST = "#1f77b4", "#d62728", "#2ca02c"


def _history(ax: Any, d: PlotData) -> None:
    done = [(i, y) for i, y, s in d.history if s == "COMPLETE"]
    pruned = [(i, y) for i, y, s in d.history if s == "PRUNED"]
    if pruned:
        ax.scatter(*zip(*pruned, strict=True), s=14, marker="x", color=PRUNED, alpha=0.45,
                   label=f"pruned ({len(pruned)}), at its last report")
    if done:
        ax.scatter(*zip(*done, strict=True), s=22, color=COMPLETE, label=f"complete ({len(done)})")
    if d.best_so_far:
        xs, ys = zip(*d.best_so_far, strict=True)
        last = max(i for i, _, _ in d.history) if d.history else xs[-1]
        ax.step(list(xs) + [last], list(ys) + [ys[-1]], where="post", color=BEST, lw=2,
                label="best so far")
    _scale(ax, [y for _, y, _ in d.history])
    _integer_x(ax)
    ax.set_title("Optimization history")
    ax.set_xlabel("trials, in the order they finished")
    ax.set_ylabel(d.metric)
    if d.history:
        ax.legend(loc="best", fontsize=8)
    else:
        _empty(ax, "no finished trial yet")


def _curves(ax: Any, d: PlotData) -> None:
    best = d.best["trial"] if d.best else None
    shown = {"PRUNED": False, "COMPLETE": False}
    for c in sorted(d.curves, key=lambda c: c.state == "COMPLETE"):
        if c.trial == best or c.state not in shown:
            continue
        color = PRUNED if c.state == "PRUNED" else COMPLETE
        label = None if shown[c.state] else c.state.lower()
        shown[c.state] = True
        ax.plot(c.steps, c.values, color=color, alpha=0.35 if c.state == "PRUNED" else 0.6,
                lw=1, marker="o" if len(c.steps) == 1 else None, ms=3, label=label)
    for c in d.curves:
        if c.trial == best:
            ax.plot(c.steps, c.values, color=BEST, lw=2.5, label=f"best trial {c.trial}")
    _scale(ax, [y for c in d.curves for y in c.values])
    _integer_x(ax)
    ax.set_title("Learning curves")
    ax.set_xlabel("step (epoch)")
    ax.set_ylabel(d.metric)
    if d.curves:
        ax.legend(loc="best", fontsize=8)
    else:
        _empty(ax, "no trial reported intermediate values")


def _axis_labels(axis: dict[str, Any]) -> tuple[str, str]:
    if axis["kind"] == "choice":
        return axis["labels"][0], axis["labels"][-1]
    return _num(axis["low"]), _num(axis["high"])


def _num(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _parallel_coords(ax: Any, d: PlotData, fig: Any) -> None:
    ax.set_title("Parallel coordinates (complete trials by value; pruned in grey)")
    if not d.axes or not d.lines:
        _empty(ax, "no complete trial yet")
        return
    import matplotlib as mpl

    values = [v for _, v in d.lines]
    lo, hi = min(values), max(values)
    norm = mpl.colors.Normalize(lo, hi if hi > lo else lo + 1.0)
    cmap = mpl.colormaps["viridis" if d.direction == "maximize" else "viridis_r"]
    xs = list(range(len(d.axes)))
    for coords in d.pruned_lines:
        ax.plot(xs, coords, color="#bbbbbb", alpha=0.5, lw=0.8)
    order = sorted(d.lines, key=lambda lv: lv[1], reverse=d.direction == "minimize")
    for coords, value in order:  # the best lines are drawn last, on top
        ax.plot(xs, coords, color=cmap(norm(value)), alpha=0.7, lw=1.2)
    for x, axis in zip(xs, d.axes, strict=True):
        ax.axvline(x, color="#444", lw=0.8)
        low, high = _axis_labels(axis)
        ax.text(x, -0.04, low, ha="center", va="top", fontsize=7)
        ax.text(x, 1.04, high, ha="center", va="bottom", fontsize=7)
        if axis["kind"] == "choice":
            k = len(axis["labels"])
            for i, label in enumerate(axis["labels"][1:-1], start=1):
                ax.text(x + 0.04, (i + 0.5) / k, label, fontsize=6, va="center", color="#555")
    ax.set_xticks(xs, [a["name"] + (" (log)" if a.get("log") else "") for a in d.axes],
                  rotation=20, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.12, 1.12)
    ax.set_xlim(-0.3, len(xs) - 0.7)
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=d.metric, fraction=0.04, pad=0.02)


def _importance(ax: Any, d: PlotData) -> None:
    ax.set_title("Parameter importance (PED-ANOVA style)")
    if not d.importance:
        _empty(ax, "needs at least 4 finished trials")
        return
    names = list(d.importance)[::-1]
    vals = [d.importance[n] for n in names]
    ax.barh(names, vals, color=COMPLETE)
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(vals) * 1.2 or 1)
    ax.set_xlabel("share of importance (sums to 1)")


def _scale(ax: Any, values: list[float]) -> None:
    """A log axis when positive values span over two decades (a few bad trials would
    otherwise flatten every good one onto the floor)."""
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")


def _integer_x(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")


def _title(d: PlotData) -> str:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(d.counts.items()))
    head = f"{d.study}: {d.direction} {d.metric} · {counts or 'no trials'}"
    if d.best:
        head += f"\nbest {_num(d.best['value'])} (trial {d.best['trial']})"
    return head


def figure(d: PlotData) -> Any:
    plt = _pyplot()
    fig, axs = plt.subplots(2, 2, figsize=(15, 10), layout="constrained")
    _history(axs[0][0], d)
    _curves(axs[0][1], d)
    _parallel_coords(axs[1][0], d, fig)
    _importance(axs[1][1], d)
    fig.suptitle(_title(d), fontsize=12)
    return fig


def draw(d: PlotData, out: Path) -> None:
    """Render ``d`` to ``out`` (.png, .svg or .html by its suffix)."""
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise PlotError(f"--out must end in {', '.join(SUFFIXES)}, got {out.name!r}")
    fig = figure(d)
    try:
        if suffix == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            text = _html(d, buf.getvalue())
            out.write_text(text, encoding="utf-8")
        else:
            fig.savefig(out, dpi=110)
    except OSError as exc:
        raise PlotError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        _pyplot().close(fig)


def _html(d: PlotData, svg: str) -> str:
    svg = svg[svg.find("<svg"):]
    rows = ""
    if d.best:
        params = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_num(v))}</td></tr>"
                         for k, v in d.best["params"].items())
        rows = (f"<h2>Best trial {html.escape(d.best['trial'])}: {html.escape(d.metric)} = "
                f"{html.escape(_num(d.best['value']))}</h2><table>{params}</table>")
    title = html.escape(d.study)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title} · p2phpo</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}</style></head>"
            f"<body><h1>{title}</h1>{rows}{svg}</body></html>\n")


