"""Quitting while panes are still being built ends cleanly (no traceback on the way out).

Closing the app while a pane composed, or while the background build of the panes was
under way, used to fail in widgets' mount handlers (``NoMatches``: shutdown had removed the
children they looked up) or in Textual's shutdown (a pane built after it began).
"""

import asyncio

import pytest

from tui_ft.ui.app import TuiFtApp


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.3, 0.45])
async def test_quit_while_panes_build_in_the_background(ui_home, monkeypatch, delay):
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ("train", "runs", "benchmark"))
    monkeypatch.setattr(TuiFtApp, "PREBUILD_DELAY_S", 0.05)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)):
        await asyncio.sleep(delay)
        await app.action_quit()
    assert app.return_code == 0


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
async def test_quit_right_after_a_first_visit(ui_home, delay):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await asyncio.sleep(delay)
        await app.action_quit()
    assert app.return_code == 0


@pytest.mark.parametrize("attempt", range(4))
async def test_quit_after_visiting_runs(ui_home, attempt):
    # The footer asked the Runs pane which keys apply while shutdown had removed its table.
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause(0.1 * attempt)
        await pilot.press("ctrl+q")
    assert app.return_code == 0
