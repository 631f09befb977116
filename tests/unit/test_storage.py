"""The state dir survives crashes: torn or corrupt tails are cut, complete records kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from p2phpo.core.entries import Claim, Result, Status, trial_id_str
from p2phpo.identity_file import IDENTITY_NAME
from p2phpo.storage import (
    LOG_NAME,
    Storage,
    StorageError,
    read_state,
    read_trial_params,
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
