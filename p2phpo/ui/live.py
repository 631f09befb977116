"""Drive the status view: ``rich.live.Live`` on a terminal, event lines otherwise.

``get_snapshot`` is any callable returning a ``NodeSnapshot`` (or an
awaitable of one); it is called once per refresh on the event loop, so it
must be cheap (the runtime keeps the parts up to date and only assembles
them). Rendering is pure; only this module writes to the console.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.live import Live

from p2phpo.ui.render import event_json, render
from p2phpo.ui.snapshot import Event, NodeSnapshot
from p2phpo.ui.summary import summary_json

SnapshotSource = Callable[[], NodeSnapshot | Awaitable[NodeSnapshot]]


async def _get(get_snapshot: SnapshotSource) -> NodeSnapshot:
    snap = get_snapshot()
    if inspect.isawaitable(snap):
        snap = await snap
    return snap


async def _wait(stop_event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop_event`` is set; True when it is set."""
    try:
        await asyncio.wait_for(stop_event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def run_live(
    get_snapshot: SnapshotSource,
    stop_event: asyncio.Event,
    refresh: float = 0.5,
    *,
    console: Console | None = None,
    transient: bool = False,
) -> NodeSnapshot:
    """Redraw the view every ``refresh`` seconds until ``stop_event`` is set.

    On a console that is not a terminal, print each new event as one JSON
    line instead (see ``run_events``). Returns the last snapshot shown, after
    drawing it once more so the final state stays on screen.
    """
    console = console or Console()
    if not console.is_terminal:
        return await run_events(get_snapshot, stop_event, refresh, console=console)
    snap = await _get(get_snapshot)
    with Live(render(snap), console=console, auto_refresh=False, transient=transient,
              redirect_stdout=False, redirect_stderr=False) as live:
        while not await _wait(stop_event, refresh):
            snap = await _get(get_snapshot)
            live.update(render(snap), refresh=True)
        snap = await _get(get_snapshot)
        live.update(render(snap), refresh=True)
    return snap


class EventPrinter:
    """Prints each event of successive snapshots once, as a JSON line.

    Snapshots carry only recent events, so events seen before are remembered
    (up to ``memory`` of them) and skipped.
    """

    def __init__(self, console: Console, memory: int = 4096) -> None:
        self.console = console
        self.memory = memory
        self._seen: dict[Event, None] = {}

    def feed(self, snap: NodeSnapshot) -> int:
        printed = 0
        for event in snap.events:
            if event in self._seen:
                continue
            self._seen[event] = None
            line = json.dumps(event_json(event), sort_keys=True)
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            printed += 1
        while len(self._seen) > self.memory:
            del self._seen[next(iter(self._seen))]
        return printed

    def summary(self, snap: NodeSnapshot) -> None:
        """The study's last event: best trial, value, params, the reproduce command."""
        line = json.dumps(summary_json(snap), sort_keys=True)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


async def run_events(
    get_snapshot: SnapshotSource,
    stop_event: asyncio.Event,
    refresh: float = 0.5,
    *,
    console: Console | None = None,
) -> NodeSnapshot:
    """Print new events as JSON lines every ``refresh`` seconds until stopped."""
    printer = EventPrinter(console or Console())
    snap = await _get(get_snapshot)
    printer.feed(snap)
    while not await _wait(stop_event, refresh):
        snap = await _get(get_snapshot)
        printer.feed(snap)
    snap = await _get(get_snapshot)
    printer.feed(snap)
    if snap.study:  # the study was adopted: say how it went, best trial last
        printer.summary(snap)
    return snap
