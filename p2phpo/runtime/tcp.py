"""TCP push-pull over sealed frames: one client and one server coroutine.

Thin: the handshake and the sealing are ``TcpSession`` (wire), the exchange
is the core's ``SyncSession``; this module only moves bytes with deadlines
and limits:

- a connection is *pre-auth* until its peer is proven (its finished frame
  authenticated under this session's fresh keys; a replayed hello never
  gets there). At most ``preauth_cap`` are held; a new one evicts the
  oldest, so connections that never prove themselves cannot lock real
  peers out. The whole hello (both hellos and the finished frames) must
  complete within one ``deadline``, however the bytes trickle in.
- after it, every read has the same deadline; at most ``TcpBudget.session_cap``
  proven sessions run at once, and the bytes all connections hold in
  unfinished frames stay under ``TcpBudget.buffer_bytes`` (a connection that
  would exceed it is dropped and counted as ``over_limit``).

A failed session counts its reason in the core and closes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from p2phpo.core.gossip import GossipCore
from p2phpo.core.gossip_sync import SyncSession
from p2phpo.core.wire import DropReason, Keyring, Role, TcpSession, WireError

READ_CHUNK = 256 * 1024


@dataclass(slots=True)
class TcpBudget:
    """Node-wide TCP limits, shared by every connection (served and initiated)."""

    session_cap: int = 16
    """Most proven sessions running at once."""
    buffer_bytes: int = 16 << 20
    """Most bytes held in unfinished frames over all connections."""
    sessions: int = 0
    buffered: int = 0


@dataclass(frozen=True, slots=True)
class TcpSettings:
    keyring: Keyring
    label_hash: bytes
    accept_labels: frozenset[bytes]
    deadline: float = 5.0
    """For the whole hello, then for each read of a proven session."""
    preauth_cap: int = 16
    max_frame: int = 4 * 1024 * 1024
    budget: TcpBudget = field(default_factory=TcpBudget)


def _session(core: GossipCore, s: TcpSettings, role: Role) -> TcpSession:
    return TcpSession(
        s.keyring,
        role=role,
        nonce=os.urandom(16),
        sender=core.node_id,
        label_hash=s.label_hash,
        accept_labels=s.accept_labels,
        max_frame=s.max_frame,
    )


class _Stream:
    """One connection's reads: deadlines, and its share of the node's buffer budget."""

    def __init__(self, reader: asyncio.StreamReader, tcp: TcpSession, budget: TcpBudget) -> None:
        self.reader, self.tcp, self.budget = reader, tcp, budget
        self.held = 0

    async def feed(self, timeout: float) -> list[object]:
        """Objects of the frames completed by the next read (WireError on bad bytes)."""
        if timeout <= 0:
            raise TimeoutError
        data = await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
        if not data:
            raise ConnectionError("peer closed")
        b = self.budget
        if b.buffered - self.held + self.tcp.buffered + len(data) > b.buffer_bytes:
            raise WireError(DropReason.OVER_LIMIT, "tcp buffer budget exhausted")
        try:
            return self.tcp.feed(data)
        finally:
            self._account()

    def _account(self) -> None:
        now = self.tcp.buffered
        self.budget.buffered += now - self.held
        self.held = now

    def release(self) -> None:
        self.budget.buffered -= self.held
        self.held = 0



def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """``writer.write`` that reports a connection the peer already closed as a
    ``ConnectionResetError`` (uvloop raises ``RuntimeError`` for a write to a closed
    transport, which would escape the handlers' connection-error paths)."""
    if writer.is_closing():
        raise ConnectionResetError("the peer closed the connection")
    try:
        writer.write(data)
    except RuntimeError:
        if writer.is_closing():
            raise ConnectionResetError("the peer closed the connection") from None
        raise

async def _exchange(
    core: GossipCore,
    stream: _Stream,
    sync: SyncSession,
    writer: asyncio.StreamWriter,
    s: TcpSettings,
    on_change: Callable[[], None],
    pending: list[object] | None = None,
) -> bool:
    """Run one push-pull to completion; True if it finished cleanly with a peer of our study."""
    loop = asyncio.get_running_loop()
    tcp = stream.tcp
    started = False
    objs = list(pending or [])
    while True:
        hello = tcp.data_to_send()  # handshake bytes always go before any frame
        if hello:
            send(writer, hello)
        frames = []
        if tcp.established and not started:
            started = True
            frames += sync.start(loop.time())
        for obj in objs:
            frames += sync.receive(obj, loop.time())
        for f in frames:
            send(writer, tcp.seal_frame(f))
        on_change()
        await asyncio.wait_for(writer.drain(), s.deadline)
        if sync.done:
            return sync.synced
        try:
            objs = await stream.feed(s.deadline)
        except WireError as e:
            core.count_drop(e.reason)
            on_change()
            return False


async def pushpull_client(
    core: GossipCore, addr: tuple[str, int], s: TcpSettings, on_change: Callable[[], None]
) -> bool:
    """Connect to ``addr`` and push-pull; False on any failure (logged in counters only)."""
    writer = None
    stream = None
    b = s.budget
    if b.sessions >= b.session_cap:
        core.count_drop(DropReason.OVER_LIMIT)
        return False
    b.sessions += 1
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), s.deadline)
        stream = _Stream(reader, _session(core, s, Role.CLIENT), b)
        sync = core.sync_session(initiator=True, peer=addr)
        return await _exchange(core, stream, sync, writer, s, on_change)
    except (TimeoutError, OSError, ConnectionError):
        return False
    finally:
        b.sessions -= 1
        if stream is not None:
            stream.release()
        if writer is not None:
            writer.close()


