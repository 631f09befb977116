"""The node's state dir: its identity and a durable log of its whole replica.

Layout of a state dir::

    identity.key the node's Ed25519 secret (0600); the node id derives from it
    node.json    node id, incarnation, restart counter, study fingerprint
    ledger.log   records: u32 length | u32 CRC32 | signed record (core/records.py)
    peers.json   the last known addresses of the other members (rejoin without --seed)
    lock         held (flock) by the one process that writes

Every entry the node holds, its own and merged ones, is appended to
``ledger.log``. Its own entries are fsync'ed before ``append`` returns, so
nothing is gossiped that a crash could lose.

Recovery is per record (the record format and its replay: ``ledger_log.py``). On
open the log is replayed; a record whose length,
checksum or contents do not hold up is skipped and the replay resynchronizes
on the next record that frames and checks, so one flipped bit costs one
record, never the intact records after it. Damaged records in the middle are
counted, moved to ``ledger.damaged`` (kept for inspection) and compacted out
of the log; only a torn tail (no intact record after it: a crash mid-write)
is cut. :attr:`Storage.recovery` says what happened, in one line.

A disk that fails (``ENOSPC``, ``EROFS``, ``EIO``) raises :class:`DiskError`
from the append that hit it; the log is then closed to writes (a partial
record is cut back when possible) and :meth:`Storage.close` never raises.
Readers (``export``) replay the log without the lock and without modifying
it, while a node writes it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from p2phpo.core.durability import seq_ranges
from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Entry,
    TrialId,
    encode_entry,
    parse_trial_id,
)
from p2phpo.core.identity import SIGNATURE_LEN, Identity
from p2phpo.core.ledger import Ledger
from p2phpo.core.records import PREV_LEN, Verifier, chain_hash
from p2phpo.identity_file import IdentityFileError, create_identity, identity_path, load_identity
from p2phpo.ledger_log import HEADER, Replay, frame_record, replay_bytes, replay_log

LOG_NAME = "ledger.log"
META_NAME = "node.json"
LOCK_NAME = "lock"
PEERS_NAME = "peers.json"
DAMAGED_NAME = "ledger.damaged"
MAX_PEERS = 64


class StorageError(Exception):
    """A state dir that cannot be used; the message is one sentence for the user."""


class DiskError(StorageError):
    """Writing the state dir failed (full disk, read-only, I/O error): the node must stop.

    ``why`` is the system's reason ("No space left on device").
    """

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (the one seam where log bytes reach the disk)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the log found: damaged records skipped, torn tail cut, own seqs missing."""

    damaged_records: int = 0
    damaged_bytes: int = 0
    torn_bytes: int = 0
    missing_own: tuple[int, ...] = ()  # own seqs below the highest own seq on disk
    tail_own: bool = False  # the damaged last record may be this node's next seq

    def __bool__(self) -> bool:
        return bool(self.damaged_records or self.torn_bytes or self.missing_own)

    def note(self) -> str:
        """One line for the user; empty when the log was intact."""
        parts = []
        if self.damaged_records:
            parts.append(f"skipped {self.damaged_records} damaged record"
                         f"{'s' if self.damaged_records != 1 else ''} "
                         f"({self.damaged_bytes} bytes, kept in {DAMAGED_NAME})")
        if self.torn_bytes:
            parts.append(f"cut a torn tail of {self.torn_bytes} bytes")
        if self.missing_own:
            parts.append(f"{len(self.missing_own)} entr{'y' if len(self.missing_own) == 1 else 'ies'}"
                         f" of this node missing ({seq_ranges(self.missing_own)})")
        return f"{LOG_NAME}: " + "; ".join(parts) if parts else ""


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


