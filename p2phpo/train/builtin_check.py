"""What the built-in ``mnist-mlp`` objective accepts, checked when a study is loaded.

Without JAX (the command line checks a study file before any worker starts): the
``[objective]`` table's options and the ``[space]``'s parameters and their ranges.
A bad value ends ``p2phpo node`` (or ``train``) with one sentence instead of
failing every trial (``max_epochs = 0``: 30 FAILED trials, "objective returned
nan") or training a 6,643,584-wide layer for minutes (a typo in ``width``'s
``high``). ``train/config.py`` checks each trial's values again when it trains.

    check(space, {"max_epochs": 5})      # ValueError("...") when something is off
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from p2phpo.space import Choice, Space

NAME = "mnist-mlp"
"""The built-in objective's name in a study file."""
ACTIVATION_NAMES = ("relu", "gelu", "tanh", "silu", "elu", "sigmoid")
"""``program.ACTIVATION_FNS``'s names (a test keeps the two equal)."""
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")
MAX_LAYERS = 16
MAX_WIDTH = 16_384
"""The widest hidden layer accepted: one 16,384 x 16,384 float32 matrix is 1 GiB, 4 GiB
with its gradient and Adam's two moments, per layer; wider is a typo, not a study."""
PARAMS = ("lr", "layers", "width", "activation", "dropout", "optimizer", "weight_decay",
          "batch_size")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return (_int(v) or isinstance(v, float)) and math.isfinite(v)


# option -> (is it good, what it must be)
OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (lambda v: isinstance(v, str) and bool(v), "a dataset name or a folder path"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "a folder path"),
    "max_epochs": (lambda v: _int(v) and v >= 1, "a whole number of epochs >= 1"),
    "seed": (_int, "a whole number"),
    "val_size": (lambda v: v is None or (_int(v) and v >= 1), "a whole number of rows >= 1"),
    "split_seed": (_int, "a whole number"),
    "width_step": (lambda v: _int(v) and v >= 1, "a whole number >= 1"),
    "width_buckets": (lambda v: v is False or (isinstance(v, list) and all(_int(w) and w >= 1 for w in v)),
                      "a list of positive widths (empty: no buckets)"),
    "label_column": (lambda v: v in ("first", "last"), "\"first\" or \"last\""),
}

# parameter -> (is a value good, what every value must be)
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: _num(v) and v > 0, "a number > 0"),
    "layers": (lambda v: _num(v) and 0 <= v <= MAX_LAYERS, f"from 0 to {MAX_LAYERS} hidden layers"),
    "width": (lambda v: _num(v) and 1 <= v <= MAX_WIDTH, f"from 1 to {MAX_WIDTH:,} units"),
    "activation": (lambda v: v in ACTIVATION_NAMES, "one of " + ", ".join(ACTIVATION_NAMES)),
    "dropout": (lambda v: _num(v) and 0 <= v < 1, "a number from 0 up to (not including) 1"),
    "optimizer": (lambda v: v in OPTIMIZER_NAMES, "one of " + ", ".join(OPTIMIZER_NAMES)),
    "weight_decay": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "batch_size": (lambda v: _num(v) and v >= 1, "a whole number of rows >= 1"),
}


def check(space: Space, options: Mapping[str, Any]) -> None:
    """ValueError (one sentence, naming the table and key) when ``options`` or ``space``
    hold something ``mnist-mlp`` cannot train."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"[objective] mnist-mlp does not take the option(s) {', '.join(unknown)}; "
                         f"it takes name, {', '.join(OPTIONS)}")
    for key, value in options.items():
        good, what = OPTIONS[key]
        if not good(value):
            raise ValueError(f"[objective] {key} must be {what}, got {value!r}")
    unknown = sorted(set(space.params) - set(PARAMS) - {"seed"})
    if unknown:
        raise ValueError(f"[space] mnist-mlp does not take the parameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(PARAMS)}")
    for name, param in space.params.items():
        if name not in RANGES:
            continue
        good, what = RANGES[name]
        # a range's ends bound every value these checks care about (each is monotone)
        values = param.values if isinstance(param, Choice) else (param.low, param.high)
        bad = [v for v in values if not good(v)]
        if bad:
            raise ValueError(f"[space] {name} must be {what}, got {bad[0]!r}")
