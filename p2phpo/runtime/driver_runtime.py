"""The asyncio shell's sockets and timer, wired to the sans-IO node driver.

``runtime/udp.py`` owns the sockets, the TCP push-pulls and the one timer;
:class:`DriverRuntime` turns each of their inputs into one ``core/driver.py``
call and hands the driver's outputs back to them (``runtime/node.py`` runs it).
"""

from __future__ import annotations

import time
from typing import Any

from p2phpo.core.driver import NodeDriver
from p2phpo.runtime.udp import GossipRuntime


class DriverRuntime(GossipRuntime):
    """The sockets and the timer of a node, driving its :class:`NodeDriver`.

    Every input becomes one driver call with ``loop.time()`` and ``time.time()``;
    after each, ``on_actions`` gets the driver's actions, then the datagrams go
    out, the push-pulls start and the one timer is re-armed from ``get_timer()``.
    """

    driver: NodeDriver
    on_actions: Any

    def bind_driver(self, driver: NodeDriver, on_actions: Any) -> None:
        self.driver, self.on_actions = driver, on_actions

    def call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """``method(*args, now, wall, **kwargs)`` on the driver, then its outputs."""
        assert self._loop is not None
        out = method(*args, self._loop.time(), time.time(), **kwargs)
        self._flush()
        return out

    def _in_join(self, seeds: list[Any], now: float) -> None:
        self.driver.start(seeds, now, time.time())

    def _in_leave(self, now: float) -> None:
        self.driver.handle_leave(now, time.time())

    def _in_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.driver.handle_datagram(data, addr, now, time.time())

    def _in_timer(self, now: float) -> None:
        self.driver.handle_timer(now, time.time())

    def _in_stream(self, now: float) -> None:
        self.driver.handle_stream(now, time.time())

    def _in_pushpull_done(self, peer: int, ok: bool, now: float) -> None:
        self.driver.handle_pushpull_done(peer, ok, now, time.time())

    def _out_datagrams(self, now: float) -> list[tuple[bytes, Any]]:
        return self.driver.datagrams_to_send(now)

    def _out_tcp(self, now: float) -> list[Any]:
        return self.driver.tcp_requests()

    def _out_events(self) -> None:
        while actions := self.driver.take_actions():
            self.on_actions(actions)

    def _next_timer(self) -> float | None:
        return self.driver.get_timer()
