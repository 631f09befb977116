"""Study specs (TOML), their fingerprint and the search plan.

A :class:`StudySpec` is parsed from a study file (docs/study-file.md), validated
with one clear sentence per mistake (:class:`StudyError`), and normalized:
every default spelled out, durations in seconds, sampler and pruner options
completed, so two files that differ only in whitespace, key order or
spelled-out defaults have the same :meth:`StudySpec.fingerprint`.

:class:`Plan` is what the search core (``core/search.py``) asks: the next
params of a slot (the sampler over the incrementally kept frame), which
steps to report, and whether to prune (the pruner over the report index).

``hp.optimize`` (``p2phpo/inprocess.py``) runs a study in this process on
the same node driver as ``p2phpo node``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phpo.core.frame import FrameBuilder
from p2phpo.core.hrw import canonical
from p2phpo.core.search import Exhausted
from p2phpo.pruners import Pruner, PrunerError, ReportIndex, get_pruner
from p2phpo.samplers import GridExhausted, SamplerContext, SamplerError, get_sampler, sampler_rng
from p2phpo.samplers.grid import GridSampler
from p2phpo.space import Space, SpaceError, Value
from p2phpo.train import builtin_check


class StudyError(ValueError):
    """A study file or spec that cannot be run; the message is one clear sentence."""


_STUDY_KEYS = {"name", "direction", "metric", "seed", "n_trials", "timeout", "target",
               "trial_timeout", "max_retries", "batch"}
_TABLES = {"study", "sampler", "pruner", "objective", "space"}
MAX_BATCH = 64  # trials one node trains at once, at most
MAX_TRIALS = 1_000_000  # a budget's slots: each node keeps a byte per slot (core/budget.py)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack carries (the STUDY entry)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: Any, what: str = "timeout") -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` or ``"1d"``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text) or text <= 0:
            raise StudyError(f"{what} must be a positive duration, got {text!r}")
        return float(text)
    if not isinstance(text, str):
        raise StudyError(f"{what} must be a duration like \"2h\", \"30m\" or \"90s\", got {text!r}")
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhd])|\s", "", text.lower()):
        raise StudyError(f"{what} must be a duration like \"2h\", \"30m\" or \"90s\", got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise StudyError(f"{what} must be a positive duration, got {text!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class StudySpec:
    """A validated study; build with :meth:`load`, :meth:`from_toml` or :meth:`from_dict`."""

    space: Space
    name: str = "study"
    direction: str = "minimize"
    metric: str = "value"
    seed: int = 0
    n_trials: int | None = None
    timeout: float | None = None  # seconds after the study's creation
    target: float | None = None
    trial_timeout: float | None = None
    max_retries: int = 2
    batch: int | None = None  # trials each node trains at once (``p2phpo node --batch``)
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    objective: str = "mnist-mlp"
    objective_options: dict[str, Any] = field(default_factory=dict)

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> StudySpec:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise StudyError(f"cannot read study file {str(p)!r}: {e.strerror or e}") from None
        try:
            return cls.from_toml(text)
        except StudyError as e:
            raise StudyError(f"{p}: {e}") from None

    @classmethod
    def from_toml(cls, text: str) -> StudySpec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise StudyError(f"the study file is not valid TOML ({e})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudySpec:
        """From the TOML tables (or a normalized spec, e.g. a STUDY entry's)."""
        if not isinstance(data, Mapping):
            raise StudyError("a study spec must be a table")
        unknown = sorted(set(data) - _TABLES)
        if unknown:
            raise StudyError(f"unknown table(s) [{'], ['.join(unknown)}]; a study file has "
                             "[study], [sampler], [pruner], [objective] and [space]")
        tables = {}
        for t in _TABLES:
            v = data.get(t, {})
            if not isinstance(v, Mapping):
                raise StudyError(f"[{t}] must be a table")
            tables[t] = dict(v)
        if "space" not in data:
            raise StudyError("the study has no [space] table: declare at least one parameter")
        try:
            space = Space.from_dict(tables["space"])
        except SpaceError as e:
            raise StudyError(f"[space] {e}") from None
        study = _study_fields(tables["study"])
        sampler = tables["sampler"].pop("name", "tpe")
        pruner = tables["pruner"].pop("name", "none")
        objective = tables["objective"].pop("name", "mnist-mlp")
        if not isinstance(objective, str) or not objective:
            raise StudyError("[objective] name must be \"mnist-mlp\" or \"package.module:function\"")
        spec = cls(space, sampler=sampler, sampler_options=tables["sampler"], pruner=pruner,
                   pruner_options=tables["pruner"], objective=objective,
                   objective_options=tables["objective"], **study)
        spec = spec._completed()
        for table, values in spec.to_dict().items():
            _check_values(values, f"[{table}]")
        if spec.objective == builtin_check.NAME:
            try:
                builtin_check.check(spec.space, spec.objective_options)
            except ValueError as e:
                raise StudyError(str(e)) from None
        return spec

    def _completed(self) -> StudySpec:
        """Validate sampler and pruner and spell out their options."""
        if not isinstance(self.sampler, str):
            raise StudyError(f"[sampler] name must be a string, got {self.sampler!r}")
        try:
            s = get_sampler(self.sampler, self.sampler_options)
            if isinstance(s, GridSampler):
                s.axes(self.space)
            p = get_pruner(self.pruner, self.pruner_options, self.direction, self.max_resource)
        except (SamplerError, PrunerError) as e:
            raise StudyError(f"[{'sampler' if isinstance(e, SamplerError) else 'pruner'}] {e}"
                             ) from None
        return dataclasses.replace(self, sampler_options=_options(s),
                                   pruner_options=_options(p, "direction"))

    @property
    def max_resource(self) -> int | None:
        """The objective's ``max_epochs`` (the pruning resource), if it declares one."""
        v = self.objective_options.get("max_epochs")
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    # -- normalized form and fingerprint ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The normalized spec: TOML tables with every default, None values left out."""
        study = {"name": self.name, "direction": self.direction, "metric": self.metric,
                 "seed": self.seed, "n_trials": self.n_trials, "timeout": self.timeout,
                 "target": self.target, "trial_timeout": self.trial_timeout,
                 "max_retries": self.max_retries, "batch": self.batch}
        return _drop_none({
            "study": study,
            "sampler": {"name": self.sampler, **self.sampler_options},
            "pruner": {"name": self.pruner, **self.pruner_options},
            "objective": {"name": self.objective, **self.objective_options},
            "space": self.space.to_dict(),
        })

    def fingerprint(self, dataset_fingerprint: str = "") -> str:
        """blake2b hex of the canonical msgpack of the normalized spec (+ the data's)."""
        raw = canonical({"spec": self.to_dict(), "dataset": dataset_fingerprint})
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    # -- what the search uses ------------------------------------------------
    def make_sampler(self) -> Any:
        return get_sampler(self.sampler, self.sampler_options)

    def make_pruner(self) -> Pruner:
        return get_pruner(self.pruner, self.pruner_options, self.direction, self.max_resource)

    def plan(self, fingerprint: str = "") -> Plan:
        return Plan(self, fingerprint or self.fingerprint())


def _study_fields(t: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(t) - _STUDY_KEYS)
    if unknown:
        raise StudyError(f"[study] has unknown key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(_STUDY_KEYS))})")
    out: dict[str, Any] = {}
    name = t.get("name", "study")
    if not isinstance(name, str) or not name:
        raise StudyError(f"[study] name must be a non-empty string, got {name!r}")
    out["name"] = name
    d = t.get("direction", "minimize")
    if d not in ("minimize", "maximize"):
        raise StudyError(f"[study] direction must be \"minimize\" or \"maximize\", got {d!r}")
    out["direction"] = d
    metric = t.get("metric", "value")
    if not isinstance(metric, str) or not metric:
        raise StudyError(f"[study] metric must be a non-empty string, got {metric!r}")
    out["metric"] = metric
    for key, default, low in (("seed", 0, 0), ("n_trials", None, 1), ("max_retries", 2, 0),
                              ("batch", None, 1)):
        v = t.get(key, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise StudyError(f"[study] {key} must be an integer >= {low}, got {v!r}")
        out[key] = v
    if out["n_trials"] is not None and out["n_trials"] > MAX_TRIALS:
        raise StudyError(f"[study] n_trials must be at most {MAX_TRIALS:,}, got {out['n_trials']:,}; "
                         "for an open-ended study leave it out and set timeout or target")
    if out["batch"] is not None and out["batch"] > MAX_BATCH:
        raise StudyError(f"[study] batch must be at most {MAX_BATCH}, got {out['batch']}")
    for key in ("timeout", "trial_timeout"):
        out[key] = None if t.get(key) is None else parse_duration(t[key], f"[study] {key}")
    target = t.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                               or not math.isfinite(target)):
        raise StudyError(f"[study] target must be a number, got {target!r}")
    out["target"] = None if target is None else float(target)
    if out["n_trials"] is None and out["timeout"] is None and out["target"] is None:
        raise StudyError("[study] needs n_trials, timeout or target so that the search can end")
    return out


def _options(obj: Any, *skip: str) -> dict[str, Any]:
    d = dataclasses.asdict(obj)
    for k in ("name", *skip):
        d.pop(k, None)
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items() if v is not None}


