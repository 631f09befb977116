"""Export the trials of a ledger: CSV, JSON lines, a JSON list, or an Optuna study.

One row per trial (retries and abandoned attempts included, each with its
own id), ordered by budget slot, then claim time, then trial id. SUPERSEDED
trials (claims that lost their slot to another node and never trained) are
left out unless ``include_all`` (``p2phpo export --all``). The
JSON row (every field: docs/formats.md)::

    {"trial": "<origin hex>:<seq>", "slot", "node", "state", "params",
     "value", "reports": {step: value}, "retry_of", "started", "duration",
     "error"}

``started`` is the claim's wall-clock time (seconds since the epoch, as the
claiming node's clock read it); ``duration`` is the owner's measured run
time. The Optuna export needs the optional ``optuna`` package.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections.abc import Iterable
from typing import IO, Any

from p2phpo.core.entries import trial_id_str
from p2phpo.core.ledger import Ledger, TrialState, TrialView
from p2phpo.ui.snapshot import default_state_dir, study_fields

__all__ = [
    "FORMATS", "ExportError", "default_state_dir", "exported", "optuna_distributions", "trial_row",
    "trial_rows", "write_csv", "write_json", "write_jsonl", "write_optuna", "write_rows",
]

FORMATS = ("csv", "jsonl", "json", "optuna")
CSV_FIELDS = ("trial", "slot", "node", "state", "value", "started", "duration", "retry_of",
              "error", "last_step", "reports")


class ExportError(Exception):
    """An export that cannot be done; the message is one sentence for the user."""


def trial_row(view: TrialView) -> dict[str, Any]:
    return {
        "trial": trial_id_str(view.id),
        "slot": view.slot,
        "node": f"{view.origin:016x}",
        "state": view.state.value,
        "params": dict(view.params),
        "value": view.value,
        "reports": {step: view.reports[step] for step in sorted(view.reports)},
        "retry_of": trial_id_str(view.retry_of) if view.retry_of else None,
        "started": view.claim_wall,
        "duration": view.duration,
        "error": view.error,
    }


def _order(view: TrialView) -> tuple[int, float, tuple[int, int]]:
    return view.slot, view.claim_wall or 0.0, view.id


def exported(ledger: Ledger, include_all: bool = False) -> list[TrialView]:
    """The trials an export shows, in export order (SUPERSEDED ones only with ``include_all``)."""
    views = sorted(ledger.trials().values(), key=_order)
    return views if include_all else [v for v in views if v.state is not TrialState.SUPERSEDED]


def trial_rows(ledger: Ledger, include_all: bool = False) -> list[dict[str, Any]]:
    """The trials of ``ledger`` as export rows (see :func:`exported`)."""
    return [trial_row(v) for v in exported(ledger, include_all)]


# -- text formats ----------------------------------------------------------------


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    # JSON object keys are strings; say so explicitly rather than rely on json.dumps.
    return {**row, "reports": {str(k): v for k, v in row["reports"].items()}}


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    for row in rows:
        out.write(json.dumps(_json_row(row), sort_keys=False) + "\n")


def write_json(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    json.dump([_json_row(r) for r in rows], out, indent=1)
    out.write("\n")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> None:
    """One column per field and one ``params_<name>`` column per parameter
    (as Optuna's ``trials_dataframe``); ``reports`` is a JSON object."""
    rows = list(rows)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row["params"]))
    header = list(CSV_FIELDS) + [f"params_{n}" for n in names]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        reports = row["reports"]
        flat = {**row, "last_step": max(reports) if reports else None,
                "reports": json.dumps({str(k): v for k, v in reports.items()})}
        cells = [_cell(flat[f]) for f in CSV_FIELDS]
        cells += [_cell(row["params"].get(n)) for n in names]
        writer.writerow(cells)


def write_rows(ledger: Ledger, fmt: str, out: IO[str], include_all: bool = False) -> int:
    """Write the trials of ``ledger`` to ``out`` as csv, jsonl or json; return the count."""
    writers = {"csv": write_csv, "jsonl": write_jsonl, "json": write_json}
    if fmt not in writers:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    rows = trial_rows(ledger, include_all)
    writers[fmt](rows, out)
    return len(rows)


