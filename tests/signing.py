"""Deterministic node identities and signed records for tests."""

from __future__ import annotations

import hashlib

from p2phpo.core.entries import Entry
from p2phpo.core.identity import Identity
from p2phpo.core.records import decode_record, sign_entry


def ident(n: int) -> Identity:
    """The test identity number ``n`` (same key on every run)."""
    return Identity(hashlib.sha256(f"p2phpo-test-identity-{n}".encode()).digest())


def signed(identity: Identity, cls: type, seq: int, **fields: object) -> tuple[Entry, bytes]:
    """``(entry, record)`` of an entry of ``identity``'s origin, signed by it."""
    fields.setdefault("wall", float(seq))
    entry = cls(origin=identity.node_id, seq=seq, **fields)
    raw = sign_entry(identity, entry)
    assert decode_record(raw) == entry
    return entry, raw
