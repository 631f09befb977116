"""The examples a newcomer runs first keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from p2phpo.runtime.node import DEFAULT_STUDY
from p2phpo.study import StudySpec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["mnist_mlp.toml", "fashion_mnist.toml", "custom_objective.toml"])
def test_example_studies_load(name: str) -> None:
    spec = StudySpec.load(REPO / "examples" / name)
    assert spec.n_trials and spec.space.params


def test_the_built_in_study_is_the_mnist_example() -> None:
    example = StudySpec.load(REPO / "examples" / "mnist_mlp.toml")
    assert StudySpec.load(DEFAULT_STUDY).fingerprint() == example.fingerprint()


def test_optimize_local_example_prints_the_best_trial() -> None:
    out = subprocess.run([sys.executable, str(REPO / "examples" / "optimize_local.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("best 0.9") and "(60 trials)" in out.stdout
