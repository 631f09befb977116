"""What a running node shows: its event list, member events, traffic rates and the
view's snapshot (``p2phpo.ui``). A mixin of :class:`p2phpo.runtime.node.Node`,
kept apart from the shell that runs the driver."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from p2phpo.core.entries import trial_id_str
from p2phpo.core.membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberRefuted,
    MemberSuspected,
)
from p2phpo.ui.snapshot import Event, MemberRow, default_state_dir, snapshot_from_ledger

log = logging.getLogger("p2phpo.node")


class NodeView:
    """The view side of a node; the attributes it reads are set by ``Node.__init__``."""

    events: list[Event]
    _last_rates: tuple[float, int, int] | None

    def _member_event(self, ev: Any) -> None:
        if isinstance(ev, MemberJoined | MemberAlive):
            self._event("joined", ev.node, detail=f"{ev.addr[0]}:{ev.addr[1]}")
        elif isinstance(ev, MemberSuspected):
            self._event("suspected", ev.node)
        elif isinstance(ev, MemberDead):
            self._event("dead", ev.node)
        elif isinstance(ev, MemberLeft):
            self._event("left", ev.node)
        elif isinstance(ev, MemberRefuted):
            self._event("refuted", ev.node, detail=f"incarnation {ev.incarnation}")

    def _event(self, kind: str, node: int | None, trial: Any = None, detail: str = "") -> None:
        tid = trial_id_str(trial) if isinstance(trial, tuple) else trial
        self.events.append(Event(time.time(), kind, node, tid, detail))
        del self.events[:-200]
        level = logging.WARNING if kind in ("waiting", "alone", "rejecting") else logging.INFO
        log.log(level, "%s node=%s trial=%s %s", kind, f"{node:016x}" if node else "-", tid or "-",
                detail)

    def _rates(self, counters: dict[str, Any], now: float) -> dict[str, float]:
        """Bytes/s in and out since the previous snapshot."""
        cur = (now, counters.get("bytes_in", 0), counters.get("bytes_out", 0))
        prev = self._last_rates or cur
        self._last_rates = cur
        dt = cur[0] - prev[0]
        if dt <= 0:
            return {}
        return {"bytes_in_per_s": (cur[1] - prev[1]) / dt, "bytes_out_per_s": (cur[2] - prev[2]) / dt}

    def snapshot(self) -> Any:
        assert self.rt is not None and self.summary is not None
        self.summary.update()
        counters = self.rt.counters()
        members = []
        now = asyncio.get_running_loop().time()
        per_node = self.summary.per_node  # kept up to date from ledger.changes
        for m in self.rt.core.members():
            age = None if m.last_ack is None else max(0.0, now - m.last_ack)
            members.append(MemberRow(m.node, f"{m.addr[0]}:{m.addr[1]}", m.state.name,
                                     m.incarnation, age, per_node.get(m.node, 0),
                                     m.node == self.node_id))
        ds = self.worker_info.get("dataset") or {}
        source = f"{ds.get('name')} ({ds.get('source')})" if ds else None
        agree, total = self.rt.core.agreement()
        health = {"dropped": dict(counters.get("dropped", {})), "peers_agree": agree,
                  "peers_total": total, **self._rates(counters, now)}
        return snapshot_from_ledger(
            self.ledger, summary=self.summary, health=health, node_id=self.node_id,
            node_addr=f"{self.addr[0]}:{self.addr[1]}", members=tuple(members),
            events=tuple(self.events[-50:]), keyed=self.keyed, **self.net.snapshot_fields(source),
            state_dir=str(self.opts.state_dir or default_state_dir()),
            insecure=self.opts.insecure and not self.keyed, wall=time.time(),
            **({"done": True} if self.done else {}),
        )
