"""A TCP handshake probe of a seed that does not answer over UDP.

It tells the join diagnostics *why* a seed is silent: nothing listens there
(refused), the host or a firewall swallows packets (timeout), the node there
closes the connection on our hello because its key or cluster label differs
(rejected), or the handshake works and only UDP is blocked (ok). The probe
sends our sealed hello and reads the answer; it never sends a frame.

    verdict = await probe_seed(("10.0.0.5", 7946), settings, node_id)
"""

from __future__ import annotations

import asyncio
import os

from p2phpo.core.wire import Role, TcpSession, WireError
from p2phpo.runtime.tcp import READ_CHUNK, TcpSettings, send

PROBE_TIMEOUT = 3.0


async def probe_seed(addr: tuple[str, int], s: TcpSettings, node_id: int,
                     timeout: float = PROBE_TIMEOUT) -> str:
    """``ok`` | ``rejected`` | ``refused`` | ``timeout`` for a TCP hello to ``addr``."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), timeout)
        tcp = TcpSession(s.keyring, role=Role.CLIENT, nonce=os.urandom(16), sender=node_id,
                         label_hash=s.label_hash, accept_labels=s.accept_labels,
                         max_frame=s.max_frame)
        send(writer, tcp.data_to_send())
        await writer.drain()
        while not tcp.established:
            data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout)
            if not data:
                return "rejected"  # it closed on our hello: another key or cluster label
            tcp.feed(data)
        return "ok"
    except WireError:
        return "rejected"  # its hello does not open under our key and label
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "rejected"
    except (TimeoutError, OSError):
        return "timeout"
    finally:
        if writer is not None:
            writer.close()
