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


def help_text(screen: HelpScreen) -> str:
    """The help screen's text as it is drawn, line by line."""

    return "\n".join(widget.render_line(y).text for widget in screen.query("#help-body > *") for y in range(widget.size.height))


async def test_help_shows_both_help_keys(ui_home):
    """F1 opens the help as ? does, so the help says so: both keys on the Help line."""
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        lines = help_text(app.screen).splitlines()
        help_line = next(line for line in lines if "List every key" in line)
        assert "?" in help_line and "F1" in help_line, help_line
        next_line = next(line for line in lines if "Show the next example" in line)
        assert "→" in next_line and " n " in next_line, next_line  # every key of a binding, not the first
        assert not any("question_mark" in line or "f1" in line for line in lines)


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


async def wait_until(pilot, predicate, what: str, timeout: float = 30.0):
    """Let the app run until ``predicate()`` holds."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mounted(app, mode: str) -> bool:
    """True when the pane of ``mode`` is built and every widget in it has mounted."""
    if not app.is_mode_built(mode):
        return False
    screen = app.get_screen_stack(mode)[0]
    return screen.is_mounted and all(widget.is_mounted for widget in screen.walk_children())


async def test_panes_are_built_in_the_background(ui_home, monkeypatch):
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ("train", "runs", "benchmark"))
    monkeypatch.setattr(TuiFtApp, "PREBUILD_DELAY_S", 0.05)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        focused = app.focused
        await wait_until(pilot, lambda: all(mounted(app, m) for m in ("train", "runs", "benchmark")), "prebuilt panes")
        await pilot.pause()
        # The Datasets pane stayed in front with its focus; Chat (it loads a model) was not built.
        assert app.current_mode == "datasets" and app.focused is focused
        assert not app.is_mode_built("chat")
        train = app.get_screen_stack("train")[0]
        assert train.query("TrainForm Input")  # composed and mounted while hidden
        # ... and laid out and rendered while hidden: the first visit is a repaint.
        form = train.query_one("TrainForm")
        await wait_until(pilot, lambda: form.size.width > 0, "the Train pane laid out off screen")
        assert app.current_mode == "datasets" and form.size.width > 60 and form._styles_cache._cache
        await pilot.press("2")
        assert app.screen is train  # the first visit shows the prebuilt pane


async def test_background_building_waits_for_an_open_dialog(ui_home, monkeypatch):
    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ("train",))
    monkeypatch.setattr(TuiFtApp, "PREBUILD_DELAY_S", 0.3)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        assert not app.is_mode_built("train")
        await pilot.pause(1.0)
        assert not app.is_mode_built("train") and isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: mounted(app, "train"), "the Train pane built after the dialog closed")
        assert app.current_mode == "datasets"


async def test_help_screen_is_built_once_per_pane(ui_home):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        first = app.screen
        assert isinstance(first, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert app.screen is first  # kept, not rebuilt
        await pilot.press("escape", "2", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen) and app.screen is not first  # the Train pane's own
        await pilot.press("escape", "1", "question_mark")
        assert app.current_mode == "datasets" and app.screen is first


async def test_the_help_table_is_laid_out_before_the_first_question_mark(ui_home, monkeypatch):
    from tui_ft.ui.screens import help as help_module

    help_module.rendered_table.cache_clear()
    monkeypatch.setattr(TuiFtApp, "PREBUILD_DELAY_S", 0.05)
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: help_module.rendered_table.cache_info().currsize == 2, "the help table laid out")
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "List every key" in help_text(app.screen)
        info = help_module.rendered_table.cache_info()
        assert info.misses == 2 and info.hits >= 1  # the screen used the tables laid out ahead, nothing new
