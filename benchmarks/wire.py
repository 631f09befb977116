"""Wire benchmark: datagrams encoded+sealed and opened+decoded per second, null vs AES-GCM.

    python benchmarks/wire.py [--n 20000]

Two payloads: a small probe (a ping with a digest, ~60 bytes) and a full
datagram of piggybacked entries (packed up to the 1232-byte limit). The
baseline, measured in the same process on the same messages, is plain
msgpack pack (for sealing) and plain msgpack unpack (for opening): the floor
any encoding pays. The last rows are sealed TCP frames of 64 KiB (MB/s).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

from p2phpo.core.wire import (  # noqa: E402
    Cipher,
    Keyring,
    Opener,
    Role,
    Sealer,
    TcpSession,
    label_hash,
    pack,
    payload_size,
    plaintext_budget,
)

KEY = bytes(range(32))
LABEL = label_hash("bench")


def probe(rng: random.Random) -> list:
    return [[0, rng.getrandbits(64), rng.getrandbits(32), rng.randbytes(16), rng.getrandbits(64)]]


def full(rng: random.Random) -> list:
    """Entry-like messages packed up to the plaintext budget, as gossip would."""
    msgs: list = []
    sizes: list[int] = []
    while True:
        m = [
            3,
            rng.getrandbits(64),
            rng.randrange(1, 10_000),
            1.7e9 + rng.random(),
            {"lr": rng.random(), "width": rng.randrange(32, 1024), "act": "gelu"},
        ]
        n = len(pack(m))
        if payload_size([*sizes, n]) > plaintext_budget():
            return msgs
        msgs.append(m)
        sizes.append(n)


def best_of(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def datagram_rates(cipher: Cipher, batches: list[list], reps: int) -> tuple[float, float, int]:
    n = len(batches)
    state: dict = {}

    def seal() -> None:
        s = Sealer(Keyring([KEY], cipher=cipher), 7, 1, 12345, LABEL)
        state["packets"] = [s.seal(b) for b in batches]

    def open_all() -> None:
        o = Opener(Keyring([KEY], cipher=cipher), [LABEL])
        for p in state["packets"]:
            o.open(p, 0.0)

    t_seal = best_of(seal, reps)
    t_open = best_of(open_all, reps)
    return n / t_seal, n / t_open, len(state["packets"][0])


def msgpack_rates(batches: list[list], reps: int) -> tuple[float, float]:
    n = len(batches)
    packed = [msgpack.packb(b, use_bin_type=True) for b in batches]
    t_pack = best_of(lambda: [msgpack.packb(b, use_bin_type=True) for b in batches], reps)

    def unpack_all() -> None:  # results dropped, as the opener's are: no GC pressure
        for p in packed:
            msgpack.unpackb(p, raw=False)

    t_unpack = best_of(unpack_all, reps)
    return n / t_pack, n / t_unpack


def tcp_rate(cipher: Cipher, frames: int, reps: int) -> tuple[float, float]:
    obj = [[3, i, b"x" * 200] for i in range(256)]  # ~ 64 KiB of entries
    size = len(pack(obj))

    def run() -> None:
        c = TcpSession(
            Keyring([KEY], cipher=cipher),
            role=Role.CLIENT,
            nonce=b"c" * 16,
            sender=1,
            label_hash=LABEL,
        )
        s = TcpSession(
            Keyring([KEY], cipher=cipher),
            role=Role.SERVER,
            nonce=b"s" * 16,
            sender=2,
            label_hash=LABEL,
        )
        s.feed(c.data_to_send())
        c.feed(s.data_to_send())
        for _ in range(frames):
            s.feed(c.seal_frame(obj))

    t = best_of(run, reps)
    return frames / t, frames * size / t / 1e6


def datagram_rows(n: int, reps: int, results: dict) -> list[list]:
    rng = random.Random(0)
    rows: list[list] = []
    for name, make in (("probe", probe), ("full", full)):
        batches = [make(rng) for _ in range(n)]
        base_pack, base_unpack = msgpack_rates(batches, reps)
        rows.append([name, "msgpack (base)", "-", round(base_pack), round(base_unpack), 1.0, 1.0])
        for cipher in (Cipher.NULL, Cipher.AES_GCM):
            seal, opn, size = datagram_rates(cipher, batches, reps)
            ratios = [round(seal / base_pack, 3), round(opn / base_unpack, 3)]
            rows.append([name, cipher.value, size, round(seal), round(opn), *ratios])
            results[f"{name}/{cipher.value}"] = {
                "bytes": size,
                "sealed_per_s": seal,
                "opened_per_s": opn,
                "baseline_pack_per_s": base_pack,
                "baseline_unpack_per_s": base_unpack,
            }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    results: dict = {}
    rows = datagram_rows(args.n, args.reps, results)
    for cipher in (Cipher.NULL, Cipher.AES_GCM):
        fps, mbps = tcp_rate(cipher, max(50, args.n // 40), args.reps)
        rows.append(
            [
                "tcp 64KiB frame",
                cipher.value,
                "-",
                f"{fps:,.0f} frames/s",
                f"{mbps:,.1f} MB/s",
                "-",
                "-",
            ]
        )
        results[f"tcp/{cipher.value}"] = {"frames_per_s": fps, "mb_per_s": mbps}
    emit(
        "wire",
        f"wire: datagrams per second (n={args.n}, best of {args.reps})",
        ["payload", "cipher", "bytes", "sealed/s", "opened/s", "seal vs pack", "open vs unpack"],
        rows,
        {"n": args.n, "results": results},
    )


if __name__ == "__main__":
    main()
