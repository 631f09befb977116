"""Signed ledger records: an entry's canonical bytes and its origin's signature.

A record is what the ledger stores, gossips and writes to disk::

    seq == 1:  body | public key (32 bytes) | signature (64 bytes)
    seq > 1:   body | prev (16 bytes)       | signature (64 bytes)

``body`` is the entry's canonical bytes (``encode_entry``); ``prev`` is the
chain hash of the origin's previous record (Hypercore / Secure Scuttlebutt
style); the signature is the origin's Ed25519 signature of a domain tag,
``prev`` and the body. The first record of every origin carries the origin's
public key, which is self-certifying (``node_id_of(key) == origin``), so any
peer learns the key of a log from the log itself; later records rely on it
(or on a key learned from a signed membership record).

Every record verifies on its own (so gossip can hold one that arrives ahead
of a gap), and a run of one origin's records verifies with one signature: a
record whose successor is authentic and names its hash is authentic too.
A catch-up of thousands of records costs one signature check per origin.

A bare body (no suffix) is an unsigned record: only in-process ledgers
(``hp.optimize``, unit tests) use them, and a signing ledger never accepts
one. Decoding stays strict: the body must re-encode to itself and the suffix
must have exactly the length its seq calls for. Verifying is separate and
memoized (:class:`Verifier`), keyed by the record bytes and key, so each
distinct record costs at most one signature check per process.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from p2phpo.core.entries import (
    MAX_ENTRY_BYTES,
    Entry,
    EntryError,
    _build,
    _no_ext,
    encode_entry,
)
from p2phpo.core.identity import PUBLIC_LEN, SIGNATURE_LEN, Identity, node_id_of, verify

_DOMAIN = b"p2phpo-entry-v1\x00"
PREV_LEN = 16
MAX_RECORD_BYTES = MAX_ENTRY_BYTES + PUBLIC_LEN + SIGNATURE_LEN


def suffix_len(seq: int) -> int:
    """Bytes after the body in a signed record of ``seq``."""
    return SIGNATURE_LEN + (PUBLIC_LEN if seq == 1 else PREV_LEN)


def chain_hash(raw: bytes) -> bytes:
    """The 16-byte hash of a whole record that its successor signs as ``prev``."""
    return hashlib.blake2b(raw, digest_size=PREV_LEN, person=b"p2phpo-chain").digest()


def signed_message(prev: bytes, body: bytes) -> bytes:
    return _DOMAIN + prev + body


def sign_entry(identity: Identity, entry: Entry, prev_record: bytes | None = None) -> bytes:
    """The signed record of ``entry``, which must be ``identity``'s own; for seq > 1,
    ``prev_record`` is the origin's record of seq - 1."""
    if entry.origin != identity.node_id:
        raise ValueError(f"cannot sign an entry of origin {entry.origin:016x} as {identity.node_id:016x}")
    body = encode_entry(entry)
    if entry.seq == 1:
        return body + identity.public_key + identity.sign(signed_message(b"", body))
    if prev_record is None:
        raise ValueError(f"signing seq {entry.seq} needs the record of seq {entry.seq - 1}")
    prev = chain_hash(prev_record)
    return body + prev + identity.sign(signed_message(prev, body))


def _unpack(body: bytes) -> list[Any] | None:
    """The msgpack array that is exactly ``body``, or None."""
    try:
        obj = msgpack.unpackb(
            body, raw=False, strict_map_key=True, use_list=True, ext_hook=_no_ext,
            max_str_len=MAX_ENTRY_BYTES, max_ext_len=0,
            max_bin_len=0, max_array_len=4096, max_map_len=4096,
        )
    except Exception:  # msgpack raises several types (and _no_ext EntryError): not this cut
        return None
    return obj if type(obj) is list and len(obj) >= 4 and type(obj[0]) is int else None


def decode_record(raw: bytes) -> Entry:
    """The entry of a signed (or bare) record, or raise ``EntryError``.

    Checks the form only; whether the signature is valid is the ledger's call.
    msgpack is prefix-free, so at most one of the possible suffix lengths
    leaves a body that is exactly one object.
    """
    if not isinstance(raw, bytes | bytearray | memoryview) or len(raw) > MAX_RECORD_BYTES:
        raise EntryError("bad size")
    if type(raw) is not bytes:
        raw = bytes(raw)
    for cut in (SIGNATURE_LEN + PREV_LEN, SIGNATURE_LEN + PUBLIC_LEN, 0):
        if len(raw) <= cut:
            continue
        body = raw[:-cut] if cut else raw
        fields = _unpack(body)
        if fields is None:
            continue
        entry = _build(fields)
        if cut and cut != suffix_len(entry.seq):
            raise EntryError("bad signature form", f"{cut} bytes after an entry of seq {entry.seq}")
        if encode_entry(entry) != body:
            raise EntryError("not canonical")
        return entry
    raise EntryError("bad msgpack", "no entry at the start of the record")


def split_record(entry: Entry, raw: bytes) -> tuple[bytes, bytes, bytes | None, bytes] | None:
    """``(body, prev, embedded key or None, signature)`` of a record decoded as
    ``entry`` (``prev`` is empty for seq 1); None when ``raw`` is too short to be signed."""
    n = suffix_len(entry.seq)
    if len(raw) <= n:
        return None
    middle = raw[-n:-SIGNATURE_LEN]
    if entry.seq == 1:
        return raw[:-n], b"", middle, raw[-SIGNATURE_LEN:]
    return raw[:-n], middle, None, raw[-SIGNATURE_LEN:]


class Verifier:
    """Signature checks with a bounded memo of verdicts (keyed by record and key).

    Pure and deterministic; one instance may serve many ledgers in one process
    (the simulator shares one, so each distinct record is checked once).
    """

    __slots__ = ("_memo", "max_memo", "checked")

    def __init__(self, max_memo: int = 1 << 17) -> None:
        self._memo: dict[tuple[bytes, bytes], bool] = {}
        self.max_memo = max_memo
        self.checked = 0  # signature checks actually computed

    def check(self, raw: bytes, key: bytes, prev: bytes, body: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is ``key``'s signature of the record ``raw`` (split already)."""
        memo_key = (raw, key)
        verdict = self._memo.get(memo_key)
        if verdict is None:
            self.checked += 1
            verdict = verify(key, sig, signed_message(prev, body))
            self._remember(memo_key, verdict)
        return verdict

    def known(self, raw: bytes, key: bytes) -> bool:
        """True when ``raw`` was found authentic under ``key`` before (no work now)."""
        return self._memo.get((raw, key)) is True

    def vouch(self, raw: bytes, key: bytes) -> None:
        """Record that ``raw`` is authentic (its authentic successor names its hash)."""
        self._remember((raw, key), True)

    def _remember(self, memo_key: tuple[bytes, bytes], verdict: bool) -> None:
        if len(self._memo) >= self.max_memo:
            del self._memo[next(iter(self._memo))]
        self._memo[memo_key] = verdict


def key_matches(key: bytes, origin: int) -> bool:
    """True when ``key`` is the public key that ``origin`` derives from."""
    return len(key) == PUBLIC_LEN and node_id_of(key) == origin
