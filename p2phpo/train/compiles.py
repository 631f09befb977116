"""XLA compile counting from JAX's own compile events (not timing), process-wide.

Split out of ``mlp.py`` (which re-exports ``COMPILE_LOG`` and ``compile_count``)."""

from __future__ import annotations

import threading
from typing import Any

import jax


class _CompileLog:
    """Counts XLA backend compiles and their seconds, process-wide."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    # Lowering and XLA compile; tracing is left out because nested traces
    # (a scan body inside a jitted function) would be counted twice.
    PHASES = ("/jax/core/compile/jaxpr_to_mlir_module_duration", EVENT)

    def __init__(self) -> None:
        self.compiles = 0
        self.seconds = 0.0
        self._by_thread: dict[int, float] = {}
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration: float, **_: Any) -> None:
        if event in self.PHASES:
            me = threading.get_ident()
            with self._lock:
                self.seconds += duration
                self.compiles += event == self.EVENT
                self._by_thread[me] = self._by_thread.get(me, 0.0) + duration

    def mine(self) -> float:
        """Compile seconds of the calling thread (a background compile is not counted
        against the epoch that trains beside it)."""
        with self._lock:
            return self._by_thread.get(threading.get_ident(), 0.0)


COMPILE_LOG = _CompileLog()


def compile_count() -> int:
    """Number of XLA compiles so far in this process."""
    return COMPILE_LOG.compiles
