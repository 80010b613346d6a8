"""Snapshots of the shell and the Datasets pane at 80×24 and 120×40 (fixed data, no cursor blink)."""

import pytest

from tui_ft.ui.app import TuiFtApp

from polling import settle_workers


async def settle(pilot):
    await settle_workers(pilot)


@pytest.fixture
def seed_home(ui_home):
    """The workspace with the seed chapter's files only, so new shipped datasets do not churn snapshots."""
    for path in (ui_home / "datasets").iterdir():
        if not path.name.startswith("seed_"):
            path.unlink()
    return ui_home


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_datasets_pane(snap_compare, seed_home, size):
    assert snap_compare(TuiFtApp(seed_home), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_help_screen(snap_compare, seed_home, size):
    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(TuiFtApp(seed_home), terminal_size=size, run_before=open_help)
