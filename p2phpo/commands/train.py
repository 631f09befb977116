"""``p2phpo train``: train one MLP configuration, e.g. to reproduce the best trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p2phpo.ui.errors import fail

_err = Console(stderr=True)


class _UsageError(Exception):
    """Bad input from the user: one sentence, exit code 2."""


def train(
    *,
    params: Annotated[str | None, typer.Option("--params", help="Hyperparameters as a JSON object, e.g. '{\"lr\": 0.001, \"width\": 256}'.")] = None,
    trial: Annotated[str | None, typer.Option("--trial", help="Take the params of this trial ('<origin hex>:<seq>') from --state-dir.")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="A node's state dir (with --trial).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="mnist, fashion-mnist, or a path (IDX folder, .npz, .csv); default: the study's, else mnist.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder holding the dataset files.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Number of epochs; default: the study's max_epochs, else 10.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initialisation and shuffling.")] = 0,
    test: Annotated[bool, typer.Option("--test", help="Also report accuracy on the held-out test set.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table (its fields: docs/formats.md).")] = False,
) -> None:
    """Train the built-in mnist-mlp objective with one set of hyperparameters."""
    try:
        chosen = _resolve_params(params, trial, state_dir)
        study = _study_objective(state_dir) if trial is not None else {}
        dataset = dataset or str(study.get("dataset") or "mnist")
        epochs = epochs or _positive_int(study.get("max_epochs"), 10)
        report = _run(chosen, dataset, data_dir, epochs, seed, test, json_out)
    except _UsageError as exc:
        fail(str(exc))
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps(report))
    else:
        Console().print(_summary(report))


def _resolve_params(params: str | None, trial: str | None, state_dir: Path | None) -> dict[str, Any]:
    if (params is None) == (trial is None):
        raise _UsageError("give exactly one of --params '{...}' or --trial ID --state-dir DIR")
    if params is not None:
        try:
            value = json.loads(params)
        except json.JSONDecodeError as exc:
            raise _UsageError(f"--params is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise _UsageError("--params must be a JSON object such as '{\"lr\": 0.001}'")
        return value
    if state_dir is None:
        raise _UsageError("--trial needs --state-dir DIR, the node's state directory")
    try:
        from p2phpo.storage import StorageError, read_trial_params
    except ImportError as exc:
        raise _UsageError(f"reading trials from a state dir is unavailable ({exc})") from None
    try:
        return read_trial_params(state_dir, trial)  # type: ignore[arg-type]
    except (StorageError, OSError, ValueError) as exc:
        raise _UsageError(str(exc)) from None


def _study_objective(state_dir: Path | None) -> dict[str, Any]:
    """The ``[objective]`` table of the study recorded in a state dir, if readable."""
    try:
        from p2phpo.storage import read_state

        for entry in read_state(state_dir).ledger:  # type: ignore[arg-type]
            spec = getattr(entry, "spec", None)
            if isinstance(spec, dict) and isinstance(spec.get("objective"), dict):
                return spec["objective"]
    except Exception:  # an unreadable study only loses the defaults
        pass
    return {}


def _positive_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _run(params: dict[str, Any], dataset: str, data_dir: Path | None, epochs: int, seed: int,
         test: bool, json_out: bool) -> dict[str, Any]:
    from p2phpo.train.data import DatasetError, load_dataset
    from p2phpo.train.mlp import Config

    try:
        Config.from_params(params)
        ds = load_dataset(dataset, data_dir=data_dir)
    except (DatasetError, ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    if not json_out:
        _err.print(f"dataset {ds.name}: {ds.sizes['train']} train / {ds.sizes['val']} val / "
                   f"{ds.sizes['test']} test from {ds.source}", markup=False, highlight=False, soft_wrap=True)
    result = _train_with_progress(ds, params, epochs, seed, test)
    report: dict[str, Any] = {
        "params": params, "dataset": ds.describe(),
        "epochs": [{"epoch": m.epoch, "train_loss": m.train_loss, "val_accuracy": m.val_accuracy,
                    "seconds": m.seconds, "samples_per_second": m.samples_per_second}
                   for m in result.epochs],
        "val_accuracy": result.val_accuracy, "compile_seconds": result.compile_seconds,
    }
    if test:
        report["test_accuracy"] = result.test_accuracy
    return report


def _train_with_progress(ds: Any, params: dict[str, Any], epochs: int, seed: int, test: bool) -> Any:
    from p2phpo.train.mlp import train as train_mlp

    progress = Progress(
        TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[loss]}"),
        TextColumn("{task.fields[acc]}"), TimeElapsedColumn(),
        console=_err, transient=False, disable=not _err.is_terminal)
    with progress:
        task = progress.add_task("train", total=epochs, rate="", loss="", acc="")

        def on_epoch(m: Any) -> None:
            progress.update(task, advance=1, rate=f"{m.samples_per_second:,.0f} samples/s",
                            loss=f"loss {m.train_loss:.4f}", acc=f"val acc {m.val_accuracy:.4f}")

        try:
            return train_mlp(ds, params, epochs=epochs, seed=seed, test=test, on_epoch=on_epoch)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None


def _summary(report: dict[str, Any]) -> Table:
    table = Table(title=f"mnist-mlp on {report['dataset']['name']} ({report['dataset']['source']})")
    for col in ("epoch", "train loss", "val accuracy", "seconds", "samples/s"):
        table.add_column(col, justify="right")
    for e in report["epochs"]:
        table.add_row(str(e["epoch"]), f"{e['train_loss']:.4f}", f"{e['val_accuracy']:.4f}",
                      f"{e['seconds']:.2f}", f"{e['samples_per_second']:,.0f}")
    caption = f"params {json.dumps(report['params'])}; compile {report['compile_seconds']:.2f} s"
    if "test_accuracy" in report:
        caption += f"; test accuracy {report['test_accuracy']:.4f}"
    table.caption = caption
    return table
