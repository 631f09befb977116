"""Fixtures shared by the end-to-end tests (real node processes on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import NodeProc

LOG_TAIL = 3_000
"""Characters of each node's stderr and event log shown when a test fails."""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test item, so a fixture can see whether it failed."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest):
    """``nodes(name, *args, allow=True)`` makes a node process in ``tmp_path``; all are
    killed at the end. When the test failed, each node's exit code and the tails of its
    stderr and event log are printed (the report's "Captured stdout teardown"): a CI run
    keeps no tmp dirs."""
    made: list[NodeProc] = []

    def make(name: str, *args: str, allow: bool = True) -> NodeProc:
        n = NodeProc(name, tmp_path, list(args), allow=allow)
        made.append(n)
        return n

    yield make
    failed = getattr(request.node, "rep_call", None)
    for n in made:
        code = n.proc.poll() if n.proc is not None else "never started"
        n.kill()
        if failed is not None and failed.failed:
            print(f"--- node {n.name} ({n.addr}, state {n.state}): exit {code}")
            for path in (n.err, n.out):
                text = path.read_text(errors="replace") if path.exists() else "(none)"
                print(f"--- {path.name}, last {LOG_TAIL} characters:\n{text[-LOG_TAIL:]}")