def _check_values(v: Any, where: str) -> None:
    """Every value of a spec travels in the STUDY entry: tables, lists, strings,
    booleans, finite floats and 64-bit integers only (a TOML date, or 2**70, would
    fail only when the entry is written)."""
    if isinstance(v, Mapping):
        for key, x in v.items():
            _check_values(x, f"{where} {key}" if where.endswith("]") else f"{where}.{key}")
    elif isinstance(v, list | tuple):
        for x in v:
            _check_values(x, where)
    elif isinstance(v, int) and not isinstance(v, bool) and not _INT_RANGE[0] <= v <= _INT_RANGE[1]:
        raise StudyError(f"{where}: {v} is out of range (integers must fit in 64 bits)")
    elif isinstance(v, float) and not math.isfinite(v):
        raise StudyError(f"{where}: {v} is not a finite number")
    elif not isinstance(v, str | int | float | bool | list | tuple | Mapping):
        raise StudyError(f"{where}: {v!r} is not a string, number, boolean, list or table")


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    return d


def spec_from_entry(spec: Mapping[str, Any]) -> StudySpec:
    """The :class:`StudySpec` of a STUDY entry's normalized spec."""
    return StudySpec.from_dict(spec)


BATCH_KEYS = ("batch_size", "layers", "activation", "seed")
"""The built-in objective's shape class: trials that share these train packed together."""

