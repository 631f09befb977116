"""Datasets as one file that a node can hand to a peer: the six arrays, exactly.

A node that lacks the study's dataset (offline, or the study names a folder
only one machine has) fetches it from a peer over the cluster's sealed TCP
session. What travels is a *blob*: the dataset's six arrays (train, val,
test images and labels) exactly as the serving node split them, so the
receiver's dataset fingerprint, and hence its study fingerprint, equal the
sender's. Blobs live in the cache under their dataset fingerprint
(``~/.cache/p2phpo/datasets/<fingerprint>.p2pds``), written atomically, and
load like any dataset path.

Format: ``P2PDS\\x01 | header length u32 | msgpack header | raw arrays``;
the header is ``{"name": str, "source": str, "arrays": [[key, dtype, shape], ...]}``
with dtypes ``|u1`` (images) and ``<i4`` (labels) only. Reading checks every
size against the file before touching the bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import msgpack
import numpy as np

from p2phpo.train.data import Dataset, DatasetError, _as_labels, cache_root

MAGIC = b"P2PDS\x01"
SUFFIX = ".p2pds"
KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_DTYPES = {"x": "|u1", "y": "<i4"}
_LEN = struct.Struct(">I")
MAX_HEADER = 4096
MAX_BLOB_BYTES = 2 << 30
"""Largest blob accepted from a peer (2 GiB; full MNIST is 55 MB)."""


def blob_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / "datasets"


def blob_path(fingerprint: str, env: Mapping[str, str] | None = None) -> Path:
    if not fingerprint or not all(c in "0123456789abcdef" for c in fingerprint):
        raise ValueError(f"not a dataset fingerprint: {fingerprint!r}")
    return blob_dir(env) / f"{fingerprint}{SUFFIX}"


def encode_blob(ds: Dataset) -> bytes:
    arrays = [np.ascontiguousarray(getattr(ds, k), _DTYPES[k[0]]) for k in KEYS]
    header = msgpack.packb({
        "name": ds.name, "source": ds.source[:256],
        "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in zip(KEYS, arrays, strict=True)],
    })
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *(a.tobytes() for a in arrays)])


def write_blob(ds: Dataset, dest: Path) -> Path:
    """Write ``ds`` as a blob at ``dest`` (temp file, fsync, rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(encode_blob(ds))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def read_blob(path: str | os.PathLike[str], *, source: str | None = None) -> Dataset:
    """The dataset in blob ``path``; DatasetError (one sentence) if it is malformed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        name, orig, arrays = _parse(data)
    except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise DatasetError(f"{path} is not a valid dataset blob ({exc})") from None
    x = {k: arrays[k] for k in KEYS}
    for split in ("train", "val", "test"):
        xs, ys = x[f"x_{split}"], x[f"y_{split}"]
        if xs.ndim != 2 or len(xs) == 0 or xs.shape[1] != x["x_train"].shape[1]:
            raise DatasetError(f"{path}: {split} images have shape {xs.shape}")
        _as_labels(ys, len(xs), str(path))
    return Dataset(name, source or f"{path} ({orig})", *(x[k] for k in KEYS))


def _parse(data: bytes) -> tuple[str, str, dict[str, np.ndarray]]:
    if data[:len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + _LEN.size:
        raise ValueError("bad magic")
    (hlen,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    if hlen > MAX_HEADER or start + hlen > len(data):
        raise ValueError("bad header length")
    header = msgpack.unpackb(data[start:start + hlen], raw=False, strict_map_key=True,
                             max_bin_len=0, max_ext_len=0, max_str_len=MAX_HEADER,
                             max_array_len=64, max_map_len=8)
    name, orig, specs = str(header["name"])[:128], str(header["source"])[:256], header["arrays"]
    if [s[0] for s in specs] != list(KEYS):
        raise ValueError("arrays missing or out of order")
    offset, arrays = start + hlen, {}
    for key, dtype, shape in specs:
        if dtype != _DTYPES[key[0]] or not shape or any(type(d) is not int or d < 0 for d in shape):
            raise ValueError(f"bad array {key}")
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if offset + n > len(data):
            raise ValueError(f"truncated at {key}")
        arrays[key] = np.frombuffer(data, dtype, int(np.prod(shape)), offset).reshape(shape)
        offset += n
    if offset != len(data):
        raise ValueError("trailing bytes")
    return name, orig, arrays


def find_blob(match: Callable[[str], bool], env: Mapping[str, str] | None = None) -> Path | None:
    """A cached blob whose dataset fingerprint satisfies ``match`` (e.g. makes the study's)."""
    folder = blob_dir(env)
    if not folder.is_dir():
        return None
    for p in sorted(folder.glob(f"*{SUFFIX}")):
        if match(p.name[: -len(SUFFIX)]):
            return p
    return None
