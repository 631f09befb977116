"""Bucket hashes of a growing vv, kept incrementally, equal the ones computed afresh."""

from __future__ import annotations

import random

from p2phpo.core.gossip_sync import BucketHashes, bucket_hashes


def test_kept_bucket_hashes_follow_a_growing_vv_exactly():
    rng = random.Random(7)
    vv: dict[int, int] = {}
    kept = BucketHashes()
    for step in range(300):
        origin = rng.choice(list(vv)) if vv and rng.random() < 0.7 else rng.getrandbits(64)
        vv[origin] = vv.get(origin, 0) + rng.randint(1, 3)
        for nb in (1, 2, 16, 128):
            assert kept.of(vv, nb) == bucket_hashes(vv, nb), (step, nb)
    assert kept.of(dict(vv), 16) == bucket_hashes(vv, 16)  # an equal copy: same hashes
    assert kept.of({1: 1}, 16) == bucket_hashes({1: 1}, 16)  # another (smaller) vv: afresh


def test_a_vv_without_some_origins_kept_is_hashed_afresh():
    kept = BucketHashes()
    kept.of({1: 1, 2: 5, 3: 2}, 2)
    other = {1: 1, 4: 4, 5: 5}
    assert kept.of(other, 2) == bucket_hashes(other, 2)