CURVE_STEPS = 256  # reports up to this step are all recorded; beyond it, the rungs only


class Plan:
    """The study as the search core sees it (``core.search.StudyPlan``).

    Keeps a :class:`FrameBuilder` and a :class:`ReportIndex` that follow the
    ledger's change log, so each ``suggest`` and ``should_prune`` costs the
    new entries only.
    """

    def __init__(self, spec: StudySpec, fingerprint: str,
                 batch_keys: tuple[str, ...] | None = None) -> None:
        """``batch_keys``: the parameters a batch's members share (default: the built-in
        objective's :data:`BATCH_KEYS`, none for other objectives)."""
        self.spec = spec
        keys = batch_keys if batch_keys is not None else (
            BATCH_KEYS if spec.objective == "mnist-mlp" else ())
        # The grid visits its own points: its batches are not steered.
        self.batch_keys = () if spec.sampler == "grid" else tuple(
            k for k in keys if k in spec.space.params)
        self.fingerprint = fingerprint
        self.direction = spec.direction
        self.n_trials = spec.n_trials
        self.timeout = spec.timeout
        self.target = spec.target
        self.sampler = spec.make_sampler()
        self.pruner = spec.make_pruner()
        self._frames = FrameBuilder(spec.space, spec.direction)
        self._reports = ReportIndex()

    def context(self, node_id: int, slot: int,
                fixed: Mapping[str, Value] | None = None) -> SamplerContext:
        s = self.spec
        return SamplerContext(s.space, s.direction, node_id, slot, s.n_trials,
                              s.sampler_options, s.seed, dict(fixed or {}))

    def suggest(self, ledger: Any, node_id: int, slot: int,
                batch: Sequence[Mapping[str, Any]] = ()) -> dict[str, Value]:
        """``batch``: the params of the trials already claimed for this trial's batch.
        The first of them leads: this one takes its shape class (``batch_keys``) and
        the sampler chooses the rest given those values, so every member is a draw
        of the sampler (a random search's members stay uniform, each one alone)."""
        frame = self._frames.sync(ledger)
        lead = batch[0] if batch else {}
        fixed = {k: lead[k] for k in self.batch_keys if k in lead}
        try:
            params = self.sampler.suggest(self.context(node_id, slot, fixed), frame,
                                          sampler_rng(self.spec.seed, slot))
        except GridExhausted as e:
            raise Exhausted(str(e)) from None
        params.update(fixed)
        return params

    def should_report(self, step: int) -> bool:
        """Every step up to :data:`CURVE_STEPS` goes into the ledger (whole learning
        curves), and every step the pruner decides at; the pruner still decides
        only at its own steps (``should_prune``)."""
        return step <= CURVE_STEPS or self.pruner.reports_at(step)

    def should_prune(self, ledger: Any, trial: Any, step: int, value: float) -> bool:
        if not self.pruner.reports_at(step):
            return False
        return self.pruner.decide(trial.id, step, value, self._reports.sync(ledger))


def make_plan(entry: Any) -> Plan:
    """``core.search.PlanFactory``: the plan of an adopted STUDY entry."""
    return StudySpec.from_dict(entry.spec).plan(entry.fingerprint)
