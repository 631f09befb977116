"""Real nodes on 127.0.0.1 whose disks misbehave: flipped bytes, torn records, full and
read-only state dirs, restarts after the study is done."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from p2phpo.storage import read_state, replay_log
from tests.e2e.cluster import COUNTED, NodeProc, counted_slots, export, wait_for, write_study


def flip(path: Path, frac: float) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * frac)] ^= 0x5A
    path.write_bytes(bytes(data))


def events(n: NodeProc, kind: str, since: int = 0) -> list[dict]:
    return [e for e in n.events()[since:] if e.get("event") == kind]


def one_sentence(n: NodeProc) -> str:
    err = n.err.read_text()
    assert "Traceback" not in err and "Logging error" not in err, err
    return " ".join(err.split())


def test_a_flipped_byte_in_a_cluster_node_costs_nothing(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=12, epochs=2, sleep=0.05)
    a = nodes("a", "--study", str(study), "--linger").start()
    b = nodes("b", "--seed", a.addr, "--linger").start()
    c = nodes("c", "--seed", a.addr).start()
    assert c.wait(120) == 0, c.err.read_text()
    want = export(a.state)
    flip(c.state / "ledger.log", 0.4)
    seen = len(c.events())
    c.start()  # the same command: it knows its peers from its state dir
    assert c.wait(90) == 0, c.err.read_text()
    assert export(c.state) == want
    assert not events(c, "started", seen)
    assert c.events()[seen]["event"] == "listening"  # the documented first event, even after a repair
    note = " ".join(e["detail"] for e in events(c, "recovered", seen) + events(c, "repaired", seen))
    assert "skipped 1 damaged record" in note and "repaired 1 entry from peers" in note
    for n in (a, b):
        n.signal(signal.SIGINT)
        assert n.wait(30) == 0


def test_a_lone_node_loses_at_most_the_damaged_records_trial(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=12, epochs=2, sleep=0.0)
    a = nodes("a", "--study", str(study)).start()
    assert a.wait(120) == 0, a.err.read_text()
    before = {r["trial"]: r for r in export(a.state) if r["state"] in COUNTED}
    flip(a.state / "ledger.log", 0.4)
    seen = len(a.events())
    a.start()
    assert a.wait(120) == 0, a.err.read_text()
    after = export(a.state)
    kept = [r for r in after if before.get(r["trial"]) == r]
    assert len(kept) >= len(before) - 1
    assert len(events(a, "started", seen)) <= 1
    assert sorted(counted_slots(after)) == list(range(12)) and set(counted_slots(after).values()) == {1}


def test_a_restart_after_the_others_finished_runs_no_trial(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=10, epochs=3, sleep=0.15)
    a = nodes("a", "--study", str(study)).start()
    b = nodes("b", "--seed", a.addr).start()
    c = nodes("c", "--seed", a.addr).start()
    wait_for(lambda: events(c, "started"), 60, "c to start a trial")
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    wait_for(lambda: events(a, "done") and events(b, "done"), 120, "a and b to finish")
    seen = len(c.events())
    c.args = []  # no --seed: it remembers its peers
    c.start()
    for n in (c, a, b):  # a and b waited for c, then all exit
        assert n.wait(60) == 0, n.err.read_text()
    assert not events(c, "started", seen)
    assert export(c.state) == export(a.state) == export(b.state)


def _mount(target: Path, opts: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small or read-only tmpfs")
    target.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")


def test_a_full_disk_stops_the_node_with_one_sentence(tmp_path: Path, nodes) -> None:
    mnt = tmp_path / "small"
    _mount(mnt, "size=64k")
    try:
        study = write_study(tmp_path / "s.toml", n_trials=5000, epochs=1, sleep=0.0)
        a = nodes("a", "--study", str(study))
        a.state = mnt / "state"
        assert a.start().wait(120) == 1
        err = one_sentence(a)
        assert "No space left on device" in err and "stopped" in err
        rows = replay_log(a.state / "ledger.log")
        assert rows.damaged == () and rows.torn_bytes == 0  # what it persisted is intact
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_state_dir_is_refused_with_one_sentence(tmp_path: Path, nodes) -> None:
    mnt = tmp_path / "ro"
    _mount(mnt, "size=4m")
    try:
        study = write_study(tmp_path / "s.toml", n_trials=2, epochs=1, sleep=0.0)
        a = nodes("a", "--study", str(study))
        a.state = mnt / "state"
        assert a.start().wait(60) == 0, a.err.read_text()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert a.start().wait(60) == 2
        assert "not writable" in one_sentence(a) and "Read-only file system" in one_sentence(a)
        assert read_state(a.state).meta.restart_counter == 1
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_restart_after_everyone_left_goes_on_alone_and_finishes(tmp_path: Path, nodes) -> None:
    study = write_study(tmp_path / "s.toml", n_trials=8, epochs=3, sleep=0.15)
    a = nodes("a", "--study", str(study), "--grace", "0").start()
    b = nodes("b", "--seed", a.addr, "--grace", "0").start()
    c = nodes("c", "--seed", a.addr).start()
    wait_for(lambda: events(c, "started") and events(a, "started") and events(b, "started"),
             60, "every node to start a trial")
    wait_for(lambda: (c.state / "peers.json").exists(), 30, "c to remember its peers")
    c.proc.send_signal(signal.SIGKILL)  # its view: a's and b's trials still RUNNING
    c.proc.wait(10)
    for n in (a, b):
        assert n.wait(120) == 0, n.err.read_text()
    seen = len(c.events())
    c.args = []
    c.start()
    assert c.wait(120) == 0, c.err.read_text()  # never stalls on trials of nodes it cannot reach
    note = " ".join(e["detail"] for e in events(c, "repaired", seen))
    assert "no peer reached" in note and "going on alone" in note
    assert sorted(counted_slots(export(c.state))) == list(range(8))


def _damage_study_record(log: Path) -> None:
    """Flip one byte inside the STUDY entry's record of ``log`` (every record intact)."""
    from p2phpo.core.entries import StudyEntry

    pos = 0
    for entry, raw in replay_log(log).entries:
        if isinstance(entry, StudyEntry):
            data = bytearray(log.read_bytes())
            data[pos + 8 + len(raw) // 2] ^= 0x5A  # 8: the record header (length, crc)
            log.write_bytes(bytes(data))
            return
        pos += 8 + len(raw)
    raise AssertionError("no STUDY entry in the log")


def test_a_joiner_whose_study_entry_is_damaged_never_stalls_when_its_peers_are_gone(
        tmp_path: Path, nodes) -> None:
    # Trials long enough that c joins before a has run them all alone (c must know a).
    study = write_study(tmp_path / "s.toml", n_trials=6, epochs=2, sleep=0.5)
    a = nodes("a", "--study", str(study), "--grace", "0").start()
    c = nodes("c", "--seed", a.addr, "--grace", "0").start()
    for n in (a, c):  # generous waits: the suite also runs on a loaded machine
        assert n.wait(180) == 0, n.err.read_text()
    _damage_study_record(c.state / "ledger.log")
    c.args = []  # no --study, no --seed: it remembers its (gone) peers
    c.start()
    assert c.wait(90) == 2  # before: "nothing listens at seed ..." every 5 s, forever
    err = one_sentence(c)
    assert "study entry" in err and "damaged record" in err and "--study FILE" in err, err
    assert err.count(". ") == 0, err  # one sentence
    seen = len(c.events())
    c.args = ["--study", str(study)]  # its study file: it goes on alone and finishes
    c.start()
    assert c.wait(180) == 0, c.err.read_text()
    note = " ".join(e["detail"] for e in events(c, "repaired", seen))
    assert "going on alone" in note
    assert sorted(counted_slots(export(c.state))) == list(range(6))


def _own_spans(state: Path) -> list[tuple[int, int]]:
    """(offset, length) of the node's own records in its log."""
    rows, pos, out = replay_log(state / "ledger.log").entries, 0, []
    me = read_state(state).meta.node_id
    for e, raw in rows:
        if e.origin == me:
            out.append((pos, len(raw) + 8))
        pos += len(raw) + 8
    return out


def test_an_own_record_lost_while_its_only_holder_was_away_comes_back(tmp_path: Path, nodes) -> None:
    """c's disk loses one of its own records and the only peer holding it stays away past
    the wait: c fills the seq (ABANDON(LOST)) and goes on. When the peer is back, the
    filler yields to the real record on both sides: one history, not two."""
    study = write_study(tmp_path / "s.toml", n_trials=8, epochs=2, sleep=0.05)
    a = nodes("a", "--study", str(study), "--linger").start()
    c = nodes("c", "--seed", a.addr, "--linger").start()
    wait_for(lambda: events(a, "done") and events(c, "done"), 120, "the study to finish")
    wait_for(lambda: export(c.state) == export(a.state), 30, "a and c to agree")
    want = export(a.state)
    for n in (c, a):
        n.signal(signal.SIGINT)
        assert n.wait(30) == 0, n.err.read_text()
    off, n_bytes = _own_spans(c.state)[1]  # an own record in the middle of the log
    data = bytearray((c.state / "ledger.log").read_bytes())
    data[off + 10] ^= 0x5A
    (c.state / "ledger.log").write_bytes(bytes(data))
    seen = len(c.events())
    c.start()  # a, the peer it remembers, is down
    wait_for(lambda: any("lost for good" in e["detail"] for e in c.events()[seen:]),
             90, "c to fill its lost seq and go on")
    a.start()
    wait_for(lambda: export(c.state) == want, 90, "c to take the real record back")
    # the event follows the write that the export reads: wait for it, do not race it
    wait_for(lambda: any("came back from a peer (seq 2)" in e["detail"]
                         for e in events(c, "repaired", seen)), 30, "c to say its filler yielded")
    for n in (c, a):
        n.signal(signal.SIGINT)
        assert n.wait(30) == 0, n.err.read_text()
    assert export(a.state) == want == export(c.state)


FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@pytest.mark.skipif(not FAKETIME.exists(), reason="needs libfaketime (apt-get install faketime)")
def test_a_clock_set_back_does_not_make_a_repair_look_like_a_copy(tmp_path: Path, nodes) -> None:
    """A node restarted with its clock 10 minutes behind gets a lost record of its own
    back from a peer: written before this start, not by a twin (it used to exit 2,
    "stale state dir", because the record's wall time was after the skewed start)."""
    study = write_study(tmp_path / "s.toml", n_trials=8, epochs=2, sleep=0.3)
    a = nodes("a", "--study", str(study), "--linger").start()
    c = nodes("c", "--seed", a.addr, "--linger").start()
    wait_for(lambda: events(a, "done") and events(c, "done"), 120, "the study to finish")
    wait_for(lambda: export(c.state) == export(a.state), 30, "a and c to agree")
    c.signal(signal.SIGINT)
    assert c.wait(30) == 0, c.err.read_text()
    off, _ = _own_spans(c.state)[-2]  # a gap below c's newest record
    data = bytearray((c.state / "ledger.log").read_bytes())
    data[off + 10] ^= 0x5A
    (c.state / "ledger.log").write_bytes(bytes(data))
    seen = len(c.events())
    c.start(env={"LD_PRELOAD": str(FAKETIME), "FAKETIME": "-600"})
    wait_for(lambda: events(c, "repaired", seen) or c.proc.poll() is not None, 60, "c to repair")
    assert c.proc.poll() is None, c.err.read_text()
    assert "of this node's own" in events(c, "repaired", seen)[0]["detail"]
    wait_for(lambda: export(c.state) == export(a.state), 30, "a and c to agree again")
