"""The Runs pane's rename (n) and filter (/): a run renamed by keyboard, a list narrowed by typing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tui_ft.ui.screens.runs import RunFilter, RunsScreen
from tui_ft.ui.widgets.run_dialogs import RenameDialog
from tui_ft.ui.widgets.run_table import RunTable

from fake_runs import app_on, fresh_workspace, make_run, polled

HOME = Path("/tmp/tui_ft_ui_runs_rename")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl", "dpo_concise.jsonl"))


async def wait_for(pilot, condition, what: str):
    """Poll the pane until ``condition()`` holds (a ceiling of about a minute, on state, not time)."""
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await polled(pilot)
        if condition():
            return
    raise AssertionError(f"timed out waiting for {what}")


async def test_n_renames_the_selected_run_and_keeps_it_selected(home):
    make_run(home, "typo-nmae", state="stopped", steps=10, created=1)
    make_run(home, "second", state="finished", steps=10, created=2)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        table = screen.query_one(RunTable)
        table.select_name("typo-nmae")
        await polled(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, RenameDialog)
        field = app.screen.query_one("#rename-name", Input)
        assert field.value == "typo-nmae" and app.screen.focused is field
        field.value = "second"  # taken: refused in the dialog, which stays
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RenameDialog)
        assert "already exists" in str(app.screen.query_one("#rename-error", Static).render())
        field.value = "lora-veloria"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "lora-veloria" in screen.rows, "the renamed run in the table")
        assert set(screen.rows) == {"second", "lora-veloria"}
        assert [row.key.value for row in table.ordered_rows] == ["lora-veloria", "second"]  # in place, not last
        assert not (home / "checkpoints" / "typo-nmae").exists()
        assert json.loads((home / "checkpoints" / "lora-veloria" / "run.json").read_text())["name"] == "lora-veloria"
        assert table.selected_name == "lora-veloria"
        assert any("Renamed typo-nmae to lora-veloria" in n.message for n in app._notifications)


async def test_n_on_a_running_run_says_to_stop_it_first(home):
    make_run(home, "busy", state="running", steps=3, pid=1)  # pid 1 is alive: the run reads running
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert screen.why_not("rename_run") == "busy is running: stop it first (s), then rename it."


async def test_slash_filters_the_list_by_words_and_escape_shows_every_run_again(home):
    make_run(home, "lora-veloria", state="finished", steps=10, created=1)
    make_run(home, "dpo-concise", method="dpo", state="finished", steps=10, created=2, dataset="dpo_concise.jsonl")
    make_run(home, "lora-concise", state="stopped", steps=5, created=3)
    app = app_on("runs", home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await polled(pilot)
        table = screen.query_one(RunTable)
        screen.query_one(RunTable).toggle_mark("lora-veloria")
        assert set(table.rows_by_name) == {"lora-veloria", "dpo-concise", "lora-concise"}
        await pilot.press("slash")
        await pilot.pause()
        field = screen.query_one(RunFilter)
        assert field.display and screen.focused is field
        await pilot.press(*"concise")
        await pilot.pause()
        assert set(table.rows_by_name) == {"dpo-concise", "lora-concise"}
        await pilot.press("space", *"dpo")  # every word must match: the method, or the dataset file
        await pilot.pause()
        assert set(table.rows_by_name) == {"dpo-concise"}
        await polled(pilot)  # a poll keeps the filter
        assert set(table.rows_by_name) == {"dpo-concise"}
        assert table.selected_name == "dpo-concise" and screen.selected == "dpo-concise"
        await pilot.press("enter")  # to the list, the filter kept
        await pilot.pause()
        assert screen.focused is table and field.display and set(table.rows_by_name) == {"dpo-concise"}
        await pilot.press("slash", "ctrl+u", *"nothing-like-it")
        await pilot.pause()
        assert table.row_count == 0
        assert "No run matches 'nothing-like-it' (3 in all)" in str(screen.query_one("#run-info", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert [row.key.value for row in table.ordered_rows] == ["lora-veloria", "dpo-concise", "lora-concise"]
        assert not field.display and screen.focused is table
        assert table.marked == {"lora-veloria"}  # hidden by the filter, the mark stayed