def _write_atomic(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` durably (tmp file, fsync, rename, fsync dir)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with _quiet():
            tmp.unlink()
        raise DiskError(f"cannot write {path}: {_why(exc)}", _why(exc)) from None


class _quiet:
    """``with _quiet():`` ignores an OSError (best-effort cleanup)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


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
        self.recovery = Recovery()
        self.failed: DiskError | None = None  # set by the first write that failed
        self._lock_fd = lock_fd
        self._fd = -1
        self._size = 0  # bytes of the log known to be written whole
        self._held_on_disk: set[tuple[int, int]] = set()  # in the log, waiting for a gap

    @property
    def truncated_bytes(self) -> int:
        """Bytes of a torn tail cut on open (kept for callers of the old name)."""
        return self.recovery.torn_bytes

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
        belongs to another study is refused. A state dir that cannot be
        created, locked or written raises :class:`StorageError` (one sentence).
        """
        root = Path(state_dir).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create state dir {root}: {_why(exc)}") from None
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
            try:
                _write_atomic(root / META_NAME, meta.to_json())
            except DiskError as exc:
                raise StorageError(_unwritable(root, exc.why)) from None
            store = cls(root, meta, lock_fd, int.from_bytes(urandom(8), "big"), identity)
            store._recover()
        except BaseException:
            os.close(lock_fd)
            raise
        return store

    def _recover(self) -> None:
        path = self.root / LOG_NAME
        try:
            data = path.read_bytes() if path.exists() else b""
            rep = replay_bytes(data)
            if rep.damaged:
                self._compact(path, data, rep)
            elif rep.torn_bytes:
                with open(path, "r+b") as f:
                    f.truncate(rep.good_bytes)
                    f.flush()
                    os.fsync(f.fileno())
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise StorageError(_unwritable(self.root, _why(exc))) from None
        except DiskError as exc:
            raise StorageError(_unwritable(self.root, exc.why)) from None
        led = self.ledger
        caps = led.max_pending, led.max_pending_total
        led.max_pending = led.max_pending_total = max(caps[1], len(rep.entries))  # our own disk: hold every gap
        led.merge(rep.entries, trusted=True)  # verified before they were written
        led.max_pending, led.max_pending_total = caps
        self.last_own_wall = max((e.wall for e, _ in rep.entries if e.origin == self.node_id),
                                 default=0.0)  # the wall clock of our newest write on disk
        vv = self.ledger.vv
        self._held_on_disk = {(e.origin, e.seq) for e, _ in rep.entries
                              if e.seq > vv.get(e.origin, 0)}
        self.recovery = Recovery(
            damaged_records=len(rep.damaged), damaged_bytes=sum(n for _, n in rep.damaged),
            torn_bytes=rep.torn_bytes, missing_own=tuple(self.missing_own()),
            tail_own=self._tail_may_be_own(data, rep))

    def _tail_may_be_own(self, data: bytes, rep: Replay) -> bool:
        """The log's last record is damaged (whole, wrong bytes): was it this node's? A
        signed record names its predecessor's hash (``prev``): if that is another
        origin's last record, it was theirs; if ours, or nobody's (the damage hit
        ``prev``), it may have been ours and a peer may hold it."""
        if not rep.damaged or sum(rep.damaged[-1]) != len(data):
            return False
        off, n = rep.damaged[-1]
        record = data[off + HEADER.size:off + n]
        if len(record) < SIGNATURE_LEN + PREV_LEN:
            return True
        prev = record[-SIGNATURE_LEN - PREV_LEN:-SIGNATURE_LEN]
        last: dict[int, tuple[int, bytes]] = {}  # origin -> (highest seq on disk, its record)
        for e, raw in rep.entries:
            if e.seq > last.get(e.origin, (0, b""))[0]:
                last[e.origin] = (e.seq, raw)
        theirs = [o for o, (_, raw) in last.items() if chain_hash(raw) == prev]
        return not theirs or self.node_id in theirs

    def _compact(self, path: Path, data: bytes, rep: Replay) -> None:
        """Keep the damaged spans aside in ``ledger.damaged``; rewrite the log without them."""
        with open(self.root / DAMAGED_NAME, "ab") as f:
            for off, n in rep.damaged:
                f.write(data[off:off + n])
            f.flush()
            os.fsync(f.fileno())
        _write_atomic(path, b"".join(frame_record(raw) for _, raw in rep.entries))

    def missing_own(self) -> list[int]:
        """Own seqs this replica lacks below the highest own seq it holds (held out of order)."""
        return self.ledger.gaps().get(self.node_id, [])

    # -- identity ----------------------------------------------------------
    @property
    def node_id(self) -> int:
        return self.meta.node_id

    def save_meta(self) -> None:
        self._check()
        try:
            _write_atomic(self.root / META_NAME, self.meta.to_json())
        except DiskError as exc:
            self._fail(exc)

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

    # -- remembered peers ---------------------------------------------------
    def remembered_peers(self) -> list[str]:
        """The member addresses last saved by :meth:`remember_peers` ("host:port")."""
        try:
            d = json.loads((self.root / PEERS_NAME).read_text(encoding="utf-8"))
            peers = d["peers"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        if not isinstance(peers, list):
            return []
        return [p for p in peers if isinstance(p, str) and 0 < len(p) <= 300][:MAX_PEERS]

    def remember_peers(self, addrs: Iterable[str]) -> bool:
        """Save the addresses of the members now known (at most 64); an empty list keeps
        the previous one. Returns whether the file changed. Raises :class:`DiskError`."""
        peers = sorted(set(addrs))[:MAX_PEERS]
        if not peers or peers == self.remembered_peers():
            return False
        self._check()
        try:
            _write_atomic(self.root / PEERS_NAME, json.dumps({"peers": peers}, indent=1))
        except DiskError as exc:
            self._fail(exc)
        return True

    # -- the log -----------------------------------------------------------
    def append(self, entries: Iterable[Entry], *, sync: bool = True) -> None:
        """Write entries already applied to ``self.ledger``; fsync when ``sync``.

        Raises :class:`DiskError` when the disk refuses (and on every later
        call): the caller must not gossip what it tried to write.
        """
        buf = bytearray()
        for e in entries:
            if self._held_on_disk and (e.origin, e.seq) in self._held_on_disk:
                self._held_on_disk.discard((e.origin, e.seq))
                continue  # held out of order on open: its record is in the log already
            raw = self.ledger.raw(e.origin, e.seq)
            buf += frame_record(raw if raw is not None else encode_entry(e))
        if not buf:
            return
        self._check()
        try:
            _write_all(self._fd, bytes(buf))
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            with _quiet():
                os.ftruncate(self._fd, self._size)  # cut a partial record back
            self._fail(DiskError(f"cannot write {self.root / LOG_NAME}: {_why(exc)}", _why(exc)))
        self._size += len(buf)

    def append_local(self, entry: Entry) -> Entry:
        """Append our own entry to the ledger and make it durable before returning."""
        self.ledger.append(entry)
        self.append([entry], sync=True)
        return entry

    def sync(self) -> None:
        self._check()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(DiskError(f"cannot write {self.root / LOG_NAME}: {_why(exc)}", _why(exc)))

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed
        if self._fd < 0:
            raise StorageError(f"the state dir {self.root} is closed")

    def _fail(self, exc: DiskError) -> None:
        self.failed = exc
        raise exc

    def close(self) -> None:
        """Flush and release the state dir; never raises (a failed disk was reported already)."""
        if self._fd < 0:
            return
        if self.failed is None:
            with _quiet():
                os.fsync(self._fd)
        with _quiet():
            os.close(self._fd)
        with _quiet():
            os.close(self._lock_fd)
        self._fd = -1

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unwritable(root: Path, why: str) -> str:
    return f"state dir {root} is not writable ({why}); give the node a writable --state-dir"


def _lock(root: Path) -> int:
    try:
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(_unwritable(root, _why(exc))) from None
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
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise StorageError(f"cannot read {path}: {_why(exc)}") from None
            meta = NodeMeta.from_json(text, path)
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
    damaged_records: int = 0
    unknown_records: int = 0  # seqs below a held record, shown as LOST in this read-only view


def read_state(state_dir: str | os.PathLike) -> StateSnapshot:
    """Load a state dir without locking or modifying it (safe while a node runs)."""
    root = Path(state_dir).expanduser()
    path = root / META_NAME
    if not path.exists():
        raise StorageError(f"{root} is not a p2phpo state dir (no {META_NAME})")
    try:
        meta = NodeMeta.from_json(path.read_text(encoding="utf-8"), path)
        rep = replay_log(root / LOG_NAME)
    except OSError as exc:
        raise StorageError(f"cannot read state dir {root}: {_why(exc)}") from None
    cap = max(256, len(rep.entries))
    ledger = Ledger(max_pending=cap, max_pending_total=cap, verifier=Verifier())
    ledger.merge(rep.entries, trusted=True)
    gaps = ledger.gaps()
    if gaps:  # a damaged record: show what lies above it (the file is not touched)
        ledger.merge([Abandon(origin=o, seq=s, wall=0.0, trial=(o, s), reason=AbandonReason.LOST)
                      for o, seqs in gaps.items() for s in seqs], trusted=True)
    return StateSnapshot(meta, ledger, rep.torn_bytes, len(rep.damaged),
                         sum(len(s) for s in gaps.values()))


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
