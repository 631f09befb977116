"""Search spaces: ``Float``, ``Int``, ``Choice`` and ``Space``.

A space is a flat, ordered mapping of parameter names to distributions.
Every distribution maps its values to and from the unit interval, so the
samplers work on one float32 matrix whatever the parameter types:

- ``Float(low, high)`` maps linearly, ``log=True`` maps ``log(x)`` linearly;
  with a ``step`` the grid points ``low, low+step, ...`` each own an equal
  bin of the unit interval (the range is widened by half a step on each side).
- ``Int(low, high, step=1)`` is a stepped range the same way; ``log=True``
  maps ``log(x)`` over ``[log(low - 0.5), log(high + 0.5)]`` so every integer
  owns the bin of values that round to it.
- ``Choice(values)``: value ``i`` of ``k`` owns the bin ``[i/k, (i+1)/k)``.

Decoding snaps to the nearest valid value, so any point of the unit cube
decodes to a valid parameter set.

Conditional parameters (a parameter that exists only when another one has a
given value) are out of scope: every trial has every parameter of the space.
Declare the parameter always and ignore it where it does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Value = int | float | str | bool


MAX_INT = 2**53  # an int parameter's bounds: exact as floats (the samplers' unit space)


class SpaceError(ValueError):
    """A search space that cannot be used; the message says why in one sentence."""


def _num(name: str, field: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpaceError(f"parameter {name!r}: {field} must be a finite number, got {v!r}")
    return v


def _numeric_to_unit(p: Float | Int, x: np.ndarray) -> np.ndarray:
    """Scale values of a Float or Int into [0, 1] over its (log) bounds."""
    a, b, _ = p._bounds()
    x = np.asarray(x, dtype=np.float64)
    return ((np.log(x) if p.log else x) - a) / (b - a)


@dataclass(frozen=True, slots=True)
class Float:
    """A real parameter in ``[low, high]``, optionally log-scaled or stepped."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def check(self, name: str) -> None:
        low, high = _num(name, "low", self.low), _num(name, "high", self.high)
        if low >= high:
            raise SpaceError(f"parameter {name!r}: low ({low}) must be below high ({high})")
        if not math.isfinite(high - low):
            raise SpaceError(f"parameter {name!r}: high - low must be a finite number, got {high - low}")
        if self.log and low <= 0:
            raise SpaceError(f"parameter {name!r}: log scale needs low > 0, got {low}")
        if self.step is not None:
            step = _num(name, "step", self.step)
            if self.log:
                raise SpaceError(f"parameter {name!r}: step and log cannot be combined")
            if not 0 < step <= high - low:
                raise SpaceError(f"parameter {name!r}: step must be in (0, high - low], got {step}")

    @property
    def kind(self) -> str:
        return "float"

    def _bounds(self) -> tuple[float, float, int]:
        """Encoded interval ``(a, b)`` and the number of grid points (0 = continuous)."""
        if self.log:
            return math.log(self.low), math.log(self.high), 0
        if self.step is None:
            return float(self.low), float(self.high), 0
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        half = 0.5 * self.step
        return self.low - half, self.low + (n - 1) * self.step + half, n

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return _numeric_to_unit(self, x)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        a, b, n = self._bounds()
        v = a + np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0) * (b - a)
        if self.log:
            return np.clip(np.exp(v), self.low, self.high)
        if n:
            k = np.clip(np.round((v - self.low) / self.step), 0, n - 1)
            return self.low + k * self.step
        return np.clip(v, self.low, self.high)

    def bin_of(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-cube bounds of the bins of the values ``u`` decode to (stepped only)."""
        v = self.from_unit(u)
        half = 0.5 * (self.step or 0.0)
        return np.clip(self.to_unit(v - half), 0, 1), np.clip(self.to_unit(v + half), 0, 1)

    def value(self, x: float) -> float:
        return float(x)

    def contains(self, x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            return False
        return self.low <= x <= self.high

    def n_points(self) -> int:
        return self._bounds()[2]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "float", "low": float(self.low), "high": float(self.high),
                             "log": bool(self.log)}
        if self.step is not None:
            d["step"] = float(self.step)
        return d


@dataclass(frozen=True, slots=True)
class Int:
    """An integer parameter in ``[low, high]`` (both included)."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def check(self, name: str) -> None:
        for field in ("low", "high", "step"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpaceError(f"parameter {name!r}: {field} must be an integer, got {v!r}")
        if self.low >= self.high:
            raise SpaceError(f"parameter {name!r}: low ({self.low}) must be below high ({self.high})")
        if max(-self.low, self.high) > MAX_INT:  # the samplers work in floats
            raise SpaceError(f"parameter {name!r}: low and high must be within +-2**53, "
                             f"got [{self.low}, {self.high}]")
        if self.log and self.low < 1:
            raise SpaceError(f"parameter {name!r}: log scale needs low >= 1, got {self.low}")
        if self.step < 1:
            raise SpaceError(f"parameter {name!r}: step must be >= 1, got {self.step}")
        if self.log and self.step != 1:
            raise SpaceError(f"parameter {name!r}: step and log cannot be combined")

    @property
    def kind(self) -> str:
        return "int"

    def _bounds(self) -> tuple[float, float, int]:
        n = (self.high - self.low) // self.step + 1
        if self.log:
            return math.log(self.low - 0.5), math.log(self.high + 0.5), n
        half = 0.5 * self.step
        return self.low - half, self.low + (n - 1) * self.step + half, n

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return _numeric_to_unit(self, x)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        a, b, n = self._bounds()
        v = a + np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0) * (b - a)
        if self.log:
            return np.clip(np.round(np.exp(v)), self.low, self.high)
        k = np.clip(np.round((v - self.low) / self.step), 0, n - 1)
        return self.low + k * self.step

    def bin_of(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-cube bounds of the bins of the integers ``u`` decode to."""
        v = self.from_unit(u)
        half = 0.5 if self.log else 0.5 * self.step
        return np.clip(self.to_unit(v - half), 0, 1), np.clip(self.to_unit(v + half), 0, 1)

    def value(self, x: float) -> int:
        return int(round(x))

    def contains(self, x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, int):
            return False
        return self.low <= x <= self.high and (x - self.low) % self.step == 0

    def n_points(self) -> int:
        return self._bounds()[2]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": bool(self.log),
                "step": self.step}


@dataclass(frozen=True, slots=True, init=False)
class Choice:
    """One of a fixed list of scalar values (str, int, float or bool)."""

    values: tuple[Value, ...]

    def __init__(self, values: Sequence[Value]) -> None:
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | tuple):
            raise SpaceError(f"choice values must be a list, got {values!r}")
        object.__setattr__(self, "values", tuple(values))

    def check(self, name: str) -> None:
        if not self.values:
            raise SpaceError(f"parameter {name!r}: a choice needs at least one value")
        seen: set[tuple[str, Value]] = set()
        for v in self.values:
            if not isinstance(v, str | int | float | bool):
                raise SpaceError(
                    f"parameter {name!r}: choice values must be str, int, float or bool, got {v!r}")
            key = (type(v).__name__, v)
            if key in seen:
                raise SpaceError(f"parameter {name!r}: choice value {v!r} appears twice")
            seen.add(key)

    @property
    def kind(self) -> str:
        return "choice"

    def index(self, x: Any) -> int:
        for i, v in enumerate(self.values):
            if type(v) is type(x) and v == x:
                return i
        for i, v in enumerate(self.values):  # 3 == 3.0 from a TOML or JSON round trip
            if not isinstance(v, bool | str) and not isinstance(x, bool | str) and v == x:
                return i
        raise KeyError(x)

    def to_unit(self, x: Sequence[Any]) -> np.ndarray:
        k = len(self.values)
        return (np.asarray([self.index(v) for v in x], dtype=np.float64) + 0.5) / k

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        k = len(self.values)
        return np.clip(np.floor(np.asarray(u, dtype=np.float64) * k), 0, k - 1).astype(np.int64)

    def value(self, i: float) -> Value:
        return self.values[int(i)]

    def contains(self, x: Any) -> bool:
        try:
            self.index(x)
        except KeyError:
            return False
        return True

    def n_points(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


Param = Float | Int | Choice
_TYPES: dict[str, type] = {"float": Float, "int": Int, "choice": Choice}
_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
           "choice": {"values"}}


def param_from_dict(name: str, d: Mapping[str, Any]) -> Param:
    """Build one parameter from its TOML table, e.g. ``{type = "int", low = 1, high = 4}``."""
    if not isinstance(d, Mapping):
        raise SpaceError(f"parameter {name!r} must be a table like {{ type = \"float\", ... }}")
    kind = d.get("type")
    if kind not in _TYPES:
        raise SpaceError(f"parameter {name!r}: type must be one of float, int, choice; got {kind!r}")
    unknown = sorted(set(d) - _FIELDS[kind] - {"type"})
    if unknown:
        raise SpaceError(f"parameter {name!r}: unknown key(s) {', '.join(unknown)} for type {kind}")
    args = {k: v for k, v in d.items() if k != "type"}
    if kind == "choice" and "values" not in args:
        raise SpaceError(f"parameter {name!r}: a choice needs a values list")
    if kind != "choice" and not {"low", "high"} <= set(args):
        raise SpaceError(f"parameter {name!r}: {kind} needs low and high")
    if kind == "float":
        args["low"], args["high"] = _num(name, "low", args["low"]), _num(name, "high", args["high"])
    p = _TYPES[kind](**args)
    p.check(name)
    return p


class Space:
    """An ordered set of named parameters: ``Space(lr=Float(1e-4, 1e-1, log=True), ...)``."""

    __slots__ = ("params", "names", "_discrete")

    def __init__(self, params: Mapping[str, Param] | None = None, /, **kw: Param) -> None:
        merged: dict[str, Param] = dict(params or {})
        merged.update(kw)
        if not merged:
            raise SpaceError("the search space is empty: declare at least one parameter")
        for name, p in merged.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(f"parameter names must be non-empty strings, got {name!r}")
            if not isinstance(p, Float | Int | Choice):
                raise SpaceError(
                    f"parameter {name!r} must be hp.Float, hp.Int or hp.Choice, got {p!r}")
            p.check(name)
        self.params: dict[str, Param] = merged
        self.names: tuple[str, ...] = tuple(merged)
        self._discrete: np.ndarray = np.array(
            [not (isinstance(p, Float) and p.step is None) for p in merged.values()])

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Space:
        """Build from a TOML ``[space]`` table (``name = { type = ..., ... }``)."""
        if not isinstance(table, Mapping):
            raise SpaceError("[space] must be a table of parameters")
        return cls({name: param_from_dict(name, d) for name, d in table.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The normalized TOML table (every default spelled out)."""
        return {name: p.to_dict() for name, p in self.params.items()}

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.params.items())
        return f"Space({inner})"

    # -- unit cube -------------------------------------------------------
    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """One parameter set -> a float64 point of the unit cube.

        Raises :class:`SpaceError` for a missing parameter or a choice value the
        space does not declare; numeric values outside the range are clipped.
        """
        out = np.empty(len(self.names))
        for j, (name, p) in enumerate(self.params.items()):
            if name not in params:
                raise SpaceError(f"parameter {name!r} is missing")
            x = params[name]
            if isinstance(p, Choice):
                if not p.contains(x):
                    raise SpaceError(f"parameter {name!r}: {x!r} is not one of {list(p.values)}")
                out[j] = (p.index(x) + 0.5) / len(p.values)
                continue
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or (
                    p.log and x <= 0):
                raise SpaceError(f"parameter {name!r}: {x!r} is not a valid value")
            out[j] = float(p.to_unit(np.float64(x)))
        return np.clip(out, 0.0, 1.0)

    def decode(self, u: np.ndarray) -> dict[str, Value]:
        """A point of the unit cube -> a valid parameter set (values snapped)."""
        u = np.asarray(u, dtype=np.float64)
        return {name: p.value(p.from_unit(u[j:j + 1])[0])
                for j, (name, p) in enumerate(self.params.items())}

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Move points (rows of ``u``) to the centre of their value's bin.

        Continuous floats stay; stepped, integer and choice columns land on
        the encoding of the value they decode to. Vectorised over rows.
        """
        u = np.array(u, dtype=np.float64, copy=True)
        for j, p in enumerate(self.params.values()):
            if self._discrete[j]:
                col = u[..., j]
                if isinstance(p, Choice):
                    u[..., j] = (p.from_unit(col) + 0.5) / len(p.values)
                else:
                    u[..., j] = p.to_unit(p.from_unit(col))
        return np.clip(u, 0.0, 1.0)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """True when ``params`` has exactly this space's names with valid values."""
        return set(params) == set(self.names) and all(
            p.contains(params[n]) for n, p in self.params.items())
