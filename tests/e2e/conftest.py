"""Fixtures shared by the end-to-end tests (real node processes on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cluster import NodeProc


@pytest.fixture
def nodes(tmp_path: Path):
    """``nodes(name, *args)`` makes a node process in ``tmp_path``; all are killed at the end."""
    made: list[NodeProc] = []

    def make(name: str, *args: str) -> NodeProc:
        n = NodeProc(name, tmp_path, list(args))
        made.append(n)
        return n

    yield make
    for n in made:
        n.kill()
