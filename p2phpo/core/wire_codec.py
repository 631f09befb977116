"""Strict msgpack decoding, drop reasons and the schema-checking toolkit.

Everything a peer sends passes through :func:`unpack_strict` and then the
``expect_*`` helpers; both raise exactly one exception type, :class:`WireError`,
whose ``reason`` is a :class:`DropReason`. Pure: no IO, no clock, no entropy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from enum import Enum
from typing import Any, TypeVar

import msgpack

DEFAULT_MAX_DEPTH = 32
"""Deepest container nesting accepted in a decoded message (top-level array = 1)."""

E = TypeVar("E", bound=Enum)


class DropReason(Enum):
    """Why an incoming datagram or TCP frame was dropped (``status --json`` keys)."""

    BAD_SIZE = "bad_size"
    BAD_AUTH = "bad_auth"
    REPLAY = "replay"
    BAD_SCHEMA = "bad_schema"
    UNKNOWN_CLUSTER = "unknown_cluster"
    BAD_VERSION = "bad_version"
    BAD_SIGNATURE = "bad_signature"  # a signature that does not verify (Alive, ledger record)
    OVER_LIMIT = "over_limit"
    """A bounded table or buffer was full (members, TCP sessions, buffered bytes)."""
    UNKNOWN_KEY = "unknown_key"  # a ledger record whose origin's key is not known yet
    OTHER_STUDY = "other_study"
    """A ledger record (or digest) of a study this node does not hold: a node of another
    study on the same cluster key, or, before this node holds one, a non-seed peer."""


class WireError(Exception):
    """A peer's bytes were rejected; ``reason`` says why. Never our own misuse."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class DropCounter:
    """Count of dropped inputs per :class:`DropReason`."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[DropReason, int] = dict.fromkeys(DropReason, 0)

    def add(self, reason: DropReason | WireError, n: int = 1) -> None:
        """Count ``n`` drops for ``reason`` (a WireError counts under its reason)."""
        if isinstance(reason, WireError):
            reason = reason.reason
        self._counts[reason] += n

    def __getitem__(self, reason: DropReason) -> int:
        return self._counts[reason]

    def __iter__(self) -> Iterator[DropReason]:
        return iter(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        """``{"bad_size": n, ...}`` with every reason present, for JSON output."""
        return {r.value: n for r, n in self._counts.items()}

    def __repr__(self) -> str:
        return f"DropCounter({self.as_dict()})"


# --------------------------------------------------------------------------- msgpack


def pack(obj: object) -> bytes:
    """msgpack bytes of ``obj`` as they go on the wire (bin type for bytes)."""
    return msgpack.packb(obj, use_bin_type=True)


def packed_size(obj: object) -> int:
    """Bytes ``obj`` takes inside a payload (one message of the array)."""
    return len(pack(obj))


def array_header_size(n: int) -> int:
    """Bytes of the msgpack array header for ``n`` elements."""
    if n < 16:
        return 1
    return 3 if n < 0x10000 else 5


def array_header(n: int) -> bytes:
    """The msgpack array header for ``n`` elements."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


class _ExtRejected(Exception):
    pass


def _reject_ext(code: int, data: bytes) -> object:
    raise _ExtRejected(code)


_UNPACK_ERRORS = (
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    msgpack.UnpackException,
    _ExtRejected,
)


