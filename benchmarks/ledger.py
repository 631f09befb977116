"""Ledger benchmark: merge throughput, delta_since latency, entry sizes, append+fsync rate.

    python benchmarks/ledger.py [--entries 100000]

The baseline in the same process is a plain dict insert of the same keys and
bytes (the floor any merge pays), and a plain unsynced file write. Signed
records (what nodes gossip and store): bytes per record, Ed25519 sign and
verify per entry, and a merge that verifies every record, against the
unsigned merge of the same history in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

from p2phpo.core.entries import Claim, Report, Result, Status, encode_entry  # noqa: E402
from p2phpo.core.identity import Identity  # noqa: E402
from p2phpo.core.ledger import Ledger  # noqa: E402
from p2phpo.core.records import Verifier, sign_entry, split_record  # noqa: E402
from p2phpo.storage import Storage  # noqa: E402

PARAMS = {"lr": 0.0031, "layers": 2, "width": 256, "activation": "gelu", "dropout": 0.12,
          "optimizer": "adamw", "weight_decay": 1e-4, "batch_size": 128}


def history(n: int, origins: int, rng: random.Random, ids: list[int] | None = None) -> list:
    out, seq = [], [0] * origins
    for i in range(n):
        o = i % origins
        seq[o] += 1
        origin = ids[o] if ids else 0x1000 + o
        if seq[o] % 3 == 1:
            out.append(Claim(origin=origin, seq=seq[o], wall=1.7e9 + i, slot=i, params=PARAMS))
        elif seq[o] % 3 == 2:
            out.append(Report(origin=origin, seq=seq[o], wall=1.7e9 + i, trial=(origin, seq[o] - 1),
                              step=3, value=rng.random()))
        else:
            out.append(Result(origin=origin, seq=seq[o], wall=1.7e9 + i, trial=(origin, seq[o] - 2),
                              status=Status.COMPLETE, value=rng.random(), duration=61.5))
    return out


def best_of(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    args = ap.parse_args()
    rng = random.Random(0)
    n = args.entries
    entries = history(n, 100, rng)
    raws = [encode_entry(e) for e in entries]
    shuffled = list(zip(entries, raws, strict=True))
    rng.shuffle(shuffled)

    t_merge = best_of(lambda: Ledger(max_pending=10**6).merge(zip(entries, raws, strict=True)))
    t_shuf = best_of(lambda: Ledger(max_pending=10**6).merge(shuffled))
    t_dict = best_of(lambda: {(e.origin, e.seq): r for e, r in zip(entries, raws, strict=True)})
    led = Ledger()
    led.merge(zip(entries, raws, strict=True))
    half = {o: s // 2 for o, s in led.vv.items()}
    near = {o: s - 1 for o, s in led.vv.items()}
    lat = {}
    for name, vv in (("empty vv", {}), ("half behind", half), ("1 behind", near)):
        lat[name] = statistics.median(
            [best_of(lambda vv=vv: led.delta_since(vv, limit_bytes=1200), 1) for _ in range(20)])
    t_full = best_of(lambda: led.delta_since({}), 1)

    first = {}
    for e in entries:
        first.setdefault(type(e).__name__.upper(), e)
    sizes = {("CLAIM (8 params)" if k == "CLAIM" else k): len(encode_entry(e)) for k, e in first.items()}
    with tempfile.TemporaryDirectory() as d:
        st = Storage.open(d)
        k = 300
        t0 = time.perf_counter()
        for i in range(k):
            st.append_local(Claim(origin=st.node_id, seq=i + 1, wall=0.0, slot=i, params=PARAMS))
        fsync_rate = k / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        st.append(entries[:20000], sync=False)
        st.sync()
        bulk_rate = 20000 / (time.perf_counter() - t0)
        st.close()

    signed = bench_signed(n)
    rows = [
        ["merge, in order", n, f"{n / t_merge:,.0f} entries/s", f"{t_merge:.3f} s"],
        ["merge, shuffled", n, f"{n / t_shuf:,.0f} entries/s", f"{t_shuf:.3f} s"],
        ["baseline: dict insert", n, f"{n / t_dict:,.0f} entries/s", f"{t_dict:.3f} s"],
        *[[f"delta_since ≤1200 B, {k}", n, f"{v * 1e6:,.1f} µs", ""] for k, v in lat.items()],
        ["delta_since full", n, f"{t_full * 1e3:,.1f} ms", ""],
        *[[f"bytes per {k}", 1, f"{v} B", ""] for k, v in sizes.items()],
        ["append_local + fsync", k, f"{fsync_rate:,.0f} entries/s", ""],
        ["append merged, 1 fsync", 20000, f"{bulk_rate:,.0f} entries/s", ""],
        *signed["rows"],
    ]
    emit("ledger", f"Ledger, {n:,} entries from 100 origins", ["what", "n", "rate", "time"], rows,
         {"merge_seconds": t_merge, "goal_merge_seconds": 1.0, "signed": signed["json"]})


def bench_signed(n: int) -> dict:
    """Signed records: sizes, sign and verify cost, merge with verification."""
    ids = [Identity(bytes([i]) * 32) for i in range(100)]
    by_id = {i.node_id: i for i in ids}
    entries = history(n, 100, random.Random(0), [i.node_id for i in ids])
    last: dict[int, bytes] = {}
    records = []
    t0 = time.perf_counter()
    for e in entries:
        raw = last[e.origin] = sign_entry(by_id[e.origin], e, last.get(e.origin))
        records.append(raw)
    t_sign = time.perf_counter() - t0
    pairs = list(zip(entries, records, strict=True))
    k = min(n, 20_000)
    v = Verifier()
    keys = {i.node_id: i.public_key for i in ids}
    parts = [split_record(e, r) for e, r in pairs[:k]]
    t0 = time.perf_counter()
    for (e, r), (body, prev, _, sig) in zip(pairs[:k], parts, strict=True):
        v.check(r, keys[e.origin], prev, body, sig)
    t_verify = (time.perf_counter() - t0) / k
    t_plain = best_of(lambda: Ledger(max_pending=10**6).merge(
        [(e, encode_entry(e)) for e in entries[:k]]), 1)
    t_checked = best_of(lambda: Ledger(max_pending=10**6, verifier=Verifier()).merge(pairs[:k]), 1)
    kk = min(k, 5000)

    def one_by_one() -> None:
        led = Ledger(max_pending=10**6, verifier=Verifier())
        for p in pairs[:kk]:
            led.merge([p])

    t_single = best_of(one_by_one, 1)
    t_trusted = best_of(lambda: Ledger(max_pending=10**6, verifier=Verifier()).merge(pairs[:k], trusted=True), 1)
    sizes: dict[str, tuple[int, int]] = {}
    for e, r in pairs:
        name = type(e).__name__.upper() + (" (8 params)" if isinstance(e, Claim) else "")
        if e.seq > 1 and name not in sizes:
            sizes[name] = (len(encode_entry(e)), len(r))
    rows = [
        *[[f"bytes per signed {name} (unsigned)", 1, f"{b} B ({a} B)", ""] for name, (a, b) in sizes.items()],
        ["signed suffix: first record of an origin / later ones", 1, "96 B / 80 B", ""],
        ["Ed25519 sign per entry", n, f"{t_sign / n * 1e6:,.1f} µs", f"{t_sign:.3f} s"],
        ["Ed25519 verify per entry (distinct records)", k, f"{t_verify * 1e6:,.1f} µs", ""],
        ["merge signed, one record per call (gossip)", kk, f"{kk / t_single:,.0f} entries/s",
         f"{t_single:.3f} s"],
        ["merge signed, one batch (catch-up: runs of 100 origins)", k, f"{k / t_checked:,.0f} entries/s",
         f"{t_checked:.3f} s"],
        ["merge signed, trusted (own state dir replay)", k, f"{k / t_trusted:,.0f} entries/s",
         f"{t_trusted:.3f} s"],
        ["baseline: merge unsigned, same entries", k, f"{k / t_plain:,.0f} entries/s", f"{t_plain:.3f} s"],
    ]
    return {"rows": rows, "json": {
        "sizes": {k2: {"unsigned": a, "signed": b} for k2, (a, b) in sizes.items()},
        "sign_us": t_sign / n * 1e6, "verify_us": t_verify * 1e6,
        "merge_batch_verified_per_s": k / t_checked, "merge_single_verified_per_s": kk / t_single, "merge_trusted_per_s": k / t_trusted,
        "merge_unsigned_per_s": k / t_plain}}


if __name__ == "__main__":
    main()
