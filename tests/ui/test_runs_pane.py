"""Pilot tests of the Runs pane on run folders the tests write themselves (no worker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.widgets import metric_plots
from tui_ft.ui.widgets.export_dialog import ExportDialog
from tui_ft.ui.widgets.metric_plots import MetricPlot
from tui_ft.ui.widgets.run_table import RunTable
from tui_ft.views.run_monitor import downsample

from fake_runs import app_on, append_records, eval_record, fresh_workspace, make_run, polled, train_record, write_status

HOME = Path("/tmp/tui_ft_ui_runs")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))


def table_row(screen: RunsScreen, name: str) -> dict[str, str]:
    table = screen.query_one(RunTable)
    return {key: str(table.get_cell(name, key)) for key in ("state", "method", "step", "progress", "eta", "loss")}


def plot(screen: RunsScreen, title: str) -> MetricPlot:
    return next(p for p in screen.query(MetricPlot) if p.spec and p.spec.title == title)


def points(screen: RunsScreen, title: str, label: str) -> list[tuple[float, float]]:
    series = plot(screen, title).series().get(label)
    return series.points() if series else []


async def test_tails_metrics_as_they_grow_and_skips_a_torn_line(home):
    run_dir = make_run(home, "growing", steps=10, total=50, eta_s=125)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        assert screen.selected == "growing"
        row = table_row(screen, "growing")
        assert row == {"state": "running", "method": "lora", "step": "10/50", "progress": "20%", "eta": "2m05s",
                       "loss": f"{train_record(10)['loss']:.4f}"}
        assert [x for x, _ in points(screen, "Loss", "train")] == list(range(1, 11))
        assert [x for x, _ in points(screen, "Loss", "eval")] == [10]

        append_records(run_dir, [train_record(s) for s in range(11, 16)])
        write_status(run_dir, state="running", step=15, total_steps=50, eta_s=60)
        await polled(pilot)
        assert table_row(screen, "growing")["step"] == "15/50"
        assert table_row(screen, "growing")["eta"] == "1m00s"
        assert table_row(screen, "growing")["loss"] == f"{train_record(15)['loss']:.4f}"
        assert len(points(screen, "Loss", "train")) == 15
        assert points(screen, "Learning rate", "lr")[-1] == (15, pytest.approx(train_record(15)["lr"]))

        # The worker is in the middle of writing a line: it must not be read, nor lost.
        line = (__import__("json").dumps(train_record(16)) + "\n").encode()
        with open(run_dir / "metrics.jsonl", "ab") as file:
            file.write(line[:25])
        await polled(pilot)
        assert len(points(screen, "Loss", "train")) == 15
        with open(run_dir / "metrics.jsonl", "ab") as file:
            file.write(line[25:])
        append_records(run_dir, [eval_record(20)])
        await polled(pilot)
        assert [x for x, _ in points(screen, "Loss", "train")][-2:] == [15, 16]
        assert [x for x, _ in points(screen, "Perplexity", "eval")] == [10, 20]


async def test_whole_history_is_downsampled_to_the_plot_width(home):
    make_run(home, "long", state="finished", steps=5000, total=5000, eval_every=0)
    app = app_on("runs", home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        loss = plot(screen, "Loss")
        series = loss.series()["train"]
        assert len(series) == 5000
        budget = loss.point_budget()
        assert 20 < budget < 200  # the width, not the history, sets the point count
        shown = series.downsample(budget)
        assert len(shown) == budget
        assert shown[0][0] < 30 and shown[-1][0] > 4970  # first and last steps both drawn
        assert [v for p in shown for v in p] == pytest.approx([v for p in downsample(series.points(), budget) for v in p])


async def test_stop_resume_export_keys_call_the_engine(home, monkeypatch):
    make_run(home, "halted", state="stopped", steps=8, created=1)
    make_run(home, "done", state="finished", steps=50, created=2)
    make_run(home, "live", state="running", steps=5, pid=os.getpid(), created=3)  # this test process is "alive"
    calls = []
    monkeypatch.setattr("tui_ft.ui.screens.runs.stop_run", lambda path: calls.append(("stop", path.name)) or True)
    monkeypatch.setattr("tui_ft.ui.screens.runs.resume_run", lambda path: calls.append(("resume", path.name)) or 4242)
    monkeypatch.setattr("tui_ft.ui.screens.runs.export_merged_cli",
                        lambda home, name, out: calls.append(("export", name, str(out))) or "")
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        assert screen.selected == "live"  # the newest live run is shown first (reattach)
        info = str(screen.query_one("#run-info").render())
        assert f"pid {os.getpid()} CPU" in info and "RAM" in info
        await pilot.press("r")  # a running run cannot be resumed: the key is dimmed, nothing is called
        await pilot.press("s")
        assert calls == [("stop", "live")]

        await pilot.press("up", "up", "s", "r")
        assert calls[1:] == [("resume", "halted")]
        # A key pressed right after an arrow key acts on the row under the cursor, even before the
        # table's highlight message has reached the pane (a real terminal delivers keys that fast).
        table = screen.query_one(RunTable)
        table.move_cursor(row=2)
        screen.action_stop_run()
        table.move_cursor(row=0)
        screen.action_resume_run()
        assert calls[2:] == [("stop", "live"), ("resume", "halted")]
        await polled(pilot)

        screen.query_one(RunTable).select_name("done")
        await polled(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, ExportDialog)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        assert calls[4:] == [("export", "done", str(home / "checkpoints" / "done" / "merged"))]


async def test_marked_runs_overlay_their_loss_and_dpo_plots_rewards(home):
    make_run(home, "sft-a", state="finished", steps=30, created=1)
    make_run(home, "sft-b", state="finished", steps=20, created=2, offset=0.3)
    make_run(home, "pref", method="dpo", state="finished", steps=12, created=3, dataset="seed_instructions.jsonl")
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        assert screen.selected == "pref"
        titles = [p.spec.title for p in screen.query(MetricPlot)]
        assert titles == ["DPO loss", "Rewards", "Reward accuracy", "Learning rate"]
        rewards = plot(screen, "Rewards").series()
        assert set(rewards) == {"chosen", "rejected", "margin"}
        assert rewards["margin"].points()[-1] == (12, pytest.approx(0.24))

        table = screen.query_one(RunTable)
        table.select_name("sft-b")
        await polled(pilot)
        await pilot.press("space")
        table.select_name("sft-a")
        await polled(pilot)
        await polled(pilot)
        assert table.marked == {"sft-b"}
        overlay = plot(screen, "Loss").series()
        assert set(overlay) == {"train", "eval", "sft-b"}
        assert len(overlay["train"]) == 30 and len(overlay["sft-b"]) == 20
        assert overlay["sft-b"].values[0] == pytest.approx(train_record(1, offset=0.3)["loss"])

        await pilot.press("l")
        (home / "checkpoints" / "sft-a" / "worker.log").write_text("loading\rstep 1\rstep 2\nfinished at step 30\n")
        await polled(pilot)
        log = str(screen.query_one("#log-text").render())
        assert "step 2" in log and "step 1" not in log and "finished at step 30" in log


async def test_coming_back_to_a_run_rereads_nothing_and_redraws_nothing(home, monkeypatch):
    import tui_ft.ui.screens.runs as runs_module

    make_run(home, "first", state="finished", steps=300, total=300, created=1)
    make_run(home, "second", state="finished", steps=200, total=200, created=2)
    opened = []

    class CountedHistory(runs_module.RunHistory):
        def __init__(self, path):
            opened.append(Path(path).name)
            super().__init__(path)

    monkeypatch.setattr(runs_module, "RunHistory", CountedHistory)
    builds = []
    draw = metric_plots.draw_picture
    monkeypatch.setattr(metric_plots, "draw_picture", lambda figure, job: builds.append(
        (job.title, job.width, job.height, tuple(len(line.points) for line in job.lines))) or draw(figure, job))
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        table = screen.query_one(RunTable)
        for name in ("first", "second", "first", "second"):
            table.select_name(name)
            await pilot.pause()
            screen = await polled(pilot)
            await pilot.pause()
            assert screen.selected == name and len(plot(screen, "Loss").series()["train"]) in (300, 200)
        assert sorted(opened) == ["first", "second"]  # each history read once
        builds = [build for build in builds if build[3]]  # not the empty plots before a history came
        assert len(builds) == 8, builds  # four plots a run, drawn once each; coming back used the pictures
        # A run that keeps logging is redrawn from its grown history, not from an old picture.
        append_records(home / "checkpoints" / "second", [train_record(201)])
        screen = await polled(pilot)
        await pilot.pause()
        assert len(plot(screen, "Loss").series()["train"]) == 201
        assert len(builds) > 8 and opened.count("second") == 1


async def test_a_runs_pane_built_in_the_background_draws_its_plots_before_its_first_visit(home, monkeypatch):
    import time

    import tui_ft.ui.screens.runs as runs_module
    from tui_ft.ui.app import TuiFtApp

    make_run(home, "done", state="finished", steps=300, total=300)
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ("runs",))
    update = runs_module.RunHistory.update
    # The history arrives after the pane was built and painted empty, as a long one does.
    monkeypatch.setattr(runs_module.RunHistory, "update", lambda self: time.sleep(0.5) or update(self))
    app = app_on("datasets", home)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            built = app.is_mode_built("runs") and app.get_screen_stack("runs")[0]
            drawn = built and [p for p in built.query(MetricPlot) if any(300 in shown for shown, _ in p._rendered.values())]
            if len(drawn or ()) == 4:  # the pictures come one by one from the drawing thread
                break
        assert app.current_mode == "datasets"
        assert len(drawn) == 4  # every plot has a picture of the run's 300 steps, made off screen


async def test_other_runs_histories_are_read_ahead_for_the_cursor(home, monkeypatch):
    import tui_ft.ui.screens.runs as runs_module

    for index in range(3):
        make_run(home, f"run-{index}", state="finished", steps=50, total=50, created=index)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        assert screen.selected == "run-2"
        assert set(screen._tails) == {"run-0", "run-1", "run-2"}  # read while the newest was shown
        opened = []
        monkeypatch.setattr(runs_module, "RunHistory", lambda path: opened.append(path) or None)
        screen.query_one(RunTable).select_name("run-0")
        await pilot.pause()
        screen = await polled(pilot)
        assert screen.selected == "run-0" and not opened  # its plots came from the read-ahead
        assert len(plot(screen, "Loss").series()["train"]) == 50


async def test_o_turns_smoothing_off_and_on_and_the_legend_sits_above_the_plot(home):
    make_run(home, "noisy", state="finished", steps=40, created=1)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        loss = plot(screen, "Loss")

        async def drawn() -> str:
            for _ in range(100):
                await pilot.app.workers.wait_for_complete()
                await pilot.pause()
                if not loss.is_drawing and loss._shown is not None:
                    return loss._shown.plain
            raise AssertionError("the loss plot was never drawn")

        first = (await drawn()).splitlines()[0]
        assert first.startswith("Loss") and "━ train" in first and "━ raw" in first
        await pilot.press("o")
        assert not screen.smoothing and all(not p.smoothing for p in screen.query(MetricPlot))
        assert "raw" not in (await drawn()).splitlines()[0]
        await pilot.press("o")
        assert "━ raw" in (await drawn()).splitlines()[0]
