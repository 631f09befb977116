"""The status view: snapshots of a node, pure rich renderers, and the live driver."""

from p2phpo.ui.render import event_json, format_event_line, render
from p2phpo.ui.snapshot import (
    Event,
    FinishedTrial,
    LedgerHealth,
    MemberRow,
    NodeSnapshot,
    RunningTrial,
    TrialSummary,
    default_state_dir,
    member_rows,
    snapshot_from_ledger,
    to_status_json,
    trials_per_node,
)

__all__ = [
    "Event", "FinishedTrial", "LedgerHealth", "MemberRow", "NodeSnapshot", "RunningTrial",
    "TrialSummary", "default_state_dir", "event_json", "format_event_line", "member_rows",
    "render", "snapshot_from_ledger", "to_status_json", "trials_per_node",
]
