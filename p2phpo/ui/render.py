"""Pure renderers: ``NodeSnapshot`` -> rich renderables, plus plain event lines.

Every function here is a function of its arguments alone (no clock, no I/O),
so the view is tested by rendering to a recorded console. ``render`` puts
the parts together; ``format_event_line`` and ``event_json`` are the
non-terminal forms of the event log.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from p2phpo.core.health import member_counts
from p2phpo.ui.snapshot import (
    Event,
    FinishedTrial,
    MemberRow,
    NodeSnapshot,
    RunningTrial,
    node_hex,
)

MEMBER_STYLE = {"ALIVE": "green", "SUSPECT": "yellow", "DEAD": "bold red", "LEFT": "dim"}
STATE_STYLE = {
    "COMPLETE": "green", "PRUNED": "yellow", "FAILED": "red",
    "ABANDONED": "magenta", "SUPERSEDED": "dim", "RUNNING": "cyan",
}
EVENT_STYLE = {
    "listening": "green", "joined": "green", "alive": "green", "suspected": "yellow", "dead": "bold red",
    "refuted": "cyan", "left": "dim", "reclaimed": "magenta", "done": "bold green",
    "finished": "green", "started": "cyan", "refused": "bold red",
    "waiting": "bold yellow", "alone": "bold yellow", "rejecting": "bold red", "lingering": "yellow",
}
MAX_EVENTS = 10


# -- small formatters --------------------------------------------------------------


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_rate(bytes_per_s: float) -> str:
    for unit, scale in (("MB/s", 1e6), ("KB/s", 1e3)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.1f} {unit}"
    return f"{bytes_per_s:.0f} B/s"


def short_id(node: int | None) -> str:
    return node_hex(node)[:8]


def fmt_bytes(n: float) -> str:
    """``1.2 MB`` (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_clock(wall: float) -> str:
    """Local wall-clock time of day (the plain log lines use UTC)."""
    return _dt.datetime.fromtimestamp(wall).strftime("%H:%M:%S")


# -- header --------------------------------------------------------------------------


def _security(snap: NodeSnapshot) -> Text:
    if snap.insecure:
        return Text("INSECURE: no cluster key, traffic is unauthenticated and readable",
                    style="bold red")
    if snap.keyed:
        return Text("key: AES-256-GCM", style="green")
    return Text("no key (loopback only)", style="yellow")


def bar(done: int, total: int, width: int, style: str = "green") -> Text:
    """A text progress bar: ``━`` done, ``─`` to go (readable without colour too)."""
    filled = 0 if total <= 0 else round(width * min(max(done, 0), total) / total)
    text = Text("━" * filled, style=style)
    text.append("─" * (width - filled), style="dim")
    return text


def _budget(snap: NodeSnapshot) -> Text:
    tail = f"{snap.claimed} claimed · {len(snap.running)} running"
    if snap.n_trials is None:
        return Text(f"open-ended · {snap.finished} finished · {tail}")
    text = bar(snap.finished, snap.n_trials, 30, "bold green" if snap.done else "green")
    text.append(f" {snap.finished}/{snap.n_trials} finished", style="bold")
    if snap.finished > snap.n_trials:  # a partition let both sides count
        text.append(f" · overshoot {snap.finished - snap.n_trials}", style="yellow")
    if snap.done:
        text.append(" · study done", style="bold green")
    text.append(f" · {tail}")
    return text


def _best(snap: NodeSnapshot) -> Text:
    if snap.best_value is None:
        return Text("no complete trial yet", style="dim")
    text = Text(fmt_value(snap.best_value), style="bold green")
    text.append(f"  trial {snap.best_trial}  ", style="dim")
    text.append(fmt_params(snap.best_params))
    return text


def render_header(snap: NodeSnapshot) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    node = Text(f"{node_hex(snap.node_id)}")
    if snap.node_addr:
        node.append(f" @ {snap.node_addr}")
    grid.add_row("node", node)
    grid.add_row("budget", _budget(snap))
    grid.add_row("best", _best(snap))
    grid.add_row("dataset", Text(snap.dataset_source or "-"))
    grid.add_row("security", _security(snap))
    if snap.network:
        grid.add_row("network", Text(snap.network, style="" if snap.network_ok else "bold yellow"))
    title = Text("p2phpo · ", style="bold")
    title.append(snap.study or "(no study yet)", style="bold cyan")
    title.append(f" · {snap.direction} {snap.metric}", style="")
    border = "red" if snap.insecure else "blue"
    return Panel(grid, title=title, title_align="left", border_style=border, box=box.ROUNDED)


# -- members -------------------------------------------------------------------------


def _ack(m: MemberRow) -> str:
    if m.is_self:
        return "-"
    return "never" if m.last_ack_age is None else f"{fmt_duration(m.last_ack_age)} ago"


_MEMBER_ORDER = {"DEAD": 0, "SUSPECT": 1, "ALIVE": 2, "LEFT": 3}


def _more(shown: int, total: int, what: str) -> Text | None:
    return Text(f"… {total - shown} more {what}", style="dim") if total > shown else None


def render_members(members: tuple[MemberRow, ...] | list[MemberRow], limit: int = 12) -> Table:
    """This node first, then members in trouble (DEAD, SUSPECT), then the rest."""
    table = Table(title=f"members ({len(members)})", title_justify="left",
                  box=box.SIMPLE_HEAD, expand=True)
    table.add_column("node", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("inc", justify="right")
    table.add_column("last ack", justify="right", no_wrap=True)
    table.add_column("trials", justify="right")
    ordered = sorted(members, key=lambda m: (not m.is_self, _MEMBER_ORDER.get(m.state, 4), m.id))
    for m in ordered[:limit]:
        name = Text(node_hex(m.id))
        if m.is_self:
            name.append(" (this node)", style="dim")
        state = Text(m.state, style=MEMBER_STYLE.get(m.state, ""))
        table.add_row(name, Text(m.addr or "-"), state, str(m.incarnation), _ack(m), str(m.trials_run))
    more = _more(limit, len(ordered), "members")
    if more is not None:
        table.add_row(more, "", "", "", "", "")
    if not members:
        table.add_row(Text("no members known yet", style="dim"), "", "", "", "", "")
    return table


# -- trials --------------------------------------------------------------------------


def _progress(t: RunningTrial) -> Text:
    step = t.step or 0
    if t.max_epochs is None:
        return Text(f"step {step}" if t.step is not None else "starting", style="cyan")
    text = bar(step, t.max_epochs, 20)
    text.append(f" {step}/{t.max_epochs}")
    return text


def render_running(running: tuple[RunningTrial, ...] | list[RunningTrial], limit: int = 12) -> Table:
    table = Table(title=f"running ({len(running)})", title_justify="left",
                  box=box.SIMPLE_HEAD, expand=True)
    table.add_column("trial", no_wrap=True)
    table.add_column("slot", justify="right")
    table.add_column("epochs", no_wrap=True)
    table.add_column("last", justify="right")
    table.add_column("params", overflow="ellipsis", no_wrap=True, ratio=1)
    for t in running[:limit]:
        name = Text(t.trial)
        if t.retry_of:
            name.append(" retry", style="magenta")
        table.add_row(name, str(t.slot), _progress(t), fmt_value(t.last_value),
                      fmt_params(t.params))
    more = _more(limit, len(running), "running")
    if more is not None:
        table.add_row(more, "", "", "", "")
    if not running:
        table.add_row(Text("idle", style="dim"), "", "", "", "")
    return table


def _finished_state(t: FinishedTrial) -> Text:
    if t.pruned:
        at = f" @{t.step}" if t.step is not None else ""
        return Text(f"✂ PRUNED{at}", style=STATE_STYLE["PRUNED"])
    return Text(t.state, style=STATE_STYLE.get(t.state, ""))


def render_recent(recent: tuple[FinishedTrial, ...] | list[FinishedTrial]) -> Table:
    table = Table(title="recent trials", title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("trial", no_wrap=True)
    table.add_column("slot", justify="right")
    table.add_column("state", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("time", justify="right")
    table.add_column("params / error", overflow="ellipsis", no_wrap=True, ratio=1)
    for t in recent:
        detail = Text(t.error, style="red") if t.error else Text(fmt_params(t.params))
        table.add_row(t.trial, str(t.slot), _finished_state(t), fmt_value(t.value),
                      fmt_duration(t.duration), detail)
    if not recent:
        table.add_row(Text("none finished yet", style="dim"), "", "", "", "", "")
    return table


# -- ledger health and events -------------------------------------------------------------


def render_ledger(snap: NodeSnapshot) -> Table:
    h = snap.ledger
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    entries = Text(f"{h.entries}")
    if h.pending:
        entries.append(f"  ({h.pending} waiting for a gap)", style="yellow")
    grid.add_row("entries", entries)
    grid.add_row("vv hash", f"{h.vv_hash:016x}")
    if h.peers_total:
        ok = h.peers_agree == h.peers_total
        agree = Text(f"{h.peers_agree}/{h.peers_total} peers agree",
                     style="green" if ok else "yellow")
    else:
        agree = Text("no peers", style="dim")
    grid.add_row("in sync", agree)
    grid.add_row("traffic", f"in {fmt_rate(h.bytes_in_per_s)} · out {fmt_rate(h.bytes_out_per_s)}")
    dropped = [f"{reason} {n}" for reason, n in sorted(h.dropped.items()) if n]
    grid.add_row("dropped", Text(", ".join(dropped), style="yellow") if dropped
                 else Text("none", style="dim"))
    return grid


def _event_rest(e: Event) -> str:
    parts = []
    if e.node is not None:
        parts.append(f"node {node_hex(e.node)}")
    if e.trial:
        parts.append(f"trial {e.trial}")
    if e.detail:
        parts.append(e.detail)
    return " ".join(parts)


def describe_event(e: Event) -> str:
    """The event without its time, e.g. ``dead node 1a2b3c4d5e6f7081 no ack in 5.0s``."""
    rest = _event_rest(e)
    return f"{e.kind} {rest}" if rest else e.kind


def render_events(events: tuple[Event, ...] | list[Event], limit: int = MAX_EVENTS) -> Table:
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="dim", no_wrap=True, min_width=8)
    grid.add_column(no_wrap=True, min_width=9)
    grid.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
    shown = list(events)[-limit:]
    for e in shown:
        kind = Text(e.kind, style=EVENT_STYLE.get(e.kind, ""))
        grid.add_row(fmt_clock(e.wall), kind, _event_rest(e))
    if not shown:
        grid.add_row("", Text("no events yet", style="dim"), "")
    return grid


def render_remote(remote: tuple[str, dict[str, Any]]) -> Panel:
    """The seed's own health, as it reported it (``status --seed``)."""
    name, h = remote
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    drops = {k: v for k, v in (h.get("dropped") or {}).items() if v}
    grid.add_row("dropped", Text(", ".join(f"{v} {k}" for k, v in sorted(drops.items())) or "none",
                                 style="bold red" if drops else ""))
    t = h.get("traffic") or {}
    grid.add_row("traffic", Text(f"in {fmt_bytes(t.get('bytes_in', 0))} "
                                 f"({t.get('datagrams_in', 0)} datagrams), out "
                                 f"{fmt_bytes(t.get('bytes_out', 0))} "
                                 f"({t.get('datagrams_out', 0)} datagrams)"))
    led = h.get("ledger") or {}
    grid.add_row("ledger", Text(f"{led.get('entries', 0)} entries from {led.get('origins', 0)} nodes"))
    grid.add_row("members", Text(member_counts(h)))
    running = h.get("running") or []
    grid.add_row("running", Text(", ".join(running) if running else "no trial"))
    if h.get("network"):
        grid.add_row("network", Text(str(h["network"])))
    title = Text(f"{name}'s own health", style="bold")
    if h.get("uptime") is not None:
        title.append(f" · up {fmt_duration(float(h['uptime']))}", style="dim")
    return Panel(grid, title=title, title_align="left", border_style="magenta", box=box.ROUNDED)


def render(snap: NodeSnapshot, *, max_rows: int = 12) -> Group:
    """The whole status view, top to bottom; long tables show ``max_rows`` rows."""
    bottom = Table.grid(expand=True, padding=(0, 2))
    bottom.add_column(ratio=1)
    bottom.add_column(ratio=2)
    bottom.add_row(
        Panel(render_ledger(snap), title="ledger", title_align="left", border_style="dim"),
        Panel(render_events(snap.events), title="events", title_align="left", border_style="dim"),
    )
    remote = [render_remote(snap.remote)] if snap.remote else []
    parts = [render_header(snap), *remote, render_members(snap.members, max_rows),
             render_running(snap.running, max_rows), render_recent(snap.recent), bottom]
    if snap.done:
        from p2phpo.ui.summary import render_summary

        parts.append(render_summary(snap))
    return Group(*parts)


# -- non-terminal forms ---------------------------------------------------------------


def format_event_line(e: Event) -> str:
    """One plain log line: ``2026-11-27T18:40:00Z dead node 1a2b... detail``."""
    stamp = _dt.datetime.fromtimestamp(e.wall, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {describe_event(e)}"


def event_json(e: Event) -> dict[str, Any]:
    """One event as a JSON object (the node's stdout when it is not a terminal)."""
    out: dict[str, Any] = {"event": e.kind, "wall": e.wall}
    if e.node is not None:
        out["node"] = node_hex(e.node)
    if e.trial:
        out["trial"] = e.trial
    if e.detail:
        out["detail"] = e.detail
    return out
