"""The simulator's invariants (docs/simulator.md), judged on a simulation after its healed phase.

Each checker returns ``(ok, detail)``; ``detail`` names the first offending
node, entry or trial in a sentence a person can act on. They read the live
nodes' real ledgers and member tables and the ground truth in
:class:`~simulations.metrics.Metrics`, never the cores' private state.
"""

from __future__ import annotations

from collections.abc import Callable

from p2phpo.core.entries import AbandonReason, Result
from p2phpo.core.ledger import Ledger, TrialState
from simulations.sim import Simulation

Check = tuple[bool, str]


def _short(node: int) -> str:
    return f"{node:016x}"[:8]


def no_lost_entries(sim: Simulation) -> Check:
    """Every entry a live node (in any of its lives on one disk) ever held is still there.

    Held includes entries waiting ahead of a gap: once the gap fills they must
    apply without being received again.
    """
    if sim.metrics.lost_held:
        node, origin, seq = sim.metrics.lost_held[0]
        return False, (f"node {_short(node)} received {_short(origin)}:{seq} ahead of a gap "
                       f"and lost it when the gap filled")
    for node in sim.live():
        vv = node.ledger.vv
        for origin, seq in sorted(sim.metrics.held_vv.get(node.id, {}).items()):
            if vv.get(origin, 0) < seq:
                return False, (f"node {_short(node.id)} once held {_short(origin)}:{seq} "
                               f"but now has only up to seq {vv.get(origin, 0)}")
    return True, f"{len(sim.metrics.raw_of)} entries tracked"


def ledgers_equal(sim: Simulation) -> Check:
    nodes = sim.live()
    if not nodes:
        return False, "no live node"
    ref = nodes[0]
    for node in nodes[1:]:
        if node.ledger.vv != ref.ledger.vv or node.ledger.vv_hash() != ref.ledger.vv_hash():
            missing = ref.ledger.missing_count(node.ledger.vv) + node.ledger.missing_count(ref.ledger.vv)
            return False, (f"nodes {_short(ref.id)} and {_short(node.id)} differ "
                           f"by {missing} entries")
    return True, f"{len(nodes)} replicas of {len(ref.ledger)} entries, vv hash {ref.ledger.vv_hash():016x}"


def logs_gap_free_immutable(sim: Simulation) -> Check:
    if sim.metrics.mutated:
        node, origin, seq = sim.metrics.mutated[0]
        return False, f"node {_short(node)} saw {_short(origin)}:{seq} with different bytes"
    for node in sim.live():
        led = node.ledger
        for origin in led.origins():
            seqs = [e.seq for e in led.entries_of(origin)]
            if seqs != list(range(1, len(seqs) + 1)) or led.vv.get(origin) != len(seqs):
                return False, f"node {_short(node.id)} has a gap in the log of {_short(origin)}"
            for e in led.entries_of(origin):
                if sim.metrics.raw_of.get((origin, e.seq), led.raw(origin, e.seq)) != led.raw(origin, e.seq):
                    return False, f"{_short(origin)}:{e.seq} changed bytes on {_short(node.id)}"
    return True, "every log is 1..n with unchanged bytes"


def crashed_dead_everywhere(sim: Simulation) -> Check:
    down = sim.expected_down()
    for node in sim.live():
        table = node.member_states()
        for gone in down:
            state = table.get(gone, ("DEAD", 0))[0]
            if state not in ("DEAD", "LEFT"):
                return False, f"node {_short(node.id)} still sees crashed {_short(gone)} as {state}"
    return True, f"{len(down)} crashed node(s) DEAD or LEFT on every live node"


def healthy_alive_everywhere(sim: Simulation) -> Check:
    live = [n.id for n in sim.live()]
    for node in sim.live():
        table = node.member_states()
        for other in live:
            state = table.get(other, ("UNKNOWN", 0))[0]
            if state != "ALIVE":
                return False, f"node {_short(node.id)} sees live {_short(other)} as {state}"
    return True, f"{len(live)} live nodes ALIVE on every live node"


def incarnations_monotonic(sim: Simulation) -> Check:
    if sim.metrics.inc_decreases:
        obs, node, prev, inc = sim.metrics.inc_decreases[0]
        return False, f"node {_short(obs)} saw {_short(node)}'s incarnation drop from {prev} to {inc}"
    return True, "no incarnation ever decreased"


def _ledger(sim: Simulation) -> Ledger | None:
    nodes = sim.live()
    return nodes[0].ledger if nodes else None


def trials_terminal(sim: Simulation) -> Check:
    """Every trial has a RESULT or an ABANDON, and every abandoned slot was finished."""
    led = _ledger(sim)
    if led is None:
        return False, "no live node"
    trials = led.trials()
    done_slots = {v.slot for v in trials.values() if v.state.counted}
    for tid, v in sorted(trials.items()):
        if v.state is TrialState.RUNNING:
            return False, f"trial {_short(tid[0])}:{tid[1]} (slot {v.slot}) is still RUNNING"
        if v.state is TrialState.ABANDONED and v.abandon.reason is not AbandonReason.SETUP_ERROR:
            if v.slot not in done_slots:
                return False, f"abandoned trial {_short(tid[0])}:{tid[1]} of slot {v.slot} was never retried to a result"
    return True, f"{len(trials)} trials, all finished"


