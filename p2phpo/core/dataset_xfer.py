"""Frames that carry a dataset blob over the sealed TCP session, in bounded chunks.

A node that lacks the study's dataset opens a session to a ready peer and
asks for its blob piece by piece (``DS_GET offset length``); the peer answers
each with ``DS_CHUNK`` (the dataset fingerprint, the blob's total size and
SHA-256, the offset and at most ``MAX_CHUNK`` bytes) or ``DS_NONE`` (no
dataset, or still preparing its blob: ask again later). Chunks are requested
one at a time, so a transfer holds one chunk in memory on each side, and a
broken transfer resumes from the bytes already on disk. The receiver checks
the SHA-256, then that the blob's dataset fingerprint makes the study's
fingerprint, before it uses anything (see :mod:`p2phpo.runtime.datasets`).

Pure: decoding is schema-checked and never raises anything but WireError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2phpo.core.messages import MsgType
from p2phpo.core.wire_codec import (
    DropReason,
    WireError,
    expect_bool,
    expect_bytes,
    expect_int,
    expect_str,
)

MAX_CHUNK = 1 << 20
MAX_TOTAL = 1 << 40
KINDS = (MsgType.DS_GET, MsgType.DS_CHUNK, MsgType.DS_NONE)


@dataclass(frozen=True, slots=True)
class Chunk:
    fingerprint: str
    total: int
    sha256: bytes
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class NoDataset:
    reason: str
    retry: bool
    """True while the peer prepares its blob: ask again in a moment."""


def is_dataset(frame: object) -> bool:
    return type(frame) is list and bool(frame) and frame[0] in KINDS


def get_frame(offset: int, length: int = MAX_CHUNK) -> list[Any]:
    return [int(MsgType.DS_GET), offset, min(length, MAX_CHUNK)]


def chunk_frame(c: Chunk) -> list[Any]:
    return [int(MsgType.DS_CHUNK), c.fingerprint, c.total, c.sha256, c.offset, c.data]


def none_frame(reason: str, retry: bool) -> list[Any]:
    return [int(MsgType.DS_NONE), reason[:200], retry]


def decode_get(frame: list[Any]) -> tuple[int, int]:
    if len(frame) != 3 or frame[0] != MsgType.DS_GET:
        raise WireError(DropReason.BAD_SCHEMA, "bad dataset request")
    return expect_int(frame[1], 0, MAX_TOTAL), expect_int(frame[2], 1, MAX_CHUNK)


def decode_answer(frame: list[Any]) -> Chunk | NoDataset:
    if frame and frame[0] == MsgType.DS_NONE and len(frame) == 3:
        return NoDataset(expect_str(frame[1], 200), expect_bool(frame[2]))
    if len(frame) != 6 or frame[0] != MsgType.DS_CHUNK:
        raise WireError(DropReason.BAD_SCHEMA, "bad dataset answer")
    fp = expect_str(frame[1], 128, min_len=1)
    if not all(c in "0123456789abcdef" for c in fp):
        raise WireError(DropReason.BAD_SCHEMA, "bad dataset fingerprint")
    total = expect_int(frame[2], 1, MAX_TOTAL)
    sha = expect_bytes(frame[3], 32, min_len=32)
    offset = expect_int(frame[4], 0, total - 1)
    data = expect_bytes(frame[5], MAX_CHUNK, min_len=1)
    if offset + len(data) > total:
        raise WireError(DropReason.BAD_SCHEMA, "chunk past the end")
    return Chunk(fp, total, sha, offset, data)
