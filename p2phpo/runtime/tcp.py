"""TCP push-pull over sealed frames: one client and one server coroutine.

Thin: the handshake and the sealing are ``TcpSession`` (wire), the exchange
is the core's ``SyncSession``; this module only moves bytes with deadlines.
Before authentication the server holds at most ``preauth_cap`` connections
and gives each ``deadline`` seconds to say hello; after it, every read has the
same deadline. A failed session counts its reason in the core and closes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from p2phpo.core.gossip import GossipCore
from p2phpo.core.gossip_sync import SyncSession
from p2phpo.core.wire import Keyring, Role, TcpSession, WireError

READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class TcpSettings:
    keyring: Keyring
    label_hash: bytes
    accept_labels: frozenset[bytes]
    deadline: float = 5.0
    preauth_cap: int = 16
    max_frame: int = 4 * 1024 * 1024


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


async def _read(reader: asyncio.StreamReader, deadline: float) -> bytes:
    data = await asyncio.wait_for(reader.read(READ_CHUNK), deadline)
    if not data:
        raise ConnectionError("peer closed")
    return data


async def _exchange(
    core: GossipCore,
    tcp: TcpSession,
    sync: SyncSession,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    s: TcpSettings,
    on_change: Callable[[], None],
    pending: list[object] | None = None,
) -> bool:
    """Run one push-pull to completion; True if it finished cleanly."""
    loop = asyncio.get_running_loop()
    started = False
    objs = list(pending or [])
    while True:
        hello = tcp.data_to_send()  # handshake bytes always go before any frame
        if hello:
            writer.write(hello)
        frames = []
        if tcp.established and not started:
            started = True
            frames += sync.start(loop.time())
        for obj in objs:
            frames += sync.receive(obj, loop.time())
        for f in frames:
            writer.write(tcp.seal_frame(f))
        on_change()
        await writer.drain()
        if sync.done:
            return sync.failed is None
        try:
            objs = tcp.feed(await _read(reader, s.deadline))
        except WireError as e:
            core.count_drop(e.reason)
            on_change()
            return False


async def pushpull_client(
    core: GossipCore, addr: tuple[str, int], s: TcpSettings, on_change: Callable[[], None]
) -> bool:
    """Connect to ``addr`` and push-pull; False on any failure (logged in counters only)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), s.deadline)
        tcp = _session(core, s, Role.CLIENT)
        sync = core.sync_session(initiator=True)
        return await _exchange(core, tcp, sync, reader, writer, s, on_change)
    except (TimeoutError, OSError, ConnectionError):
        return False
    finally:
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
        self.preauth = 0
        self.refused = 0
        self.sessions = 0
        self.tasks: set[asyncio.Task[None]] = set()

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
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self.settings
        if self.preauth >= s.preauth_cap:
            self.refused += 1
            writer.close()
            return
        self.preauth += 1
        authed = False
        try:
            tcp = _session(self.core, s, Role.SERVER)
            pending: list[object] = []
            while not tcp.established:
                try:
                    pending = tcp.feed(await _read(reader, s.deadline))
                except WireError as e:
                    self.core.count_drop(e.reason)
                    self.on_change()
                    return
            self.preauth -= 1
            authed = True
            self.sessions += 1
            sync = self.core.sync_session(initiator=False)
            ok = await _exchange(self.core, tcp, sync, reader, writer, s, self.on_change, pending)
            if self.on_done is not None:
                self.on_done(tcp.peer_sender or 0, ok)
        except (TimeoutError, OSError, ConnectionError):
            pass
        finally:
            if not authed:
                self.preauth -= 1
            writer.close()
