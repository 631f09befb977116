"""A private network of Linux network namespaces for multi-host tests.

    lab = Lab.create(["node1", "node2"])   # or raise LabUnavailable(reason)
    lab.run("node1", ["python", "-m", "p2phpo", ...])   # a process "on" node1
    lab.cut("node2"); lab.heal("node2")   # link down / up
    lab.destroy()                          # always (a fixture finalizer)

Layout: one hub namespace holds a bridge; every host is a namespace with one
veth into the bridge, its own address 10.77.0.<k>/24 (only ever inside these
namespaces: they have no route out, and nothing is added to the host's own
namespace) and a hosts file under /etc/netns/<ns>/ that names every host, so
each node is reached by name as on a real network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.0"
STALE_AFTER = 1800.0
"""A lab this old with no process inside was left by a killed run: it is removed."""
_TAG = re.compile(r"^(p2p[0-9a-f]{6})-")


class LabUnavailable(Exception):
    """Namespaces cannot be made here; ``str()`` says why (the test skips with it)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@dataclass
class Lab:
    tag: str
    hosts: dict[str, str]  # host name -> address
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, names: list[str]) -> Lab:
        why = unavailable()
        if why:
            raise LabUnavailable(why)
        reap_stale()
        tag = f"p2p{uuid.uuid4().hex[:6]}"
        lab = cls(tag, {n: f"{SUBNET}.{k}" for k, n in enumerate(names, start=1)})
        try:
            lab._build()
        except (subprocess.CalledProcessError, OSError) as exc:
            err = getattr(exc, "stderr", "") or str(exc)
            lab.destroy()
            raise LabUnavailable(f"cannot build network namespaces: {err.strip()}") from None
        return lab

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    @property
    def hub(self) -> str:
        return f"{self.tag}-hub"

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add_ns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, a in self.hosts.items())
        for k, (host, addr) in enumerate(self.hosts.items(), start=1):
            ns = self.ns(host)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            self._add_ns(ns)
            _ip("-n", self.hub, "link", "add", f"v{k}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", self.hub, "link", "set", f"v{k}", "master", "br0")
            _ip("-n", self.hub, "link", "set", f"v{k}", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _port(self, host: str) -> str:
        return f"v{list(self.hosts).index(host) + 1}"

    def cut(self, host: str) -> None:
        """Take ``host``'s link into the bridge down: nothing reaches it, nothing leaves it."""
        _ip("-n", self.hub, "link", "set", self._port(host), "down")

    def heal(self, host: str) -> None:
        _ip("-n", self.hub, "link", "set", self._port(host), "up")

    def run(self, host: str, argv: list[str], *, stdout: Path, stderr: Path,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace (its /etc/hosts is the lab's)."""
        cmd = ["ip", "netns", "exec", self.ns(host), *argv]
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def check(self, host: str, argv: list[str], *, timeout: float = 60,
              env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=cwd)

    def destroy(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self.namespaces):
            _ip("netns", "pids", ns, check=False)
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self.namespaces.clear()


def reap_stale(now: float | None = None) -> list[str]:
    """Remove labs of killed runs (their finalizers never ran): every namespace of the
    tag older than ``STALE_AFTER`` and empty of processes. Returns the tags removed."""
    now = time.time() if now is None else now
    res = _ip("netns", "list", check=False)
    groups: dict[str, list[str]] = {}
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _TAG.match(name)
        if m:
            groups.setdefault(m.group(1), []).append(name)
    removed = []
    for tag, names in groups.items():
        try:
            old = all(now - os.stat(f"/run/netns/{n}").st_mtime > STALE_AFTER for n in names)
        except OSError:
            continue
        if not old or any(_ip("netns", "pids", n, check=False).stdout.strip() for n in names):
            continue
        for n in names:
            _ip("netns", "del", n, check=False)
            shutil.rmtree(Path("/etc/netns") / n, ignore_errors=True)
        removed.append(tag)
    return removed


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"p2pprobe{uuid.uuid4().hex[:6]}"
    res = _ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"`ip netns add` failed: {res.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None
