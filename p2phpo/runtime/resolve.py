"""Host names for ``--seed``, ``--bind`` and ``--advertise``, resolved on the loop.

Names go through ``loop.getaddrinfo`` (a thread, never blocking the event
loop). IP literals resolve to themselves without a lookup. Seeds that do not
resolve, or resolve to a new address, are looked up again with backoff while
the node is not joined (addresses move under SLURM, Kubernetes headless
services, DHCP):

    seeds = SeedList([("node1", 7946), ("10.0.0.2", 7946)], family=socket.AF_INET)
    addrs = await seeds.resolve()        # [(ip, port), ...]; seeds.errors names the failures
    seeds.name_of(("10.0.0.5", 7946))    # "node1:7946", for diagnostics
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from dataclasses import dataclass, field

Addr = tuple[str, int]

RESOLVE_TIMEOUT = 5.0
"""Longest one name lookup may take before it counts as a failure."""
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Seconds between lookups of the seeds while not joined (the last repeats)."""


class ResolveError(Exception):
    """A name did not resolve; ``str()`` is one sentence naming it."""


def show(addr: Addr) -> str:
    """``host:port`` or ``[v6]:port``."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def names_self(seed: Addr, own: Addr) -> bool:
    """Whether ``seed`` as written surely is the address ``own`` (same port, and an IP
    literal or ``localhost`` for the same IP); other names are not looked up here."""
    host, port = seed
    if port != own[1]:
        return False
    if host == "localhost":
        host = "::1" if ":" in own[0] else "127.0.0.1"
    if not (is_ip(host) and is_ip(own[0])):
        return False
    return ipaddress.ip_address(host) == ipaddress.ip_address(own[0])


def only_self(seeds: list[Addr], own: list[Addr]) -> bool:
    """Whether there are ``seeds`` and each one surely names one of ``own``."""
    return bool(seeds) and all(any(names_self(s, a) for a in own) for s in seeds)


def env_seeds(value: str | None = None) -> list[str]:
    """The comma-separated seeds of ``P2PHPO_SEEDS`` (or ``value``), blanks dropped."""
    raw = os.environ.get("P2PHPO_SEEDS", "") if value is None else value
    return [s.strip() for s in raw.split(",") if s.strip()]


async def resolve(host: str, port: int, family: int = socket.AF_UNSPEC,
                  timeout: float = RESOLVE_TIMEOUT) -> list[Addr]:
    """Every (ip, port) ``host`` names, IPv4 first; ResolveError if none.

    With ``family=AF_INET6`` an IPv4-only name is returned as v4-mapped
    addresses, which a dual-stack IPv6 socket can reach.
    """
    if is_ip(host):
        return [(_mapped(host, family), port)]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout)
    except TimeoutError:
        raise ResolveError(f"looking up {host} took longer than {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ResolveError(f"cannot resolve {host}: {reason}") from None
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    if family == socket.AF_INET:
        ips = v4
    elif family == socket.AF_INET6:
        ips = v6 + [_mapped(ip, family) for ip in v4]
    else:
        ips = v4 + v6
    out = list(dict.fromkeys((ip, port) for ip in ips))
    if not out:
        kind = {socket.AF_INET: "an IPv4", socket.AF_INET6: "an IPv6"}.get(family, "an")
        raise ResolveError(f"{host} has no {kind} address")
    return out


def _mapped(ip: str, family: int) -> str:
    if family == socket.AF_INET6 and ":" not in ip:
        return f"::ffff:{ip}"
    return ip


@dataclass
class SeedList:
    """The seeds as the user gave them, and what they resolve to now."""

    specs: list[Addr]
    family: int = socket.AF_UNSPEC
    resolved: dict[Addr, list[Addr]] = field(default_factory=dict)
    errors: dict[Addr, str] = field(default_factory=dict)
    attempts: int = 0

    @property
    def has_names(self) -> bool:
        return any(not is_ip(h) for h, _ in self.specs)

    async def resolve(self) -> list[Addr]:
        """Look every seed up again (concurrently); the union of what resolved."""
        self.attempts += 1
        results = await asyncio.gather(
            *(resolve(h, p, self.family) for h, p in self.specs), return_exceptions=True)
        for spec, res in zip(self.specs, results, strict=True):
            if isinstance(res, ResolveError):
                self.errors[spec] = str(res)
                continue  # keep the last good addresses of a name that stopped resolving
            if isinstance(res, BaseException):
                raise res
            self.errors.pop(spec, None)
            self.resolved[spec] = res
        return self.addrs()

    def addrs(self) -> list[Addr]:
        return list(dict.fromkeys(a for spec in self.specs for a in self.resolved.get(spec, [])))

    def name_of(self, addr: Addr) -> str:
        """How the user wrote the seed at ``addr`` (``node1:7946 (10.0.0.5)`` for names)."""
        for spec, addrs in self.resolved.items():
            if addr in addrs or _unmap(addr) in [_unmap(a) for a in addrs]:
                return show(spec) if is_ip(spec[0]) else f"{show(spec)} ({_unmap(addr)[0]})"
        return show(addr)

    def delay(self) -> float:
        """Seconds to wait before the next lookup, growing with each attempt."""
        return BACKOFF[min(max(self.attempts - 1, 0), len(BACKOFF) - 1)]


def _unmap(addr: Addr) -> Addr:
    host = addr[0]
    return (host[7:], addr[1]) if host.startswith("::ffff:") and "." in host else addr
