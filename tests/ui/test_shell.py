"""Pilot tests of the dashboard shell: panes, help, and keys that never steal typing."""

from textual.widgets import Input

from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.screens.help import HelpScreen


async def test_digits_switch_panes(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.current_mode == "datasets"
        for key, mode in (("2", "train"), ("3", "runs"), ("4", "chat"), ("5", "benchmark"), ("1", "datasets")):
            if app.current_mode == "chat":
                await pilot.press("4")  # the prompt has focus: the digit is typed, not a pane switch
                assert app.current_mode == "chat"
                await pilot.press("escape")  # leave the prompt
            await pilot.press(key)
            assert app.current_mode == mode


async def test_help_lists_every_pane_key(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        listed = {b.id for _, group in app.screen.groups for b in group}
        assert {"pane.datasets", "pane.benchmark", "app.help", "datasets.next"} <= listed
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


async def test_digits_type_into_inputs(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        field = Input(id="probe")
        await app.screen.mount(field)
        field.focus()
        await pilot.press("2", "3", "q")
        assert field.value == "23q"
        assert app.current_mode == "datasets" and app.is_running


async def test_q_quits_outside_inputs(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_q_does_not_quit_from_a_select(ui_home):
    from textual.widgets import Select

    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")  # the Train form
        app.screen.query(Select).first().focus()
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running


async def test_footer_is_rebuilt_only_when_its_keys_change(ui_home, monkeypatch):
    from textual.widgets._footer import FooterKey

    from tui_ft.ui.widgets.key_footer import KeyFooter, shown_keys

    rebuilt = []
    recompose = KeyFooter.recompose

    def counting(self):
        rebuilt.append(self.screen.__class__.__name__)
        return recompose(self)

    monkeypatch.setattr(KeyFooter, "recompose", counting)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        footer = app.screen.query_one(KeyFooter)
        assert footer._shown == shown_keys(app.screen) and {k[0] for k in footer._shown} >= {"n", "t"}
        rebuilt.clear()
        for key in ("down", "down", "up", "2", "1", "2", "1"):  # same keys on each pane as before
            await pilot.press(key)
            await pilot.pause(0.05)
        assert rebuilt.count("DatasetsScreen") == 0 and rebuilt.count("TrainScreen") <= 1  # the Train pane's first show
        shown = {key.key for key in app.screen.query_one(KeyFooter).query(FooterKey)}
        assert {"n", "t", "a"} <= shown  # the Datasets pane's keys are still there