class PushPullServer:
    """Accepts push-pull connections for one core."""

    def __init__(self, core: GossipCore, s: TcpSettings, on_change: Callable[[], None],
                 on_done: Callable[[int, bool], None] | None = None) -> None:
        self.core = core
        self.settings = s
        self.on_change = on_change
        self.on_done = on_done  # (peer id, completed) after each authenticated session
        self.refused = 0
        self.evicted = 0
        self.sessions = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._preauth: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}

    @property
    def preauth(self) -> int:
        """Connections whose peer is not proven yet."""
        return len(self._preauth)

    async def close(self) -> None:
        """Cancel the connections still being served and wait for them."""
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        try:
            await self._serve(reader, writer, task)
        except asyncio.CancelledError:
            writer.close()

    def _admit(self, writer: asyncio.StreamWriter, task: asyncio.Task[None] | None) -> None:
        """Hold ``writer`` as pre-auth, evicting the oldest unproven connection when full."""
        while len(self._preauth) >= self.settings.preauth_cap:
            old_writer, old_task = next(iter(self._preauth.items()))
            del self._preauth[old_writer]
            self.evicted += 1
            old_writer.close()
            if old_task is not None:
                old_task.cancel()
        self._preauth[writer] = task

    async def _prove(self, stream: _Stream, writer: asyncio.StreamWriter) -> list[object]:
        """Run the hello to a proven peer within one deadline; frames that came with it."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.settings.deadline
        pending: list[object] = []
        while not stream.tcp.peer_proven:
            pending = await stream.feed(until - loop.time())
            out = stream.tcp.data_to_send()
            if out:
                send(writer, out)
                await asyncio.wait_for(writer.drain(), max(0.001, until - loop.time()))
        return pending

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None] | None
    ) -> None:
        s = self.settings
        self._admit(writer, task)
        stream = _Stream(reader, _session(self.core, s, Role.SERVER), s.budget)
        counted = False
        try:
            pending = await self._prove(stream, writer)
            del self._preauth[writer]
            if s.budget.sessions >= s.budget.session_cap:
                self.refused += 1
                self.core.count_drop(DropReason.OVER_LIMIT)
                self.on_change()
                return
            s.budget.sessions += 1
            counted = True
            self.sessions += 1
            sync = self.core.sync_session(initiator=False)
            ok = await _exchange(self.core, stream, sync, writer, s, self.on_change, pending)
            if self.on_done is not None:
                self.on_done(stream.tcp.peer_sender or 0, ok)
        except WireError as e:
            self.core.count_drop(e.reason)
            self.on_change()
        except (TimeoutError, OSError, ConnectionError):
            pass
        finally:
            if counted:
                s.budget.sessions -= 1
            self._preauth.pop(writer, None)
            stream.release()
            writer.close()
