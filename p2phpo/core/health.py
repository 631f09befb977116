"""A node's own health, asked for and answered inside an authenticated TCP push-pull.

``status --seed X`` must show X's counters (drops by reason, traffic, ledger,
members, running trials), not the observer's. The observer's push-pull opens
with a ``PP_HEALTH_REQ`` frame; the node answers with ``PP_HEALTH`` (a small
map, schema-checked on receipt like every frame) before its state frame, so
the exchange still ends with both ``PP_END`` frames. Pure: the node passes in
what only it knows (running trials, uptime...) through ``extra``.

    frame = health_frame(core.node_id, core_health(core, extra))   # the answer
    node, health = decode_health(frame)               # WireError(BAD_SCHEMA) if malformed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2phpo.core.entries import trial_id_str
from p2phpo.core.ledger import TrialState
from p2phpo.core.messages import MsgType, State
from p2phpo.core.wire_codec import (
    DropReason,
    WireError,
    expect_float,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    expect_uint64,
)

MAX_KEYS = 32
MAX_KEY = 32
MAX_STR = 256
MAX_LIST = 64
_I64 = 1 << 63


def request_frame() -> list[Any]:
    return [int(MsgType.PP_HEALTH_REQ)]


def health_frame(node: int, health: Mapping[str, Any]) -> list[Any]:
    return [int(MsgType.PP_HEALTH), node, dict(health)]


def is_health(frame: object) -> bool:
    """True for the two health frames (the sync session routes them here)."""
    return (type(frame) is list and bool(frame)
            and frame[0] in (MsgType.PP_HEALTH_REQ, MsgType.PP_HEALTH))


def core_health(core: Any, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the gossip core knows of its own health, plus the node's ``extra``."""
    stats = core.stats
    members: dict[str, int] = {}
    for m in core.members():
        members[m.state.name] = members.get(m.state.name, 0) + 1
    addr = core.membership.addr
    out: dict[str, Any] = {
        "addr": f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}",
        "dropped": core.dropped.as_dict(),
        "traffic": {k: stats[k] for k in ("bytes_in", "bytes_out", "datagrams_in",
                                         "datagrams_out", "entries_in")},
        "ledger": {"entries": len(core.ledger), "origins": len(core.ledger.vv),
                   "vv_hash": core.ledger.vv_hash() & (_I64 - 1)},
        "members": members,
        "running": running_trials(core),
    }
    study = core.ledger.study
    if study is not None:
        out["study"] = str(study.spec.get("study", {}).get("name", ""))[:MAX_STR]
    out.update(extra or {})  # the node knows better (e.g. which trial its worker runs)
    return out


def running_trials(core: Any) -> list[str]:
    """This node's own RUNNING trials, as the ledger shows them (at most ``MAX_LIST``)."""
    mine = [tid for tid, v in core.ledger.trials().items()
            if tid[0] == core.node_id and v.state is TrialState.RUNNING]
    return [trial_id_str(t) for t in sorted(mine)[:MAX_LIST]]


def decode_health(frame: list[Any]) -> tuple[int, dict[str, Any]]:
    """(node id, health map) of a ``PP_HEALTH`` frame; WireError(BAD_SCHEMA) otherwise."""
    if len(frame) != 3 or frame[0] != MsgType.PP_HEALTH:
        raise WireError(DropReason.BAD_SCHEMA, "bad health frame")
    node = expect_uint64(frame[1])
    raw = expect_map(frame[2], MAX_KEYS)
    return node, {_key(k): _value(v, 2) for k, v in raw.items()}


def _key(k: object) -> str:
    return expect_str(k, MAX_KEY, min_len=1)


def _value(v: object, depth: int) -> Any:
    """int, float, str, a list of str, or (one level down) a map of those."""
    t = type(v)
    if t is int:
        return expect_int(v, -_I64, _I64 - 1)
    if t is float:
        return expect_float(v)
    if t is str:
        return expect_str(v, MAX_STR)
    if t is list:
        return [expect_str(x, MAX_STR) for x in expect_list(v, MAX_LIST)]
    if t is dict and depth > 1:
        return {_key(k): _value(x, depth - 1) for k, x in expect_map(v, MAX_KEYS).items()}
    raise WireError(DropReason.BAD_SCHEMA, "bad health value")


def member_counts(health: Mapping[str, Any]) -> str:
    """``3 ALIVE, 1 DEAD`` for the view."""
    members = health.get("members") or {}
    order = [s.name for s in State]
    return ", ".join(f"{members[s]} {s}" for s in order if members.get(s)) or "-"