def result_beats_abandon(sim: Simulation) -> Check:
    led = _ledger(sim)
    if led is None:
        return False, "no live node"
    with_result = {e.trial for e in led if isinstance(e, Result)}
    for tid in sorted(with_result):
        view = led.trial(tid)
        if view is not None and view.state is TrialState.ABANDONED:
            return False, f"trial {_short(tid[0])}:{tid[1]} has a RESULT but shows ABANDONED"
    return True, f"{len(with_result)} trials with a RESULT keep it"


def budget(sim: Simulation, strict: bool) -> tuple[Check, dict[str, int]]:
    led = _ledger(sim)
    n = sim.config.budget
    if led is None:
        return (False, "no live node"), {}
    counted = [v for v in led.trials().values() if v.state.counted]
    slots = {v.slot for v in counted}
    stats = {"n_trials": n, "counted": len(counted), "overshoot": max(0, len(counted) - n),
             "duplicates": len(counted) - len(slots),
             "superseded": sum(1 for v in led.trials().values() if v.state is TrialState.SUPERSEDED)}
    missing = [s for s in range(n) if s not in slots]
    if missing:
        return (False, f"slots {missing[:5]} never got a counted result"), stats
    if strict and (stats["overshoot"] or stats["duplicates"]):
        return (False, f"healthy cluster overshot by {stats['overshoot']} with "
                       f"{stats['duplicates']} duplicates"), stats
    bound = n  # at most one extra counted result per slot: two sides of one cut
    if stats["overshoot"] > bound:
        return (False, f"overshoot {stats['overshoot']} exceeds the bound {bound}"), stats
    return (True, f"{len(slots)}/{n} slots, overshoot {stats['overshoot']}, "
                  f"duplicates {stats['duplicates']}"), stats


def claims_efficient(sim: Simulation, strict: bool) -> Check:
    """In a healthy cluster, double claims stay below two per slot.

    Every superseded claim is a node that stopped work it had started; more
    of them than two per slot means claims ignore what the ledger shows
    (or the claim protocol thrashes).
    """
    led = _ledger(sim)
    if led is None:
        return False, "no live node"
    views = led.trials().values()
    superseded = sum(1 for v in views if v.state is TrialState.SUPERSEDED)
    n = sim.config.budget
    detail = f"{superseded} superseded claims for {n} slots"
    if strict and superseded > 2 * n:
        return False, detail + " in a healthy cluster: more than two per slot"
    return True, detail


def best_never_worse(sim: Simulation) -> Check:
    if sim.metrics.best_worse:
        t, node, why = sim.metrics.best_worse[0]
        return False, f"at t={t:.2f}s node {_short(node)}'s {why}"
    return True, "each node's best value only improved"


def datagram_limit(sim: Simulation) -> Check:
    t = sim.net.traffic
    if t.oversize:
        when, node, size = t.oversize[0]
        return False, f"node {_short(node)} sent {size} bytes at t={when:.2f}s (limit {sim.net.model.max_datagram})"
    return True, f"largest datagram {t.max_datagram_seen} of {sim.net.model.max_datagram} bytes"


def timers_progress(sim: Simulation) -> Check:
    """No core asked for its timer at one instant over and over (a busy loop in a runtime)."""
    for node in sim.live():
        if node.stuck is not None:
            return False, f"node {_short(node.id)}'s timer spun at t={node.stuck:.3f}s"
    return True, "every timer moved forward"


CHECKS: dict[str, Callable[[Simulation], Check]] = {
    "no_lost_entries": no_lost_entries,
    "ledgers_equal": ledgers_equal,
    "logs_gap_free_immutable": logs_gap_free_immutable,
    "crashed_dead_everywhere": crashed_dead_everywhere,
    "healthy_alive_everywhere": healthy_alive_everywhere,
    "incarnations_monotonic": incarnations_monotonic,
    "trials_terminal": trials_terminal,
    "result_beats_abandon": result_beats_abandon,
    "best_never_worse": best_never_worse,
    "datagram_limit": datagram_limit,
    "timers_progress": timers_progress,
}


def run_checks(sim: Simulation, strict_budget: bool, converged: bool) -> tuple[dict[str, dict], dict[str, int]]:
    """Every invariant as ``{name: {"ok", "detail"}}`` plus the budget counters."""
    out = {name: _as_dict(fn(sim)) for name, fn in CHECKS.items()}
    check, stats = budget(sim, strict_budget)
    out["budget_met"] = _as_dict(check)
    out["claims_efficient"] = _as_dict(claims_efficient(sim, strict_budget))
    out["converged"] = _as_dict((converged, "healed phase converged" if converged
                                 else "did not converge before the healed phase ended"))
    return out, stats


def _as_dict(check: Check) -> dict:
    return {"ok": bool(check[0]), "detail": check[1]}
