"""Work kept off the UI thread or not repeated: plots drawn in a thread, panes not laid out
again at the same size, error lines made on demand, and run rows redrawn at their widths."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen

from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.widgets import metric_plots
from tui_ft.ui.widgets.metric_plots import MetricPlot
from tui_ft.ui.widgets.run_table import RunTable
from tui_ft.views.run_monitor import run_rows

from fake_runs import app_on, fresh_workspace, make_run
from polling import settle_workers

HOME = Path("/tmp/tui_ft_ui_relief")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))


async def settled(pilot, screen: RunsScreen) -> None:
    """Poll, then wait until the selected run's plots have the pictures of its history."""
    screen.poll_runs()
    for _ in range(100):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        drawing = any(plot.is_drawing for plot in screen.query(MetricPlot))
        shown = loss_plot(screen).lines if loss_plot(screen) else ()
        if not screen._polling and not drawing and shown and shown[0].points is screen.histories[screen.selected][("train", "loss")]:
            return
    raise AssertionError("the plots were never drawn")


def loss_plot(screen: RunsScreen) -> MetricPlot | None:
    return next((plot for plot in screen.query(MetricPlot) if plot.spec and plot.spec.title == "Loss"), None)


async def test_plots_are_drawn_in_a_thread_and_show_their_last_picture_meanwhile(home, monkeypatch):
    make_run(home, "first", state="finished", steps=300, total=300, created=1)
    make_run(home, "second", state="finished", steps=100, total=100, created=2, offset=1.0)
    threads, release = [], threading.Event()
    release.set()
    draw = metric_plots.draw_picture

    def recorded(figure, job):
        threads.append(threading.current_thread() is threading.main_thread())
        release.wait(10)
        return draw(figure, job)

    monkeypatch.setattr(metric_plots, "draw_picture", recorded)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await settled(pilot, screen)
        assert screen.selected == "second"
        plot = loss_plot(screen)
        before = str(plot.render())
        assert threads and not any(threads)  # every picture was drawn off the UI thread

        release.clear()  # the next pictures take a while
        screen.query_one(RunTable).select_name("first")
        for _ in range(20):
            await pilot.pause()
            if plot._drawing is not None:
                break
        assert plot._drawing is not None and str(plot.render()) == before  # the old picture, not a blank
        release.set()
        await settled(pilot, screen)
        assert str(plot.render()) != before


async def test_a_draw_asked_for_before_the_last_one_is_skipped(home, monkeypatch):
    make_run(home, "only", state="finished", steps=50, total=50)
    drawn = []
    draw = metric_plots.draw_picture
    monkeypatch.setattr(metric_plots, "draw_picture", lambda figure, job: drawn.append(job) or draw(figure, job))
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settled(pilot, app.screen)
        plot = loss_plot(app.screen)
        drawn.clear()
        job = metric_plots.PictureJob(60, 13, "default", "Loss", 100, ())
        plot._drawing = ("a newer picture", ())
        await plot.run_worker(lambda: plot._draw(job, ("an older picture",), ()), thread=True).wait()
        assert drawn == []
        plot._drawing = (("an older picture",), ())
        await plot.run_worker(lambda: plot._draw(job, ("an older picture",), ()), thread=True).wait()
        assert drawn == [job]


async def test_a_pane_shown_again_at_the_same_size_is_not_laid_out_again(ui_home, monkeypatch):
    layouts = []
    original = Screen._refresh_layout

    def recorded(self, *args, **kwargs):
        layouts.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", recorded)
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ())
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await settle_workers(pilot)  # its model and dataset lists, the run's summary and plan arrive
        await pilot.pause()
        train = app.screen
        form = train.form
        await pilot.press("1", "2")
        await settle_workers(pilot)  # the visit lists and plans again: nothing changed
        await pilot.pause()
        await pilot.press("1")
        await settle_workers(pilot)
        await pilot.pause()
        layouts.clear()
        await pilot.press("2")
        await pilot.pause()
        assert "TrainScreen" not in layouts  # same size, nothing changed: its layout still holds

        # A change made while the pane was hidden is laid out when it comes back.
        await pilot.press("1")
        await pilot.pause()
        form.show_errors([("epochs", "must be at least 1")])
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        line = form.query_one("#error-epochs")
        assert line.region.height == 1 and line.region.y > form._rows["epochs"].region.y

        # A resize lays it out again.
        layouts.clear()
        await pilot.resize_terminal(110, 32)
        await pilot.pause()
        assert "TrainScreen" in layouts and train.size.width == 110


async def test_error_lines_are_made_on_demand_and_hide_with_their_row(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        form = app.screen.form
        assert not form.query(".field-error")  # nothing to show: no widget for it
        form.show_errors([("lora_rank", "must be at least 1")])
        await pilot.pause()
        assert form.errors_shown() == {"lora_rank": "must be at least 1"}
        line = form.query_one("#error-lora_rank")
        assert line.region.height == 1
        form.query_one("#field-method").value = "full"  # LoRA rows hide, and the error with them
        await pilot.pause()
        assert not form.is_shown("lora_rank") and line.region.height == 0


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield RunTable()


async def test_run_rows_drawn_before_the_table_measured_them_are_redrawn_at_full_width(home):
    make_run(home, "a-long-run-name", state="finished", steps=60, total=60, message="finished after 60 steps")
    app = TableApp()
    async with app.run_test(size=(100, 10)) as pilot:
        table = app.query_one(RunTable)
        table.update_runs(run_rows(home))
        # A frame drawn before the table is idle (the plots repainting do this): the row is cut
        # to the columns' header widths.
        app.screen._compositor.render_update(full=True)
        await pilot.pause()
        await pilot.pause()
        row = "".join(segment.text for segment in table.render_line(1))
        assert "a-long-run-name" in row and "finished" in row, row
