"""Where keys land (issue 19): the tab strip, pane switching from anywhere, no key typed unseen.

Each test drives the real app with the pilot, pressing keys as a user does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual._xterm_parser import XTermParser
from textual.widgets import Input

from tui_ft.engine.generation import chat_model
from tui_ft.ui import keys
from tui_ft.ui.screens.help import HelpScreen
from tui_ft.ui.widgets.key_footer import KeyFooter
from tui_ft.ui.widgets.pane_tabs import PaneTabs

from chat_fakes import ChatFirstApp, FakeLoader, make_chat_home
from fake_runs import app_on, fresh_workspace, make_run
from polling import settle_workers

PANE_NAMES = [label for _, _, label in keys.PANES]


async def go(pilot, *keys_pressed: str) -> None:
    await pilot.press(*keys_pressed)
    await settle_workers(pilot, rounds=1)


def field(app, name: str) -> Input:
    return app.screen.query_one(f"#field-{name}", Input)


def visible(widget) -> bool:
    """Whether ``widget`` is on screen, every row of it (inside its scrolling form and the screen)."""
    region = widget.region
    return bool(region) and widget.screen.find_widget(widget).region == region and \
        region.y >= 0 and region.bottom <= widget.screen.size.height and widget.window_region.height >= region.height


# -- Train: no field takes keys unseen -------------------------------------------------------


async def test_coming_back_to_train_puts_no_field_in_focus_so_a_digit_switches_panes(ui_home):
    app = app_on("datasets", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "2")
        assert app.current_mode == "train" and app.focused is None  # nothing focused on arrival
        name = field(app, "name")  # the last text field: below the fold at 80×24
        name.focus()
        await pilot.press("x", "3")
        assert name.value == "x3" and app.current_mode == "train"  # digits are text inside a field
        await go(pilot, "alt+3")  # from inside the field: the pane key that works anywhere
        assert app.current_mode == "runs"
        await go(pilot, "2")
        assert app.current_mode == "train" and app.focused is None
        await go(pilot, "3")  # used to type "3" into the off-screen Run name
        assert app.current_mode == "runs" and name.value == "x3"


async def test_escape_leaves_a_train_field(ui_home):
    app = app_on("train", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot, rounds=1)
        await pilot.press("tab", "tab")
        assert app.focused is field(app, "model_path")
        await pilot.press("escape")
        assert app.focused is None
        await go(pilot, "3")
        assert app.current_mode == "runs"


async def test_a_refused_start_focuses_the_first_bad_field_in_view_and_digits_stay_in_it(ui_home):
    app = app_on("train", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot)
        app.screen.query_one("#field-dataset").value = str(ui_home / "datasets" / "seed_instructions.jsonl")
        field(app, "seed").value = "ux"  # a field below the fold at 80×24
        await pilot.press("ctrl+s")
        await settle_workers(pilot)
        seed = field(app, "seed")
        assert app.screen.form.errors_shown() == {"seed": "cannot read 'ux' as int"}
        assert app.focused is seed and visible(seed)
        await pilot.press("1")
        assert app.current_mode == "train" and "1" in seed.value  # typed into the field it can see


# -- switching from anywhere -----------------------------------------------------------------


async def test_alt_digits_and_ctrl_page_keys_switch_panes_from_a_text_field(ui_home):
    app = app_on("train", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot, rounds=1)
        field(app, "model_path").focus()
        await go(pilot, "ctrl+pagedown")
        assert app.current_mode == "runs"
        await go(pilot, "ctrl+pageup", "ctrl+pageup")
        assert app.current_mode == "datasets"
        await go(pilot, "ctrl+pageup")  # wraps round to the last pane
        assert app.current_mode == "benchmark"
        await go(pilot, "alt+2")
        field(app, "model_path").focus()
        # A terminal's alt+1 arrives as ESC 1 (xterm, tmux), which Textual read as "¡".
        parsed = list(XTermParser().feed("\x1b1"))
        assert [event.key for event in parsed] == ["alt+1"]
        app.post_message(events.Key(parsed[0].key, parsed[0].character))
        await settle_workers(pilot, rounds=1)
        assert app.current_mode == "datasets"
        await go(pilot, "2")
        assert field(app, "model_path").value == ""  # nothing was typed into it on the way


async def test_a_pound_sign_typed_as_such_is_text(ui_home):
    app = app_on("train", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot, rounds=1)
        field(app, "model_path").focus()
        for event in XTermParser().feed("£"):  # Shift+3 on a British keyboard: no ESC
            app.post_message(events.Key(event.key, event.character))
        await pilot.pause()
        assert field(app, "model_path").value == "£" and app.current_mode == "train"


async def test_pane_keys_do_nothing_under_a_dialog(ui_home):
    app = app_on("datasets", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("alt+2", "ctrl+pagedown", "2")
        assert app.current_mode == "datasets" and isinstance(app.screen, HelpScreen)


async def test_paging_a_list_the_moment_it_opens_does_not_crash(ui_home):
    app = app_on("train", ui_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot, rounds=1)
        await pilot.press("tab")  # the model list
        for key in ("up", "left", "pageup"):  # up opens it; the page comes before its first layout
            app.post_message(events.Key(key, None))
            await pilot.pause(0)
        await pilot.pause(0.2)
        assert app.is_running and app.current_mode == "train"


# -- Chat: typing is its only job ------------------------------------------------------------


@pytest.fixture
def chat_home(default_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    monkeypatch.setattr(chat_model, "load_chat_model", FakeLoader())
    return make_chat_home(default_model_path)


async def test_chat_prompt_takes_the_focus_and_digits_switch_panes_only_while_it_is_empty(chat_home):
    app = ChatFirstApp(chat_home)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_workers(pilot)
        prompt = app.screen.query_one("#prompt", Input)
        assert app.focused is prompt
        await pilot.press("h", "i", "space", "2")  # quickly: the digit comes before the prompt took "hi "
        assert prompt.value == "hi 2" and app.current_mode == "chat"
        await pilot.press("ctrl+u")  # empty again
        await go(pilot, "2")
        assert app.current_mode == "train"
        await go(pilot, "4")
        assert app.current_mode == "chat" and app.focused is prompt and prompt.value == ""
        await pilot.press("question_mark")
        assert prompt.value == "?"  # `?` types in the prompt; F1 is its help key there
        await pilot.press("escape", "2")  # escape leaves the prompt: digits switch
        assert app.current_mode == "train"


# -- what the strip and the footer show ------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_every_pane_names_the_five_panes_with_its_own_highlighted_and_shows_help(ui_home, size):
    app = app_on("datasets", ui_home)
    async with app.run_test(size=size) as pilot:
        for key, mode, label in keys.PANES:
            await go(pilot, key)
            if mode == "chat":
                await pilot.press("escape")
            assert app.current_mode == mode
            strip = app.screen.query_one(PaneTabs)
            line = strip.render()
            assert all(name in line.plain for name in PANE_NAMES), line.plain
            assert line.cell_len <= size[0]
            active = strip.get_component_rich_style("pane-tabs--active", partial=True)
            highlighted = {line.plain[span.start:span.end].strip() for span in line.spans if span.style == active}
            assert highlighted - {""} == {label}, highlighted
            await pilot.pause(0.1)
            footer = app.screen.query_one(KeyFooter)
            help_key = next(key for key in footer.children if getattr(key, "action", None) == "help")
            assert help_key.region.x >= 0 and help_key.region.right <= size[0] and help_key.region.width > 0
            assert "Help" in str(help_key.render())


def test_the_strip_shows_the_keys_that_work_where_the_focus_is():
    from rich.style import Style

    from tui_ft.ui.widgets.pane_tabs import tab_line

    styles = {"active": Style(bold=True), "key": Style(), "hint": Style()}
    outside = tab_line("runs", 120, False, False, "/ws", styles).plain
    inside = tab_line("runs", 120, True, True, "/ws", styles).plain
    assert "? help" in outside and "alt+1-5" in outside and "^pgup/^pgdn" in outside and outside.endswith("/ws")
    assert "alt+1-5 panes" in inside and "F1 help" in inside and "? help" not in inside
    narrow = tab_line("runs", 80, False, False, "/a/long/workspace/path", styles).plain
    assert narrow.startswith(" 1 Datasets") and "? help" in narrow and "/a/long" not in narrow and len(narrow) <= 80


# -- Runs: a refused key says why ------------------------------------------------------------


async def test_stop_and_resume_on_a_finished_run_say_why_nothing_happens():
    home = fresh_workspace(Path("/tmp/tui_ft_ui_pane_keys"), datasets=("seed_instructions.jsonl",))
    make_run(home, "done", state="finished", steps=10, total=10)
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle_workers(pilot)
        for _ in range(50):
            if app.screen.selected_row() is not None:
                break
            await pilot.pause(0.05)
        await pilot.press("s", "r")
        await pilot.pause()
        said = [notification.message for notification in app._notifications]
        assert "done is finished: only a queued or running run can be stopped." in said, said
        assert any(message.startswith("done is finished: only a stopped, failed or died run can be resumed")
                   for message in said), said
