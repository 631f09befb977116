"""Our version vector's origins grouped by anti-entropy bucket, kept as the vv grows.

Anti-entropy names parts of a vv by bucket (``gossip_sync.bucket_of``): a
fetch asks for a few fine buckets, a Scuttlebutt exchange for the mismatched
coarse ones. Answering by scanning every origin of the vv costs O(origins)
per message, which a busy 1,000-node cluster pays on most datagrams.
:class:`BucketIndex` keeps, per bucket count, which of our origins fall in
each bucket, so an answer costs what it names. A ledger's vv only ever gains
origins (in insertion order), so the index only appends.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def bucket_of(origin: int, nb: int) -> int:
    """The bucket of ``origin`` among ``nb`` (a power of two): a fixed multiplicative hash."""
    bits = nb.bit_length() - 1
    return ((origin * _GOLDEN) & _MASK) >> (64 - bits) if bits else 0


class BucketIndex:
    """The origins of ``vv`` (a ledger's live vv dict) by bucket, per bucket count."""

    def __init__(self, vv: dict[int, int]) -> None:
        self.vv = vv
        self._by: dict[int, tuple[list[int], dict[int, list[int]]]] = {}  # nb -> ([seen], index)

    def origins(self, nb: int) -> dict[int, list[int]]:
        """bucket -> our origins in it (in the order the vv gained them)."""
        got = self._by.get(nb)
        if got is None:
            got = ([0], {})
            if nb & (nb - 1) == 0:  # the bucket counts we use; a peer's odd one is not kept
                self._by[nb] = got
        seen, index = got
        vv = self.vv
        if seen[0] != len(vv):
            for o in islice(vv, seen[0], None):
                index.setdefault(bucket_of(o, nb), []).append(o)
            seen[0] = len(vv)
        return index

    def restrict(self, buckets: Any, nb: int) -> dict[int, int]:
        """The part of our vv whose origins fall in ``buckets``."""
        if nb == 1:
            return dict(self.vv)
        index, vv = self.origins(nb), self.vv
        return {o: vv[o] for b in buckets for o in index.get(b, ())}

    def counts(self, buckets: list[int], nb: int) -> dict[int, int]:
        """How many of our origins each of ``buckets`` holds."""
        if nb == 1:
            return {b: (len(self.vv) if b == 0 else 0) for b in buckets}
        index = self.origins(nb)
        return {b: len(index.get(b, ())) for b in buckets}
