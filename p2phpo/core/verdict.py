"""The node's answer to a trial's intermediate report (shared by the core and ``p2phpo.trial``)."""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """The node's answer to a ``trial.report``."""

    CONTINUE = "continue"
    PRUNE = "prune"  # the pruner says this trial is not promising
    STOP = "stop"  # the study ended or the trial was superseded
