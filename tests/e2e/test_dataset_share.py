"""Datasets by content: a node fetches the study's dataset from a peer (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from p2phpo.core.ledger import Ledger
from p2phpo.core.profiles import LOCAL
from p2phpo.core.wire import Keyring
from p2phpo.runtime.datasets import DatasetServer, FetchError, fetch_dataset, load_for_options
from p2phpo.runtime.udp import GossipRuntime, run
from p2phpo.train.share import blob_path, read_blob


def tiny_dataset(folder: Path, rows: int = 400, pixels: int = 16, seed: int = 0) -> Path:
    """A CSV dataset (label first) whose classes a small MLP can tell apart, not perfectly."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, rows)
    x = np.clip(rng.normal(60 * y[:, None], 70, (rows, pixels)), 0, 255).round()
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "data.csv", np.column_stack([y, x]), fmt="%d", delimiter=",")
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    return root / "p2phpo" / "datasets"


def serve_and_fetch(options: dict, accept, *, tamper=None, part: bytes | None = None):
    async def scenario():
        ring = Keyring([os.urandom(32)])
        a = GossipRuntime.create(1, Ledger(), bind="127.0.0.1:0", keyring=ring, profile=LOCAL)
        b = GossipRuntime.create(2, Ledger(), bind="127.0.0.1:0", keyring=ring, profile=LOCAL)
        fp = load_for_options(options).fingerprint
        server = DatasetServer(options, fp)
        a.core.dataset_server = server
        addr = await a.start()
        seen: list[tuple[int, int]] = []
        try:
            if tamper is not None or part is not None:  # let it build its blob first
                with pytest.raises(FetchError):
                    await fetch_dataset([("a", addr)], b.tcp, 2, lambda f: False, attempts=20)
                while server.path is None and server.error is None:
                    await asyncio.sleep(0.05)
                if tamper is not None:
                    tamper(server)
                if part is not None:
                    dest = blob_path(fp)
                    data = dest.read_bytes()
                    (dest.parent / f".{fp}-{server.sha256.hex()[:16]}.part").write_bytes(
                        data[: len(data) // 2])
                    server.served = 0
            path = await fetch_dataset([("node a", addr)], b.tcp, 2, accept,
                                       lambda n, got, total: seen.append((got, total)))
            return fp, path, seen, server
        finally:
            await a.stop()
            await b.stop()

    return run(scenario())


def test_a_peer_hands_over_the_exact_dataset(tmp_path: Path, cache: Path) -> None:
    options = {"dataset": "tiny", "data_dir": str(tiny_dataset(tmp_path / "data" / "tiny").parent)}
    fp, path, seen, _ = serve_and_fetch(options, lambda f: True)
    assert path == cache / f"{fp}.p2pds" and read_blob(path).fingerprint == fp
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert not list(cache.glob(".*.part"))  # moved into place, nothing left behind


def test_a_dataset_that_is_not_the_studys_is_refused_in_one_sentence(tmp_path: Path,
                                                                     cache: Path) -> None:
    options = {"dataset": str(tiny_dataset(tmp_path / "d"))}
    with pytest.raises(FetchError, match=r"which is not the study's .* refusing it"):
        serve_and_fetch(options, lambda f: False)


def test_a_corrupt_transfer_is_refused(tmp_path: Path, cache: Path) -> None:
    options = {"dataset": str(tiny_dataset(tmp_path / "d"))}

    def corrupt(server: DatasetServer) -> None:
        server.sha256 = bytes(32)  # what arrives will not hash to what it announced

    with pytest.raises(FetchError, match="arrived corrupt"):
        serve_and_fetch(options, lambda f: True, tamper=corrupt)


def test_a_broken_transfer_resumes_from_the_bytes_on_disk(tmp_path: Path, cache: Path) -> None:
    options = {"dataset": str(tiny_dataset(tmp_path / "d", rows=3000, pixels=100))}
    fp, path, _, server = serve_and_fetch(options, lambda f: True, part=b"half")
    size = path.stat().st_size
    assert read_blob(path).fingerprint == fp
    assert server.served < 0.6 * size  # only the missing half travelled
    shutil.rmtree(cache)

