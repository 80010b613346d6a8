"""Pilot tests of two shell keys the issue names: ctrl+q quits from anywhere, ctrl+p opens the palette."""

from textual.command import CommandPalette
from textual.widgets import Input

from tui_ft.ui.app import TuiFtApp


async def test_ctrl_q_quits_even_from_an_input(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        field = Input(id="probe")
        await app.screen.mount(field)
        field.focus()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_ctrl_p_opens_the_command_palette(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CommandPalette) and app.current_mode == "datasets"
