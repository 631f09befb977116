"""The state dir survives crashes: torn or corrupt tails are cut, complete records kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2phpo.core.entries import Claim, Result, Status, trial_id_str
from p2phpo.identity_file import IDENTITY_NAME
from p2phpo.storage import (
    LOG_NAME,
    DiskError,
    Storage,
    StorageError,
    read_state,
    read_trial_params,
    replay_bytes,
    replay_log,
)
from tests.signing import ident, signed


def fill(state: Path, n: int = 5) -> list:
    with Storage.open(state, study="f" * 16) as st:
        out = []
        for i in range(n):
            c = st.ledger.new(st.node_id, Claim, wall=float(i), slot=i, params={"lr": 0.1 * (i + 1)})
            st.append([c])
            out.append(c)
        return out


def test_reopen_keeps_identity_and_every_entry(tmp_path: Path) -> None:
    entries = fill(tmp_path)
    with Storage.open(tmp_path, study="f" * 16) as st:
        assert st.node_id == entries[0].origin
        assert st.meta.restart_counter == 2
        assert list(st.ledger) == entries
        assert st.ledger.next_seq(st.node_id) == len(entries) + 1
        assert st.truncated_bytes == 0


def test_truncation_at_every_offset_of_the_last_record(tmp_path: Path) -> None:
    entries = fill(tmp_path)
    log = tmp_path / LOG_NAME
    full = log.read_bytes()
    rep_all = replay_log(log)
    assert len(rep_all.entries) == len(entries)
    last_len = len(rep_all.entries[-1][1]) + 8
    last_start = len(full) - last_len
    for cut in range(last_start, len(full)):
        log.write_bytes(full[:cut])
        with Storage.open(tmp_path) as st:
            assert list(st.ledger) == entries[:-1]
            assert st.truncated_bytes == cut - last_start
        assert log.stat().st_size == last_start  # the torn tail was cut away


def test_bit_flips_in_the_last_record_are_detected(tmp_path: Path) -> None:
    entries = fill(tmp_path)
    log = tmp_path / LOG_NAME
    full = log.read_bytes()
    last_len = len(replay_log(log).entries[-1][1]) + 8
    for pos in range(len(full) - last_len, len(full)):
        for bit in (0, 3, 7):
            damaged = bytearray(full)
            damaged[pos] ^= 1 << bit
            log.write_bytes(bytes(damaged))
            with Storage.open(tmp_path) as st:
                assert list(st.ledger) == entries[:-1]


def test_appending_after_recovery_continues_the_log(tmp_path: Path) -> None:
    entries = fill(tmp_path, 3)
    log = tmp_path / LOG_NAME
    log.write_bytes(log.read_bytes()[:-3])
    with Storage.open(tmp_path) as st:
        c = st.ledger.new(st.node_id, Claim, wall=9.0, slot=9, params={})
        st.append([c])
    assert [e.seq for e, _ in replay_log(log).entries] == [1, 2, 3]
    assert replay_log(log).entries[-1][0] == c and entries[2] != c


def test_second_writer_is_refused_but_readers_work(tmp_path: Path) -> None:
    entries = fill(tmp_path, 2)
    with Storage.open(tmp_path) as st:
        with pytest.raises(StorageError, match="in use"):
            Storage.open(tmp_path)
        snap = read_state(tmp_path)
        assert list(snap.ledger) == entries
        assert snap.meta.node_id == st.node_id


def test_state_dir_of_another_study_is_refused(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    with pytest.raises(StorageError, match="belongs to study"):
        Storage.open(tmp_path, study="0" * 16)


def test_merged_entries_are_persisted_too(tmp_path: Path) -> None:
    peer = ident(1)
    o = peer.node_id
    with Storage.open(tmp_path) as st:
        foreign = signed(peer, Claim, 1, slot=0, params={"x": 1})
        res = signed(peer, Result, 2, trial=(o, 1), status=Status.COMPLETE, value=1.0)
        stats = st.ledger.merge([foreign, res])
        st.append(stats.added, sync=False)
    assert read_state(tmp_path).ledger.vv == {o: 2}
    assert read_trial_params(tmp_path, trial_id_str((o, 1))) == {"x": 1}
    with pytest.raises(StorageError):
        read_trial_params(tmp_path, trial_id_str((o, 9)))
    with Storage.open(tmp_path) as st:  # the replayed replica still verifies new records
        assert st.ledger.merge([signed(peer, Result, 3, trial=(o, 1), status=Status.FAILED)]).added


def test_node_id_derives_from_an_owner_only_identity_key(tmp_path: Path) -> None:
    with Storage.open(tmp_path) as st:
        node_id, key = st.node_id, st.identity.public_key
    assert (tmp_path / IDENTITY_NAME).stat().st_mode & 0o777 == 0o600
    from p2phpo.core.identity import node_id_of

    assert node_id == node_id_of(key)
    with Storage.open(tmp_path) as st:
        assert st.node_id == node_id


def test_old_state_dir_without_a_key_is_refused_in_one_sentence(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    (tmp_path / IDENTITY_NAME).unlink()
    with pytest.raises(StorageError, match="has no identity.key") as err:
        Storage.open(tmp_path)
    assert "new --state-dir" in str(err.value) and "\n" not in str(err.value)


def test_a_key_of_another_node_is_refused(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    (tmp_path / IDENTITY_NAME).write_bytes(b"\x01" * 32)
    with pytest.raises(StorageError, match="damaged"):
        Storage.open(tmp_path)


def test_own_entries_are_signed_on_disk(tmp_path: Path) -> None:
    entries = fill(tmp_path, 2)
    from p2phpo.core.ledger import Ledger
    from p2phpo.core.records import Verifier

    fresh = Ledger(verifier=Verifier())
    assert fresh.merge(replay_log(tmp_path / LOG_NAME).entries).added == entries


def test_damaged_meta_gives_a_clear_error(tmp_path: Path) -> None:
    fill(tmp_path, 1)
    (tmp_path / "node.json").write_text("{not json")
    with pytest.raises(StorageError, match="damaged"):
        Storage.open(tmp_path)
    assert os.path.exists(tmp_path / LOG_NAME)


# -- record-level recovery ------------------------------------------------------


def _spans(log: Path) -> list[tuple[int, int]]:
    """(offset, length) of every record of an intact log."""
    out, pos = [], 0
    for _, raw in replay_log(log).entries:
        out.append((pos, len(raw) + 8))
        pos += len(raw) + 8
    return out


def test_a_flipped_byte_costs_exactly_the_record_it_hit(tmp_path: Path) -> None:
    entries = fill(tmp_path, 8)
    log = tmp_path / LOG_NAME
    full = log.read_bytes()
    spans = _spans(log)
    for i, (off, n) in enumerate(spans):
        for pos in range(off, off + n):
            damaged = bytearray(full)
            damaged[pos] ^= 0x40
            rep = replay_bytes(bytes(damaged))
            got = [e for e, _ in rep.entries]
            assert got == entries[:i] + entries[i + 1:], (i, pos)
            if i < len(spans) - 1:  # in the middle: skipped, the rest kept
                assert rep.damaged == ((off, n),) and rep.torn_bytes == 0
            elif pos >= off + 4:  # the newest record, whole: damaged (it may have been gossiped)
                assert rep.damaged == ((off, n),) and rep.torn_bytes == 0
            else:  # a flip in its length field: it reads as a short write, a torn tail
                assert rep.damaged == () and rep.torn_bytes == n


def test_open_skips_a_damaged_middle_record_and_compacts_the_log(tmp_path: Path) -> None:
    entries = fill(tmp_path, 6)
    log = tmp_path / LOG_NAME
    records = replay_log(log).entries  # what peers hold
    off, n = _spans(log)[2]
    data = bytearray(log.read_bytes())
    data[off + n // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    with Storage.open(tmp_path) as st:
        assert st.recovery.damaged_records == 1 and st.recovery.damaged_bytes == n
        assert st.recovery.missing_own == (3,)
        assert st.missing_own() == [3]
        assert list(st.ledger) == entries[:2]  # 4..6 wait for 3 (held, not lost)
        assert st.ledger.held_seqs(st.node_id) == [4, 5, 6]
        note = st.recovery.note()
        assert "skipped 1 damaged record" in note and "seq 3" in note and "\n" not in note
        stats = st.ledger.merge([records[2]])  # a peer gives it back
        st.append(stats.added, sync=False)
        assert list(st.ledger) == entries
        assert st.missing_own() == []
    assert (tmp_path / "ledger.damaged").read_bytes() == bytes(data[off:off + n])
    assert len(log.read_bytes()) == len(data)  # compacted, then 3 appended (4..6 not again)
    assert replay_log(log).damaged == ()
    with Storage.open(tmp_path) as st:  # nothing to report the second time
        assert not st.recovery and st.recovery.note() == ""
        assert list(st.ledger) == entries
    snap = read_state(tmp_path)
    assert snap.damaged_records == 0


def test_readers_skip_damage_without_touching_the_file(tmp_path: Path) -> None:
    entries = fill(tmp_path, 4)
    log = tmp_path / LOG_NAME
    off, n = _spans(log)[1]
    data = bytearray(log.read_bytes())
    data[off + 3] ^= 1
    log.write_bytes(bytes(data))
    snap = read_state(tmp_path)
    assert snap.damaged_records == 1 and snap.unknown_records == 1
    # the records above the damaged one are shown, not held back behind the gap
    assert [e for e in snap.ledger if e.seq != entries[1].seq] == [entries[0], *entries[2:]]
    assert set(snap.ledger.trials()) == {(e.origin, e.seq) for e in entries if e is not entries[1]}
    assert log.read_bytes() == bytes(data)


def test_garbage_between_records_is_skipped(tmp_path: Path) -> None:
    entries = fill(tmp_path, 3)
    log = tmp_path / LOG_NAME
    off, _ = _spans(log)[1]
    data = log.read_bytes()
    log.write_bytes(data[:off] + b"\x00" * 100 + os.urandom(300) + data[off:])
    with Storage.open(tmp_path) as st:
        assert list(st.ledger) == entries and st.recovery.damaged_records == 1


# -- disk errors ---------------------------------------------------------------


def _claim(st: Storage, i: int) -> Claim:
    return st.ledger.new(st.node_id, Claim, wall=float(i), slot=i, params={"i": i})


def test_a_full_disk_fails_the_append_and_every_later_one(tmp_path: Path, monkeypatch) -> None:
    import errno

    from p2phpo import storage as storage_mod

    entries = fill(tmp_path, 2)
    st = Storage.open(tmp_path)
    real = storage_mod._write_all

    def half_then_full(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])  # a partial record reaches the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage_mod, "_write_all", half_then_full)
    with pytest.raises(DiskError, match="No space left on device") as info:
        st.append([_claim(st, 7)])
    assert "\n" not in str(info.value)
    monkeypatch.setattr(storage_mod, "_write_all", real)
    with pytest.raises(DiskError):  # the log stays closed to writes
        st.append([_claim(st, 8)])
    st.close()  # never raises after a failure
    st.close()
    rep = replay_log(tmp_path / LOG_NAME)
    assert [e for e, _ in rep.entries] == entries and rep.torn_bytes == 0  # partial cut back


def test_an_fsync_error_fails_the_append(tmp_path: Path, monkeypatch) -> None:
    import errno

    from p2phpo import storage as storage_mod

    with Storage.open(tmp_path) as st:
        def eio(fd: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(storage_mod.os, "fsync", eio)
        with pytest.raises(DiskError, match="Input/output error"):
            st.append([_claim(st, 1)])
        with pytest.raises(DiskError):
            st.set_incarnation(99)


def test_a_read_only_state_dir_is_one_sentence(tmp_path: Path) -> None:
    import subprocess

    fill(tmp_path / "s", 2)
    if os.geteuid() != 0:
        os.chmod(tmp_path / "s", 0o555)
        for f in (tmp_path / "s").iterdir():
            os.chmod(f, 0o444)
        try:
            with pytest.raises(StorageError, match="not writable") as info:
                Storage.open(tmp_path / "s")
        finally:
            os.chmod(tmp_path / "s", 0o755)
        assert "\n" not in str(info.value)
        return
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("running as root and cannot mount a tmpfs: no way to make a dir read-only")
    try:
        for name in ("node.json", LOG_NAME):
            (mnt / name).write_bytes((tmp_path / "s" / name).read_bytes())
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)]).returncode == 0
        for target in (mnt, mnt / "new"):
            with pytest.raises(StorageError) as info:
                Storage.open(target)
            assert "\n" not in str(info.value) and "Read-only file system" in str(info.value)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- remembered peers ------------------------------------------------------------


def test_peers_are_remembered_across_restarts(tmp_path: Path) -> None:
    with Storage.open(tmp_path) as st:
        assert st.remembered_peers() == []
        assert st.remember_peers(["127.0.0.1:7001", "127.0.0.1:7000", "127.0.0.1:7001"])
        assert not st.remember_peers(["127.0.0.1:7000", "127.0.0.1:7001"])  # unchanged
        assert not st.remember_peers([])  # everyone gone: keep the last known
    with Storage.open(tmp_path) as st:
        assert st.remembered_peers() == ["127.0.0.1:7000", "127.0.0.1:7001"]
    (tmp_path / "peers.json").write_text("{oops")
    with Storage.open(tmp_path) as st:
        assert st.remembered_peers() == []


def test_a_damaged_last_record_of_ours_is_a_missing_seq_not_a_free_one(tmp_path: Path) -> None:
    """A whole last record with wrong bytes may be one of ours a peer already holds:
    the node must not reuse its seq (the repair gate waits for it or fills it); a short
    last record (a crash mid-write) was never fsync'ed, so never gossiped: reused."""
    entries = fill(tmp_path, 4)
    log = tmp_path / LOG_NAME
    full = log.read_bytes()
    off, n = _spans(log)[-1]
    damaged = bytearray(full)
    damaged[off + 10] ^= 0x10  # inside the body: its prev (the chain hash) is intact
    log.write_bytes(bytes(damaged))
    with Storage.open(tmp_path) as st:
        assert list(st.ledger) == entries[:-1]
        assert st.recovery.damaged_records == 1 and st.recovery.tail_own
    log.write_bytes(full[:-3])
    with Storage.open(tmp_path) as st:
        assert st.recovery.torn_bytes == n - 3 and not st.recovery.tail_own


def test_a_damaged_last_record_of_a_peer_is_not_ours(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    peer = ident(7)
    with Storage.open(tmp_path) as st:
        stats = st.ledger.merge([signed(peer, Claim, 1, slot=0, params={"x": 1}),
                                 signed(peer, Claim, 2, slot=1, params={"x": 2})])
        st.append(stats.added)
    log = tmp_path / LOG_NAME
    off, n = _spans(log)[-1]
    damaged = bytearray(log.read_bytes())
    damaged[off + 10] ^= 0x10
    log.write_bytes(bytes(damaged))
    with Storage.open(tmp_path) as st:
        assert st.recovery.damaged_records == 1 and not st.recovery.tail_own
