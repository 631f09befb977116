"""Ledger entries: frozen, validated records and their canonical bytes.

An entry is identified by ``(origin, seq)``: the node that wrote it and its
position in that node's gap-free log. The same entry is the same bytes on
every node: ``encode_entry`` writes a msgpack array with sorted map keys and
64-bit floats, and ``decode_entry`` accepts only bytes that re-encode to
themselves, after size, type and range checks. Anything else raises
``EntryError`` with a short reason that callers count.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

TrialId = tuple[int, int]  # (origin, seq of the trial's CLAIM)

MAX_ENTRY_BYTES = 64 * 1024
MAX_ERROR_BYTES = 256
MAX_PARAMS = 64
MAX_NAME_LEN = 64
MAX_STR_VALUE = 256
_U64 = 1 << 64
_MAX_SEQ = 1 << 62


class Kind(enum.IntEnum):
    STUDY = 1
    CLAIM = 2
    REPORT = 3
    RESULT = 4
    ABANDON = 5


class Status(enum.IntEnum):
    """How a trial ended. COMPLETE, PRUNED and FAILED count toward the budget."""

    COMPLETE = 1
    PRUNED = 2
    FAILED = 3
    SUPERSEDED = 4

    @property
    def counted(self) -> bool:
        return self is not Status.SUPERSEDED


class AbandonReason(enum.IntEnum):
    DEAD = 1  # the owner was declared DEAD
    LEFT = 2  # the owner left gracefully mid-trial
    RESTARTED = 3  # the owner restarted and found the trial RUNNING
    SETUP_ERROR = 4  # data or objective failed to load on the owner
    TIMEOUT = 5  # trial_timeout elapsed
    LOST = 6  # the owner's disk lost this seq and no peer held it: a filler, never a trial


class EntryError(ValueError):
    """Bytes or fields that do not form a valid entry; ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def cap_error(text: str, limit: int = MAX_ERROR_BYTES) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes, ending in "..." when cut,
    without splitting a character."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "..."


def trial_id_str(tid: TrialId) -> str:
    return f"{tid[0]:016x}:{tid[1]}"


def parse_trial_id(text: str) -> TrialId:
    origin, sep, seq = text.partition(":")
    try:
        if not sep:
            raise ValueError
        tid = (int(origin, 16), int(seq))
    except ValueError:
        raise ValueError(f"trial id {text!r} is not of the form <origin hex>:<seq>") from None
    _check_tid(tid)
    return tid


# -- field checks --------------------------------------------------------------


def _bad(detail: str) -> EntryError:
    return EntryError("bad field", detail)


def _check_int(value: object, lo: int, hi: int, name: str) -> None:
    if type(value) is not int or not lo <= value < hi:
        raise _bad(f"{name}={value!r}")


def _check_float(value: object, name: str) -> None:
    if type(value) is not float or not math.isfinite(value):
        raise _bad(f"{name}={value!r}")


def _check_tid(tid: object) -> None:
    if type(tid) is not tuple or len(tid) != 2:
        raise _bad(f"trial={tid!r}")
    _check_int(tid[0], 1, _U64, "trial origin")
    _check_int(tid[1], 1, _MAX_SEQ, "trial seq")


def _check_value(value: object, name: str) -> None:
    if type(value) is bool or type(value) is int:
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise _bad(f"{name}={value!r}")
        return
    if type(value) is str and len(value) <= MAX_STR_VALUE:
        return
    raise _bad(f"{name}={value!r}")


def _check_params(params: object) -> None:
    if type(params) is not dict or len(params) > MAX_PARAMS:
        raise _bad("params")
    for key, value in params.items():
        if type(key) is not str or not 0 < len(key) <= MAX_NAME_LEN:
            raise _bad(f"param name {key!r}")
        _check_value(value, key)


def _check_spec(spec: object, depth: int = 0) -> None:
    if depth > 8:
        raise _bad("spec nesting")
    if type(spec) is dict:
        for key, value in spec.items():
            if type(key) is not str:
                raise _bad(f"spec key {key!r}")
            _check_spec(value, depth + 1)
    elif type(spec) is list:
        for value in spec:
            _check_spec(value, depth + 1)
    elif spec is not None and type(spec) not in (bool, int, float, str):
        raise _bad(f"spec value {spec!r}")


# -- entries -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Base:
    origin: int
    seq: int
    wall: float

    def _check_base(self) -> None:
        _check_int(self.origin, 1, _U64, "origin")
        _check_int(self.seq, 1, _MAX_SEQ, "seq")
        _check_float(self.wall, "wall")

    @property
    def key(self) -> TrialId:
        return (self.origin, self.seq)


@dataclass(frozen=True, slots=True)
class StudyEntry(_Base):
    """Genesis: the normalized study spec and its fingerprint."""

    spec: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    kind = Kind.STUDY

    def __post_init__(self) -> None:
        self._check_base()
        if type(self.spec) is not dict:
            raise _bad("spec")
        _check_spec(self.spec)
        if type(self.fingerprint) is not str or not 0 < len(self.fingerprint) <= 128:
            raise _bad("fingerprint")

    @property
    def created_wall(self) -> float:
        return self.wall


@dataclass(frozen=True, slots=True)
class Claim(_Base):
    """A node starts a trial in budget ``slot``; the trial id is this entry's key."""

    slot: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    retry_of: TrialId | None = None
    kind = Kind.CLAIM

    def __post_init__(self) -> None:
        self._check_base()
        _check_int(self.slot, 0, _MAX_SEQ, "slot")
        _check_params(self.params)
        if self.retry_of is not None:
            _check_tid(self.retry_of)


