"""What the node driver hands its shell (``NodeDriver.take_actions``), besides the
search's worker commands and the membership events.

Split out of ``core/driver.py``; the driver re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2phpo.core.entries import Entry, TrialId


@dataclass(frozen=True, slots=True)
class Persist:
    """Write ``entries`` to the state dir. ``own``: ours, write them durably (fsync)
    and then call ``handle_persisted``; they are gossiped only after that."""

    entries: list[Entry]
    own: bool


@dataclass(frozen=True, slots=True)
class StudyFound:
    """The cluster's study arrived and no worker runs yet: start one for ``spec``."""

    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Incarnation:
    """Our incarnation went up: persist it (the next life starts above it)."""

    value: int


@dataclass(frozen=True, slots=True)
class Note:
    """Something for the event log / live view that no other output says."""

    kind: str
    node: int | None
    trial: TrialId | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MayExit:
    """The study is done here and the peers that ran it are done or gone (or the
    grace period ran out): the node may exit (unless it lingers)."""


@dataclass(frozen=True, slots=True)
class Fatal:
    """The node cannot go on; ``message`` is one sentence for the user."""

    code: int
    message: str
    leave: bool = True  # False: stop without gossiping LEAVE (our id is another node's)
