"""The worker process itself (``python -m p2phpo.train.worker_proc``): it reads frames
on stdin, imports the objective and loads its data once (``init``), then runs trial
after trial, sending reports and results on its own copy of fd 1 (fd 1 itself goes to
stderr). The protocol, and the node's side of it (:class:`WorkerClient`):
``p2phpo/train/worker.py``.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from p2phpo.core.entries import cap_error
from p2phpo.train import objectives
from p2phpo.train.worker import (
    VERDICT_TIMEOUT,
    ProtocolError,
    _frame_length,
    decode_body,
    encode_frame,
    execute,
)
from p2phpo.trial import Trial, TrialOutcome, TrialStatus, Verdict


class _Channel:
    """Blocking frame I/O on raw file descriptors, with a receive timeout."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.buf = bytearray()

    def send(self, msg: Mapping[str, Any]) -> None:
        data = memoryview(encode_frame(msg))
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self, timeout: float | None) -> dict[str, Any] | None:
        """Next message, or None if ``timeout`` passes; EOFError when the pipe closes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                length = _frame_length(bytes(self.buf[:4]))
                if len(self.buf) >= 4 + length:
                    body = bytes(self.buf[4: 4 + length])
                    del self.buf[: 4 + length]
                    return decode_body(body)
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.rfd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise EOFError("stdin closed")
            self.buf += chunk


class _Worker:
    def __init__(self, channel: _Channel, verdict_timeout: float) -> None:
        self.ch = channel
        self.verdict_timeout = verdict_timeout
        self.shutdown = False
        self.held: dict[str, Verdict] = {}  # verdicts for batch members that did not ask yet

    def serve(self) -> int:
        init = self.ch.recv(None)
        if init is None or init.get("type") != "init":
            self.ch.send({"type": "setup_error", "error": "expected an init message"})
            return 2
        options = init.get("options") or {}
        _adopt_settings(init)
        try:
            fn = objectives.resolve(str(init.get("objective")))
            info = objectives.prepare(fn, options)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.ch.send({"type": "setup_error", "error": cap_error(str(exc) or type(exc).__name__)})
            return 3
        self.ch.send({"type": "ready", "pid": os.getpid(), "info": info})
        while not self.shutdown:
            msg = self.ch.recv(None)
            if msg["type"] == "shutdown":
                break
            self.held = {}
            if msg["type"] == "run":
                self.ch.send(self._run(fn, msg, options))
            elif msg["type"] == "run_batch":
                for result in self._run_batch(fn, msg, options):
                    self.ch.send(result)
        return 0

    def _run_batch(self, fn: Callable[[Trial], Any], msg: dict[str, Any], options: dict) -> list[dict]:
        items = [m for m in msg.get("trials") or [] if isinstance(m, dict)]
        trials = [self._trial(m, options) for m in items]
        hook = getattr(fn, "batch", None)
        if hook is not None and len(trials) > 1:
            try:
                outs = list(hook(trials))
            except Exception as exc:  # a broken hook fails its trials, not the worker
                traceback.print_exc(file=sys.stderr)
                error = cap_error(f"{type(exc).__name__}: {exc}")
                outs = [TrialOutcome(TrialStatus.FAILED, None, error, 0.0, t.last_step) for t in trials]
        else:
            outs = [execute(fn, t) for t in trials]
        return [_result_msg(t.trial_id, out) for t, out in zip(trials, outs, strict=True)]

    def _trial(self, msg: dict[str, Any], options: dict) -> Trial:
        tid = str(msg.get("trial_id", ""))
        return Trial(msg.get("params") or {}, options=options, number=int(msg.get("number", 0)),
                     trial_id=tid, reporter=lambda step, value: self._report(tid, step, value))

    def _run(self, fn: Callable[[Trial], Any], msg: dict[str, Any], options: dict) -> dict:
        trial = self._trial(msg, options)
        return _result_msg(trial.trial_id, execute(fn, trial))

    def _report(self, tid: str, step: int, value: float) -> Verdict:
        held = self.held.pop(tid, None)
        if held is not None:  # stopped while another member of its batch reported
            return held
        self.ch.send({"type": "report", "trial_id": tid, "step": step, "value": value})
        deadline = time.monotonic() + self.verdict_timeout
        while True:
            msg = self.ch.recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return Verdict.CONTINUE
            if msg["type"] == "shutdown":
                self.shutdown = True
                return Verdict.STOP
            if msg["type"] != "verdict":
                continue
            if msg.get("trial_id") != tid:
                self._hold(msg)
                continue
            verdict = Verdict(msg.get("verdict", "continue"))
            if verdict is not Verdict.CONTINUE:
                return verdict
            if msg.get("step") == step:
                return Verdict.CONTINUE


    def _hold(self, msg: dict[str, Any]) -> None:
        """A stop or prune for another trial (a batch member): its next report gets it."""
        try:
            verdict = Verdict(msg.get("verdict", "continue"))
        except ValueError:
            return
        if verdict is not Verdict.CONTINUE and isinstance(msg.get("trial_id"), str):
            self.held[msg["trial_id"]] = verdict


def _result_msg(tid: str, out: TrialOutcome) -> dict[str, Any]:
    return {"type": "result", "trial_id": tid, "status": out.status.value, "value": out.value,
            "error": out.error, "duration": out.duration, "last_step": out.last_step,
            "verdict": out.verdict.value if out.verdict else None}


def _warm_up() -> None:
    """A worker spawned before its node's imports (``early.py``) imports the built-in
    trainer (JAX) while the node imports its own code, before it knows the objective."""
    try:
        import p2phpo.train.mlp  # noqa: F401
    except Exception:  # the objective's own import says what is wrong, if it matters
        pass


def _adopt_settings(init: Mapping[str, Any]) -> None:
    """What a worker spawned early learns in its init frame: the file its stderr (and fd 1)
    goes to, the persistent compile cache."""
    path = init.get("stderr")
    if isinstance(path, str):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            pass
        else:
            sys.stderr.flush()
            os.dup2(fd, 2)
            os.dup2(fd, 1)
            os.close(fd)
    cache = init.get("cache_dir")
    if isinstance(cache, str):
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        if "jax" in sys.modules:  # imported early: its config read the environment already
            import jax

            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs",
                              float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    """Entry point of ``python -m p2phpo.train.worker_proc``."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed to fd 1 now lands on stderr
    sys.stdout = sys.stderr
    _die_with_parent()
    try:
        os.nice(int(os.environ.get("P2PHPO_WORKER_NICE", "10")))
    except (OSError, ValueError):
        pass
    _pin_threads(os.environ.get("P2PHPO_WORKER_CPUS", ""))
    worker = _Worker(_Channel(0, out_fd), float(os.environ.get("P2PHPO_VERDICT_TIMEOUT", VERDICT_TIMEOUT)))
    if os.environ.pop("P2PHPO_WORKER_EARLY", "") == "1":
        _warm_up()
    try:
        return worker.serve()
    except (EOFError, BrokenPipeError):
        return 0
    except ProtocolError as exc:
        print(f"p2phpo worker: {exc}", file=sys.stderr)
        return 2


def _pin_threads(spec: str) -> None:
    if not spec or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, {int(c) for c in spec.split(",")})
    except (OSError, ValueError):
        pass



if __name__ == "__main__":
    sys.exit(main())
