"""TCP attacks against a real runtime on 127.0.0.1, keyed and in unkeyed loopback mode.

Each scenario is one an attacker ran against the push-pull port: replayed
client hellos followed by a huge frame, slowloris hellos that keep the
pre-auth slots busy, and proven sessions that each buffer most of a frame.
The node's RSS must stay near idle and real push-pulls must still complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

import pytest

from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Cipher, Keyring, Role, TcpSession, label_hash
from p2phpo.runtime.tcp import pushpull_client
from p2phpo.runtime.udp import INSECURE_KEY, GossipRuntime, run

MB = 1 << 20

# The attacked node runs in its own process so that its RSS is measured alone.
TARGET = """
import asyncio, dataclasses, json, os, sys
from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Keyring
from p2phpo.runtime.udp import GossipRuntime, run

async def main():
    key = os.environ.get("TARGET_KEY")
    ring = Keyring([bytes.fromhex(key)]) if key else None
    rt = GossipRuntime.create(1, Ledger(), keyring=ring, profile=LOCAL)
    rt.tcp = dataclasses.replace(rt.tcp, deadline=float(os.environ["TARGET_DEADLINE"]))
    addr = await rt.start()
    print(addr[1], flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        c = rt.counters()
        budget = getattr(rt.tcp, "budget", None)  # (absent before the TCP budget existed)
        print(json.dumps({"over_limit": c["dropped"].get("over_limit", 0), "preauth": rt._pp.preauth,
                          "buffered": budget.buffered if budget else -1}), flush=True)

run(main())
"""


class Target:
    """A runtime in a child process; ``rss()`` and ``state()`` read it from outside."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.addr = proc, ("127.0.0.1", port)

    @classmethod
    async def start(cls, key: bytes | None, deadline: float = 5.0) -> Target:
        env = {**os.environ, "TARGET_DEADLINE": str(deadline), "TARGET_KEY": key.hex() if key else ""}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", TARGET, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        return cls(proc, port)

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async def state(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"?\n")
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 10))

    async def stop(self) -> None:
        self.proc.kill()
        await self.proc.wait()


async def pair(keyed: bool, deadline: float = 5.0) -> tuple[Target, GossipRuntime, Keyring]:
    key = os.urandom(32) if keyed else None
    ring = Keyring([key]) if key else Keyring([INSECURE_KEY], cipher=Cipher.NULL)
    a = await Target.start(key, deadline)
    b = GossipRuntime.create(2, Ledger(), keyring=Keyring([key]) if key else None, profile=LOCAL)
    await b.start()
    await asyncio.sleep(0.3)  # let the child settle before its idle RSS is read
    return a, b, ring


def client_hello(ring: Keyring) -> bytes:
    tcp = TcpSession(ring, role=Role.CLIENT, nonce=os.urandom(16), sender=77, label_hash=label_hash("default"))
    return tcp.data_to_send()


async def real_pushpull(b: GossipRuntime, a: Target) -> bool:
    return await pushpull_client(b.core, a.addr, b.tcp, b._flush)


async def close_all(a: Target, b: GossipRuntime) -> None:
    await a.stop()
    await b.stop(leave=False)


async def replayed_hello_scenario(keyed: bool) -> tuple[int, bool]:
    a, b, ring = await pair(keyed)
    hello = client_hello(ring)  # sniffed once, replayed 50 times
    idle = a.rss()
    conns = []
    try:
        for _ in range(50):
            r, w = await asyncio.open_connection(*a.addr)
            w.write(hello + (4 * MB).to_bytes(4, "big"))
            conns.append((r, w))
        junk = os.urandom(256 * 1024)
        for _ in range(16):
            for _, w in conns:
                if not w.is_closing():
                    w.write(junk)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        grown = a.rss() - idle
        return grown, await real_pushpull(b, a)
    finally:
        for _, w in conns:
            w.close()
        await close_all(a, b)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_replayed_client_hellos_buffer_nothing(keyed):
    grown, ok = run(asyncio.wait_for(replayed_hello_scenario(keyed), 60))
    assert grown < 20 * MB, f"RSS grew by {grown / MB:.0f} MB under 50 replayed hellos"
    assert ok, "a real push-pull failed while the hellos were replayed"


async def slowloris_scenario(keyed: bool) -> tuple[bool, int, int]:
    a, b, ring = await pair(keyed, deadline=1.0)
    conns = []
    try:
        for _ in range(16):  # the pre-auth cap
            conns.append(await asyncio.open_connection(*a.addr))
        hello = client_hello(ring)
        idle = a.rss()
        for i in range(6):  # one byte per connection every 0.25 s
            for _, w in conns:
                if not w.is_closing():
                    w.write(hello[i : i + 1])
            await asyncio.sleep(0.25)
        ok = await real_pushpull(b, a)
        await asyncio.sleep(1.2)  # past the hello deadline of every slow connection
        return ok, (await a.state())["preauth"], a.rss() - idle
    finally:
        for _, w in conns:
            w.close()
        await close_all(a, b)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_slowloris_hellos_neither_lock_out_peers_nor_outlive_the_deadline(keyed):
    ok, still_preauth, grown = run(asyncio.wait_for(slowloris_scenario(keyed), 60))
    assert ok, "a real push-pull was refused while slow hellos held the pre-auth slots"
    assert still_preauth == 0, f"{still_preauth} slow connections outlived the hello deadline"
    assert grown < 20 * MB


async def proven_session(ring: Keyring, a: Target) -> tuple[asyncio.StreamWriter, TcpSession]:
    r, w = await asyncio.open_connection(*a.addr)
    tcp = TcpSession(ring, role=Role.CLIENT, nonce=os.urandom(16), sender=88, label_hash=label_hash("default"))
    w.write(tcp.data_to_send())
    while not tcp.established:
        tcp.feed(await asyncio.wait_for(r.read(4096), 5))
    with contextlib.suppress(TimeoutError):  # the server's finished frame may come apart
        while not tcp.peer_proven:
            tcp.feed(await asyncio.wait_for(r.read(4096), 0.5))
    w.write(tcp.data_to_send())  # our finished frame: the server now counts us as proven
    return w, tcp


async def buffer_scenario(keyed: bool) -> tuple[int, int, int]:
    a, b, ring = await pair(keyed)
    idle = a.rss()
    writers = []
    peak = 0
    try:
        for _ in range(30):
            w, _ = await proven_session(ring, a)
            w.write((4 * MB).to_bytes(4, "big"))
            writers.append(w)
        part = os.urandom(MB)
        for _ in range(3):  # 3 of the announced 4 MiB, then silence
            for w in writers:
                if not w.is_closing():
                    w.write(part)
            await asyncio.sleep(0.1)
            peak = max(peak, (await a.state())["buffered"])
        await asyncio.sleep(0.5)
        st = await a.state()
        return a.rss() - idle, max(peak, st["buffered"]), st["over_limit"]
    finally:
        for w in writers:
            w.close()
        await close_all(a, b)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_proven_sessions_cannot_buffer_past_the_node_budget(keyed):
    grown, peak, over = run(asyncio.wait_for(buffer_scenario(keyed), 60))
    budget = 16 * MB
    assert peak <= budget
    assert over > 0, "no connection was cut at the buffer budget"
    assert grown < budget + 20 * MB, f"RSS grew by {grown / MB:.0f} MB under 30 half-sent frames"
