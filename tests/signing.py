"""Deterministic node identities and signed records for tests."""

from __future__ import annotations

import hashlib

from p2phpo.core.entries import Entry
from p2phpo.core.identity import Identity
from p2phpo.core.records import decode_record, sign_entry

_LAST: dict[tuple[int, int], bytes] = {}  # (origin, seq) -> the record signed most recently


def ident(n: int) -> Identity:
    """The test identity number ``n`` (same key on every run)."""
    return Identity(hashlib.sha256(f"p2phpo-test-identity-{n}".encode()).digest())


def signed(identity: Identity, cls: type, seq: int, **fields: object) -> tuple[Entry, bytes]:
    """``(entry, record)`` of an entry of ``identity``'s origin, signed by it and
    chained to the record of ``seq - 1`` signed last (a stand-in if there is none)."""
    fields.setdefault("wall", float(seq))
    entry = cls(origin=identity.node_id, seq=seq, **fields)
    prev = _LAST.get((identity.node_id, seq - 1), b"no record") if seq > 1 else None
    raw = sign_entry(identity, entry, prev)
    assert decode_record(raw) == entry
    _LAST[(identity.node_id, seq)] = raw
    return entry, raw
