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


MLP_STUDY = """
[study]
name = "shared-data"
direction = "maximize"
seed = 0
n_trials = 5000

[sampler]
name = "random"

[pruner]
name = "none"

[objective]
name = "mnist-mlp"
dataset = "tiny"
max_epochs = 2

[space]
lr = { type = "float", low = 1e-3, high = 1e-2, log = true }
layers = { type = "choice", values = [1] }
width = { type = "choice", values = [32] }
batch_size = { type = "choice", values = [32] }
"""


def test_two_nodes_train_on_a_dataset_only_one_of_them_has(tmp_path: Path) -> None:
    """Node a has the custom dataset (--data-dir); node b has nothing and fetches it from a."""
    import signal

    from tests.e2e.cluster import NodeProc, export, wait_for

    data = tiny_dataset(tmp_path / "data" / "tiny").parent
    study = tmp_path / "s.toml"
    study.write_text(MLP_STUDY)
    a = NodeProc("a", tmp_path, ["--study", str(study), "--data-dir", str(data)])
    b = NodeProc("b", tmp_path, ["--seed", a.addr])
    try:
        a.start(env={"XDG_CACHE_HOME": str(tmp_path / "cache-a")})
        wait_for(lambda: any(e["event"] == "ready" for e in a.events()) or a.proc.poll() is not None,
                 120, "a's worker")
        b.start(env={"XDG_CACHE_HOME": str(tmp_path / "cache-b")})
        # Trials take milliseconds once compiled: stop when b has finished a few of its own.
        wait_for(lambda: sum(e["event"] == "finished" for e in b.events()) >= 3
                 or b.proc.poll() is not None, 240, "b to train on the fetched dataset")
        for n in (b, a):
            n.signal(signal.SIGINT)
            assert n.wait(60) == 0, n.err.read_text()[-3000:]
    finally:
        a.kill()
        b.kill()
    b_id = b.events()[0]["node"]
    rows = export(b.state)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert all(0 < r["value"] < 1 for r in done)  # real training: neither 0 nor 100 %
    assert {r["node"] for r in done} == {a.events()[0]["node"], b_id}  # both nodes trained
    said = [e.get("detail", "") for e in b.events() if e["event"] == "dataset"]
    assert any("fetching the study's dataset from a peer" in d for d in said)
    assert any("received the study's dataset" in d for d in said)
    assert list((tmp_path / "cache-b" / "p2phpo" / "datasets").glob("*.p2pds"))


def test_without_a_ready_peer_the_fetch_says_so() -> None:
    from p2phpo.core.wire import Keyring
    from p2phpo.runtime.tcp import TcpSettings

    s = TcpSettings(Keyring([bytes(32)]), bytes(8), frozenset([bytes(8)]))
    with pytest.raises(FetchError, match="no ready peer runs the study"):
        run(fetch_dataset([], s, 1, lambda f: True))
