"""The worker subprocess that runs trials for a node, and the node's client.

Training never runs on the node's event loop: each node starts one worker,
``python -m p2phpo.train.worker_proc`` (``worker_proc.py``), at a lower priority (``nice``) and with
XLA's threads capped, so the node's gossip timers stay on time. The worker
imports the objective and loads its data once, then runs trial after trial in
the same process, so JAX's in-memory compile cache carries over (and JAX's
persistent compilation cache in ``cache_dir`` survives restarts).

Protocol
--------
Frames on the worker's stdin (node -> worker) and stdout (worker -> node):
a 4-byte big-endian length, then a msgpack map with a ``"type"`` key; at
most 1 MiB per frame. The worker moves fd 1 onto stderr before anything else
runs, so a ``print`` in an objective (or a C library) cannot corrupt the pipe;
stderr is free text (the node appends it to ``node.log``).

node -> worker::

    {"type": "init", "objective": "mnist-mlp" | "pkg.mod:fn", "options": {...}}
    {"type": "run", "trial_id": str, "number": int, "params": {...}}
    {"type": "run_batch", "trials": [{"trial_id", "number", "params"}, ...]}
    {"type": "verdict", "trial_id": str, "step": int | None,
     "verdict": "continue" | "prune" | "stop"}
    {"type": "shutdown"}

worker -> node::

    {"type": "ready", "pid": int, "info": {...}}        # after init; info from
                                                        # the objective's prepare()
    {"type": "setup_error", "error": str}               # then the worker exits
    {"type": "report", "trial_id", "step", "value"}     # then waits <= 1 s for
                                                        # a verdict, default continue
    {"type": "result", "trial_id", "status": "COMPLETE" | "PRUNED" | "FAILED",
     "value": float | None, "error": str | None, "duration": float,
     "last_step": int | None, "verdict": "prune" | "stop" | None}

A ``run_batch`` gets the same reports and one ``result`` per trial, in any
order (the objective's ``batch`` hook trains them together; without one they
run one after another). A ``verdict`` of prune or stop for the running trial is honoured at its next
report even if it arrived late; a verdict with ``step`` None (sent by
:meth:`WorkerClient.stop_current` or :meth:`WorkerClient.stop_trial`) applies to that
trial's next report; the other members of its batch go on. Error texts
are capped at 256 bytes. EOF on stdin or ``shutdown`` ends the worker; on
Linux it also dies with its parent (``PR_SET_PDEATHSIG``).

:class:`WorkerClient` is the asyncio side used by the node; :func:`run_inprocess`
runs one trial with the same outcome rules without a subprocess (tests,
``hp.optimize``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import os
import signal
import struct
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import IO, Any

import msgpack

from p2phpo.core.entries import cap_error
from p2phpo.train import early, objectives
from p2phpo.train.early import worker_env  # noqa: F401 (re-exported)
from p2phpo.trial import Trial, TrialOutcome, TrialStatus, Verdict, run_objective

MAX_FRAME = 1 << 20
VERDICT_TIMEOUT = 1.0
_HEADER = struct.Struct(">I")


class SetupError(Exception):
    """The worker could not load the objective or its data (ABANDON setup error)."""


class ProtocolError(Exception):
    """A frame was malformed or too large."""


# -- frames --------------------------------------------------------------------

def encode_frame(msg: Mapping[str, Any]) -> bytes:
    body = msgpack.packb(dict(msg), use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_no_ext)
    except Exception as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("frame is not a map with a 'type'")
    return msg


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension types are not allowed")


def _frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return length


# -- running one trial (shared by the worker and the in-process runner) -----------

def execute(fn: Callable[[Trial], Any], trial: Trial) -> TrialOutcome:
    """Call the objective and classify how it ended (``p2phpo.trial.run_objective``)."""
    return run_objective(fn, trial, print_traceback=True)


def run_inprocess(objective: str | Callable[[Trial], Any], params: Mapping[str, Any], *,
                  options: Mapping[str, Any] | None = None,
                  on_report: Callable[[int, float], Verdict] | None = None,
                  trial_id: str = "", number: int = 0) -> TrialOutcome:
    """Run one trial in this process, with the worker's outcome rules."""
    fn = objectives.resolve(objective) if isinstance(objective, str) else objective
    reporter = on_report or (lambda step, value: Verdict.CONTINUE)
    trial = Trial(params, reporter=reporter, options=options, number=number, trial_id=trial_id)
    return execute(fn, trial)


