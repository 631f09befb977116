"""The status view: snapshots of a node, pure rich renderers, and the live driver."""

from p2phpo.ui.render import event_json, format_event_line, render
from p2phpo.ui.snapshot import (
    Event,
    FinishedTrial,
    LedgerHealth,
    MemberRow,
    NodeSnapshot,
    RunningTrial,
    default_state_dir,
    snapshot_from_ledger,
    to_status_json,
)

__all__ = [
    "Event", "FinishedTrial", "LedgerHealth", "MemberRow", "NodeSnapshot", "RunningTrial",
    "default_state_dir", "event_json", "format_event_line", "render", "snapshot_from_ledger",
    "to_status_json",
]
