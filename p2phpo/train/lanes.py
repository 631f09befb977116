"""Several workers ("lanes") behind one client: a batch's members train side by side.

A worker trains on one XLA thread (``worker_env``): on a 2-core host one trial at a
time leaves the second core to background compiles, and a batch trained in one
process gains only what packing removes (padding), which on a small dataset does
not pay for a packed program's compile (``batched.packing_pays``, RESULTS.md). A node
with ``--batch K`` on a CPU host therefore starts up to ``lanes_for(K)`` workers;
``WorkerLanes`` hands each trial to the next free lane (each in its own process: its
own shape class, reports, verdicts and result, exactly as it trains alone), so a
node runs as many trials at once as it has lanes. A trial that ends (pruned,
stopped, done) frees its lane at once, and the node claims its next trial then
(``SearchConfig.refill``) instead of when its whole batch ended; its members are
drawn each on its own (no shared shape class: ``runtime/node.py``). On an
accelerator (or with one lane) a batch goes to the single worker's ``run_batch``
(its objective's ``batch`` hook packs the members into one program there).

    lanes = WorkerLanes([WorkerClient(...), WorkerClient(...)])
    info = await lanes.start()
    outcomes = await lanes.run_batch(trials, on_report, on_result=...)
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from p2phpo.train.worker import BatchReportCallback, ReportCallback, SetupError, WorkerClient
from p2phpo.trial import TrialOutcome, TrialStatus, Verdict

Member = tuple[str, int, Mapping[str, Any]]
STOPPED = TrialOutcome(TrialStatus.PRUNED, None, None, 0.0, None, Verdict.STOP)
"""The outcome of a member stopped before it started (as one stopped before its first report)."""


LANES_ENV = "P2PHPO_WORKER_LANES"
"""Environment variable: the most workers a node with ``--batch K`` starts (1: one
worker that trains each batch packed or member after member, as before lanes)."""


def lanes_for(capacity: int, cpus: int | None = None,
              env: Mapping[str, str] | None = None) -> int:
    """How many workers a node with batch capacity ``capacity`` runs: one per CPU core
    (a worker trains on one XLA thread), at most one per member and at most
    ``P2PHPO_WORKER_LANES``; one for capacity 1."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        limit = lanes_cap(os.environ if env is None else env) or cpus
    except ValueError:
        limit = cpus  # ``p2phpo node`` refuses it first (``lanes_cap``)
    return max(1, min(int(capacity), int(cpus), limit))


def lanes_cap(env: Mapping[str, str]) -> int | None:
    """``P2PHPO_WORKER_LANES`` in ``env``: None when unset or empty; ValueError (one
    sentence) unless a whole number >= 1."""
    cap = env.get(LANES_ENV, "").strip()
    if not cap:
        return None
    if not (cap.isascii() and cap.isdigit()) or int(cap) < 1:
        raise ValueError(f"{LANES_ENV}={cap!r} must be a whole number of workers >= 1 (or unset)")
    return int(cap)


