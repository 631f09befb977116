"""The built-in mnist-mlp objective, timed: for benchmarks/train.py --study.

``timed_objective:mnist_mlp_timed`` runs ``p2phpo.train.mlp.mnist_mlp`` of
whichever checkout is first on ``PYTHONPATH`` (so the same wrapper times the
code before and after a change) and appends one JSON line per epoch and per
trial end to the file named by ``P2PHPO_TIMING_LOG``: a monotonic timestamp
(system-wide on Linux, so comparable with the benchmark's own clock), the
process's XLA compile count and the seconds JAX spent tracing, lowering and
compiling (from ``jax.monitoring`` events, not timing), and the worker's CPU
seconds and run-queue wait (Linux ``/proc/self/task/*/schedstat``: time its
threads were ready to run but waited for a core, i.e. time taken by other
processes; the worker runs at nice 10, so on a shared machine this is where
much of its wall goes). It only observes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import jax

from p2phpo.train import mlp

_lock = threading.Lock()
_overhead = [0.0]  # seconds of trace + lower + compile events, process-wide
_PHASES = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
           "/jax/core/compile/backend_compile_duration")


def _on_event(event: str, duration: float, **_: Any) -> None:
    if event in _PHASES:
        with _lock:
            _overhead[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def _schedstat() -> tuple[float, float]:
    """(on-CPU seconds, run-queue wait seconds) summed over this process's threads."""
    run = wait = 0
    try:
        for task in os.scandir("/proc/self/task"):
            try:
                with open(os.path.join(task.path, "schedstat")) as f:
                    fields = f.read().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
            except (OSError, ValueError, IndexError):  # a thread that just ended
                continue
    except OSError:  # not Linux
        return time.process_time(), 0.0
    return run / 1e9, wait / 1e9


def _log(record: dict) -> None:
    path = os.environ.get("P2PHPO_TIMING_LOG")
    if path:
        cpu, wait = _schedstat()
        record.update(t=time.monotonic(), compiles=mlp.COMPILE_LOG.compiles, overhead=_overhead[0],
                      cpu=cpu, runq_wait=wait)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


class _Timed:
    """Forwards everything to the trial; notes the time of each report."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def report(self, *args: Any, **kwargs: Any) -> Any:
        nums = [a for a in args if not isinstance(a, int) or isinstance(a, bool)]
        _log({"event": "epoch", "trial": self._trial.trial_id, "value": float(nums[0]) if nums else None})
        return self._trial.report(*args, **kwargs)


def mnist_mlp_timed(trial: Any) -> float:
    _log({"event": "start", "trial": trial.trial_id, "params": dict(trial.params)})
    status, value = "FAILED", None
    try:
        value = mlp.mnist_mlp(_Timed(trial))
        status = "COMPLETE"
        return value
    except BaseException as exc:
        status = "PRUNED" if "Prun" in type(exc).__name__ else "FAILED"
        raise
    finally:
        _log({"event": "end", "trial": trial.trial_id, "status": status, "value": value})


mnist_mlp_timed.prepare = mlp.prepare  # type: ignore[attr-defined]
