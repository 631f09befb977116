"""The simulation engine: nodes, the network and faults on one virtual clock.

:class:`Simulation` owns the event heap, the :class:`~simulations.network.Network`,
every live :class:`~simulations.node.SimNode` and every :class:`Disk`. It
dispatches events (datagrams, timers, TCP frames, trial steps, faults), runs
push-pull sessions of the real ``SyncSession`` over modelled TCP streams, and
records the ground truth the checkers and the report read: what each node
ever held, membership transitions, detection times, trials and busy time.
The trace hash is blake2b over every dispatched event, so two runs with one
seed hash the same whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from p2phpo.core import gossip as gossip_module
from p2phpo.core import gossip_sync as gossip_sync_module
from p2phpo.core.entries import Entry
from p2phpo.core.gossip import TcpRequest
from p2phpo.core.messages import Addr
from p2phpo.core.profiles import Profile, profile
from p2phpo.core.records import Verifier, decode_record
from p2phpo.core.search import SearchConfig
from p2phpo.core.wire import Cipher, pack, unpack_strict
from simulations.clock import EventHeap, derive_rng
from simulations.metrics import Metrics
from simulations.network import LinkModel, Network
from simulations.node import Disk, NodeSetup, SimNode, new_identity, skew_of
from simulations.objective import SimObjective
from simulations.plan import fingerprint, study_spec

TCP_FRAME_OVERHEAD = 4 + 16  # length prefix + AEAD tag per sealed frame


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulation run. Defaults: a small, fast `lan` cluster."""

    nodes: int = 8
    seed: int = 0
    profile: str = "lan"
    link: LinkModel = field(default_factory=LinkModel)
    objective: SimObjective = field(default_factory=lambda: SimObjective(mean_duration=30.0))
    n_trials: int | None = None
    """Cluster budget; default 4 trials per node."""
    pruner: str = "asha"
    speeds: tuple[float, float] = (1.0, 1.0)
    """Node speeds spread linearly from the first to the second value."""
    max_skew: float = 0.5
    """Wall clocks differ by up to this many seconds either way."""
    cipher: str = "null"
    search: SearchConfig | None = None
    """Default: what ``p2phpo node`` uses for the profile (see :func:`search_config`)."""
    join_spread: float = 1.0
    timeout: float | None = None
    """Study ``timeout`` in seconds (each node's own clock from when it adopted the study)."""
    capacity: int = 1
    """Trials each node claims at once (``p2phpo node --batch``); its members run side by side."""

    @property
    def budget(self) -> int:
        return self.n_trials if self.n_trials is not None else 4 * self.nodes


def search_config(prof: Profile) -> SearchConfig:
    """The search settings ``p2phpo node`` derives from the gossip profile."""
    return SearchConfig.for_profile(prof)


@dataclass(slots=True)
class _Tcp:
    a: int
    a_life: int
    b: int
    b_life: int
    sa: Any
    sb: Any = None
    notified: list[int] = field(default_factory=list)


