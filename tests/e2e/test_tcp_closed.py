"""A push-pull whose peer drops the connection ends as a failed push-pull, never as an
exception escaping its task (uvloop raises RuntimeError for a write to a closed transport;
a CI run once logged it from a node whose peers were exiting)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Role
from p2phpo.runtime.tcp import _session, pushpull_client, send
from p2phpo.runtime.udp import GossipRuntime, run


async def _resetting_server() -> tuple[asyncio.AbstractServer, int]:
    """Accepts, then closes with a reset (SO_LINGER 0) without reading."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _reset(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_send_on_a_closed_connection_is_a_connection_error() -> None:
    async def main() -> None:
        server, port = await _resetting_server()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.abort()
        await asyncio.sleep(0)
        with pytest.raises(ConnectionResetError):
            send(writer, b"hello")
        server.close()

    run(main())


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _answer_then_reset(rt: GossipRuntime) -> tuple[asyncio.AbstractServer, int]:
    """A peer that answers the hello (the session is established) and then resets."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tcp = _session(rt.core, rt.tcp, Role.SERVER)
        data = await reader.read(65536)
        if data:
            tcp.feed(data)
            writer.write(tcp.data_to_send())  # our hello: the client has something to answer
        _reset(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("peer", ["resets at once", "answers, then resets"])
def test_a_pushpull_to_a_peer_that_resets_fails_quietly(peer: str) -> None:
    async def main() -> list[bool]:
        rt = GossipRuntime.create(1, Ledger(), profile=LOCAL)
        other = GossipRuntime.create(2, Ledger(), profile=LOCAL)
        server, port = await (_resetting_server() if peer == "resets at once"
                              else _answer_then_reset(other))
        await rt.start()
        try:
            return [await pushpull_client(rt.core, ("127.0.0.1", port), rt.tcp, lambda: None)
                    for _ in range(20)]
        finally:
            server.close()
            await rt.stop()

    assert run(main()) == [False] * 20