# -- Optuna ----------------------------------------------------------------------


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ExportError(
            "--format optuna needs the optuna package; install it with pip install optuna"
        ) from None
    return optuna


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _from_spec(optuna: Any, spec: dict[str, Any]) -> Any:
    d = optuna.distributions
    kind = spec.get("type")
    if kind == "choice":
        return d.CategoricalDistribution(list(spec["values"]))
    log = bool(spec.get("log", False))
    if kind == "int":
        step = 1 if log else int(spec.get("step") or 1)
        return d.IntDistribution(int(spec["low"]), int(spec["high"]), log=log, step=step)
    if kind == "float":
        step = None if log else spec.get("step")
        return d.FloatDistribution(float(spec["low"]), float(spec["high"]), log=log, step=step)
    raise ValueError(f"unknown parameter type {kind!r}")


def _from_values(optuna: Any, values: list[Any]) -> Any:
    d = optuna.distributions
    if values and all(_num(v) for v in values):
        if all(isinstance(v, int) for v in values):
            return d.IntDistribution(min(values), max(values))
        return d.FloatDistribution(float(min(values)), float(max(values)))
    unique = sorted(set(values), key=lambda v: (type(v).__name__, v))
    return d.CategoricalDistribution(unique)


def _contains(dist: Any, values: list[Any]) -> bool:
    try:
        return all(dist._contains(dist.to_internal_repr(v)) for v in values)
    except (ValueError, TypeError):
        return False


def optuna_distributions(ledger: Ledger, optuna: Any = None) -> dict[str, Any]:
    """One Optuna distribution per parameter: the STUDY's declared space where it
    holds every observed value, otherwise the range or set of observed values."""
    optuna = optuna or _import_optuna()
    study = ledger.study
    space = study.spec.get("space") if study is not None else None
    space = space if isinstance(space, dict) else {}
    observed: dict[str, list[Any]] = {}
    for view in ledger.trials().values():
        for name, value in view.params.items():
            observed.setdefault(name, []).append(value)
    out: dict[str, Any] = {}
    for name, values in observed.items():
        dist = None
        if isinstance(space.get(name), dict):
            try:
                dist = _from_spec(optuna, space[name])
            except (KeyError, ValueError, TypeError):
                dist = None
        if dist is None or not _contains(dist, values):
            dist = _from_values(optuna, values)
        out[name] = dist
    return out


def _when(wall: float | None) -> _dt.datetime | None:
    return None if wall is None else _dt.datetime.fromtimestamp(wall)


_OPTUNA_STATE = {
    TrialState.COMPLETE: "COMPLETE", TrialState.PRUNED: "PRUNED", TrialState.FAILED: "FAIL",
    TrialState.RUNNING: "RUNNING", TrialState.ABANDONED: "FAIL", TrialState.SUPERSEDED: "FAIL",
}


def _optuna_trial(optuna: Any, view: TrialView, dists: dict[str, Any]) -> Any:
    state = getattr(optuna.trial.TrialState, _OPTUNA_STATE[view.state])
    value = view.value if state.name in ("COMPLETE", "PRUNED") else None
    if value is not None and not math.isfinite(value):
        value = None
    attrs = {"p2phpo_trial": trial_id_str(view.id), "p2phpo_state": view.state.value,
             "node": f"{view.origin:016x}", "slot": view.slot}
    if view.retry_of:
        attrs["retry_of"] = trial_id_str(view.retry_of)
    if view.error:
        attrs["error"] = view.error
    trial = optuna.trial.create_trial(
        state=state, value=value, params=dict(view.params),
        distributions={n: dists[n] for n in view.params},
        user_attrs=attrs, intermediate_values=dict(view.reports),
    )
    trial.datetime_start = _when(view.claim_wall)
    if state.is_finished():
        trial.datetime_complete = _when(view.finished_wall) or trial.datetime_start
    return trial


def write_optuna(ledger: Ledger, storage: str, study_name: str | None = None,
                 include_all: bool = False) -> tuple[str, int]:
    """Create an Optuna study in ``storage`` holding the trials; return (name, count)."""
    optuna = _import_optuna()
    fields = study_fields(ledger)
    name = study_name or fields.get("study") or "p2phpo"
    direction = fields.get("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        direction = "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        raise ExportError(
            f"an Optuna study named {name!r} already exists in {storage}; use another --storage"
        ) from None
    except Exception as exc:  # sqlalchemy and optuna raise many types for a bad URL
        raise ExportError(f"cannot open Optuna storage {storage!r}: {exc}") from None
    dists = optuna_distributions(ledger, optuna)
    trials = [_optuna_trial(optuna, v, dists) for v in exported(ledger, include_all)]
    study.add_trials(trials)
    return name, len(trials)
