"""The node: the asyncio shell around the node driver (``core/driver.py``).

    opts = node_options(study=Path("examples/mnist_mlp.toml"))  # p2phpo.commands.node_options
    code = await Node(opts).run()

The event loop only moves bytes and decisions: every datagram, timer expiry,
push-pull and worker report becomes one call into the :class:`NodeDriver`
(which decides everything, exactly as it does in the simulator), and this
shell carries out what the driver hands back: datagrams to send, push-pulls
to run, entries to write to the state dir (ours with fsync, confirmed before
gossip sees them), trials for the worker subprocess, events for the view. A node that starts from ``--study`` writes the STUDY entry
once its worker has loaded the data (the study fingerprint includes the
dataset's); a node that joins with ``--seed`` only adopts the cluster's
STUDY, starts the worker for it, and refuses to run trials when its data or
its own ``--study`` differ. Observers (``status``, ``export --seed``) join
without a worker or a state dir and never hold work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import logging.handlers
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phpo.core.driver import Fatal, Incarnation, MayExit, NodeDriver, Note, Persist, StudyFound
from p2phpo.core.durability import GateConfig, Linger, RepairGate
from p2phpo.core.entries import Status, trial_id_str
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import PROFILES
from p2phpo.core.search import (
    MemberView,
    Outcome,
    SearchConfig,
    StartTrial,
    StopTrial,
    StudyDone,
)
from p2phpo.core.study_diff import spec_diff
from p2phpo.core.wire import Keyring
from p2phpo.runtime.driver_runtime import DriverRuntime
from p2phpo.runtime.node_net import MetricsError, NodeNet
from p2phpo.runtime.node_view import NodeView
from p2phpo.runtime.resolve import only_self, show
from p2phpo.runtime.udp import RuntimeConfigError, parse_hostport, parse_peer
from p2phpo.storage import DiskError, Storage, StorageError
from p2phpo.study import Plan, StudyError, StudySpec, make_plan, spec_from_entry
from p2phpo.train import objectives
from p2phpo.train.lanes import WorkerLanes, lanes_for
from p2phpo.train.worker import SetupError, TrialStatus, WorkerClient
from p2phpo.ui.errors import bind_error
from p2phpo.ui.snapshot import (
    Event,
    TrialSummary,
    default_state_dir,
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
    """What a node runs with, already checked and loaded (``p2phpo.commands.node_options``)."""

    spec: StudySpec | None = None  # --study, loaded; None: adopt the cluster's
    seeds: list[str] = field(default_factory=list)
    bind: str = f"127.0.0.1:{DEFAULT_PORT}"
    advertise: str | None = None
    cluster: str = "default"
    state_dir: Path | None = None
    keyring: Keyring | None = None  # the cluster key; None: the null cipher, loopback only
    insecure: bool = False
    profile: str = "lan"
    data_dir: str | None = None
    linger: bool = False
    grace: float = 30.0  # a finished node waits this long at most for peers not done yet
    observer: bool = False  # status / export --seed: no worker, no state dir, no trials
    metrics: str | None = None  # --metrics [HOST:]PORT (Prometheus text format)
    log_level: str = "info"
    allow_objectives: list[str] = field(default_factory=list)  # --allow-objective, checked
    batch: int | None = None  # --batch: trials trained at once (None: the study's, else 1)


class Node(NodeView):
    """One running p2phpo node; see the module docstring."""

    def __init__(self, opts: NodeOptions) -> None:
        self.opts = opts
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.error: str | None = None
        self.events: list[Event] = []
        self.spec: StudySpec | None = None
        self.worker: WorkerLanes | None = None
        self.worker_info: dict[str, Any] = {}
        self.storage: Storage | None = None
        self.rt: DriverRuntime | None = None
        self.driver: NodeDriver | None = None
        self.ledger = Ledger()
        self.node_id = 0
        self.keyed = False
        self.done: str | None = None
        self._progress: dict[tuple[int, int], int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seeds: list[tuple[str, int]] = []
        self._worker_task: asyncio.Task[Any] | None = None
        self.summary: TrialSummary | None = None
        self.addr: tuple[str, int] | None = None
        self._last_rates: tuple[float, int, int] | None = None
        self.started = asyncio.Event()
        self._leave = True  # gossip LEAVE on the way out (not when our id is another's)
        self.net = NodeNet(self)  # join diagnostics, health, metrics, shared datasets

    # -- setup -----------------------------------------------------------------
    def setup(self) -> None:
        """Everything that can fail on bad input, before any socket opens."""
        o = self.opts
        ring = o.keyring
        self.keyed = ring is not None
        self.spec = o.spec
        if o.observer:
            identity = Identity(os.urandom(32))  # an observer's id lives as long as it does
            self.ledger = Ledger(identity=identity)
            self.node_id = identity.node_id
            restart, incarnation = 1, 0
        else:
            try:
                self.storage = Storage.open(o.state_dir or default_state_dir())
            except StorageError as exc:
                raise NodeError(str(exc)) from None
            identity = self.storage.identity
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
            rt = DriverRuntime.create(
                self.node_id, self.ledger, bind=o.bind, keyring=ring,
                profile=PROFILES[o.profile], meta={"ready": False}, cluster=o.cluster,
                restart=restart, incarnation=incarnation, insecure=o.insecure,
                advertise=o.advertise, identity=identity,
            )
            seeds = [parse_peer(s, DEFAULT_PORT) for s in o.seeds]
        except RuntimeConfigError as exc:
            raise NodeError(str(exc).rstrip(".") + ".") from None
        assert isinstance(rt, DriverRuntime)
        self.rt = rt
        rt.core.health_extra = self.net.health_extra
        self._seeds = seeds + self._remembered(seeds)
        own = [parse_hostport(a, DEFAULT_PORT) for a in (o.bind, o.advertise) if a]
        if self.spec is None and not o.observer and self.ledger.study is None \
                and only_self(self._seeds, own):  # it would wait for a study, silent, forever
            raise NodeError(f"--seed {show(self._seeds[0])} is this node's own address; give the "
                            "address of a running node, or --study FILE to start a study here")
        if self.spec is None and not self._seeds and not o.observer and self.ledger.study is None:
            raise NodeError(f"the study entry in {self.storage.root if self.storage else '?'} "
                            "was lost and no peer is known; start the node with --study FILE")

    def _study_lost(self) -> str | None:
        """What a restarted node without --study lacks when its log lost the STUDY entry
        of the study it ran (a damaged record): its peers may give it back."""
        st = self.storage
        if st is None or self.spec is not None or self.ledger.study is not None:
            return None
        if st.meta.study is None:
            return None  # a fresh joiner: it waits for its seed
        rec = st.recovery
        why = "is missing"
        if rec and rec.damaged_records:
            plural = "s" if rec.damaged_records != 1 else ""
            why = f"was lost with {rec.damaged_records} damaged record{plural} (kept in ledger.damaged)"
        return f"the study entry in {st.root / 'ledger.log'} {why}"

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
                addr = parse_peer(text, DEFAULT_PORT)
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

    # -- the main task -----------------------------------------------------------
    async def run(self) -> int:
        if self.rt is None:
            self.setup()
        assert self.rt is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self.make_driver(loop.time())
        try:
            addr = await self.rt.start(self._seeds)
        except OSError as exc:
            raise NodeError(bind_error(self.opts.bind, exc)) from None
        except RuntimeConfigError as exc:
            raise NodeError(str(exc).rstrip(".")) from None
        self.addr = addr
        self.started.set()
        self._event("listening", self.node_id, detail=f"listening on {addr[0]}:{addr[1]}")
        log.info("node %016x listening on %s:%d", self.node_id, *addr)
        if self.storage is not None and self.storage.recovery:  # after `listening`, always first
            self._event("recovered", self.node_id, detail=self.storage.recovery.note())
        if self.spec is not None and not self.opts.observer:
            self._start_worker()
        if self.storage is not None:
            self._spawn(self._remember_peers())
        try:
            await self.net.start()
        except MetricsError as exc:
            raise NodeError(str(exc)) from None
        await self.stop_event.wait()
        await self._shutdown()
        return self.exit_code

    def make_driver(self, now: float) -> None:
        """The node driver, with a repair gate when this node has a state dir."""
        assert self.rt is not None
        gate = None
        if self.storage is not None:
            # A clock set back since the crash must not make our own older records look
            # newer than this start (a twin): none on disk is newer than this start.
            gate = RepairGate(self.node_id, self.ledger, expect_peers=bool(self._seeds), now=now,
                              start_wall=max(time.time(), math.nextafter(self.storage.last_own_wall, math.inf)),
                              config=GateConfig.for_profile(PROFILES[self.opts.profile]),
                              tail_own=self.storage.recovery.tail_own)
        held = self.storage.meta.study if self.storage is not None else None
        self.driver = NodeDriver(self.node_id, self.ledger, self.rt.core, observer=self.opts.observer,
                                 gate=gate, linger=Linger(self.opts.grace, forever=self.opts.linger),
                                 study=held, study_lost=self._study_lost())
        self.rt.bind_driver(self.driver, self._on_actions)

    def request_stop(self, code: int = 0, error: str | None = None) -> None:
        if not self.stop_event.is_set():
            self.exit_code, self.error = code, error
        self.stop_event.set()

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
        disk_ok = self.storage is None or self.storage.failed is None
        if self.rt is not None:  # abandons our trials, gossips LEAVE, final push-pull
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.rt.stop(leave=disk_ok and self._leave), 8.0)
        if self.worker is not None:
            await self.worker.stop_current(grace=1.0)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.worker is not None:
            await self.worker.close()
        self.net.stop()
        if self.storage is not None:
            self.storage.close()

    # -- what the driver asks for ------------------------------------------------------
    def _on_actions(self, actions: list[Any]) -> None:
        starts: list[StartTrial] = []  # a batch's starts come in one list (core/driver.py)
        for a in actions:
            if type(a) is StartTrial:
                starts.append(a)
                continue
            handler = _HANDLERS.get(type(a))
            if handler is not None:
                handler(self, a)
            else:
                self._member_event(a)
        if starts:
            self._start_trials(starts)

    def _persist(self, a: Persist) -> None:
        if self.storage is not None:
            try:  # own ones durable before gossip sees them
                self.storage.append(a.entries, sync=a.own)
            except StorageError as exc:
                self._disk_failed(exc)
                return
        if a.own:
            assert self.driver is not None
            self.driver.handle_persisted(asyncio.get_running_loop().time(), time.time())

    def _start_trials(self, cmds: list[StartTrial]) -> None:
        for cmd in cmds:
            batch = f" (batch of {len(cmds)})" if len(cmds) > 1 else ""
            self._event("started", self.node_id, cmd.trial,
                        f"slot {cmd.slot}" + (" (retry)" if cmd.retry_of else "") + batch)
        self._spawn(self._run_trial(cmds[0]) if len(cmds) == 1 else self._run_batch(cmds))

    def _stop_trial(self, cmd: StopTrial) -> None:
        self._event("stopped", self.node_id, cmd.trial, cmd.reason)
        if self.worker is not None:  # only this trial: the rest of its batch goes on
            self._spawn(self.worker.stop_trial(trial_id_str(cmd.trial)))

    def _study_done(self, cmd: StudyDone) -> None:
        self.done = cmd.reason
        self._event("done", None, detail=cmd.reason)
        log.info("study done: %s", cmd.reason)

    def _may_exit(self, a: MayExit) -> None:
        self.request_stop(0)  # done, and the peers that ran the study are done too

    def _study_found(self, a: StudyFound) -> None:
        if self.spec is not None:
            return  # our own --study: its worker is already starting
        try:
            spec = spec_from_entry(a.spec)
        except StudyError as exc:
            self.request_stop(2, f"cannot run the cluster's study: {exc}")
            return
        try:  # code comes from this machine's operator, never from the network
            objectives.check_allowed(spec.objective, self._allowed(spec))
        except objectives.ObjectiveError as exc:
            self.request_stop(2, str(exc))
            return
        self.spec = spec
        self._start_worker()

    def _allowed(self, spec: StudySpec) -> list[str]:
        """Objectives this machine's operator allowed: ``--allow-objective``, and that of
        the study this state dir already ran (allowed when it was adopted)."""
        entry = self.ledger.study
        ran = (self.storage is not None and entry is not None
               and self.storage.meta.study == entry.fingerprint)
        return [*self.opts.allow_objectives, *([spec.objective] if ran else [])]

    def _incarnation(self, a: Incarnation) -> None:
        if self.storage is not None:
            try:
                self.storage.set_incarnation(a.value)
            except StorageError as exc:
                self._disk_failed(exc)

    def _fatal(self, a: Fatal) -> None:
        self._leave = self._leave and a.leave
        self.request_stop(a.code, a.message)

    def _note(self, a: Note) -> None:
        if a.kind == "repaired":
            log.warning("%s", a.detail)
        self.net.on_note(a)
        self._event(a.kind, a.node, a.trial, a.detail)

    def _disk_failed(self, exc: StorageError) -> None:
        """The state dir refused a write: stop gossiping now (what it holds unsaved must
        not leave), leave so the running trial is retried elsewhere, exit 1."""
        if self.rt is not None:
            if self.driver is not None and self.rt._loop is not None:
                self.driver.handle_disk_failed(self.rt._loop.time(), time.time())
            self.rt.halt()
        self.request_stop(1, f"{str(exc).rstrip('.')}; the node stopped and its running trial "
                             "is left to the other nodes")

    async def _remember_peers(self) -> None:
        """Keep the addresses of the known members in the state dir (checked every 0.5 s,
        written when they changed). Members that left or died count too, until the member
        table forgets them: in a short study a peer may join and leave between two checks,
        and a restart should still know where its cluster was."""
        assert self.storage is not None and self.rt is not None
        while True:
            addrs = [_addr_str(m.addr) for m in self.rt.core.members() if m.node != self.node_id]
            try:
                self.storage.remember_peers(addrs)
            except StorageError as exc:
                self._disk_failed(exc)
                return
            await asyncio.sleep(0.5)

    def members(self) -> dict[int, MemberView]:
        assert self.driver is not None
        return self.driver.members()

    # -- the worker ------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self._worker_task is None:
            self._worker_task = self._spawn(self._load_worker())

    async def _load_worker(self) -> None:
        """Start the worker for ``self.spec``; once it loaded its data, the search starts."""
        assert self.spec is not None and self.storage is not None and self.rt is not None
        options = dict(self.spec.objective_options)
        if self.opts.data_dir:
            options["data_dir"] = self.opts.data_dir
        options = self.net.worker_options(options)
        capacity = self.opts.batch or self.spec.batch or 1
        lanes = lanes_for(capacity)  # a batch's members train side by side, one per core
        threads = {} if lanes == 1 else {"threads": max(1, ((os.cpu_count() or 2) - 1) // lanes)}
        worker = WorkerLanes([WorkerClient(self.spec.objective, options,
                                           cache_dir=self.storage.root / "jax-cache",
                                           stderr_path=self.storage.root / "node.log", **threads)
                              for _ in range(lanes)])
        try:
            self.worker_info = await worker.start()
        except SetupError as exc:
            await worker.close()
            if self.net.may_fetch():
                await self._refetch(f"this node cannot load the dataset ({exc})")
                return
            self.request_stop(2, f"the objective could not start on this node: {exc}")
            return
        self.worker = worker
        ds = self.worker_info.get("dataset") or {}
        if ds:
            self._event("ready", self.node_id, detail=f"dataset {ds.get('name')} from {ds.get('source')}"
                        + (f", {worker.lanes} workers" if worker.lanes > 1 else ""))
        spec = self.spec
        fp = spec.fingerprint(str(ds.get("fingerprint", "")))
        entry = self.ledger.study
        if (self.opts.spec is None and entry is not None and entry.fingerprint != fp
                and not spec_diff(spec.to_dict(), entry.spec) and self.net.may_fetch()):
            self.worker = None
            await worker.close()
            await self._refetch("this node's dataset differs from the cluster's")
            return
        self.net.serve_dataset(options, ds)
        if entry is None or entry.fingerprint == fp:  # else the driver says what differs
            try:
                self.storage.adopt_study(fp)
            except DiskError as exc:
                self._disk_failed(exc)
                return
            except StorageError as exc:
                self.request_stop(2, str(exc))
                return
        config = SearchConfig.for_profile(PROFILES[self.opts.profile], max_retries=spec.max_retries,
                                          trial_timeout=spec.trial_timeout)
        config = dataclasses.replace(config, capacity=capacity, refill=worker.lanes > 1)
        assert self.driver is not None
        # members trained side by side in their own workers need no shared shape class:
        # the sampler draws each one freely (class filling slows TPE's search, RESULTS.md)
        plans = make_plan if worker.lanes == 1 else free_batch_plan
        self.rt.call(self.driver.handle_worker_ready, config, plans, (spec.to_dict(), fp),
                     from_cluster=self.opts.spec is None)

    async def _refetch(self, why: str) -> None:
        """Fetch the study's dataset from a peer, then start the worker again on it."""
        if await self.net.fetch(why):
            self._worker_task = self._spawn(self._load_worker())

    async def _run_trial(self, cmd: StartTrial) -> None:
        assert self.worker is not None and self.rt is not None and self.driver is not None
        rt, driver = self.rt, self.driver

        def on_report(step: int, value: float) -> Any:
            self._progress[cmd.trial] = step
            return rt.call(driver.handle_trial_report, cmd.trial, step, value)

        try:
            out = await self.worker.run(trial_id_str(cmd.trial), cmd.slot, cmd.params, on_report)
        except SetupError as exc:
            rt.call(driver.handle_setup_failed, cmd.trial)
            self.request_stop(2, f"the worker could not restart: {exc}")
            return
        self._progress.pop(cmd.trial, None)
        rt.call(driver.handle_trial_finished, cmd.trial,
                Outcome(_STATUS[out.status], out.value, out.error, out.duration))

    async def _run_batch(self, cmds: list[StartTrial]) -> None:
        """Several trials in one ``run_batch``: each member reports, is pruned and ends
        on its own; the driver hears each member's end as the worker sends it."""
        assert self.worker is not None and self.rt is not None and self.driver is not None
        rt, driver = self.rt, self.driver
        ids = {trial_id_str(c.trial): c.trial for c in cmds}
        ended: set[str] = set()

        def on_report(tid: str, step: int, value: float) -> Any:
            self._progress[ids[tid]] = step
            return rt.call(driver.handle_trial_report, ids[tid], step, value)

        def on_result(tid: str, out: Any) -> None:
            ended.add(tid)
            self._progress.pop(ids[tid], None)
            rt.call(driver.handle_trial_finished, ids[tid],
                    Outcome(_STATUS[out.status], out.value, out.error, out.duration))

        try:
            outs = await self.worker.run_batch([(t, c.slot, c.params) for t, c in
                                                zip(ids, cmds, strict=True)], on_report,
                                               on_result=on_result)
        except SetupError as exc:
            for tid in ids:
                if tid not in ended:
                    rt.call(driver.handle_setup_failed, ids[tid])
            self.request_stop(2, f"the worker could not restart: {exc}")
            return
        for tid, out in outs.items():
            if tid not in ended:
                on_result(tid, out)

def free_batch_plan(entry: Any) -> Plan:
    """``make_plan`` without class filling: a batch's members are drawn each on its own."""
    return Plan(StudySpec.from_dict(entry.spec), entry.fingerprint, batch_keys=())


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """node.log: a full or failing disk drops log lines instead of printing tracebacks."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.dropped = getattr(self, "dropped", 0) + 1


def _addr_str(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_HANDLERS: dict[type, Any] = {
    Persist: Node._persist, StopTrial: Node._stop_trial,
    StudyDone: Node._study_done, StudyFound: Node._study_found, Incarnation: Node._incarnation,
    Fatal: Node._fatal, Note: Node._note, MayExit: Node._may_exit,
}
