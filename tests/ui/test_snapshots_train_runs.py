"""Snapshots of the Train and Runs panes at 80×24 and 120×40, on fixed data (fabricated run folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_ft.ui.widgets.metric_plots import MetricPlot

from fake_runs import app_on, fresh_workspace, make_run

TRAIN_HOME = Path("/tmp/tui_ft_ui_snap_train")
RUNS_HOME = Path("/tmp/tui_ft_ui_snap_runs")
SIZES = [(80, 24), (120, 40)]


async def settle(pilot):
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    for _ in range(50):  # the plots' pictures come from a drawing thread
        if not any(plot.is_drawing for plot in pilot.app.screen.query(MetricPlot)):
            break
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    shot = None
    for _ in range(20):  # until the screen stops changing (a loaded machine lags by a few frames)
        previous, shot = shot, pilot.app.export_screenshot()
        if shot == previous:
            break
        await pilot.pause(0.05)


@pytest.fixture
def runs_home() -> Path:
    home = fresh_workspace(RUNS_HOME, datasets=("seed_instructions.jsonl",))
    make_run(home, "lora-seed", state="finished", steps=60, total=60, created=1, message="finished after 60 steps")
    make_run(home, "dpo-pref", method="dpo", state="stopped", steps=40, total=90, created=2, eval_every=0,
             message="stopped at step 40; resume to continue")
    make_run(home, "full-live", method="full", state="running", steps=25, total=100, eta_s=300, created=3,
             offset=0.2, message="loss 1.3")
    return home


@pytest.mark.parametrize("size", SIZES)
def test_train_pane(snap_compare, default_model_path, size):
    home = fresh_workspace(TRAIN_HOME, datasets=("seed_instructions.jsonl", "seed_benchmark.jsonl"))
    assert snap_compare(app_on("train", home), terminal_size=size, run_before=settle)


def test_train_pane_with_errors(snap_compare, default_model_path):
    home = fresh_workspace(TRAIN_HOME, datasets=("seed_instructions.jsonl",))

    async def submit_bad_form(pilot):
        await settle(pilot)
        form = pilot.app.screen.form
        form.query_one("#field-batch_size").value = "0"
        form.query_one("#field-lora_rank").value = "0"
        await pilot.press("ctrl+s")
        await settle(pilot)
        for field in form.query("Input"):
            field.cursor_blink = False

    assert snap_compare(app_on("train", home), terminal_size=(80, 24), run_before=submit_bad_form)


@pytest.mark.parametrize("size", SIZES)
def test_runs_pane(snap_compare, runs_home, size):
    async def show_runs(pilot):
        await settle(pilot)
        pilot.app.screen.poll_runs()
        await settle(pilot)

    assert snap_compare(app_on("runs", runs_home), terminal_size=size, run_before=show_runs)