class WorkerLanes:
    """The :class:`WorkerClient` interface the node uses, over one or more workers.

    ``start()`` starts every lane at once; a lane other than the first that cannot
    start is dropped (the node runs on with fewer), and on an accelerator every lane but
    the first is closed (there a batch is packed into one program by the first). With
    one lane every call goes to that worker as it is. With more, ``run`` and each member
    of ``run_batch`` wait for a free lane (first come, first served) and train there
    alone: a trial may start while others run (``SearchConfig.refill``). ``stop_trial``
    stops a trial wherever it is: running (its lane's verdict) or waiting for a lane (it
    ends at once, PRUNED with verdict STOP, as a trial stopped before its first report)."""

    def __init__(self, clients: Sequence[WorkerClient]) -> None:
        if not clients:
            raise ValueError("WorkerLanes needs at least one worker")
        self.clients = list(clients)
        self._free: asyncio.Queue[WorkerClient] | None = None
        self._where: dict[str, WorkerClient] = {}  # running trial -> its lane
        self._waiting: dict[str, asyncio.Future[None]] = {}  # trial -> set when stopped

    @property
    def lanes(self) -> int:
        return len(self.clients)

    @property
    def info(self) -> dict[str, Any]:
        return self.clients[0].info

    @property
    def pid(self) -> int | None:
        return self.clients[0].pid

    @property
    def alive(self) -> bool:
        return self.clients[0].alive

    async def start(self) -> dict[str, Any]:
        """Start the lanes; raises :class:`SetupError` when the first cannot start."""
        got = await asyncio.gather(*(c.start() for c in self.clients), return_exceptions=True)
        if isinstance(got[0], BaseException):
            await asyncio.gather(*(c.close() for c in self.clients[1:]))
            raise got[0]
        keep = [self.clients[0]]
        cpu = str(got[0].get("device", "cpu")) == "cpu"
        for client, res in zip(self.clients[1:], got[1:], strict=True):
            if cpu and not isinstance(res, BaseException):
                keep.append(client)
            else:
                await client.close()
        self.clients = keep
        self._free = asyncio.Queue()
        for c in keep:
            self._free.put_nowait(c)
        return self.info

    async def run(self, trial_id: str, number: int, params: Mapping[str, Any],
                  on_report: ReportCallback, *, timeout: float | None = None) -> TrialOutcome:
        """Run one trial on the next free lane (waiting for one)."""
        if len(self.clients) == 1 or self._free is None:
            return await self._on(self.clients[0], trial_id, number, params, on_report, timeout)
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[trial_id] = stop
        getter = asyncio.ensure_future(self._free.get())
        try:
            await asyncio.wait({getter, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting.pop(trial_id, None)
            if not getter.done():
                getter.cancel()
        if stop.done():  # stopped while it waited: it never starts
            if getter.done() and not getter.cancelled():
                self._free.put_nowait(getter.result())
            return STOPPED
        client = getter.result()
        try:
            return await self._on(client, trial_id, number, params, on_report, timeout)
        finally:
            self._free.put_nowait(client)

    async def _on(self, client: WorkerClient, trial_id: str, number: int, params: Mapping[str, Any],
                  on_report: ReportCallback, timeout: float | None) -> TrialOutcome:
        self._where[trial_id] = client
        try:
            return await client.run(trial_id, number, params, on_report, timeout=timeout)
        finally:
            self._where.pop(trial_id, None)

    async def run_batch(self, trials: Sequence[Member], on_report: BatchReportCallback, *,
                        timeout: float | None = None,
                        on_result: Callable[[str, TrialOutcome], None] | None = None
                        ) -> dict[str, TrialOutcome]:
        """Each member on the next free lane; ``on_report(trial_id, step, value)`` and
        ``on_result(trial_id, outcome)`` as :meth:`WorkerClient.run_batch`. A lane whose
        worker cannot restart raises :class:`SetupError` once the other members ended."""
        if len(self.clients) == 1:
            return await self.clients[0].run_batch(trials, on_report, timeout=timeout,
                                                   on_result=on_result)
        done: dict[str, TrialOutcome] = {}

        async def member(tid: str, number: int, params: Mapping[str, Any]) -> None:
            out = await self.run(tid, number, params, functools.partial(on_report, tid),
                                 timeout=timeout)
            done[tid] = out
            if on_result is not None:
                on_result(tid, out)

        got = await asyncio.gather(*(member(str(t), n, p) for t, n, p in trials),
                                   return_exceptions=True)
        for exc in got:
            if isinstance(exc, BaseException):
                raise exc
        return done

    async def stop_trial(self, trial_id: str, grace: float = 5.0) -> None:
        """Stop one trial: at its next report if it runs, at once if it waits for a lane."""
        stop = self._waiting.get(trial_id)
        if stop is not None and not stop.done():
            stop.set_result(None)
            return
        client = self._where.get(trial_id)
        if client is not None:
            await client.stop_trial(trial_id, grace)
        elif len(self.clients) == 1:
            await self.clients[0].stop_trial(trial_id, grace)

    async def stop_current(self, grace: float = 5.0) -> None:
        """Stop everything: the waiting trials never start, the running ones stop."""
        for stop in list(self._waiting.values()):
            if not stop.done():
                stop.set_result(None)
        await asyncio.gather(*(c.stop_current(grace) for c in self.clients))

    async def close(self, timeout: float = 5.0) -> None:
        await asyncio.gather(*(c.close(timeout) for c in self.clients))


__all__ = ["SetupError", "WorkerLanes", "lanes_for"]
