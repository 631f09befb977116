"""One trial's hyperparameters for the built-in ``mnist-mlp`` objective: their defaults,
validation and width rounding (split out of ``mlp.py``, which re-exports every name here).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from p2phpo.train import program

PARAM_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "layers": 2, "width": 256, "activation": "relu", "dropout": 0.0,
    "optimizer": "adam", "weight_decay": 0.0, "batch_size": 128,
}
ACTIVATIONS = program.ACTIVATION_FNS
OPTIMIZERS = program.OPTIMIZERS


# -- configuration ------------------------------------------------------------------

def round_width(width: float, step: int = 32) -> int:
    """Round to the nearest multiple of ``step`` (at least ``step``)."""
    return max(step, step * round(float(width) / step))


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """One trial's hyperparameters, validated, width already rounded."""

    lr: float
    layers: int
    width: int
    activation: str
    dropout: float
    optimizer: str
    weight_decay: float
    batch_size: int

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.layers < 0 or self.layers > 16:
            raise ValueError(f"layers must be in 0..16, got {self.layers}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], width_step: int = 32) -> Config:
        unknown = sorted(set(params) - set(PARAM_DEFAULTS) - {"seed"})
        if unknown:
            raise ValueError(f"mnist-mlp does not take the parameter(s) {', '.join(unknown)}; "
                             f"it takes {', '.join(PARAM_DEFAULTS)}")
        p = {**PARAM_DEFAULTS, **{k: v for k, v in params.items() if k != "seed"}}
        return cls(lr=float(p["lr"]), layers=int(p["layers"]),
                   width=round_width(p["width"], width_step), activation=str(p["activation"]),
                   dropout=float(p["dropout"]), optimizer=str(p["optimizer"]),
                   weight_decay=float(p["weight_decay"]), batch_size=int(p["batch_size"]))

    def arch(self) -> tuple:
        """What shapes the compiled code: trials with equal arch share it."""
        return (self.layers, self.width, self.activation, self.optimizer, self.batch_size,
                self.dropout > 0)
