"""Sharing the study's dataset between nodes over the sealed TCP session.

Serving: :class:`DatasetServer` answers ``DS_GET`` chunk requests with this
node's dataset blob (:mod:`p2phpo.train.share`); the blob is built in a
thread the first time a peer asks (loaded again from the same options as the
worker's, its fingerprint checked against the worker's), then cached.

Fetching: :func:`fetch_dataset` asks ready peers in turn for their blob, one
bounded chunk at a time, into ``.part`` files in the cache (a broken transfer
resumes where it stopped), checks the SHA-256 and that the blob's dataset
fingerprint makes the study's fingerprint (``accept``), and moves it into
place atomically. A wrong or corrupt dataset is refused with one sentence.

    server = DatasetServer(options, fingerprint)     # core.dataset_server = server
    path = await fetch_dataset(peers, settings, node_id, accept, on_progress)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from p2phpo.core import dataset_xfer as dx
from p2phpo.core.wire import Role, TcpSession, WireError
from p2phpo.runtime.tcp import READ_CHUNK, TcpSettings, send
from p2phpo.train.data import DatasetError

READ_TIMEOUT = 15.0
RETRY_PREPARING = 2.0


class FetchError(Exception):
    """No peer could hand over the dataset; ``str()`` is one sentence."""


def load_for_options(options: Mapping[str, Any]) -> Any:
    """The dataset the built-in objective loads for ``options`` (same defaults)."""
    from p2phpo.train.data import load_dataset

    return load_dataset(str(options.get("dataset", "mnist")), data_dir=options.get("data_dir"),
                        val_size=options.get("val_size"),
                        seed=int(options.get("split_seed", 0)),
                        label_column=str(options.get("label_column", "first")))


class DatasetServer:
    """Serves this node's dataset blob in chunks; built lazily in a thread."""

    def __init__(self, options: Mapping[str, Any], fingerprint: str) -> None:
        self.options = dict(options)
        self.fingerprint = fingerprint
        self.path: Path | None = None
        self.size = 0
        self.sha256 = b""
        self.error: str | None = None
        self.served = 0
        self._task: asyncio.Future[Any] | None = None

    def __call__(self, offset: int, length: int) -> list[Any]:
        if self.error is not None:
            return dx.none_frame(self.error, False)
        if self.path is None:
            if self._task is None:
                loop = asyncio.get_running_loop()
                self._task = loop.run_in_executor(None, self._prepare)
                self._task.add_done_callback(self._prepared)
            return dx.none_frame("preparing the dataset to share", True)
        if offset >= self.size:
            return dx.none_frame(f"offset {offset} is past the end ({self.size} bytes)", False)
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
        except OSError as exc:
            return dx.none_frame(f"cannot read the dataset here: {exc.strerror or exc}", False)
        self.served += len(data)
        return dx.chunk_frame(dx.Chunk(self.fingerprint, self.size, self.sha256, offset, data))

    def _prepare(self) -> tuple[Path, int, bytes]:
        from p2phpo.train.share import blob_path, write_blob

        dest = blob_path(self.fingerprint)
        if not dest.is_file():
            ds = load_for_options(self.options)
            if ds.fingerprint != self.fingerprint:
                raise DatasetError("the dataset loaded again differs from the worker's")
            write_blob(ds, dest)
        return dest, dest.stat().st_size, _sha256(dest)

    def _prepared(self, fut: asyncio.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            self.error = f"cannot share the dataset: {exc}"
            return
        self.path, self.size, self.sha256 = fut.result()


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


Progress = Callable[[str, int, int], None]


async def fetch_dataset(peers: list[tuple[str, tuple[str, int]]], s: TcpSettings, node_id: int,
                        accept: Callable[[str], bool], on_progress: Progress | None = None,
                        *, max_bytes: int | None = None, attempts: int = 30) -> Path:
    """Fetch the study's dataset blob from the first of ``peers`` that has it."""
    from p2phpo.train.share import MAX_BLOB_BYTES

    limit = max_bytes or MAX_BLOB_BYTES
    if not peers:
        raise FetchError("no ready peer runs the study, so no node can hand over its dataset; "
                         "start a node that has the data (--data-dir) first")
    errors: dict[str, str] = {}
    for _ in range(attempts):
        preparing = False
        for name, addr in peers:
            try:
                return await _fetch_from(name, addr, s, node_id, accept, on_progress, limit)
            except _Preparing:
                preparing = True
            except FetchError as exc:
                errors[name] = str(exc)
        if not preparing:
            break
        await asyncio.sleep(RETRY_PREPARING)
    why = "; ".join(errors.values()) or "every peer was still preparing it"
    raise FetchError(f"could not fetch the study's dataset from a peer: {why}")


class _Preparing(Exception):
    pass


async def _fetch_from(name: str, addr: tuple[str, int], s: TcpSettings, node_id: int,
                      accept: Callable[[str], bool], on_progress: Progress | None,
                      limit: int) -> Path:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), READ_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise FetchError(f"{name}: cannot connect ({exc})") from None
    tcp = TcpSession(s.keyring, role=Role.CLIENT, nonce=os.urandom(16), sender=node_id,
                     label_hash=s.label_hash, accept_labels=s.accept_labels, max_frame=s.max_frame)
    xfer = _Transfer(name, accept, on_progress, limit)
    try:
        send(writer, tcp.data_to_send())
        pending: list[Any] = []
        while not tcp.established:
            pending += tcp.feed(await _read(reader))
        # One byte first: enough to learn the blob's fingerprint, size and hash (and to
        # resume a broken transfer from the bytes already on disk).
        send(writer, tcp.data_to_send() + tcp.seal_frame(dx.get_frame(0, 1)))
        while True:
            for frame in pending:
                nxt = xfer.receive(frame)
                if xfer.done is not None:
                    return xfer.done
                send(writer, tcp.data_to_send() + tcp.seal_frame(dx.get_frame(nxt)))
            await writer.drain()
            pending = tcp.feed(await _read(reader))
    except WireError as exc:
        raise FetchError(f"{name}: the session failed ({exc})") from None
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise FetchError(f"{name}: the transfer broke off ({exc or type(exc).__name__}); "
                         "it resumes from the bytes received") from None
    finally:
        xfer.close()
        writer.close()


