"""Pilot tests of two shell keys the issue names.

ctrl+q quits from anywhere; ctrl+p opens the palette, with the dashboard's own commands.
"""

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


async def palette_prompts(pilot, query: str, expected: str | None = None) -> list[str]:
    """Type ``query`` into the open palette and return the commands it lists, once ``expected`` is among them."""
    from textual.command import CommandList

    await pilot.press(*query)
    listed: list[str] = []
    for _ in range(200):
        await pilot.pause(0.02)
        options = pilot.app.screen.query_one(CommandList)
        listed = [str(options.get_option_at_index(i).prompt).split("\n")[0] for i in range(options.option_count)]
        if listed and (expected is None or expected in listed):
            break
    return listed


async def test_palette_goes_to_a_pane(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        listed = await palette_prompts(pilot, "train", "Go to Train")
        assert listed[0] == "Go to Train", listed  # the best match comes first
        await pilot.press("down", "enter")  # highlight it, run it
        await pilot.pause()
        assert not isinstance(app.screen, CommandPalette) and app.current_mode == "train"


async def test_palette_keeps_textual_commands_and_opens_help(ui_home):
    from textual.app import App

    from tui_ft.ui.screens.help import HelpScreen

    assert App.COMMANDS <= TuiFtApp.COMMANDS
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        listed = await palette_prompts(pilot, "theme", "Theme")
        assert "Theme" in listed  # Textual's own command is still offered
        await pilot.press(*["backspace"] * 5)
        listed = await palette_prompts(pilot, "keys and help", "Show keys and help")
        assert listed[0] == "Show keys and help", listed
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_palette_runs_an_action_of_the_current_pane(ui_home):
    from polling import settle_workers

    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_workers(pilot)
        pane = app.screen
        assert pane.examples() and pane.example_index == 0
        await pilot.press("ctrl+p")
        listed = await palette_prompts(pilot, "next example", "Datasets: Next example")
        assert listed[0] == "Datasets: Next example", listed
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.screen is pane and pane.example_index == 1


async def test_palette_offers_only_what_the_pane_can_do_now(ui_home):
    """Each pane offers its own actions, with their keys; one it says is unavailable is left out."""
    from tui_ft.ui.commands import DashboardCommands

    def offered() -> dict[str, str]:
        return {c.name: c.help for c in DashboardCommands(app.screen).commands()}

    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        assert "(key → / n)" in offered()["Datasets: Next example"]
        assert not any(name.startswith("Train:") for name in offered())
        await pilot.press("2")
        await app.panes_settled()
        train = app.screen
        assert {"Go to Datasets", "Go to Train", "Go to Runs", "Go to Chat", "Go to Benchmark"} <= set(offered())
        assert "(key ctrl+s)" in offered()["Train: Start run"]
        assert not any(name.startswith("Datasets:") for name in offered())
        train.launching = True  # a launch under way: Start run is dimmed in the footer
        assert "Train: Start run" not in offered() and "Train: Reload" in offered()
        train.launching = False
        assert "Train: Start run" in offered()


async def test_palette_opens_on_a_pane_still_mounting(ui_home):
    """A pane whose check_action reads a widget not mounted yet: its actions wait, the palette still opens."""
    from textual.css.query import NoMatches

    from tui_ft.ui.commands import DashboardCommands

    def not_mounted_yet(action, parameters):
        raise NoMatches("No nodes match 'RunTable'")

    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)):
        pane = app.screen
        pane.check_action = not_mounted_yet  # on this instance, and only until the next line: no await between
        try:
            names = [c.name for c in DashboardCommands(pane).commands()]
        finally:
            del pane.check_action
        assert "Go to Train" in names and not any(name.startswith("Datasets:") for name in names)
        assert any(c.name.startswith("Datasets:") for c in DashboardCommands(pane).commands())
