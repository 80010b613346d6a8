"""The Runs pane's delete (asked first), clone into the Train form, settings diff, and a compact list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Select

from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.screens.train import TrainScreen
from tui_ft.ui.widgets.run_dialogs import ConfigDiffScreen, ConfirmDelete
from tui_ft.ui.widgets.run_table import RunTable

from fake_runs import app_on, fresh_workspace, make_run, polled

HOME = Path("/tmp/tui_ft_ui_runs_actions")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl", "seed_instructions_20.jsonl", "dpo_concise.jsonl"))


def set_config(run_dir: Path, **changes) -> None:
    config = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(config | changes))


async def test_delete_asks_first_and_removes_the_run(home):
    make_run(home, "keep", state="finished", steps=10, created=1)
    doomed = make_run(home, "doomed", state="stopped", steps=10, created=2)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        screen.query_one(RunTable).select_name("doomed")
        await polled(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDelete)
        await pilot.press("enter")  # the focus is on Cancel: enter keeps the run
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen) and doomed.is_dir()
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        for _ in range(100):
            await app.workers.wait_for_complete()
            await polled(pilot)
            if "doomed" not in screen.rows:
                break
        assert not doomed.exists() and (home / "checkpoints" / "keep").is_dir()
        assert set(screen.rows) == {"keep"}
        assert any("Deleted doomed" in n.message for n in app._notifications)


async def test_clone_fills_the_train_form_with_the_runs_settings(home):
    run = make_run(home, "source", state="finished", steps=10, created=1, dataset="seed_instructions_20.jsonl")
    set_config(run, lr=0.0007, batch_size=4, epochs=2, lora_rank=16, max_length=256, eval_split=0.2)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        await polled(pilot)
        await pilot.press("c")
        for _ in range(50):
            await app.workers.wait_for_complete()
            await pilot.pause()
            if isinstance(app.screen, TrainScreen) and app.screen.form.value_of("dataset"):
                break
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        form = screen.form
        assert form.method == "lora" and form.query_one("#field-method", Select).value == "lora"
        assert (form.value_of("lr"), form.value_of("batch_size"), form.value_of("epochs")) == ("0.0007", "4", "2")
        assert (form.value_of("lora_rank"), form.value_of("max_length"), form.value_of("name")) == ("16", "256", "")
        assert form.value_of("dataset") == str(home / "datasets" / "seed_instructions_20.jsonl")
        assert form.value_of("model") == "default"
        config = form.config()
        assert (config.lr, config.batch_size, config.lora_rank, config.name) == (0.0007, 4, 16, None)


async def test_diff_shows_only_the_settings_that_differ(home):
    a = make_run(home, "run-a", state="finished", steps=10, created=1)
    b = make_run(home, "run-b", state="finished", steps=10, created=2)
    set_config(a, lr=0.0002, batch_size=8, seed=1)
    set_config(b, lr=0.0005, batch_size=8, seed=1)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        table = screen.query_one(RunTable)
        table.select_name("run-a")
        await polled(pilot)
        await pilot.press("f")  # nothing marked: nothing to compare, and the pane says how
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space")
        table.select_name("run-b")
        await polled(pilot)
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, ConfigDiffScreen)
        diff = app.screen.query_one("#diff", DataTable)
        assert [str(column.label) for column in diff.columns.values()] == ["setting", "run-a", "run-b"]
        rows = [[str(cell) for cell in diff.get_row_at(index)] for index in range(diff.row_count)]
        assert rows == [["lr", "0.0002", "0.0005"]]  # name and created differ too, but are not settings
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_two_runs_take_three_rows(home):
    make_run(home, "one", state="finished", steps=10, created=1)
    make_run(home, "two", state="finished", steps=10, created=2)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await polled(pilot)
        assert screen.query_one(RunTable).region.height == 3  # the header and two runs, not eleven rows


async def test_the_footer_shows_whole_keys_at_80_columns_and_more_when_wider(home):
    from tui_ft.ui.widgets.key_footer import KeyFooter

    make_run(home, "one", state="finished", steps=10, created=1)
    app = app_on("runs", home)
    async with app.run_test(size=(80, 24)) as pilot:
        await polled(pilot)
        await pilot.pause()

        def shown() -> list[str]:
            footer = app.screen.query_one(KeyFooter)
            keys = [w for w in footer.query("*") if hasattr(w, "key_display")]
            assert all(w.region.right <= app.size.width for w in keys), [(w.key_display, w.region) for w in keys]
            return [w.description for w in keys]

        narrow = shown()
        assert {"Help", "palette", "Mark"} <= set(narrow)
        assert "Smooth" not in narrow  # the last keys did not fit: dropped whole, not cut ("c C")
        await pilot.resize_terminal(140, 30)
        for _ in range(20):
            await pilot.pause()
            if "Smooth" in shown():
                break
        assert {"Clone", "Diff", "Delete", "Smooth"} <= set(shown())