@dataclass(frozen=True, slots=True)
class Report(_Base):
    """An intermediate value of ``trial`` at ``step`` (the pruning resource)."""

    trial: TrialId = (1, 1)
    step: int = 0
    value: float = 0.0
    kind = Kind.REPORT

    def __post_init__(self) -> None:
        self._check_base()
        _check_tid(self.trial)
        _check_int(self.step, 0, _MAX_SEQ, "step")
        _check_float(self.value, "value")


@dataclass(frozen=True, slots=True)
class Result(_Base):
    """How ``trial`` ended: value (COMPLETE, PRUNED) or error text (FAILED)."""

    trial: TrialId = (1, 1)
    status: Status = Status.COMPLETE
    value: float | None = None
    error: str | None = None
    duration: float = 0.0
    kind = Kind.RESULT

    def __post_init__(self) -> None:
        self._check_base()
        _check_tid(self.trial)
        if not isinstance(self.status, Status):
            raise _bad(f"status={self.status!r}")
        if self.value is not None:
            _check_float(self.value, "value")
        if self.error is not None and (
            type(self.error) is not str or len(self.error.encode("utf-8")) > MAX_ERROR_BYTES
        ):
            raise _bad("error text (use cap_error)")
        _check_float(self.duration, "duration")
        if self.duration < 0:
            raise _bad("duration < 0")


@dataclass(frozen=True, slots=True)
class Abandon(_Base):
    """``trial`` will not finish on its owner; it does not count toward the budget."""

    trial: TrialId = (1, 1)
    reason: AbandonReason = AbandonReason.DEAD
    kind = Kind.ABANDON

    def __post_init__(self) -> None:
        self._check_base()
        _check_tid(self.trial)
        if not isinstance(self.reason, AbandonReason):
            raise _bad(f"reason={self.reason!r}")


Entry = StudyEntry | Claim | Report | Result | Abandon

# -- canonical bytes -----------------------------------------------------------


def _sorted_map(obj: Any) -> Any:
    if type(obj) is dict:
        return {k: _sorted_map(obj[k]) for k in sorted(obj)}
    if type(obj) is list:
        return [_sorted_map(v) for v in obj]
    return obj


def _fields(e: Entry) -> list[Any]:
    head = [int(e.kind), e.origin, e.seq, e.wall]
    if isinstance(e, Claim):
        retry = None if e.retry_of is None else list(e.retry_of)
        return head + [e.slot, _sorted_map(e.params), retry]
    if isinstance(e, Report):
        return head + [list(e.trial), e.step, e.value]
    if isinstance(e, Result):
        return head + [list(e.trial), int(e.status), e.value, e.error, e.duration]
    if isinstance(e, Abandon):
        return head + [list(e.trial), int(e.reason)]
    return head + [_sorted_map(e.spec), e.fingerprint]


def encode_entry(e: Entry) -> bytes:
    """The canonical bytes of ``e``: identical on every node."""
    return msgpack.packb(_fields(e), use_bin_type=True, use_single_float=False)


def _no_ext(code: int, data: bytes) -> Any:
    raise EntryError("bad msgpack", "extension type")


def _unpack(data: bytes) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) > MAX_ENTRY_BYTES:
        raise EntryError("bad size")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext,
            max_str_len=MAX_ENTRY_BYTES, max_ext_len=0,
            max_bin_len=0, max_array_len=4096, max_map_len=4096,
        )
    except EntryError:
        raise
    except Exception as exc:  # msgpack raises several types; all mean "not an entry"
        raise EntryError("bad msgpack", type(exc).__name__) from None
    if type(obj) is not list or len(obj) < 4 or type(obj[0]) is not int:
        raise EntryError("bad schema", "not an entry array")
    return obj


def _tid(value: Any) -> TrialId:
    if type(value) is not list or len(value) != 2:
        raise _bad("trial id")
    return (value[0], value[1])


_ARITY = {Kind.STUDY: 6, Kind.CLAIM: 7, Kind.REPORT: 7, Kind.RESULT: 9, Kind.ABANDON: 6}


def _build(f: list[Any]) -> Entry:
    try:
        kind = Kind(f[0])
    except ValueError:
        raise EntryError("bad schema", f"kind {f[0]}") from None
    if len(f) != _ARITY[kind]:
        raise EntryError("bad schema", f"{kind.name} arity {len(f)}")
    base = {"origin": f[1], "seq": f[2], "wall": f[3]}
    if kind is Kind.STUDY:
        return StudyEntry(**base, spec=f[4], fingerprint=f[5])
    if kind is Kind.CLAIM:
        retry = None if f[6] is None else _tid(f[6])
        return Claim(**base, slot=f[4], params=f[5], retry_of=retry)
    if kind is Kind.REPORT:
        return Report(**base, trial=_tid(f[4]), step=f[5], value=f[6])
    if kind is Kind.RESULT:
        if type(f[5]) is not int or f[5] not in Status._value2member_map_:
            raise _bad(f"status {f[5]!r}")
        return Result(**base, trial=_tid(f[4]), status=Status(f[5]), value=f[6],
                      error=f[7], duration=f[8])
    if type(f[5]) is not int or f[5] not in AbandonReason._value2member_map_:
        raise _bad(f"reason {f[5]!r}")
    return Abandon(**base, trial=_tid(f[4]), reason=AbandonReason(f[5]))


def decode_entry(data: bytes) -> Entry:
    """Parse canonical bytes into an entry, or raise ``EntryError``."""
    entry = _build(_unpack(data))
    if encode_entry(entry) != bytes(data):
        raise EntryError("not canonical")
    return entry
