"""What a pane switch costs: no held frames for a built pane, one resume, a frozen heap."""

import gc
import sys
import types

from textual.app import App
from textual.screen import Screen

from tui_ft.ui.app import TuiFtApp


def count_calls(monkeypatch, owner, name: str) -> list:
    """Record every call of ``owner.name`` (by the instance's class name), still calling it."""
    calls = []
    original = getattr(owner, name)

    def recorded(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


async def test_a_built_pane_is_shown_without_textuals_50_ms_hold(ui_home, monkeypatch):
    holds = count_calls(monkeypatch, App, "delay_update")
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        assert app.current_mode == "train" and len(holds) == 1  # the first visit builds it: held
        await pilot.press("1", "2", "3", "1")
        assert app.current_mode == "datasets" and len(holds) == 2  # only Runs' first visit added one
        await pilot.pause()
        assert app._batch_count == 0  # nothing left holding frames


async def test_a_pane_coming_back_resumes_once_without_restyling(ui_home, monkeypatch):
    resumes = count_calls(monkeypatch, Screen, "_on_screen_resume")
    restyled = []
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2", "1")
        await pilot.pause()
        resumes.clear()
        monkeypatch.setattr(app, "update_styles", lambda node, animate=True: restyled.append(node))
        await pilot.press("2")
        await pilot.pause()
        assert resumes == ["TrainScreen"]  # Textual's handler, once
        assert app.screen not in restyled


def collectable(objects: list) -> bool:
    """True when every one of ``objects`` is in a generation the collector walks."""
    tracked = {id(item) for item in gc.get_objects()}
    return all(id(item) in tracked for item in objects)


async def test_long_lived_objects_are_frozen_when_modules_were_imported(ui_home, monkeypatch):
    monkeypatch.setattr(TuiFtApp, "FREEZE_HEAP_EVERY_S", 0.05)
    gc.unfreeze()
    app = TuiFtApp(ui_home)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            assert gc.get_freeze_count() > 10_000  # the app's timer froze the heap
            assert not app.freeze_long_lived_objects()  # no new module: nothing to do
            monkeypatch.setitem(sys.modules, "tui_ft_test_new_module", types.ModuleType("tui_ft_test_new_module"))
            kept = [[index] for index in range(1000)]  # objects made since the last freeze
            assert collectable(kept)
            assert app.freeze_long_lived_objects()
            assert not collectable(kept)  # out of the collector's sight (the permanent generation)
    finally:
        gc.unfreeze()  # give this process's objects back to the collector


async def test_a_new_pane_is_built_without_restyling_the_whole_app(ui_home, monkeypatch):
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        refreshes = count_calls(monkeypatch, App, "refresh_css")
        await pilot.press("2", "3", "5")
        await pilot.pause()
        assert app.current_mode == "benchmark"
        assert refreshes == []  # Textual re-parsed and re-styled everything for each new screen
        # ... and the new panes are styled all the same: the theme's colours are on them.
        strip = app.screen.query_one("PaneTabs")
        assert strip.styles.background == app.get_screen_stack("datasets")[0].query_one("PaneTabs").styles.background


async def test_a_new_pane_is_not_restyled_on_its_first_visit_unless_the_theme_changed(ui_home, monkeypatch):
    restyled = []
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        update_styles = app.update_styles

        def recorded(node, animate=True):
            restyled.append(node)
            return update_styles(node, animate)

        monkeypatch.setattr(app, "update_styles", recorded)
        await pilot.press("2")  # Train is built now: its widgets were styled as they mounted
        await pilot.pause()
        assert app.current_mode == "train" and app.screen not in restyled
        await pilot.press("3")
        await pilot.pause()
        app.theme = "textual-light" if app.theme != "textual-light" else "nord"
        await pilot.pause()
        restyled.clear()
        await pilot.press("2")  # hidden while the theme changed: restyled when it comes back
        await pilot.pause()
        assert app.screen in restyled


async def test_a_pane_switched_past_in_one_batch_skips_its_stale_resume(ui_home, monkeypatch):
    resumes = count_calls(monkeypatch, Screen, "_on_screen_resume")
    app = TuiFtApp(ui_home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        resumes.clear()
        with app.batch_update():  # what building a pane in the background does
            app.switch_mode("train")
            app.switch_mode("datasets")
        await pilot.pause(0.3)
        train = app.get_screen_stack("train")[0]
        assert train.query("TrainForm")  # built ...
        assert "TrainScreen" not in resumes  # ... without laying out and reloading a hidden pane
        await pilot.press("2")
        await pilot.pause()
        assert resumes.count("TrainScreen") == 1 and app.screen is train
        assert train.query_one("TrainForm").region.width > 0  # laid out when shown
