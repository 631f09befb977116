"""The node: gossip runtime, search core, worker process and state dir on one loop.

    code = await Node(NodeOptions(study=Path("examples/mnist_mlp.toml"))).run()

The event loop only moves bytes and decisions: the gossip core answers
datagrams, the search core decides what to run, the worker subprocess
trains, and the state dir makes every entry of ours durable (fsync) before
gossip sees it. A node that starts from ``--study`` writes the STUDY entry
once its worker has loaded the data (the study fingerprint includes the
dataset's); a node that joins with ``--seed`` only adopts the cluster's
STUDY, starts the worker for it, and refuses to run trials when its data or
its own ``--study`` differ. Observers (``status``, ``export --seed``) join
without a worker or a state dir and never hold work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from p2phpo.core.durability import GateConfig, Linger, RepairGate
from p2phpo.core.entries import Entry, Status, StudyEntry, trial_id_str
from p2phpo.core.gossip import EntriesMerged
from p2phpo.core.gossip_types import InSync
from p2phpo.core.ledger import Ledger
from p2phpo.core.membership import (
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberRefuted,
    MemberSuspected,
)
from p2phpo.core.profiles import PROFILES
from p2phpo.core.search import (
    MemberView,
    Outcome,
    SearchConfig,
    SearchCore,
    StartTrial,
    StopTrial,
    StudyDone,
)
from p2phpo.keys import KeyFileError, load_keyring
from p2phpo.runtime.udp import GossipRuntime, RuntimeConfigError, parse_hostport
from p2phpo.storage import DiskError, Storage, StorageError
from p2phpo.study import StudyError, StudySpec, make_plan, spec_from_entry
from p2phpo.train.worker import SetupError, TrialStatus, WorkerClient
from p2phpo.ui.snapshot import (
    Event,
    MemberRow,
    TrialSummary,
    default_state_dir,
    snapshot_from_ledger,
)

log = logging.getLogger("p2phpo.node")

DEFAULT_PORT = 7946
DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "default_study.toml"
_STATUS = {TrialStatus.COMPLETE: Status.COMPLETE, TrialStatus.PRUNED: Status.PRUNED,
           TrialStatus.FAILED: Status.FAILED}


class NodeError(Exception):
    """The node cannot start or must stop; ``str()`` is one sentence for the user."""


@dataclass
class NodeOptions:
    study: Path | None = None
    seeds: list[str] = field(default_factory=list)
    bind: str = f"127.0.0.1:{DEFAULT_PORT}"
    advertise: str | None = None
    cluster: str = "default"
    state_dir: Path | None = None
    key_file: str | None = None
    insecure: bool = False
    profile: str = "lan"
    data_dir: str | None = None
    linger: bool = False
    grace: float = 30.0  # a finished node waits this long at most for peers not done yet
    observer: bool = False  # status / export --seed: no worker, no state dir, no trials
    log_level: str = "info"


class Node:
    """One running p2phpo node; see the module docstring."""

    def __init__(self, opts: NodeOptions) -> None:
        self.opts = opts
        self.stop_event = asyncio.Event()
        self.wake = asyncio.Event()
        self.exit_code = 0
        self.error: str | None = None
        self.events: list[Event] = []
        self.spec: StudySpec | None = None
        self.core: SearchCore | None = None
        self.worker: WorkerClient | None = None
        self.worker_info: dict[str, Any] = {}
        self.storage: Storage | None = None
        self.rt: GossipRuntime | None = None
        self.ledger = Ledger()
        self.node_id = 0
        self.keyed = False
        self.done: str | None = None
        self._progress: dict[tuple[int, int], int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.gate: RepairGate | None = None
        self.linger = Linger(opts.grace, forever=opts.linger)
        self._seeds: list[tuple[str, int]] = []
        self._peers_saved_at = -1e9
        self._worker_task: asyncio.Task[Any] | None = None
        self.summary: TrialSummary | None = None
        self.addr: tuple[str, int] | None = None
        self._last_rates: tuple[float, int, int] | None = None
        self.started = asyncio.Event()
        self._study_fp: str | None = None

    # -- setup -----------------------------------------------------------------
    def setup(self) -> None:
        """Everything that can fail on bad input, before any socket opens."""
        o = self.opts
        try:
            ring = load_keyring(o.key_file) if (o.key_file or os.environ.get("P2PHPO_KEY")) else None
        except KeyFileError as exc:
            raise NodeError(str(exc).strip("'\"")) from None
        self.keyed = ring is not None
        if o.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise NodeError(f"unknown --log-level {o.log_level!r}; use debug, info, warning or error")
        if not o.grace >= 0:
            raise NodeError(f"--grace must be a number of seconds >= 0, not {o.grace}")
        if o.profile not in PROFILES:
            raise NodeError(f"unknown profile {o.profile!r}; use one of {', '.join(PROFILES)}")
        try:
            if o.study is not None:
                self.spec = StudySpec.load(o.study)
        except StudyError as exc:
            raise NodeError(str(exc)) from None
        if o.observer:
            self.node_id = random.SystemRandom().getrandbits(63) | 1
            restart, incarnation = 1, 0
        else:
            try:
                self.storage = Storage.open(o.state_dir or default_state_dir())
            except StorageError as exc:
                raise NodeError(str(exc)) from None
            self.ledger = self.storage.ledger
            self.node_id = self.storage.node_id
            restart = self.storage.meta.restart_counter
            incarnation = self.storage.meta.incarnation + 1
            try:
                self.storage.set_incarnation(incarnation)
            except StorageError as exc:
                self.storage.close()
                raise NodeError(str(exc)) from None
            self._setup_log()
        if self.spec is None and not o.seeds and not o.observer and not self._rejoining():
            self.spec = StudySpec.load(DEFAULT_STUDY)  # neither --study nor --seed
        self.summary = TrialSummary(self.ledger)
        try:
            self.rt = GossipRuntime.create(
                self.node_id, self.ledger, bind=o.bind, keyring=ring,
                profile=PROFILES[o.profile], meta={"ready": False}, cluster=o.cluster,
                restart=restart, incarnation=incarnation, insecure=o.insecure,
                advertise=o.advertise, on_event=self._on_gossip_event,
            )
            seeds = [parse_hostport(s, DEFAULT_PORT) for s in o.seeds]
        except RuntimeConfigError as exc:
            raise NodeError(str(exc).rstrip(".") + ".") from None
        self._seeds = seeds + self._remembered(seeds)
        if self.spec is None and not self._seeds and not o.observer and self.ledger.study is None:
            raise NodeError(f"the study entry in {self.storage.root if self.storage else '?'} "
                            "was lost and no peer is known; start the node with --study FILE")

    def _rejoining(self) -> bool:
        """A state dir that already runs a study resumes it (with its remembered peers)."""
        st = self.storage
        return st is not None and (st.ledger.study is not None or st.meta.study is not None)

    def _remembered(self, seeds: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The peers this state dir remembers (rejoin without --seed), minus ``seeds``."""
        if self.storage is None:
            return []
        out = []
        for text in self.storage.remembered_peers():
            try:
                addr = parse_hostport(text, DEFAULT_PORT)
            except RuntimeConfigError:
                continue
            if addr not in seeds and addr not in out:
                out.append(addr)
        return out

    def _setup_log(self) -> None:
        assert self.storage is not None
        handler = _QuietFileHandler(
            self.storage.root / "node.log", maxBytes=5 << 20, backupCount=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("p2phpo")
        root.addHandler(handler)
        root.setLevel(self.opts.log_level.upper())
        if self.storage.recovery:
            log.warning("%s", self.storage.recovery.note())
            self._event("recovered", self.node_id, detail=self.storage.recovery.note())

    # -- the main task -----------------------------------------------------------
    async def run(self) -> int:
        if self.rt is None:
            self.setup()
        assert self.rt is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if self.storage is not None:
            self.gate = RepairGate(self.node_id, self.ledger, expect_peers=bool(self._seeds),
                                   now=loop.time(), start_wall=time.time(),
                                   config=GateConfig.for_profile(PROFILES[self.opts.profile]))
        try:
            addr = await self.rt.start(self._seeds)
        except OSError as exc:
            raise NodeError(f"cannot bind {self.opts.bind}: {exc.strerror or exc}") from None
        except RuntimeConfigError as exc:
            raise NodeError(str(exc).rstrip(".")) from None
        self.addr = addr
        self.started.set()
        self._event("joined", self.node_id, detail=f"listening on {addr[0]}:{addr[1]}")
        log.info("node %016x listening on %s:%d", self.node_id, *addr)
        if not self.opts.observer:
            self._spawn(self._search_loop())
        await self.stop_event.wait()
        await self._shutdown()
        return self.exit_code

    def request_stop(self, code: int = 0, error: str | None = None) -> None:
        if not self.stop_event.is_set():
            self.exit_code, self.error = code, error
        self.stop_event.set()
        self.wake.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task failed: %r", exc, exc_info=exc)
            self.request_stop(1, f"internal error: {type(exc).__name__}: {exc}")

    async def _shutdown(self) -> None:
        wall = time.time()
        disk_ok = self.storage is None or self.storage.failed is None
        if self.core is not None and not self.done and disk_ok:
            for tid in self.core.running:
                self._event("left", self.node_id, tid, "trial abandoned for reclaim")
            self.core.leave(wall)
            self._flush_entries()
        if self.worker is not None:
            await self.worker.stop_current(grace=1.0)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.rt is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.rt.stop(leave=disk_ok), 5.0)
        if self.worker is not None:
            await self.worker.close()
        if self.storage is not None:
            self.storage.close()

    # -- gossip events -------------------------------------------------------------
    def _on_gossip_event(self, ev: Any) -> None:
        if isinstance(ev, InSync):
            now = asyncio.get_running_loop().time()
            if self.gate is not None:
                self.gate.synced(now)
            if self.core is not None and self.rt is not None:
                self.core.synced_with(ev.peer, now)
            self.wake.set()
            return
        if isinstance(ev, EntriesMerged):
            self._on_merged(ev.entries)
        elif isinstance(ev, MemberJoined | MemberAlive):
            self._event("joined", ev.node, detail=f"{ev.addr[0]}:{ev.addr[1]}")
        elif isinstance(ev, MemberSuspected):
            self._event("suspected", ev.node)
        elif isinstance(ev, MemberDead):
            self._event("dead", ev.node)
        elif isinstance(ev, MemberLeft):
            self._event("left", ev.node)
        elif isinstance(ev, MemberRefuted):
            self._event("refuted", ev.node, detail=f"incarnation {ev.incarnation}")
            if ev.node == self.node_id and self.storage is not None:
                try:
                    self.storage.set_incarnation(ev.incarnation)
                except StorageError as exc:
                    self._disk_failed(exc)
        self.wake.set()

    def _on_merged(self, entries: list[Entry]) -> None:
        if self.gate is not None:
            self.gate.merged(entries)  # ours from peers: repairs, or a live copy of this node
            if self.gate.refused:
                self.request_stop(2, self.gate.refused)
                return
        if self.storage is not None:
            try:
                self.storage.append(entries, sync=False)
            except StorageError as exc:
                self._disk_failed(exc)
                return
        for e in entries:
            if isinstance(e, StudyEntry):
                self._event("study", e.origin, detail=f"adopted study {e.spec.get('study', {}).get('name', '?')}")

    def members(self) -> dict[int, MemberView]:
        assert self.rt is not None
        out = {}
        for m in self.rt.core.members():
            meta = m.meta or {}
            out[m.node] = MemberView(m.state.name, bool(meta.get("ready")), meta.get("study"))
        return out

    # -- the search ------------------------------------------------------------------
    async def _search_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop_event.is_set():
            self.wake.clear()
            timeout = 1.0
            self._remember_peers(loop.time())
            if self.core is None:
                await self._prepare_search()
                timeout = self._gate_timeout(loop.time(), timeout)
            if self.linger.may_exit(loop.time(), self._member_metas()):
                self.request_stop(0)
                break
            if self.core is not None:
                now, wall = loop.time(), time.time()
                self.core.set_members(now, self.members())
                cmds = self.core.step(now, wall)
                self._flush_entries()
                self._check_refused()
                if self.stop_event.is_set():
                    break  # e.g. the disk refused this step's entries: act on none of them
                for cmd in cmds:
                    self._dispatch(cmd)
                timer = self.core.get_timer(loop.time(), time.time())
                if timer is not None:
                    timeout = max(0.01, min(timeout, timer - loop.time()))
                linger = self.linger.timer()
                if self.done and linger is not None:
                    timeout = max(0.01, min(timeout, linger - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _prepare_search(self) -> None:
        """Find the study, load the worker, then build the search core."""
        if self.spec is None:
            entry = self.ledger.study
            if entry is None:
                return
            try:
                self.spec = spec_from_entry(entry.spec)
            except StudyError as exc:
                self.request_stop(2, f"cannot run the cluster's study: {exc}")
                return
        if self._worker_task is None:
            self._worker_task = self._spawn(self._start_worker())
            return
        if not self._worker_task.done() or self.worker is None:
            return
        fp = self.spec.fingerprint(self._dataset_fp())
        assert self.storage is not None
        entry = self.ledger.study
        if self.opts.study is None and entry is not None and entry.fingerprint != fp:
            self.request_stop(2, (
                "this node's dataset differs from the cluster's (study fingerprint "
                f"{fp[:12]} here, {entry.fingerprint[:12]} in the cluster); check --data-dir"))
            return
        if not self._gate_open():
            return
        spec = self.spec
        config = SearchConfig.for_profile(PROFILES[self.opts.profile], max_retries=spec.max_retries,
                                          trial_timeout=spec.trial_timeout)
        self.core = SearchCore(self.node_id, self.ledger, config, make_plan,
                               local_study=(spec.to_dict(), fp))
        self.core.recover(time.time())
        self.core.ready = True
        self._flush_entries()
        try:
            self.storage.adopt_study(fp)
        except DiskError as exc:
            self._disk_failed(exc)
            return
        except StorageError as exc:
            self.request_stop(2, str(exc))
            return
        assert self.rt is not None
        self._study_fp = fp
        self.rt.set_meta({"ready": True, "study": fp})
        self.wake.set()

    def _gate_open(self) -> bool:
        """Whether this node may write: after it synced with its cluster (repairing its own
        lost entries), or alone; fills what nobody holds, says what it repaired."""
        gate = self.gate
        if gate is None or gate.opened:
            return True
        if not gate.due(asyncio.get_running_loop().time()):
            return False
        fill = gate.open(time.time())
        if fill:
            assert self.storage is not None and self.rt is not None
            try:
                self.storage.append(fill, sync=True)
            except StorageError as exc:
                self._disk_failed(exc)
                return False
            self.rt.append_local(fill)
        if gate.note:
            log.warning("%s", gate.note)
            self._event("repaired", self.node_id, detail=gate.note)
        return True

    def _gate_timeout(self, now: float, timeout: float) -> float:
        t = self.gate.timer() if self.gate is not None else None
        return timeout if t is None else max(0.01, min(timeout, t - now))

    def _member_metas(self) -> dict[int, tuple[str, dict]]:
        assert self.rt is not None
        return {m.node: (m.state.name, dict(m.meta or {})) for m in self.rt.core.members()
                if m.node != self.node_id}

    def _remember_peers(self, now: float) -> None:
        """Keep the addresses of the live members in the state dir (every 2 s at most)."""
        if self.storage is None or self.rt is None or now < self._peers_saved_at + 2.0:
            return
        self._peers_saved_at = now
        addrs = [_addr_str(m.addr) for m in self.rt.core.members()
                 if m.node != self.node_id and m.state.name in ("ALIVE", "SUSPECT")]
        try:
            self.storage.remember_peers(addrs)
        except StorageError as exc:
            self._disk_failed(exc)

    def _dataset_fp(self) -> str:
        ds = self.worker_info.get("dataset") or {}
        return str(ds.get("fingerprint", ""))

    async def _start_worker(self) -> None:
        assert self.spec is not None and self.storage is not None
        options = dict(self.spec.objective_options)
        if self.opts.data_dir:
            options["data_dir"] = self.opts.data_dir
        worker = WorkerClient(self.spec.objective, options,
                              cache_dir=self.storage.root / "jax-cache",
                              stderr_path=self.storage.root / "node.log")
        try:
            self.worker_info = await worker.start()
        except SetupError as exc:
            await worker.close()
            self.request_stop(2, f"the objective could not start on this node: {exc}")
            return
        self.worker = worker
        ds = self.worker_info.get("dataset") or {}
        if ds:
            self._event("ready", self.node_id, detail=f"dataset {ds.get('name')} from {ds.get('source')}")
        self.wake.set()

    def _check_refused(self) -> None:
        if self.core is not None and self.core.refused:
            self.request_stop(2, self.core.refused)

    def _flush_entries(self) -> None:
        if self.core is None:
            return
        new = self.core.take_new_entries()
        if not new:
            return
        assert self.storage is not None and self.rt is not None
        try:
            self.storage.append(new, sync=True)  # durable before anyone can see them
        except StorageError as exc:
            self._disk_failed(exc)
            return
        self.rt.append_local(new)

    def _disk_failed(self, exc: StorageError) -> None:
        """The state dir refused a write: stop gossiping now (what it holds unsaved must
        not leave), leave so the running trial is retried elsewhere, exit 1."""
        if self.rt is not None:
            self.rt.halt()
        if self.core is not None:
            self.core.ready = False
        self.request_stop(1, f"{str(exc).rstrip('.')}; the node stopped and its running trial "
                             "is left to the other nodes")

    def _dispatch(self, cmd: Any) -> None:
        if isinstance(cmd, StartTrial):
            self._event("started", self.node_id, cmd.trial,
                        f"slot {cmd.slot}" + (" (retry)" if cmd.retry_of else ""))
            assert self.core is not None
            self.core.worker_busy = True  # one trial at a time in the worker
            self._spawn(self._run_trial(cmd))
        elif isinstance(cmd, StopTrial):
            self._event("stopped", self.node_id, cmd.trial, cmd.reason)
            if self.worker is not None:
                self._spawn(self.worker.stop_current())
        elif isinstance(cmd, StudyDone):
            self.done = cmd.reason
            self._event("done", None, detail=cmd.reason)
            log.info("study done: %s", cmd.reason)
            self.linger.done(asyncio.get_running_loop().time())
            if self.rt is not None and self.spec is not None:  # peers wait for this
                self.rt.set_meta({"ready": True, "study": self._study_fp, "done": True})
            self.wake.set()

    async def _run_trial(self, cmd: StartTrial) -> None:
        assert self.worker is not None and self.core is not None
        core = self.core

        def on_report(step: int, value: float) -> Any:
            self._progress[cmd.trial] = step
            verdict = core.report(cmd.trial, step, value, time.time())
            self._flush_entries()
            return verdict

        try:
            out = await self.worker.run(trial_id_str(cmd.trial), cmd.slot, cmd.params, on_report)
        except SetupError as exc:
            core.worker_busy = False
            core.setup_failed(cmd.trial, time.time())
            self._flush_entries()
            self.request_stop(2, f"the worker could not restart: {exc}")
            return
        self._progress.pop(cmd.trial, None)
        core.worker_busy = False
        core.finish(cmd.trial, Outcome(_STATUS[out.status], out.value, out.error, out.duration),
                    time.time())
        self._flush_entries()
        view = self.ledger.trial(cmd.trial)
        self._event("finished", self.node_id, cmd.trial,
                    f"{view.state.value} {view.value if view.value is not None else ''}".strip())
        self.wake.set()

    # -- what the view shows --------------------------------------------------------------
    def _event(self, kind: str, node: int | None, trial: Any = None, detail: str = "") -> None:
        tid = trial_id_str(trial) if isinstance(trial, tuple) else trial
        self.events.append(Event(time.time(), kind, node, tid, detail))
        del self.events[:-200]
        log.info("%s node=%s trial=%s %s", kind, f"{node:016x}" if node else "-", tid or "-", detail)

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
            events=tuple(self.events[-50:]), dataset_source=source, keyed=self.keyed,
            insecure=self.opts.insecure and not self.keyed, wall=time.time(),
            **({"done": True} if self.done else {}),
        )


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """node.log: a full or failing disk drops log lines instead of printing tracebacks."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.dropped = getattr(self, "dropped", 0) + 1


def _addr_str(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def stderr_console() -> Console:
    return Console(stderr=True)


def fail(message: str) -> None:
    """Print one sentence to stderr (used by the CLI)."""
    Console(stderr=True, highlight=False).print(f"[red]error:[/] {message}")
    sys.stderr.flush()
