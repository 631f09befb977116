"""What differs between two studies, in the words a user acts on.

Two nodes run different studies when their STUDY fingerprints differ; the
fingerprint hashes the normalized spec and the dataset's fingerprint, so a
difference is either in the spec (named field by field, grouped: budget,
objective options, search space...) or, with equal specs, in the data.
"""

from __future__ import annotations

from typing import Any

_GROUPS = (  # (dotted prefix, what a user calls it): first match wins
    ("study.n_trials", "budget"), ("study.timeout", "budget"), ("study.target", "budget"),
    ("study.seed", "seed"), ("study", "study settings"), ("objective.name", "objective"),
    ("objective", "objective options"), ("space", "search space"), ("sampler", "sampler"),
    ("pruner", "pruner"),
)


def spec_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two normalized specs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += spec_diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "<spec>"]


def _group(field: str) -> str:
    for prefix, name in _GROUPS:
        if field == prefix or field.startswith(prefix + "."):
            return name
    return "spec"


def describe(fields: list[str]) -> str:
    """``["objective.sleep", "study.n_trials"]`` -> ``"objective options (objective.sleep)
    and budget (study.n_trials)"``; no fields: the dataset."""
    if not fields:
        return "the dataset (the specs are equal, so the data the nodes loaded differs)"
    groups: dict[str, list[str]] = {}
    for f in fields:
        groups.setdefault(_group(f), []).append(f)
    parts = [f"{name} ({', '.join(fs)})" for name, fs in groups.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def difference(mine: Any, theirs: Any) -> str:
    """What differs between two normalized specs whose fingerprints differ."""
    return describe(spec_diff(mine, theirs))


def study_name(spec: Any) -> str:
    """The ``[study] name`` of a normalized spec (``?`` when it has none)."""
    study = spec.get("study") if isinstance(spec, dict) else None
    name = study.get("name") if isinstance(study, dict) else None
    return str(name) if name else "?"
