"""The ledger log's record format: framing, checksums and replay with resync.

A log is a sequence of records ``u32 length | u32 CRC32 | signed record``
(``core/records.py``). Replay keeps every intact record; a damaged span is
skipped by resynchronizing on the next record that frames and checks, so one
flipped bit costs one record, never the intact records after it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from p2phpo.core.entries import Entry, EntryError
from p2phpo.core.records import MAX_RECORD_BYTES, decode_record

HEADER = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class Replay:
    entries: list[tuple[Entry, bytes]]
    good_bytes: int  # offset just past the last intact record
    torn_bytes: int  # bytes after it that do not form an intact record
    damaged: tuple[tuple[int, int], ...] = ()  # (offset, length) of damaged spans skipped


def _frame_at(data: bytes, pos: int) -> tuple[Entry, bytes, int] | None:
    """The intact record at ``pos``: (entry, raw bytes, end offset), or None."""
    if pos + HEADER.size > len(data):
        return None
    length, crc = HEADER.unpack_from(data, pos)
    start, end = pos + HEADER.size, pos + HEADER.size + length
    if length == 0 or length > MAX_RECORD_BYTES or end > len(data):
        return None
    raw = data[start:end]
    if zlib.crc32(raw) != crc:
        return None
    try:
        return decode_record(raw), raw, end
    except EntryError:
        return None


def _resync(data: bytes, pos: int) -> int | None:
    """The first offset after ``pos`` where an intact record starts, or None."""
    for q in range(pos + 1, len(data) - HEADER.size + 1):
        if _frame_at(data, q) is not None:
            return q
    return None


def _whole_at_end(data: bytes, pos: int) -> bool:
    """Whether the bytes from ``pos`` on are one whole record whose content is damaged
    (its header's length ends exactly at the end of the log) rather than a short write."""
    if pos + HEADER.size > len(data):
        return False
    length, _ = HEADER.unpack_from(data, pos)
    return 0 < length <= MAX_RECORD_BYTES and pos + HEADER.size + length == len(data)


def replay_bytes(data: bytes) -> Replay:
    """Every intact record of a log; damaged spans are skipped. A short last record is
    a torn tail (a crash mid-write: never fsync'ed, so never gossiped); a whole last
    record with wrong bytes is damaged like one in the middle (it may have been)."""
    entries: list[tuple[Entry, bytes]] = []
    damaged: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        rec = _frame_at(data, pos)
        if rec is not None:
            entries.append((rec[0], rec[1]))
            pos = rec[2]
            continue
        nxt = _resync(data, pos)
        if nxt is None and _whole_at_end(data, pos):
            damaged.append((pos, len(data) - pos))
            pos = len(data)
            break
        if nxt is None:
            break  # nothing intact follows: a torn tail
        damaged.append((pos, nxt - pos))
        pos = nxt
    return Replay(entries, pos, len(data) - pos, tuple(damaged))


def replay_log(path: Path) -> Replay:
    """Read every intact record of a log file (see :func:`replay_bytes`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Replay([], 0, 0)
    return replay_bytes(data)


def frame_record(raw: bytes) -> bytes:
    return HEADER.pack(len(raw), zlib.crc32(raw)) + raw