class Simulation:
    """Many node cores, one network, one clock."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.heap = EventHeap()
        self.net = Network(derive_rng(config.seed, "net"), config.link)
        self.base_link = config.link
        prof = profile(config.profile)
        search = config.search if config.search is not None else search_config(prof)
        search = replace(search, capacity=config.capacity) if config.capacity != 1 else search
        self.setup = NodeSetup(config.seed, prof, config.objective, search,
                               Cipher.AES_GCM if config.cipher == "aes-gcm" else Cipher.NULL,
                               config.link.max_datagram)
        spec = study_spec(config.objective, config.budget, config.seed, config.pruner,
                          config.timeout)
        self.study = (spec, fingerprint(spec))
        self.nodes: dict[int, SimNode] = {}
        self.disks: dict[int, Disk] = {}
        self.host: dict[int, int] = {}  # node id -> host index (its address)
        self.lives: dict[int, int] = {}
        self.speed: dict[int, float] = {}
        self.down: dict[int, float] = {}  # crashed and not (yet) restarted -> crash time
        self.retired: set[int] = set()  # ids whose disk was lost: never coming back
        self.metrics = Metrics(self)
        self._trace = hashlib.blake2b(digest_size=16)
        self._trace_buf: list[str] = []
        self._tcp: dict[int, _Tcp] = {}
        self._decoded: dict[bytes, Entry] = {}
        self.verifier = Verifier()  # one memo of signature verdicts for every simulated node
        self._tcp_seq = 0
        self.seed_addrs: list[Addr] = []

    # -- building the cluster ------------------------------------------------------
    def speed_of(self, index: int) -> float:
        lo, hi = self.config.speeds
        n = max(1, self.config.nodes - 1)
        return lo + (hi - lo) * (index % self.config.nodes) / n

    def start(self) -> None:
        """Boot ``nodes`` nodes: the first writes the STUDY, the rest join it."""
        for index in range(self.config.nodes):
            t = 0.0 if index == 0 else derive_rng(self.config.seed, "join", index).random() * self.config.join_spread
            self.at(t, "boot", lambda sim, i=index: sim.boot(i))

    def start_warm(self) -> None:
        """Boot every node at t=0 already knowing the whole membership (benchmarks at large N).

        As if each node had joined long ago: every member table holds every node
        ALIVE, every node holds the STUDY (as its join push-pull with a seed would
        have brought it), every member's ready flag is known and nothing about
        the joins is left to gossip: no join round, no join push-pull.
        """
        nodes = [self.boot(index) for index in range(self.config.nodes)]
        first = nodes[0]
        entry, tag = first.ledger.study, first.gossip.study_tag
        raw = None if entry is None else first.ledger.raw(entry.origin, entry.seq)
        study = (tag, (raw,)) if tag is not None and raw is not None else (None, ())
        now = self.heap.now
        for node in nodes:
            node.warm([], now, study, hold=True)  # holds the study, is ready and says so;
            # it claims nothing yet: knowing only itself, it would take every slot as its own
        records = [n.gossip.membership.records()[0] for n in nodes]  # each its own signed Alive
        for node in nodes:
            node.warm(records, now)

    def boot(self, index: int, disk: Disk | None = None) -> SimNode:
        """Start a node on host ``index``: fresh (new id, empty disk) or on ``disk``."""
        if disk is None:
            life = sum(1 for h in self.host.values() if h == index)
            disk = Disk(new_identity(self.config.seed, index, life), verifier=self.verifier)
            self.disks[disk.node_id] = disk
        node_id = disk.node_id
        self.host[node_id] = index
        self.speed.setdefault(node_id, self.speed_of(index))
        self.lives[node_id] = self.lives.get(node_id, 0) + 1
        addr = self.net.attach(node_id, index)
        self.down.pop(node_id, None)
        first = not self.seed_addrs
        seeds = [a for a in self.seed_addrs if a != addr][:3]
        node = SimNode(self.setup, disk, addr, self, now=self.heap.now, speed=self.speed[node_id],
                       skew=skew_of(self.config.seed, node_id, self.config.max_skew),
                       seeds=seeds, local_study=self.study if first else None,
                       life=self.lives[node_id])
        self.nodes[node_id] = node
        if addr not in self.seed_addrs:
            self.seed_addrs.append(addr)
        self.metrics.node_up(node, self.heap.now)
        return node

    # -- faults ----------------------------------------------------------------------
    def at(self, time: float, name: str, action: Any) -> None:
        self.heap.push(time, "fault", 0, (name, action))

    def crash(self, node_id: int, *, lose_disk: bool = False) -> None:
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        now = self.heap.now
        self.metrics.node_down(node, now)
        self.down[node_id] = now
        if lose_disk:
            self.retired.add(node_id)
            self.disks[node_id].raws = []

    def restart(self, node_id: int) -> SimNode | None:
        """Restart a crashed node on its disk (same id), or on a new disk if it was lost."""
        if node_id in self.nodes:
            return None
        index = self.host[node_id]
        if node_id in self.retired:
            return self.boot(index)
        disk = self.disks[node_id]
        disk.restarts += 1
        disk.incarnation += 1
        return self.boot(index, disk)

    def pause(self, node_id: int, duration: float) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            node.paused_until = self.heap.now + duration
            self.metrics.paused[node_id] = (self.heap.now, node.paused_until)

    def leave(self, node_id: int) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            node.leave(self.heap.now)
            self.at(self.heap.now + 1.0, "exit", lambda sim: sim.crash(node_id))

    def heal(self) -> None:
        self.net.heal(self.heap.now)
        self.net.model = self.base_link

    # -- Observer (called by nodes) --------------------------------------------------
    def schedule(self, time: float, kind: str, node: int, payload: Any) -> None:
        self.heap.push(time, kind, node, payload)

    def send(self, node: SimNode, data: bytes, addr: Addr, now: float) -> None:
        for t, _dst, payload in self.net.send(node.id, addr, data, now):
            self.heap.push(t, "dgram", 0, (node.addr, addr, payload))

    def on_held(self, node: SimNode, entries: list[Entry], now: float) -> None:
        self.metrics.held(node, entries, now)

    def on_merge(self, node: SimNode, items: list[Any], before: dict[int, int]) -> None:
        self.metrics.merged(node, items, before)

    def on_member_event(self, node: SimNode, event: Any, now: float) -> None:
        self.metrics.member_event(node, event, now)

    def on_trial(self, node: SimNode, kind: str, trial: Any, now: float) -> None:
        self.metrics.trial(node, kind, trial, now)

    # -- TCP -------------------------------------------------------------------------
    def open_tcp(self, node: SimNode, req: TcpRequest, now: float) -> None:
        peer = self.net.node_at(req.addr)
        if peer is None or peer not in self.nodes:
            self.net.traffic.tcp_failed += 1
            return
        self._tcp_seq += 1
        sid = self._tcp_seq
        session = node.gossip.sync_session(initiator=True, peer=req.addr)
        s = _Tcp(node.id, node.life, peer, self.nodes[peer].life, session)
        self._tcp[sid] = s
        self._tcp_send(sid, node.id, peer, s.sa.start(now), now, connect=True)

    def _tcp_send(self, sid: int, src: int, dst: int, frames: list[Any], now: float,
                  connect: bool = False) -> None:
        if not frames:
            return
        wired = [pack(f) for f in frames]
        nbytes = sum(len(w) + TCP_FRAME_OVERHEAD for w in wired)
        delay = self.net.tcp_delay(src, dst, nbytes)
        if delay is None:
            self._tcp.pop(sid, None)
            return
        self.heap.push(now + delay, "tcp", dst, (sid, wired))

    def _on_tcp(self, node: SimNode, sid: int, wired: list[bytes], now: float) -> None:
        s = self._tcp.get(sid)
        if s is None:
            return
        initiator = node.id == s.a
        if (s.a_life if initiator else s.b_life) != node.life:
            self._tcp.pop(sid, None)
            return
        if not initiator and s.sb is None:
            s.sb = node.gossip.sync_session(initiator=False)
        session = s.sa if initiator else s.sb
        out: list[Any] = []
        for w in wired:
            out += session.receive(unpack_strict(w), now)
        self._tcp_send(sid, node.id, s.b if initiator else s.a, out, now)
        if session.done and node.id not in s.notified:
            s.notified.append(node.id)
            peer = s.b if initiator else s.a
            if session.synced:
                self.metrics.syncs += 1
            if len(s.notified) == 2:
                self._tcp.pop(sid, None)
            node.pushpull_done(peer, session.synced, now)
            return
        node.stream(now)

    # -- the loop --------------------------------------------------------------------
    def run_until(self, t_end: float) -> None:
        heap = self.heap
        modules = (gossip_module, gossip_sync_module)  # UDP and push-pull decoding
        saved = [m.decode_record for m in modules]
        for m in modules:
            m.decode_record = self._decode_once
        try:
            while True:
                t = heap.peek_time()
                if t is None or t > t_end:
                    break
                self._dispatch(heap.pop())
        finally:
            for m, fn in zip(modules, saved, strict=True):
                m.decode_record = fn
        heap.now = max(heap.now, t_end)

    def _decode_once(self, raw: bytes) -> Entry:
        """``decode_record`` shared by every simulated node: a pure function of the bytes.

        Every node decodes every entry many times (each duplicate copy); in one
        process the result of the first decode is reused. Entries are frozen, so
        sharing the object changes nothing a node can observe; bad bytes still
        raise ``EntryError`` each time.
        """
        key = bytes(raw)
        entry = self._decoded.get(key)
        if entry is None:
            entry = decode_record(key)
            self._decoded[key] = entry
        return entry

    def _dispatch(self, ev: Any) -> None:
        kind = ev.kind
        if kind == "fault":
            self._trace_event(ev.time, kind, 0, ev.payload[0])
            ev.payload[1](self)
            return
        if kind == "dgram":
            node_id = self.net.node_at(ev.payload[1])
        else:
            node_id = ev.node
        node = self.nodes.get(node_id) if node_id is not None else None
        if node is None:
            return
        if node.paused_until > ev.time:
            self.heap.push(node.paused_until, kind, ev.node, ev.payload)
            return
        now = ev.time
        if kind == "dgram":
            src, _, data = ev.payload
            self.net.received(node.id, len(data))
            self._trace_event(now, kind, node.id, len(data))
            node.receive(data, src, now)
        elif kind == "timer":
            life, gen = ev.payload
            if life == node.life and gen == node.timer_gen:
                self._trace_event(now, kind, node.id, gen)
                node.timer(now)
        elif kind == "trial":
            life, trial = ev.payload
            if life == node.life:
                self._trace_event(now, kind, node.id, trial)
                node.trial_step(trial, now)
        elif kind == "tcp":
            sid, wired = ev.payload
            self._trace_event(now, kind, node.id, sid)
            self._on_tcp(node, sid, wired, now)

    def _trace_event(self, t: float, kind: str, node: int, detail: Any) -> None:
        # Hashed in batches (one ``update`` of the joined text hashes the same as one
        # per event); ``trace_hash`` takes what is still pending.
        buf = self._trace_buf
        buf.append(f"{t!r}|{kind}|{node}|{detail!r};")
        if len(buf) >= 4096:
            self._flush_trace()

    def _flush_trace(self) -> None:
        self._trace.update("".join(self._trace_buf).encode())
        self._trace_buf.clear()

    def trace_hash(self) -> str:
        self._flush_trace()
        h = self._trace.copy()
        for node_id in sorted(self.nodes):
            led = self.nodes[node_id].ledger
            h.update(f"{node_id}:{led.vv_hash()}:{len(led)};".encode())
        return h.hexdigest()

    # -- views for checkers and reports ----------------------------------------------
    def live(self) -> list[SimNode]:
        return [self.nodes[n] for n in sorted(self.nodes)]

    def expected_down(self) -> list[int]:
        """Ids that are down at the end and must be DEAD (or LEFT) everywhere."""
        return sorted(n for n in self.down if n not in self.nodes)
