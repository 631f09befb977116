"""A node's worker, spawned before the node's own imports (``p2phpo node``).

``p2phpo node`` spends ~0.3 s importing the command line, the runtime and the
ledger before it starts its worker, which then spends ~0.35 s importing JAX and
the trainer: one after the other, on a machine with a core to spare. The command
line calls :func:`spawn` first thing (this module imports only ``os``, ``subprocess``
and ``sys``, and ``tomllib`` to read ``--study``'s objective), so the worker imports
JAX beside the node's imports; the node's
:class:`~p2phpo.train.worker.WorkerClient` then adopts it (:func:`take`) when it was
spawned exactly as it would spawn one itself (same interpreter, same environment
but for the compile cache, which comes in the init frame with the log file), and
otherwise kills it and spawns its own. A worker spawned early that nobody takes
is killed when the node exits (and dies with it, ``PR_SET_PDEATHSIG``).

``P2PHPO_EARLY_WORKER=0`` turns it off; a ``--study`` whose objective is not the
built-in one gets no early worker (it would import JAX for nothing).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

NICE = 10
"""The worker's default ``nice`` (``WorkerClient``)."""
_CACHE_VARS = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
_EARLY: tuple[subprocess.Popen, dict[str, str]] | None = None
_HOOKED = False  # discard() registered with atexit


def default_threads() -> int:
    """XLA/BLAS threads of a node's worker: one core left to the node."""
    return max(1, (os.cpu_count() or 2) - 1)


def worker_env(threads: int, cache_dir: str | os.PathLike[str] | None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker: capped XLA/BLAS threads, persistent compile cache."""
    env = dict(os.environ if base is None else base)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    threads = max(1, min(threads, len(cpus)))
    flags = env.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        # (a bare ``intra_op_parallelism_threads=1`` after it was a silent no-op: XLA skips
        # tokens without ``--``, and as ``--intra_op_parallelism_threads`` it aborts, unknown)
        flags += " --xla_cpu_multi_thread_eigen=false"
    elif threads < len(cpus):
        start = os.getpid() % len(cpus)  # spread the workers of several nodes on one host
        env["P2PHPO_WORKER_CPUS"] = ",".join(str(cpus[(start + i) % len(cpus)]) for i in range(threads))
    env["XLA_FLAGS"] = flags.strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    # on a GPU, take memory as needed instead of 75% up front (several workers may share it)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def client_env(threads: int, nice: int, verdict_timeout: float, extra: Mapping[str, str],
               cache_dir: str | os.PathLike[str] | None) -> dict[str, str]:
    """The environment ``WorkerClient`` spawns its worker with."""
    env = worker_env(threads, cache_dir)
    env.update(extra, P2PHPO_WORKER_NICE=str(nice), P2PHPO_VERDICT_TIMEOUT=str(verdict_timeout))
    return env


def _comparable(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _CACHE_VARS and k != "P2PHPO_WORKER_EARLY"}


def wanted(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether this command line starts a node that will run a worker: ``node``, not an
    observer, not ``--help``, not turned off, and not a study whose objective is not the
    built-in one (:func:`custom_study`: the early worker imports the built-in trainer)."""
    args = list(argv[1:])
    return (bool(args) and args[0] == "node" and env.get("P2PHPO_EARLY_WORKER", "1") != "0"
            and not any(a in ("--observer", "--help", "-h") for a in args)
            and not custom_study(args))


def custom_study(args: Sequence[str]) -> bool:
    """Whether ``--study FILE`` in ``args`` names an objective other than ``mnist-mlp``
    (its worker would import JAX for nothing). False when there is no such option or the
    file cannot be read (the node says why itself)."""
    path = None
    for i, a in enumerate(args):
        if a == "--study" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--study="):
            path = a.split("=", 1)[1]
    if path is None:
        return False
    try:
        import tomllib

        with open(path, "rb") as f:
            objective = tomllib.load(f).get("objective", {})
        name = objective.get("name", "mnist-mlp") if isinstance(objective, dict) else "mnist-mlp"
    except (OSError, ValueError):
        return False
    return name != "mnist-mlp"


def spawn(argv: Sequence[str] | None = None, verdict_timeout: float = 1.0) -> subprocess.Popen | None:
    """Start the worker now when ``argv`` starts a node (:func:`wanted`); at most one."""
    global _EARLY, _HOOKED
    if _EARLY is not None or not wanted(sys.argv if argv is None else argv, os.environ):
        return None
    env = client_env(default_threads(), NICE, verdict_timeout, {}, None)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "p2phpo.train.worker_proc"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env={**env, "P2PHPO_WORKER_EARLY": "1"})
    except OSError:
        return None
    if not _HOOKED:
        atexit.register(discard)
        _HOOKED = True
    _EARLY = (proc, _comparable(env))
    return proc


def take(python: str, env: Mapping[str, str]) -> subprocess.Popen | None:
    """The worker spawned early, if it is alive and was spawned with ``python`` and
    ``env`` (compile cache aside); else None (and it is killed)."""
    global _EARLY
    if _EARLY is None:
        return None
    proc, early_env = _EARLY
    if python != sys.executable or _comparable(env) != early_env or proc.poll() is not None:
        discard()
        return None
    _EARLY = None
    return proc


def discard() -> None:
    """Kill the worker spawned early, if nobody took it."""
    global _EARLY
    if _EARLY is not None:
        proc, _ = _EARLY
        _EARLY = None
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
