"""What a node adds for real networks: join diagnostics, its own health, metrics,
and the study's dataset shared with and fetched from peers.

Kept beside the node shell (``runtime/node.py``) so the shell stays a thin
loop around the driver; the node calls these hooks:

    net = NodeNet(node)
    net.start()                 # once listening: the diagnostics loop, --metrics
    net.on_note(note)           # the driver's join notices -> the view's network line
    options = net.worker_options(options)   # a dataset received from a peer replaces the study's
    if net.may_fetch(): ...     # the worker could not load the data, or loaded another
    net.serve_dataset(options, info)        # once the worker is ready
    net.stop()
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from p2phpo.core.driver import Note
from p2phpo.core.entries import trial_id_str
from p2phpo.core.health import core_health
from p2phpo.runtime.datasets import DatasetServer, FetchError, fetch_dataset
from p2phpo.runtime.metrics import Metrics, MetricsError
from p2phpo.train.share import find_blob

if TYPE_CHECKING:
    from p2phpo.runtime.node import Node

BUILTIN_OBJECTIVE = "mnist-mlp"
"""The objective whose dataset nodes can share (its loader is known)."""
WATCH_EVERY = 1.0
NETWORK_KINDS = ("waiting", "joined", "alone")


class NodeNet:
    """The network-facing extras of one node; see the module doc."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.t0 = time.monotonic()
        self.network: tuple[str, bool] | None = None  # (latest join notice, joined?)
        self.metrics: Metrics | None = None
        self.blob: str | None = None  # a dataset received from a peer
        self.fetching = False
        self.progress: tuple[str, int, int] | None = None
        self._step = -1

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Once the node listens: the diagnostics loop and --metrics (MetricsError)."""
        node = self.node
        node._spawn(self._watch_loop())
        if node.opts.metrics:
            self.metrics = Metrics(self.health)
            host, port = await self.metrics.start(node.opts.metrics)
            node._spawn(self.metrics.refresh())
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            node._event("metrics", node.node_id,
                        detail=f"Prometheus metrics at http://{where}/metrics")

    def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()

    # -- join diagnostics --------------------------------------------------------------
    async def _watch_loop(self) -> None:
        rt = self.node.rt
        assert rt is not None
        while True:
            await asyncio.sleep(WATCH_EVERY)
            if self.node.driver is not None:
                rt.call(self.node.driver.handle_watch, rt.seed_states(), rt.seed_errors())

    def on_note(self, note: Note) -> None:
        """Keep the latest join notice for the view's network line."""
        if note.node is None and note.kind in NETWORK_KINDS:
            self.network = (note.detail, note.kind == "joined")

    # -- health ------------------------------------------------------------------------
    def health_extra(self) -> dict[str, Any]:
        """What only the node knows of its health; the gossip core adds the rest."""
        node = self.node
        assert node.rt is not None
        c = node.rt.counters()
        running = sorted(node.driver._running) if node.driver is not None else []
        ready = bool(node.worker is not None and node.driver is not None and node.driver.search)
        ds = node.worker_info.get("dataset") or {}
        out: dict[str, Any] = {
            "role": "observer" if node.opts.observer else "worker" if ready else "joining",
            "uptime": round(time.monotonic() - self.t0, 1),
            "tcp": {"sessions": c.get("tcp_sessions", 0), "refused": c.get("tcp_refused", 0)},
            "dataset": f"{ds.get('name')} ({ds.get('source')})" if ds else "",
        }
        if running:
            out["running"] = [trial_id_str(t) for t in running][:64]
        if self.network:
            out["network"] = self.network[0]
        return out

    def health(self) -> dict[str, Any]:
        """This node's own health: what ``status --seed`` and ``--metrics`` show."""
        assert self.node.rt is not None
        return core_health(self.node.rt.core, self.health_extra())

    # -- datasets by content --------------------------------------------------------------
    def worker_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if self.blob is not None:  # received from a peer: exactly the cluster's arrays
            options = {**options, "dataset": self.blob}
            options.pop("data_dir", None)
        return options

    def may_fetch(self) -> bool:
        """A node that adopted the cluster's study may fetch its dataset (once)."""
        node = self.node
        return (node.opts.spec is None and node.ledger.study is not None
                and node.spec is not None and node.spec.objective == BUILTIN_OBJECTIVE
                and self.blob is None and not self.fetching)

    def serve_dataset(self, options: dict[str, Any], ds: dict[str, Any]) -> None:
        node = self.node
        if ds and node.spec is not None and node.spec.objective == BUILTIN_OBJECTIVE:
            assert node.rt is not None
            node.rt.core.dataset_server = DatasetServer(options, str(ds.get("fingerprint")))

    async def fetch(self, why: str) -> bool:
        """Get the study's dataset (cache, else a ready peer); True once ``blob`` is set
        (start the worker again); False after the node was told to stop."""
        node = self.node
        self.fetching = True
        entry, spec = node.ledger.study, node.spec
        assert entry is not None and spec is not None and node.rt is not None

        def accept(ds_fp: str) -> bool:
            return spec.fingerprint(ds_fp) == entry.fingerprint

        path = find_blob(accept)
        if path is None:
            node._event("dataset", None, detail=f"{why}; fetching the study's dataset from a peer")
            try:
                path = await fetch_dataset(await self._peers(entry.fingerprint), node.rt.tcp,
                                           node.node_id, accept, self._on_progress)
            except FetchError as exc:
                node.request_stop(2, str(exc))
                return False
            node._event("dataset", None, detail=f"received the study's dataset into {path}")
        self.blob = str(path)
        self.fetching = False
        return True

    async def _peers(self, fp: str, wait: float = 60.0) -> list[tuple[str, Any]]:
        """Ready members that run the study (waits up to ``wait`` s for one)."""
        rt = self.node.rt
        assert rt is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while True:
            peers = [(f"{m.node:016x} at {m.addr[0]}:{m.addr[1]}", m.addr)
                     for m in rt.core.members()
                     if m.node != self.node.node_id and m.state.name == "ALIVE"
                     and (m.meta or {}).get("ready") and (m.meta or {}).get("study") == fp]
            if peers or loop.time() >= end:
                return peers
            await asyncio.sleep(1.0)

    def _on_progress(self, name: str, got: int, total: int) -> None:
        step = 4 * got // total
        if step > self._step or got == total:
            self._step = step
            self.node._event("dataset", None, detail=f"fetching from {name}: {got / 1e6:.1f} of "
                             f"{total / 1e6:.1f} MB")
        self.progress = (name, got, total)

    # -- the view --------------------------------------------------------------------------
    def snapshot_fields(self, source: str | None) -> dict[str, Any]:
        if self.fetching and self.progress is not None:
            name, got, total = self.progress
            source = f"fetching from {name}: {got / 1e6:.1f} of {total / 1e6:.1f} MB"
        return {"network": self.network[0] if self.network else None,
                "network_ok": self.network[1] if self.network else True,
                "dataset_source": source}


__all__ = ["BUILTIN_OBJECTIVE", "MetricsError", "NodeNet"]
