"""``p2phpo node --metrics HOST:PORT``: the node's health in the Prometheus text format.

The same counters ``status --seed`` fetches (drops by reason, traffic,
ledger, members, running trials), served by ``prometheus_client`` from its
own thread. The event loop refreshes one plain dict every second and the
scrape thread only reads the latest one, so a scrape never touches live
protocol state. Loopback by default (``--metrics 9108`` is 127.0.0.1:9108).
``prometheus_client`` is optional: ``pip install 'p2phpo[metrics]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from p2phpo.runtime.resolve import ResolveError, resolve, show
from p2phpo.runtime.udp import RuntimeConfigError, parse_hostport

DEFAULT_HOST = "127.0.0.1"


class MetricsError(Exception):
    """--metrics cannot be served; ``str()`` is one sentence."""


def parse_metrics(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[v6]:PORT``; a bare port listens on loopback."""
    text = text.strip()
    if text.isdigit():
        text = f"{DEFAULT_HOST}:{text}"
    try:
        host, port = parse_hostport(text, -1)
    except RuntimeConfigError:
        raise MetricsError(f"cannot read --metrics {text!r}; use PORT or HOST:PORT") from None
    if port < 0:
        raise MetricsError(f"--metrics {text!r} needs a port, e.g. {text}:9108")
    return host, port


class Metrics:
    """Serves ``health()`` (refreshed on the loop) to Prometheus scrapes."""

    def __init__(self, health: Callable[[], dict[str, Any]]) -> None:
        self._health = health
        self.latest: dict[str, Any] = {}
        self._server: Any = None
        self.addr: tuple[str, int] | None = None

    async def start(self, spec: str) -> tuple[str, int]:
        try:
            from prometheus_client.core import CollectorRegistry
            from prometheus_client.exposition import start_http_server
        except ImportError:
            raise MetricsError("--metrics needs prometheus_client: pip install "
                               "'p2phpo[metrics]' (or prometheus_client)") from None
        host, port = parse_metrics(spec)
        try:
            host = (await resolve(host, port))[0][0]
        except ResolveError as exc:
            raise MetricsError(f"--metrics {spec}: {exc}") from None
        self.latest = self._health()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        try:
            self._server, _ = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise MetricsError(f"cannot serve --metrics on {show((host, port))}: "
                               f"{exc.strerror or exc}") from None
        self.addr = (host, self._server.server_address[1])
        return self.addr

    async def refresh(self, every: float = 1.0) -> None:
        """Keep ``latest`` fresh (run as a task on the node's loop)."""
        while True:
            await asyncio.sleep(every)
            self.latest = self._health()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return iter(families(self.metrics.latest))


def families(h: dict[str, Any]) -> list[Any]:
    """Prometheus metric families of one health dict (see :mod:`p2phpo.core.health`)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out: list[Any] = []
    drops = CounterMetricFamily("p2phpo_dropped", "Datagrams and frames dropped, by reason",
                                labels=["reason"])
    for reason, n in sorted((h.get("dropped") or {}).items()):
        drops.add_metric([reason], n)
    out.append(drops)
    t = h.get("traffic") or {}
    for name, what in (("bytes", "Bytes"), ("datagrams", "Datagrams")):
        fam = CounterMetricFamily(f"p2phpo_{name}", f"{what} of gossip traffic",
                                  labels=["direction"])
        for d in ("in", "out"):
            fam.add_metric([d], t.get(f"{name}_{d}", 0))
        out.append(fam)
    out.append(CounterMetricFamily("p2phpo_entries_merged", "Ledger entries merged from peers",
                                   value=t.get("entries_in", 0)))
    led = h.get("ledger") or {}
    out.append(GaugeMetricFamily("p2phpo_ledger_entries", "Entries in this node's replica",
                                 value=led.get("entries", 0)))
    out.append(GaugeMetricFamily("p2phpo_ledger_origins", "Nodes that wrote to the ledger",
                                 value=led.get("origins", 0)))
    members = GaugeMetricFamily("p2phpo_members", "Members by state, this node included",
                                labels=["state"])
    for state in ("ALIVE", "SUSPECT", "DEAD", "LEFT"):
        members.add_metric([state], (h.get("members") or {}).get(state, 0))
    out.append(members)
    out.append(GaugeMetricFamily("p2phpo_trials_running", "Trials this node is running",
                                 value=len(h.get("running") or [])))
    out.append(GaugeMetricFamily("p2phpo_uptime_seconds", "Seconds since the node started",
                                 value=h.get("uptime", 0.0)))
    tcp = h.get("tcp") or {}
    out.append(CounterMetricFamily("p2phpo_tcp_sessions", "Authenticated TCP sessions served",
                                   value=tcp.get("sessions", 0)))
    out.append(CounterMetricFamily("p2phpo_tcp_refused", "TCP connections refused before "
                                   "authentication", value=tcp.get("refused", 0)))
    return out