def unpack_strict(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode one msgpack object with explicit limits, or raise WireError(BAD_SCHEMA).

    Limits: every string/bin/array/map no longer than the input itself (so
    nothing allocates more than the input's size), no extension types, map
    keys only str or bytes, UTF-8 strings, no trailing bytes, and container
    nesting at most ``max_depth``.
    """
    n = len(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n // 2,
            max_ext_len=0,
            ext_hook=_reject_ext,
        )
    except _UNPACK_ERRORS as e:
        raise WireError(
            DropReason.BAD_SCHEMA, f"undecodable msgpack ({type(e).__name__})"
        ) from None
    check_depth(obj, max_depth, data)
    return obj


_CONTAINERS = frozenset((list, dict))
_NOT_CONTAINER_BYTES = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def check_depth(obj: object, max_depth: int, raw: bytes | None = None) -> None:
    """Raise WireError(BAD_SCHEMA) if containers nest deeper than ``max_depth``.

    With ``raw`` (the msgpack bytes of ``obj``), a C-speed count of bytes that
    could be container headers bounds the depth, and the walk is skipped when
    the bound is already within the limit (most small datagrams).
    """
    if raw is not None and len(raw.translate(None, _NOT_CONTAINER_BYTES)) <= max_depth:
        return
    stack: list[tuple[Any, int]] = [(obj, 1)] if type(obj) in (list, dict) else []
    while stack:
        o, d = stack.pop()
        if d > max_depth:
            raise WireError(DropReason.BAD_SCHEMA, f"nesting deeper than {max_depth}")
        values = o if type(o) is list else o.values()
        if _CONTAINERS.isdisjoint(map(type, values)):
            continue  # a flat container (a Haves' pairs, an entry's bytes): C speed
        for v in values:
            t = type(v)
            if t is list or t is dict:
                stack.append((v, d + 1))


# --------------------------------------------------------------------------- schema toolkit


def _bad(what: str) -> WireError:
    return WireError(DropReason.BAD_SCHEMA, what)


def expect_int(x: object, lo: int, hi: int) -> int:
    """An int (not a bool) with ``lo <= x <= hi``."""
    if type(x) is not int or not lo <= x <= hi:
        raise _bad(f"expected int in [{lo}, {hi}]")
    return x


def expect_uint64(x: object) -> int:
    """An int in ``[0, 2**64 - 1]`` (node ids, counters, hashes)."""
    return expect_int(x, 0, 0xFFFF_FFFF_FFFF_FFFF)


def expect_float(x: object, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite number (int or float, not bool) with ``lo <= x <= hi``, as float."""
    if type(x) not in (int, float) or not math.isfinite(x) or not lo <= x <= hi:
        raise _bad(f"expected finite number in [{lo}, {hi}]")
    return float(x)  # type: ignore[arg-type]


def expect_bool(x: object) -> bool:
    if type(x) is not bool:
        raise _bad("expected bool")
    return x


def expect_bytes(x: object, max_len: int, *, min_len: int = 0) -> bytes:
    """A bytes value whose length is in ``[min_len, max_len]``."""
    if type(x) is not bytes or not min_len <= len(x) <= max_len:
        raise _bad(f"expected bytes of length {min_len}..{max_len}")
    return x


def expect_str(x: object, max_len: int, *, min_len: int = 0) -> str:
    """A str whose length in characters is in ``[min_len, max_len]``."""
    if type(x) is not str or not min_len <= len(x) <= max_len:
        raise _bad(f"expected str of length {min_len}..{max_len}")
    return x


def expect_list(x: object, max_len: int, *, min_len: int = 0) -> list[Any]:
    """A list whose length is in ``[min_len, max_len]`` (elements unchecked)."""
    if type(x) is not list or not min_len <= len(x) <= max_len:
        raise _bad(f"expected list of length {min_len}..{max_len}")
    return x


def expect_tuple(x: object, n: int) -> list[Any]:
    """A list of exactly ``n`` elements (a fixed-layout record)."""
    return expect_list(x, n, min_len=n)


def expect_map(x: object, max_len: int) -> dict[Any, Any]:
    """A dict of at most ``max_len`` entries (keys are str or bytes by decoding)."""
    if type(x) is not dict or len(x) > max_len:
        raise _bad(f"expected map of at most {max_len} entries")
    return x


def expect_enum(x: object, enum_cls: type[E]) -> E:
    """The member of ``enum_cls`` whose value is ``x``."""
    try:
        return enum_cls(x)
    except (ValueError, TypeError):
        raise _bad(f"expected a {enum_cls.__name__} value") from None


def expect_optional(x: object, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``None``, or ``check(x, *args, **kwargs)``."""
    return None if x is None else check(x, *args, **kwargs)
