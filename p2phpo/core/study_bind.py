"""Which study a node's ledger belongs to, and whose ledger traffic it takes.

Nodes of different studies may share one cluster key (a state dir restarted
next to a new study on the same addresses, two studies started by mistake):
they stay members of one another — probes, failure detection and member
metadata work as ever — but their ledgers must never mix. So every datagram
of a node that holds a study carries its study tag in the envelope's label
(4 bytes of blake2b of the study fingerprint, ``wire.study_tag``), and so does
its push-pull state frame; a receiver merges entries, compares digests and
runs anti-entropy only with peers whose tag is its own. A node holds a study from the moment its ledger
has one (a restart), its own study opens (``--study``), or — for a joiner or
an observer, which holds none — the first tag sent by a node at one of its
seed addresses.

Pure: the gossip core owns one :class:`StudyBinding` and asks it about every
datagram and push-pull.
"""

from __future__ import annotations

from p2phpo.core.messages import Addr
from p2phpo.core.wire import study_tag

OURS, BLANK, FOREIGN = "ours", "blank", "foreign"
"""A peer's ledger traffic: of our study (merged); BLANK: no tag while we hold a study
(the peer holds none yet, so it has no entries to give, but its digest is heard so
that it can catch up); FOREIGN: another study's (or, while we hold none, that of a
peer not at a seed address): members only, never compared or merged."""

__all__ = ["BLANK", "FOREIGN", "OURS", "StudyBinding", "study_tag"]


class StudyBinding:
    """The study tag this node's ledger belongs to, and the tags its seeds sent."""

    def __init__(self) -> None:
        self.tag: bytes | None = None
        self.seed_tags: dict[Addr, bytes] = {}  # seed address -> the tag heard from it

    def bind(self, tag: bytes) -> None:
        self.tag = tag

    def classify(self, tag: bytes | None, addr: Addr | None, seeds: list[Addr]) -> str:
        """OURS, BLANK or FOREIGN for a peer at ``addr`` that sent ``tag``; the first tag
        a seed sends binds a node that holds no study yet."""
        if tag is None:  # neither holds a study (a bare protocol test): nothing to keep apart
            return OURS if self.tag is None else BLANK
        seed = addr is not None and addr in seeds
        if seed:
            self.seed_tags[addr] = tag  # type: ignore[index]
            if self.tag is None:
                self.bind(tag)
        return OURS if tag == self.tag else FOREIGN

    def seed_runs_ours(self, seeds: list[Addr]) -> bool:
        """Whether a node at one of ``seeds`` sent our study's tag."""
        return self.tag is not None and any(self.seed_tags.get(a) == self.tag for a in seeds)
