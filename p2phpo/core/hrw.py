"""The one hash for every rendezvous and tie-break decision.

blake2b over canonical msgpack bytes of the arguments; never Python's
``hash()``, which differs between processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgpack
import numpy as np


def canonical(obj: object) -> bytes:
    """Canonical msgpack bytes: dict keys sorted, floats always 64-bit."""
    return msgpack.packb(_sorted(obj), use_bin_type=True, use_single_float=False)


def _sorted(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj, key=_key_order)}
    if isinstance(obj, list | tuple):
        return [_sorted(v) for v in obj]
    return obj


def _key_order(k: object) -> tuple[str, object]:
    return (type(k).__name__, k)


def hrw(*parts: object) -> int:
    """64-bit unsigned hash of ``parts``, stable across processes and machines."""
    digest = hashlib.blake2b(canonical(list(parts)), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hrw_order(key: object, candidates: Iterable[int]) -> list[int]:
    """Candidates sorted by rendezvous weight for ``key``: the first one wins.

    Lowest ``hrw(key, candidate)`` first; ties (never seen in practice) break
    on the candidate id so the order is total.
    """
    return sorted(candidates, key=lambda c: (hrw(key, c), c))


def hrw_winner(key: object, candidates: Iterable[int]) -> int | None:
    """The candidate that rendezvous hashing assigns ``key`` to, or None."""
    best: tuple[int, int] | None = None
    for c in candidates:
        w = (hrw(key, c), c)
        if best is None or w < best:
            best = w
    return None if best is None else best[1]



def mix64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 64-bit mix of two uint64 arrays (broadcast; splitmix64's finalizer): rendezvous
    weights for hot loops over many (key, candidate) pairs. Stable on every machine."""
    with np.errstate(over="ignore"):
        x = (a * np.uint64(0x9E3779B97F4A7C15)) ^ b
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x
