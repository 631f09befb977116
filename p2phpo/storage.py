"""The node's state dir: its identity and a durable log of its whole replica.

Layout of a state dir::

    identity.key the node's Ed25519 secret (0600); the node id derives from it
    node.json    node id, incarnation, restart counter, study fingerprint
    ledger.log   records: u32 length | u32 CRC32 | signed record (core/records.py)
    lock         held (flock) by the one process that writes

Every entry the node holds, its own and merged ones, is appended to
``ledger.log``. Its own entries are fsync'ed before ``append`` returns, so
nothing is gossiped that a crash could lose. On open the log is replayed; a
torn or corrupt tail (a crash mid-write, a flipped bit) is detected by the
length and checksum and truncated, and the number of bytes cut is reported.
Readers (``export``) replay the log without the lock and without truncating,
while a node writes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from p2phpo.core.entries import (
    Entry,
    EntryError,
    TrialId,
    encode_entry,
    parse_trial_id,
)
from p2phpo.core.identity import Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.records import MAX_RECORD_BYTES, Verifier, decode_record
from p2phpo.identity_file import IdentityFileError, create_identity, identity_path, load_identity

_HEADER = struct.Struct(">II")
LOG_NAME = "ledger.log"
META_NAME = "node.json"
LOCK_NAME = "lock"


class StorageError(Exception):
    """A state dir that cannot be used; the message is one sentence for the user."""


@dataclass(frozen=True, slots=True)
class Replay:
    entries: list[tuple[Entry, bytes]]
    good_bytes: int  # offset just past the last intact record
    torn_bytes: int  # bytes after it that do not form an intact record


def replay_log(path: Path) -> Replay:
    """Read every intact record of a log file; stop at the first bad one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Replay([], 0, 0)
    entries: list[tuple[Entry, bytes]] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if length == 0 or length > MAX_RECORD_BYTES or end > len(data):
            break
        raw = data[start:end]
        if zlib.crc32(raw) != crc:
            break
        try:
            entries.append((decode_record(raw), raw))
        except EntryError:
            break
        pos = end
    return Replay(entries, pos, len(data) - pos)


def _record(raw: bytes) -> bytes:
    return _HEADER.pack(len(raw), zlib.crc32(raw)) + raw