async def _read(reader: asyncio.StreamReader) -> bytes:
    data = await asyncio.wait_for(reader.read(READ_CHUNK), READ_TIMEOUT)
    if not data:
        raise ConnectionError("the peer closed the connection")
    return data


class _Transfer:
    """One blob arriving chunk by chunk into a resumable ``.part`` file."""

    def __init__(self, name: str, accept: Callable[[str], bool],
                 on_progress: Progress | None, limit: int) -> None:
        self.name, self.accept, self.on_progress, self.limit = name, accept, on_progress, limit
        self.head: dx.Chunk | None = None
        self.part: Path | None = None
        self.file: Any = None
        self.done: Path | None = None

    def receive(self, frame: object) -> int:
        """Take one answer; the offset to ask for next (``done`` set when complete)."""
        if not isinstance(frame, list) or not dx.is_dataset(frame):
            raise FetchError(f"{self.name}: answered something other than the dataset")
        ans = dx.decode_answer(frame)
        if isinstance(ans, dx.NoDataset):
            if ans.retry:
                raise _Preparing()
            raise FetchError(f"{self.name}: {ans.reason}")
        if self.head is None:
            return self._begin(ans)
        h = self.head
        if (ans.fingerprint, ans.total, ans.sha256) != (h.fingerprint, h.total, h.sha256):
            raise FetchError(f"{self.name}: its dataset changed during the transfer")
        if ans.offset != self.file.tell():
            raise FetchError(f"{self.name}: sent bytes at {ans.offset}, not where asked")
        self.file.write(ans.data)
        return self._next()

    def _begin(self, first: dx.Chunk) -> int:
        from p2phpo.train.share import blob_dir

        if not self.accept(first.fingerprint):
            raise FetchError(f"{self.name} serves dataset {first.fingerprint[:12]}, which is not "
                             "the study's (its fingerprint does not match the STUDY entry); "
                             "refusing it")
        if first.total > self.limit:
            raise FetchError(f"{self.name}: its dataset is {first.total} bytes, over the "
                             f"{self.limit}-byte limit")
        self.head = first
        folder = blob_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.part = folder / f".{first.fingerprint}-{first.sha256.hex()[:16]}.part"
        self.file = open(self.part, "ab")  # noqa: SIM115 - closed in close()
        if self.file.tell() > first.total:
            self.file.truncate(0)
        if self.file.tell() == 0:
            self.file.write(first.data)
        return self._next()

    def _next(self) -> int:
        assert self.head is not None
        got = self.file.tell()
        if self.on_progress is not None:
            self.on_progress(self.name, got, self.head.total)
        if got < self.head.total:
            return got
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.done = self._finish()
        return got

    def _finish(self) -> Path:
        from p2phpo.train.share import blob_path, read_blob

        assert self.head is not None and self.part is not None
        fp = self.head.fingerprint
        if _sha256(self.part) != self.head.sha256:
            self.part.unlink(missing_ok=True)
            raise FetchError(f"{self.name}: the dataset arrived corrupt (SHA-256 mismatch); "
                             "refusing it")
        try:
            ds = read_blob(self.part)
        except DatasetError as exc:
            self.part.unlink(missing_ok=True)
            raise FetchError(f"{self.name}: refusing its dataset: {exc}") from None
        if ds.fingerprint != fp:
            self.part.unlink(missing_ok=True)
            raise FetchError(f"{self.name}: its dataset's content does not match its "
                             f"fingerprint {fp[:12]}; refusing it")
        dest = blob_path(fp)
        os.replace(self.part, dest)
        return dest

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()
