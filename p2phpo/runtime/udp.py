"""asyncio adapter for the gossip core (uvloop when available).

Thin on purpose: it binds UDP and TCP on the same port, feeds the core every
datagram with ``loop.time()``, sends what the core returns, keeps exactly one
timer armed from ``core.get_timer()``, runs the TCP push-pulls the core asks
for, and hands the core's events to an ``asyncio.Queue`` (and an optional
callback). All protocol decisions live in :mod:`p2phpo.core.gossip`.

    rt = GossipRuntime.create(node_id, ledger, bind="0.0.0.0:7946", keyring=ring)
    await rt.start(seeds=[("10.0.0.2", 7946)])
    ...
    await rt.stop()          # LEAVE, then a final push-pull
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
from collections.abc import Callable
from typing import Any

from p2phpo.core.entries import Entry
from p2phpo.core.gossip import Event, GossipConfig, GossipCore
from p2phpo.core.identity import Identity
from p2phpo.core.joinwatch import SeedState
from p2phpo.core.ledger import Ledger
from p2phpo.core.messages import Addr
from p2phpo.core.profiles import LAN, Profile
from p2phpo.core.wire import Cipher, Keyring, Opener, Sealer, label_hash
from p2phpo.runtime.probe import probe_seed
from p2phpo.runtime.resolve import ResolveError, SeedList, is_ip, resolve, show
from p2phpo.runtime.tcp import PushPullServer, TcpSettings, pushpull_client

INSECURE_KEY = bytes(32)
"""Key used without ``--key-file``: the null cipher under a public key (loopback only)."""


PROBE_AFTER = 3.0
"""Seconds of UDP silence from the seeds before their TCP port is probed."""
PROBE_EVERY = 10.0


class RuntimeConfigError(ValueError):
    """A bind/advertise/key combination the runtime refuses; ``str()`` is one sentence."""


def parse_hostport(text: str, default_port: int = 7946) -> Addr:
    """``host:port``, ``[v6addr]:port``, ``host`` or ``[v6addr]`` as a (host, port) pair."""
    text = text.strip()
    if text.isdigit():  # a port alone would read as the IPv4 address 0.0.x.y
        raise RuntimeConfigError(f"{text!r} has no host: write HOST:{text}, e.g. 127.0.0.1:{text}.")
    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else default_port
            ipaddress.IPv6Address(host)
        elif text.count(":") == 1:
            host, _, p = text.partition(":")
            port = int(p)
        else:
            host, port = text, default_port
    except ValueError:
        raise RuntimeConfigError(f"cannot read {text!r} as host:port or [v6addr]:port.") from None
    if not host or not 0 <= port <= 65535:
        raise RuntimeConfigError(f"cannot read {text!r} as host:port or [v6addr]:port.")
    return host, port


def parse_peer(text: str, default_port: int = 7946) -> Addr:
    """A peer's address (``--seed``, ``--advertise``): :func:`parse_hostport`, port 1-65535."""
    host, port = parse_hostport(text, default_port)
    if port == 0:
        raise RuntimeConfigError(f"{text.strip()!r}: port 0 is no peer's port (0 only asks the OS "
                                 "for a free port when binding); give the port the peer listens on.")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keyring: Keyring | None, insecure: bool) -> None:
    """Refuse a non-loopback ``host`` without a key (names are checked once resolved)."""
    if not is_ip(host) and host != "localhost":
        return
    if keyring is None and not insecure and not is_loopback(host):
        raise RuntimeConfigError(
            f"refusing to bind {host} without a cluster key: pass --key-file "
            "(create one with `p2phpo keygen`) or --insecure."
        )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Any) -> Any:
    """``asyncio.run`` on uvloop when available."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, rt: GossipRuntime) -> None:
        self.rt = rt

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.rt._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.rt.send_errors += 1


class GossipRuntime:
    """One node's sockets, timer and push-pull tasks around a :class:`GossipCore`."""

    def __init__(
        self,
        core: GossipCore,
        *,
        bind: Addr,
        keyring: Keyring,
        label: bytes,
        secure: bool,
        insecure: bool = False,
        advertise: Addr | None = None,
        on_event: Callable[[Event], None] | None = None,
        max_queue: int = 10_000,
    ) -> None:
        check_bind(bind[0], keyring if secure else None, insecure)
        self.core = core
        self.bind = bind
        self.advertise = advertise
        self.secure = secure
        self.insecure = insecure
        self.seeds = SeedList([])
        self._seed_addrs: list[Addr] = []
        self.seed_probes: dict[Addr, str] = {}
        self.on_event = on_event
        self.events: asyncio.Queue[Event] = asyncio.Queue(max_queue)  # unused with on_event
        self.events_lost = 0
        self.send_errors = 0
        self.tcp = TcpSettings(keyring, label, frozenset({label}))
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.base_events.Server | None = None
        self._pp: PushPullServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._final: list[Any] = []  # the final push-pull before exit
        self._pushpulls: set[asyncio.Task[Any]] = set()
        self.addr: Addr | None = None

    @classmethod
    def create(
        cls,
        node_id: int,
        ledger: Ledger,
        *,
        bind: str | Addr = "127.0.0.1:0",
        keyring: Keyring | None = None,
        profile: Profile = LAN,
        meta: dict[str, Any] | None = None,
        cluster: str = "default",
        restart: int = 0,
        incarnation: int = 0,
        insecure: bool = False,
        advertise: str | Addr | None = None,
        rng: random.Random | None = None,
        on_event: Callable[[Event], None] | None = None,
        identity: Identity | None = None,
        **config: Any,
    ) -> GossipRuntime:
        """Build the wire, the core and the runtime for a node (no sockets yet).

        ``identity`` (the state dir's, or an observer's ephemeral one) signs this
        node's Alive; ``node_id`` must be its id. Without it (protocol tests only)
        the core neither signs nor requires signed Alives."""
        bind_addr = parse_hostport(bind, 0) if isinstance(bind, str) else bind
        adv = parse_peer(advertise) if isinstance(advertise, str) else advertise
        check_bind(bind_addr[0], keyring, insecure)
        secure = keyring is not None
        ring = keyring if keyring is not None else Keyring([INSECURE_KEY], cipher=Cipher.NULL)
        label = label_hash(cluster)
        salt = int.from_bytes(os.urandom(8), "big")
        sealer = Sealer(ring, node_id, restart, salt, label)
        opener = Opener(ring, [label])
        cfg = GossipConfig(profile=profile, addr=adv or bind_addr, incarnation=incarnation, **config)
        rng = rng if rng is not None else random.Random(int.from_bytes(os.urandom(8), "big"))
        core = GossipCore(node_id, cfg, rng, ledger, sealer, opener, meta, identity=identity)
        return cls(
            core, bind=bind_addr, keyring=ring, label=label, secure=secure,
            insecure=insecure, advertise=adv, on_event=on_event,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self, seeds: list[Addr] | None = None) -> Addr:
        """Bind UDP and TCP on one port, join ``seeds``; returns the bound address.

        Host names in the bind address, ``advertise`` and ``seeds`` are resolved
        on the loop; seeds that do not answer are looked up again with backoff
        until the node has joined (RuntimeConfigError if the bind or advertised
        name does not resolve, or resolves off loopback without a key).
        """
        loop = self._loop = asyncio.get_running_loop()
        host, port = await self._resolve_own(self.bind, "--bind")
        check_bind(host, self.tcp.keyring if self.secure else None, self.insecure)
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(host, port)
        )
        sock = self._transport.get_extra_info("sockname")
        self.addr = (host, sock[1])
        self._pp = PushPullServer(self.core, self.tcp, self._on_stream, self._on_pushpull_done)
        try:
            self._server = await asyncio.start_server(self._pp.handle, host, sock[1])
        except OSError:
            self._transport.close()
            raise
        family = self._transport.get_extra_info("socket").family
        self.seeds = SeedList([tuple(s) for s in seeds or []], family)  # type: ignore[misc]
        self._seed_addrs = await self.seeds.resolve() if self.seeds.specs else []
        if self.advertise is not None:
            adv = await self._resolve_own(self.advertise, "--advertise")
            self.core.set_addr(adv)
        elif _is_any(host):  # the address that routes to the seeds, else the outward one
            self.core.set_addr((_route_ip(host, self._seed_addrs), sock[1]))
        else:
            self.core.set_addr(self.addr)
        self._in_join(self._seed_addrs, loop.time())
        self._flush()
        if self.seeds.specs:
            self._spawn(self._reresolve())
            self._spawn(self._probe_seeds())
        return self.addr

    async def _resolve_own(self, addr: Addr, option: str) -> Addr:
        try:
            found = await resolve(addr[0], addr[1])
        except ResolveError as exc:
            raise RuntimeConfigError(f"{option} {show(addr)}: {exc}.") from None
        return found[0]

    async def _reresolve(self) -> None:
        """While not joined, look the seeds up again with backoff and rejoin through them."""
        assert self._loop is not None
        while True:
            await asyncio.sleep(self.seeds.delay())
            core = self.core
            if core.membership.joined or core.membership.leaving:
                self.seeds.attempts = 0  # joined: the next outage starts with short waits
                continue
            addrs = await self.seeds.resolve()
            if addrs != self._seed_addrs:
                self._seed_addrs = addrs
                self._in_join(addrs, self._loop.time())
                self._flush()

    async def _probe_seeds(self) -> None:
        """While not joined, try a TCP hello with the seeds that stay silent over UDP."""
        await asyncio.sleep(PROBE_AFTER)
        while True:
            core = self.core
            if not core.membership.joined and not core.membership.leaving:
                silent = [a for a in self._seed_addrs if a not in core.seed_heard]
                verdicts = await asyncio.gather(
                    *(probe_seed(a, self.tcp, core.node_id) for a in silent))
                self.seed_probes.update(zip(silent, verdicts, strict=True))
            await asyncio.sleep(PROBE_EVERY)

    def seed_states(self) -> list[SeedState]:
        """What the join diagnostics know of each resolved seed."""
        core = self.core
        return [SeedState(a, self.seeds.name_of(a), core.seed_heard.get(a),
                          core.drops_from(a), self.seed_probes.get(a))
                for a in self._seed_addrs if a != core.config.addr]

    def seed_errors(self) -> dict[str, str]:
        """Seeds whose names do not resolve: ``{"node1:7946": "cannot resolve node1: ..."}``."""
        return {show(spec): err for spec, err in self.seeds.errors.items()}

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, leave: bool = True) -> None:
        """Leave gracefully (LEAVE gossiped, final push-pull) unless ``leave`` is False."""
        if leave and self._transport is not None:
            self._in_leave(asyncio.get_running_loop().time())
            self._flush()  # starts the final push-pull
            if self._pushpulls:  # let the final push-pull finish
                await asyncio.wait(set(self._pushpulls), timeout=self.tcp.deadline)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            if self._pp is not None:
                await self._pp.close()
            await self._server.wait_closed()
            self._server = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def halt(self) -> None:
        """Stop at once, without awaiting: gossip a LEAVE, then send and serve nothing more.

        For a node whose disk failed: its ledger may hold entries it could not
        persist, which no push-pull or sync reply may hand out.
        """
        loop = self._loop
        if self._transport is None or loop is None:
            return
        self.core.leave(loop.time())
        for data, addr in self.core.datagrams_to_send(loop.time()):
            self._transport.sendto(data, addr)
        self._transport.close()
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._tasks) + (list(self._pp.tasks) if self._pp is not None else []):
            t.cancel()
        if self._server is not None:
            self._server.close()

    # ------------------------------------------------------------------ node helpers
    def append_local(self, entries: list[Entry]) -> None:
        self.core.append_local(entries)
        self._flush()

    def set_meta(self, meta: dict[str, Any]) -> None:
        assert self._loop is not None
        self.core.set_meta(meta, self._loop.time())
        self._flush()


    def counters(self) -> dict[str, Any]:
        c = self.core.counters()
        c["events_lost"] = self.events_lost
        c["send_errors"] = self.send_errors
        if self._pp is not None:
            c["tcp_refused"] = self._pp.refused
            c["tcp_evicted"] = self._pp.evicted
            c["tcp_sessions"] = self._pp.sessions
        return c

    # ------------------------------------------------------------------ what the runtime drives
    # A node shell overrides these to drive its node driver instead of the bare core.
    def _in_join(self, seeds: list[Addr], now: float) -> None:
        self.core.join(seeds, now)

    def _in_leave(self, now: float) -> None:
        self.core.leave(now)
        peer = self.core.pushpull_peer()
        if peer is not None:
            self._final.append(peer)

    def _in_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.core.receive_datagram(data, addr, now)

    def _in_timer(self, now: float) -> None:
        self.core.handle_timer(now)

    def _in_stream(self, now: float) -> None:
        """Push-pull frames were fed to a session (the core merged what they held)."""

    def _in_pushpull_done(self, peer: int, ok: bool, now: float) -> None:
        """A push-pull with ``peer`` ended (``ok``: it completed)."""

    def _out_datagrams(self, now: float) -> list[tuple[bytes, Addr]]:
        return self.core.datagrams_to_send(now)

    def _out_tcp(self, now: float) -> list[Any]:
        out, self._final = self.core.tcp_requests(now) + self._final, []
        return out

    def _out_events(self) -> None:
        while (ev := self.core.next_event()) is not None:
            if self.on_event is not None:  # a callback consumer replaces the queue
                self.on_event(ev)
                continue
            try:
                self.events.put_nowait(ev)
            except asyncio.QueueFull:
                self.events_lost += 1

    def _next_timer(self) -> float | None:
        return self.core.get_timer()

    # ------------------------------------------------------------------ plumbing
    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        assert self._loop is not None
        self._in_datagram(data, addr, self._loop.time())
        self._flush()

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_at = None
        self._in_timer(self._loop.time())
        self._flush()

    def _on_stream(self) -> None:
        if self._loop is not None:
            self._in_stream(self._loop.time())
        self._flush()

    def _on_pushpull_done(self, peer: int, ok: bool) -> None:
        if self._loop is not None:
            self._in_pushpull_done(peer, ok, self._loop.time())
        self._flush()

    async def _pushpull(self, req: Any) -> bool:
        ok = await pushpull_client(self.core, req.addr, self.tcp, self._on_stream)
        self._on_pushpull_done(req.node, ok)
        return ok

    def _flush(self) -> None:
        """Hand out events, send what the core wants sent, start push-pulls, re-arm."""
        loop = self._loop
        if loop is None or self._transport is None:
            return
        self._out_events()
        now = loop.time()
        for data, addr in self._out_datagrams(now):
            self._transport.sendto(data, addr)
        for req in self._out_tcp(now):
            task = loop.create_task(self._pushpull(req))
            self._tasks.add(task)
            self._pushpulls.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._pushpulls.discard)
        self._rearm(loop)

    def _rearm(self, loop: asyncio.AbstractEventLoop) -> None:
        t = self._next_timer()
        if t == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = None if t is None else loop.call_at(t, self._on_timer)


def _is_any(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _route_ip(host: str, seeds: list[Addr]) -> str:
    """Our address on the way to the first seed that routes (a UDP connect sends
    nothing); without seeds, the outward interface's."""
    v6 = host == "::"
    for seed in seeds:
        try:
            with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(seed)
                return str(s.getsockname()[0])
        except OSError:
            continue
    return _primary_ip(host)


def _primary_ip(host: str) -> str:
    """The address of the interface that routes outward (a UDP connect sends nothing)."""
    v6 = host == "::"
    probe = ("2001:db8::1", 9) if v6 else ("192.0.2.1", 9)
    try:
        with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(probe)
            return s.getsockname()[0]
    except OSError:
        return "::1" if v6 else "127.0.0.1"
