"""The end of a study, as the user sees it: the summary event and the view's panel."""

from __future__ import annotations

import io
import json

from rich.console import Console

from p2phpo.ui.live import EventPrinter
from p2phpo.ui.render import render
from p2phpo.ui.snapshot import NodeSnapshot
from p2phpo.ui.summary import reproduce_command, summary_json, summary_text

DONE = NodeSnapshot(study="mnist-mlp", direction="maximize", metric="val_accuracy",
                    n_trials=30, finished=30, done=True, objective="mnist-mlp",
                    trial_counts={"COMPLETE": 12, "PRUNED": 17, "FAILED": 1},
                    best_trial="1a2b3c4d5e6f7081:7", best_value=0.9812,
                    best_params={"lr": 0.003, "width": 256},
                    state_dir="/home/me/state dir", wall=1.0)


def test_summary_event_names_the_best_trial_and_how_to_reproduce_it():
    event = summary_json(DONE)
    assert event["event"] == "summary" and event["done"] is True
    assert event["best"] == {"trial": "1a2b3c4d5e6f7081:7", "value": 0.9812,
                             "params": {"lr": 0.003, "width": 256}}
    assert event["reproduce"] == ("p2phpo train --trial 1a2b3c4d5e6f7081:7 "
                                  "--state-dir '/home/me/state dir'")
    assert event["detail"] == summary_text(DONE)
    assert summary_text(DONE).startswith("best trial 1a2b3c4d5e6f7081:7: val_accuracy 0.9812 "
                                         "of 30 trials")


def test_a_custom_objective_gets_no_train_command_and_no_best_says_so():
    from dataclasses import replace

    assert reproduce_command(replace(DONE, objective="examples.custom_objective:objective")) \
        is None
    none = replace(DONE, best_trial=None, best_value=None, best_params={})
    assert summary_json(none)["best"] is None
    assert "no trial completed" in summary_text(none)


def test_the_event_printer_ends_with_the_summary_line():
    buf = io.StringIO()
    printer = EventPrinter(Console(file=buf, width=80))
    printer.summary(DONE)
    line = buf.getvalue().splitlines()[-1]
    assert json.loads(line)["best"]["trial"] == "1a2b3c4d5e6f7081:7"


def test_the_live_view_shows_the_summary_once_the_study_is_done():
    console = Console(record=True, width=140)
    console.print(render(DONE))
    text = console.export_text()
    assert "study done" in text and "p2phpo train --trial 1a2b3c4d5e6f7081:7" in text
    console = Console(record=True, width=140)
    from dataclasses import replace

    console.print(render(replace(DONE, done=False)))
    assert "study done" not in console.export_text()