# -- the node side (asyncio) ------------------------------------------------------------

ReportCallback = Callable[[int, float], "Verdict | Awaitable[Verdict]"]
BatchReportCallback = Callable[[str, int, float], "Verdict | Awaitable[Verdict]"]
_WAKE = object()


class WorkerClient:
    """Drives one worker subprocess from the node's event loop.

    ``start()`` raises :class:`SetupError` with the worker's text when the
    objective or its data cannot load. ``run()`` returns a
    :class:`TrialOutcome`; if the worker dies mid-trial the outcome is FAILED
    ("worker died: ...") and the next ``run()`` starts a fresh worker (which
    may raise SetupError). If ``on_report`` raises, the worker is killed and
    the exception propagates. ``run(timeout=...)`` kills a hung trial: FAILED.
    """

    def __init__(self, objective: str, options: Mapping[str, Any] | None = None, *,
                 cache_dir: str | os.PathLike[str] | None = None,
                 stderr_path: str | os.PathLike[str] | None = None,
                 threads: int | None = None, nice: int = early.NICE,
                 verdict_timeout: float = VERDICT_TIMEOUT, setup_timeout: float = 600.0,
                 python: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.objective = objective
        self.options = dict(options or {})
        self.cache_dir = cache_dir
        self.stderr_path = stderr_path
        self.threads = threads if threads is not None else early.default_threads()
        self.nice = nice
        self.verdict_timeout = verdict_timeout
        self.setup_timeout = setup_timeout
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | _Adopted | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._stderr: IO[bytes] | None = None
        self._current: str | None = None
        self._batch: list[str] = []
        self._open: set[str] = set()  # members of the running batch without a result yet
        self._stopping: set[str] = set()  # members asked to stop (stop_trial)
        self._stop_deadline: float | None = None
        self._stop_grace = 5.0
        self._started_once = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> dict[str, Any]:
        """Spawn the worker and wait for ready; returns the objective's info."""
        if self._proc is not None:
            await self._kill()
        if self._started_once:
            self.restarts += 1
        self._started_once = True
        env = early.client_env(self.threads, self.nice, self.verdict_timeout, self.extra_env, self.cache_dir)
        init = {"type": "init", "objective": self.objective, "options": self.options}
        spawned = early.take(self.python, env)
        if spawned is not None:  # spawned before the node's imports: it learns these now
            self._proc = await _Adopted.connect(spawned)
            init.update(stderr=None if self.stderr_path is None else str(self.stderr_path),
                        cache_dir=None if self.cache_dir is None else str(self.cache_dir))
        else:
            if self.stderr_path is not None and self._stderr is None:
                self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in close()
            self._proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "p2phpo.train.worker_proc", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=self._stderr, env=env)
        self._queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_loop(self._proc))
        self._send(init)
        msg = await self._next(asyncio.get_running_loop().time() + self.setup_timeout)
        if msg is None or msg is _WAKE:
            await self._kill()
            raise SetupError(f"worker did not get ready within {self.setup_timeout:.0f} s")
        if isinstance(msg, BaseException) or msg.get("type") != "ready":
            text = msg.get("error") if isinstance(msg, dict) else await self._death_text()
            await self._kill()
            raise SetupError(str(text))
        self.info = dict(msg.get("info") or {})
        return self.info

    async def run(self, trial_id: str, number: int, params: Mapping[str, Any],
                  on_report: ReportCallback, *, timeout: float | None = None) -> TrialOutcome:
        """Run one trial; ``on_report(step, value)`` answers each report with a Verdict."""
        if not self.alive:
            await self.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = None if timeout is None else t0 + timeout
        self._current, self._stop_deadline, last_step = trial_id, None, None
        try:
            self._send({"type": "run", "trial_id": trial_id, "number": number, "params": dict(params)})
            while True:
                msg = await self._next(_earliest(deadline, self._stop_deadline))
                if msg is _WAKE:
                    continue
                if msg is None:
                    return await self._overdue(deadline, t0, last_step)
                if isinstance(msg, BaseException):
                    return TrialOutcome(TrialStatus.FAILED, None, cap_error(await self._death_text()),
                                        loop.time() - t0, last_step)
                if msg.get("trial_id") != trial_id:
                    continue
                if msg["type"] == "report":
                    last_step = int(msg["step"])
                    await self._answer(msg, on_report)
                elif msg["type"] == "result":
                    return _outcome(msg)
        finally:
            self._current = None

    async def run_batch(self, trials: Sequence[tuple[str, int, Mapping[str, Any]]],
                        on_report: BatchReportCallback, *, timeout: float | None = None,
                        on_result: Callable[[str, TrialOutcome], None] | None = None
                        ) -> dict[str, TrialOutcome]:
        """Run several trials at once: ``trials`` are (trial_id, number, params);
        ``on_report(trial_id, step, value)`` answers each member's reports and
        ``on_result(trial_id, outcome)`` hears each member's end as it comes. Returns every
        member's outcome by trial id; a timeout or a dead worker ends those not done."""
        if not self.alive:
            await self.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = None if timeout is None else t0 + timeout
        last: dict[str, int | None] = {str(t): None for t, _, _ in trials}
        done: dict[str, TrialOutcome] = {}
        self._batch, self._stop_deadline = list(last), None
        self._open, self._stopping = set(last), set()
        try:
            self._send({"type": "run_batch", "trials": [
                {"trial_id": str(t), "number": n, "params": dict(p)} for t, n, p in trials]})
            while len(done) < len(last):
                msg = await self._next(_earliest(deadline, self._stop_deadline))
                if msg is _WAKE:
                    continue
                if msg is None or isinstance(msg, BaseException):
                    end = (await self._overdue(deadline, t0, None) if msg is None else TrialOutcome(
                        TrialStatus.FAILED, None, cap_error(await self._death_text()), loop.time() - t0, None))
                    return {t: done.get(t) or dataclasses.replace(end, last_step=last[t]) for t in last}
                tid = msg.get("trial_id")
                if tid not in last or tid in done:
                    continue
                if msg["type"] == "report":
                    last[tid] = int(msg["step"])
                    await self._answer(msg, functools.partial(on_report, tid))
                elif msg["type"] == "result":
                    done[tid] = _outcome(msg)
                    self._open.discard(tid)
                    if on_result is not None:
                        on_result(tid, done[tid])
                    self._arm_stop(self._stop_grace)
            return done
        finally:
            self._batch, self._open, self._stopping = [], set(), set()

    async def stop_current(self, grace: float = 5.0) -> None:
        """Ask the running trial(s) to stop at their next report; kill after ``grace`` s."""
        ids = ([self._current] if self._current is not None else []) + self._batch
        if not ids or not self.alive:
            return
        for tid in ids:
            self._send({"type": "verdict", "trial_id": tid, "step": None, "verdict": "stop"})
        self._stop_deadline = asyncio.get_running_loop().time() + grace
        self._queue.put_nowait(_WAKE)

    async def stop_trial(self, trial_id: str, grace: float = 5.0) -> None:
        """Ask one trial to stop at its next report. A member of a running batch leaves
        it and the others go on; the worker is killed after ``grace`` s only once every
        member still running was asked to stop (a hung batch). Unknown ids: nothing."""
        if trial_id == self._current:
            await self.stop_current(grace)
            return
        if trial_id not in self._open or not self.alive:
            return
        self._send({"type": "verdict", "trial_id": trial_id, "step": None, "verdict": "stop"})
        self._stopping.add(trial_id)
        self._stop_grace = grace
        self._arm_stop(grace)

    def _arm_stop(self, grace: float) -> None:
        """Set the kill deadline once every open member of the batch is stopping."""
        if self._stop_deadline is None and self._open and self._open <= self._stopping:
            self._stop_deadline = asyncio.get_running_loop().time() + grace
            self._queue.put_nowait(_WAKE)

    async def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout`` s."""
        if self.alive:
            try:
                self._send({"type": "shutdown"})
                self._proc.stdin.close()  # type: ignore[union-attr]
                await asyncio.wait_for(self._proc.wait(), timeout)  # type: ignore[union-attr]
            except (TimeoutError, ConnectionError, OSError):
                pass
        await self._kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- internals --
    async def _answer(self, msg: dict[str, Any], on_report: ReportCallback) -> None:
        try:
            verdict = on_report(int(msg["step"]), float(msg["value"]))
            if inspect.isawaitable(verdict):
                verdict = await verdict
            verdict = Verdict.CONTINUE if verdict is None else Verdict(verdict)
        except BaseException:
            await self._kill()
            raise
        self._send({"type": "verdict", "trial_id": msg["trial_id"], "step": msg["step"],
                    "verdict": verdict.value})

    async def _overdue(self, deadline: float | None, t0: float, last_step: int | None) -> TrialOutcome:
        loop = asyncio.get_running_loop()
        await self._kill()
        if self._stop_deadline is not None and (deadline is None or self._stop_deadline <= deadline):
            return TrialOutcome(TrialStatus.PRUNED, None, "killed: no report within the stop grace",
                                loop.time() - t0, last_step, Verdict.STOP)
        return TrialOutcome(TrialStatus.FAILED, None, f"trial timed out after {loop.time() - t0:.0f} s",
                            loop.time() - t0, last_step)

    def _send(self, msg: Mapping[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None or self._proc.stdin.is_closing():
            return
        try:
            self._proc.stdin.write(encode_frame(msg))
        except (ConnectionError, RuntimeError):
            pass  # the reader notices the death

    async def _next(self, deadline: float | None) -> Any:
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _read_loop(self, proc: asyncio.subprocess.Process | _Adopted) -> None:
        assert proc.stdout is not None
        try:
            while True:
                length = _frame_length(await proc.stdout.readexactly(4))
                self._queue.put_nowait(decode_body(await proc.stdout.readexactly(length)))
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                proc.kill()
            self._queue.put_nowait(exc)

    async def _death_text(self) -> str:
        proc = self._proc
        if proc is None:
            return "worker died"
        try:
            code = await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        self._proc = None
        if code < 0:
            try:
                return f"worker died: killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"worker died: signal {-code}"
        return f"worker died: exit code {code}"

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
        if proc is not None:
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None


class _Adopted:
    """A worker spawned early (``early.spawn``, ``subprocess.Popen``) behind the part of
    ``asyncio.subprocess.Process`` that :class:`WorkerClient` uses: its pipes as asyncio
    streams, ``wait`` polling (no child watcher knows this process)."""

    def __init__(self, popen: Any, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        self.popen, self.stdin, self.stdout = popen, stdin, stdout

    @classmethod
    async def connect(cls, popen: Any) -> _Adopted:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * MAX_FRAME)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), popen.stdin)
        return cls(popen, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    @property
    def pid(self) -> int:
        return int(self.popen.pid)

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    async def wait(self) -> int:
        while (code := self.popen.poll()) is None:
            await asyncio.sleep(0.02)
        self.stdin.close()
        return int(code)


def _earliest(*times: float | None) -> float | None:
    real = [t for t in times if t is not None]
    return min(real) if real else None


def _outcome(msg: Mapping[str, Any]) -> TrialOutcome:
    verdict = msg.get("verdict")
    value = msg.get("value")
    return TrialOutcome(TrialStatus(msg["status"]), None if value is None else float(value),
                        msg.get("error"), float(msg.get("duration") or 0.0), msg.get("last_step"),
                        Verdict(verdict) if verdict else None)


if __name__ == "__main__":  # the worker process itself is p2phpo/train/worker_proc.py
    from p2phpo.train.worker_proc import main

    sys.exit(main())
