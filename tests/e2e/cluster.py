"""Real `p2phpo node` processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAST_STUDY = """
[study]
name = "e2e"
direction = "minimize"
seed = {seed}
n_trials = {n_trials}

[sampler]
name = "random"

[pruner]
name = "none"

[objective]
name = "examples.custom_objective:objective"
max_epochs = {epochs}
sleep = {sleep}

[space]
x = {{ type = "float", low = -5.0, high = 10.0 }}
y = {{ type = "float", low = 0.0, high = 15.0 }}
"""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, never one this test run handed out
    before: a node binds its port only after its imports, and until then the kernel may
    give the same free port to the next node made (both would then bind it, one fails)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port")


def write_study(path: Path, *, n_trials: int = 9, epochs: int = 3, sleep: float = 0.2,
                seed: int = 0) -> Path:
    path.write_text(FAST_STUDY.format(n_trials=n_trials, epochs=epochs, sleep=sleep, seed=seed))
    return path


ALLOW_EXAMPLE = ["--allow-objective", "examples.custom_objective:objective"]


class NodeProc:
    """A ``p2phpo node`` process. A joiner (``--seed`` without ``--study``) is allowed
    to run the example objective unless ``allow`` is False: its operator trusts it."""

    def __init__(self, name: str, root: Path, args: list[str], *, allow: bool = True) -> None:
        if allow and "--seed" in args and "--study" not in args:
            args = [*args, *ALLOW_EXAMPLE]
        self.name = name
        self.port = free_port()
        self.state = root / name
        self.out = root / f"{name}.jsonl"
        self.err = root / f"{name}.err"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict[str, str] | None = None) -> NodeProc:
        cmd = [sys.executable, "-m", "p2phpo", "node", "--bind", f"127.0.0.1:{self.port}",
               "--state-dir", str(self.state), "--profile", "local", "--no-ui", *self.args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, env=env)
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def events(self) -> list[dict]:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def export(state: Path, include_all: bool = False) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "p2phpo", "export", "--state-dir", str(state),
                          "--format", "jsonl", *(["--all"] if include_all else [])],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def status_json(seed: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "p2phpo", "status", "--seed", seed, "--json",
                          "--timeout", "10"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


COUNTED = ("COMPLETE", "PRUNED", "FAILED")


def counted_slots(rows: list[dict]) -> dict[int, int]:
    slots: dict[int, int] = {}
    for r in rows:
        if r["state"] in COUNTED:
            slots[r["slot"]] = slots.get(r["slot"], 0) + 1
    return slots