@dataclass(slots=True)
class NodeMeta:
    node_id: int
    incarnation: int = 0
    restart_counter: int = 0
    study: str | None = None  # fingerprint of the adopted study
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "node_id": f"{self.node_id:016x}",
                "incarnation": self.incarnation,
                "restart_counter": self.restart_counter,
                "study": self.study,
                "extra": self.extra,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, where: Path) -> NodeMeta:
        try:
            d = json.loads(text)
            return cls(
                node_id=int(d["node_id"], 16),
                incarnation=int(d["incarnation"]),
                restart_counter=int(d["restart_counter"]),
                study=d.get("study"),
                extra=dict(d.get("extra") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{where} is damaged ({exc}); move it away to start afresh") from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """The writable state dir of one running node. Use :meth:`open`."""

    def __init__(
        self, root: Path, meta: NodeMeta, lock_fd: int, boot_salt: int, identity: Identity
    ) -> None:
        self.root = root
        self.meta = meta
        self.boot_salt = boot_salt
        self.identity = identity
        self.ledger = Ledger(identity=identity)
        self.truncated_bytes = 0
        self._lock_fd = lock_fd
        self._log = open(root / LOG_NAME, "ab")  # noqa: SIM115 - closed in close()

    @classmethod
    def open(
        cls,
        state_dir: str | os.PathLike,
        *,
        study: str | None = None,
        urandom: Callable[[int], bytes] = os.urandom,
    ) -> Storage:
        """Lock, load or create the state dir, replay its log, bump the restart counter.

        ``study``: the fingerprint this node runs; a state dir that already
        belongs to another study is refused.
        """
        root = Path(state_dir).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create state dir {root}: {exc.strerror}") from None
        lock_fd = _lock(root)
        try:
            meta, identity = _load_or_create_meta(root, urandom)
            if study is not None and meta.study is not None and meta.study != study:
                raise StorageError(
                    f"state dir {root} belongs to study {meta.study[:12]}, not {study[:12]}; "
                    "use another --state-dir for this study"
                )
            meta.restart_counter += 1
            meta.study = meta.study or study
            _write_atomic(root / META_NAME, meta.to_json())
            store = cls(root, meta, lock_fd, int.from_bytes(urandom(8), "big"), identity)
        except BaseException:
            os.close(lock_fd)
            raise
        store._recover()
        return store

    def _recover(self) -> None:
        path = self.root / LOG_NAME
        rep = replay_log(path)
        if rep.torn_bytes:
            with open(path, "r+b") as f:
                f.truncate(rep.good_bytes)
                f.flush()
                os.fsync(f.fileno())
        self.truncated_bytes = rep.torn_bytes
        self.ledger.merge(rep.entries, trusted=True)  # verified before they were written

    # -- identity ----------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self.meta.node_id

    def save_meta(self) -> None:
        _write_atomic(self.root / META_NAME, self.meta.to_json())

    def set_incarnation(self, incarnation: int) -> None:
        if incarnation != self.meta.incarnation:
            self.meta.incarnation = incarnation
            self.save_meta()

    def adopt_study(self, fingerprint: str) -> None:
        if self.meta.study not in (None, fingerprint):
            raise StorageError(
                f"state dir {self.root} belongs to study {self.meta.study[:12]}, "
                f"not {fingerprint[:12]}; use another --state-dir for this study"
            )
        if self.meta.study is None:
            self.meta.study = fingerprint
            self.save_meta()

    # -- the log -----------------------------------------------------------
    def append(self, entries: Iterable[Entry], *, sync: bool = True) -> None:
        """Write entries already applied to ``self.ledger``; fsync when ``sync``."""
        buf = bytearray()
        for e in entries:
            raw = self.ledger.raw(e.origin, e.seq)
            buf += _record(raw if raw is not None else encode_entry(e))
        if not buf:
            return
        self._log.write(buf)
        self._log.flush()
        if sync:
            os.fsync(self._log.fileno())

    def append_local(self, entry: Entry) -> Entry:
        """Append our own entry to the ledger and make it durable before returning."""
        self.ledger.append(entry)
        self.append([entry], sync=True)
        return entry

    def sync(self) -> None:
        self._log.flush()
        os.fsync(self._log.fileno())

    def close(self) -> None:
        if self._log.closed:
            return
        self.sync()
        self._log.close()
        os.close(self._lock_fd)

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lock(root: Path) -> int:
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"state dir {root} is in use by another p2phpo node; give each node its own --state-dir"
        ) from None
    return fd


def _load_or_create_meta(root: Path, urandom: Callable[[int], bytes]) -> tuple[NodeMeta, Identity]:
    path = root / META_NAME
    try:
        if path.exists():
            meta = NodeMeta.from_json(path.read_text(encoding="utf-8"), path)
            identity = load_identity(root)
            if identity.node_id != meta.node_id:
                raise StorageError(
                    f"{path} names node {meta.node_id:016x} but the identity key is node "
                    f"{identity.node_id:016x}; the state dir is damaged: use a new --state-dir"
                )
            return meta, identity
        if (root / LOG_NAME).exists() and (root / LOG_NAME).stat().st_size:
            raise StorageError(f"{path} is missing but {root / LOG_NAME} exists; the state dir is damaged")
        # A crash between the key and node.json leaves the key alone: reuse it.
        exists = identity_path(root).exists()
        identity = load_identity(root) if exists else create_identity(root, urandom)
    except IdentityFileError as exc:
        raise StorageError(str(exc)) from None
    return NodeMeta(node_id=identity.node_id), identity


# -- read-only access (export, train --trial) ---------------------------------


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    meta: NodeMeta
    ledger: Ledger
    torn_bytes: int


def read_state(state_dir: str | os.PathLike) -> StateSnapshot:
    """Load a state dir without locking or modifying it (safe while a node runs)."""
    root = Path(state_dir).expanduser()
    path = root / META_NAME
    if not path.exists():
        raise StorageError(f"{root} is not a p2phpo state dir (no {META_NAME})")
    meta = NodeMeta.from_json(path.read_text(encoding="utf-8"), path)
    rep = replay_log(root / LOG_NAME)
    ledger = Ledger(verifier=Verifier())
    ledger.merge(rep.entries, trusted=True)
    return StateSnapshot(meta, ledger, rep.torn_bytes)


def read_trial_params(state_dir: str | os.PathLike, trial: str) -> dict:
    """The params of trial ``"<origin hex>:<seq>"`` in a state dir."""
    try:
        tid: TrialId = parse_trial_id(trial)
    except ValueError as exc:
        raise StorageError(str(exc)) from None
    view = read_state(state_dir).ledger.trial(tid)
    if view is None:
        raise StorageError(f"trial {trial} is not in the ledger of {state_dir}")
    return dict(view.params)
