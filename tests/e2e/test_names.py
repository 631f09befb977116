"""Host names for --seed/--bind and seeds that resolve late (127.0.0.1 and ::1 only)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.runtime import resolve as resolve_mod
from p2phpo.runtime.resolve import ResolveError, SeedList, env_seeds, resolve
from p2phpo.runtime.udp import GossipRuntime, RuntimeConfigError, run


async def wait_for(cond: Callable[[], bool], limit: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def members(rt: GossipRuntime) -> set[int]:
    return {m.node for m in rt.core.members()}


def test_a_node_joins_through_localhost_by_name() -> None:
    async def scenario() -> None:
        a = GossipRuntime.create(1, Ledger(), bind="127.0.0.1:0", profile=LOCAL)
        b = GossipRuntime.create(2, Ledger(), bind="localhost:0", profile=LOCAL)
        port = (await a.start())[1]
        try:
            await b.start(seeds=[("localhost", port)])
            assert b.addr is not None and b.addr[0] in ("127.0.0.1", "::1")
            assert await wait_for(lambda: members(a) == members(b) == {1, 2}, 10.0)
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_a_seed_that_resolves_only_later_is_retried_until_joined(monkeypatch) -> None:
    """The seed's name fails to resolve twice (DNS not up yet), then points at the node."""
    real = resolve_mod.resolve
    tries = {"n": 0}

    async def flaky(host: str, port: int, family: int = socket.AF_UNSPEC, timeout: float = 5.0):
        if host == "late-seed.test":
            tries["n"] += 1
            if tries["n"] <= 2:
                raise ResolveError(f"cannot resolve {host}: not yet")
            return [("127.0.0.1", port)]
        return await real(host, port, family, timeout)

    monkeypatch.setattr(resolve_mod, "resolve", flaky)

    async def scenario() -> None:
        a = GossipRuntime.create(1, Ledger(), bind="127.0.0.1:0", profile=LOCAL)
        b = GossipRuntime.create(2, Ledger(), bind="127.0.0.1:0", profile=LOCAL)
        port = (await a.start())[1]
        try:
            await b.start(seeds=[("late-seed.test", port)])
            assert b.seeds.errors  # not resolved yet, and said so
            assert await wait_for(lambda: members(b) == {1, 2}, 15.0)
            assert tries["n"] >= 3 and not b.seeds.errors
            assert b.seeds.name_of(("127.0.0.1", port)) == f"late-seed.test:{port} (127.0.0.1)"
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


def test_names_resolve_on_the_loop_and_literals_need_no_lookup() -> None:
    async def scenario() -> None:
        assert await resolve("127.0.0.1", 5) == [("127.0.0.1", 5)]
        assert await resolve("127.0.0.1", 5, socket.AF_INET6) == [("::ffff:127.0.0.1", 5)]
        found = await resolve("localhost", 7)
        assert found and all(port == 7 for _, port in found)
        with pytest.raises(ResolveError, match="cannot resolve nosuch.invalid"):
            await resolve("nosuch.invalid", 7)

    run(scenario())


def test_a_bind_name_that_does_not_resolve_is_one_sentence() -> None:
    async def scenario() -> None:
        rt = GossipRuntime.create(1, Ledger(), bind="nosuch.invalid:0", profile=LOCAL,
                                  insecure=True)
        with pytest.raises(RuntimeConfigError, match=r"--bind nosuch.invalid:0: cannot resolve"):
            await rt.start()

    run(scenario())


def test_p2phpo_seeds_is_a_comma_list(monkeypatch) -> None:
    monkeypatch.setenv("P2PHPO_SEEDS", " a:1, [::1]:2 ,,b ")
    assert env_seeds() == ["a:1", "[::1]:2", "b"]
    assert SeedList([("a", 1)]).has_names and not SeedList([("::1", 1)]).has_names


def test_status_without_a_seed_says_what_it_needs(monkeypatch) -> None:
    from typer.testing import CliRunner

    from p2phpo.cli import app

    monkeypatch.delenv("P2PHPO_SEEDS", raising=False)
    res = CliRunner().invoke(app, ["status", "--json"])
    assert res.exit_code == 2 and "needs --seed" in res.output
    res = CliRunner().invoke(app, ["status", "--json", "--seed", "nosuch.invalid:7946"])
    assert res.exit_code == 2
    assert "cannot reach --seed nosuch.invalid:7946: cannot resolve" in " ".join(res.output.split())
