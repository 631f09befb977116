"""The options of ``p2phpo node`` (and of the observers of ``status``/``export --seed``):
checked, and what they name loaded, before a node is built.

The runtime (``p2phpo/runtime/node.py``) takes a :class:`NodeOptions` whose
key ring and study are already loaded and whose names are known; every
sentence about a bad option is written here.
"""

from __future__ import annotations

import os
from pathlib import Path

from p2phpo.core.profiles import PROFILES
from p2phpo.core.wire import Keyring
from p2phpo.keys import KeyFileError, load_keyring
from p2phpo.runtime.metrics import MetricsError, parse_metrics
from p2phpo.runtime.node import DEFAULT_PORT, NodeError, NodeOptions
from p2phpo.runtime.udp import RuntimeConfigError, parse_hostport, parse_peer
from p2phpo.study import MAX_BATCH, StudyError, StudySpec
from p2phpo.train import objectives
from p2phpo.train.lanes import lanes_cap
from p2phpo.ui.errors import note

LOG_LEVELS = ("debug", "info", "warning", "error")


def load_key(key_file: str | os.PathLike[str] | None) -> Keyring | None:
    """The cluster key ring from ``key_file`` or ``P2PHPO_KEY``; None when neither is set."""
    if not key_file and not os.environ.get("P2PHPO_KEY"):
        return None
    try:
        return load_keyring(str(key_file) if key_file else None,
                            warn=lambda text: note(f"warning: {text}"))
    except KeyFileError as exc:
        raise NodeError(str(exc).strip("'\"")) from None


def _check_addresses(seeds: list[str], bind: str, advertise: str | None) -> None:
    """Every address option readable (names are resolved later, by the runtime)."""
    try:
        for seed in seeds:
            parse_peer(seed, DEFAULT_PORT)
        parse_hostport(bind, 0)
        if advertise:
            parse_peer(advertise, DEFAULT_PORT)
    except RuntimeConfigError as exc:
        raise NodeError(str(exc).rstrip(".")) from None


def node_options(*, study: Path | None = None, seeds: list[str] | None = None,
                 bind: str = f"127.0.0.1:{DEFAULT_PORT}", advertise: str | None = None,
                 cluster: str = "default", state_dir: Path | None = None,
                 key_file: str | None = None, insecure: bool = False, profile: str = "lan",
                 data_dir: str | None = None, linger: bool = False, grace: float = 30.0,
                 log_level: str = "info", observer: bool = False,
                 metrics: str | None = None,
                 allow_objectives: list[str] | None = None,
                 batch: int | None = None) -> NodeOptions:
    """Check every option; load the key and the study file. NodeError (one sentence) if bad."""
    if log_level.lower() not in LOG_LEVELS:
        raise NodeError(f"unknown --log-level {log_level!r}; use debug, info, warning or error")
    if not grace >= 0:
        raise NodeError(f"--grace must be a number of seconds >= 0, not {grace}")
    if batch is not None and not 1 <= batch <= MAX_BATCH:
        raise NodeError(f"--batch must be a number of trials from 1 to {MAX_BATCH}, not {batch}")
    try:
        lanes_cap(os.environ)
    except ValueError as exc:
        raise NodeError(str(exc)) from None
    if profile not in PROFILES:
        raise NodeError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    _check_addresses(seeds or [], bind, advertise)
    if metrics is not None:
        try:
            parse_metrics(metrics)
        except MetricsError as exc:
            raise NodeError(str(exc)) from None
    for name in allow_objectives or []:
        try:
            objectives.check_form(name)
        except objectives.ObjectiveError as exc:
            raise NodeError(f"--allow-objective: {exc}") from None
    keyring = load_key(key_file)
    try:
        spec = StudySpec.load(study) if study is not None else None
    except StudyError as exc:
        raise NodeError(str(exc)) from None
    return NodeOptions(spec=spec, keyring=keyring, seeds=list(seeds or []), bind=bind,
                       advertise=advertise, cluster=cluster, state_dir=state_dir,
                       insecure=insecure, profile=profile, data_dir=data_dir, linger=linger,
                       grace=grace, log_level=log_level.lower(), observer=observer,
                       metrics=metrics, allow_objectives=list(allow_objectives or []),
                       batch=batch)
