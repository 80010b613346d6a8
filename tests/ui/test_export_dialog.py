"""The Runs pane's export dialog: a merged folder, a GGUF file (with its quant) or an Ollama folder, by keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select

from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.widgets.export_dialog import ExportDialog
from tui_ft.ui.widgets.run_table import RunTable

from fake_runs import app_on, fresh_workspace, make_run, polled

HOME = Path("/tmp/tui_ft_ui_export_dialog")


@pytest.fixture
def home() -> Path:
    return fresh_workspace(HOME, datasets=("seed_instructions.jsonl",))


@pytest.fixture
def exports(monkeypatch) -> list:
    """Every export the pane starts, as ``(name, flags)``; the child process is not run."""
    calls = []
    monkeypatch.setattr("tui_ft.ui.screens.runs.export_cli",
                        lambda home, name, flags: calls.append((name, [str(flag) for flag in flags])) or "")
    monkeypatch.setattr("tui_ft.ui.screens.runs.export_merged_cli",
                        lambda home, name, out: calls.append((name, ["--merged", str(out)])) or "")
    return calls


async def open_dialog(pilot, name: str) -> ExportDialog:
    screen = await polled(pilot)
    screen.query_one(RunTable).select_name(name)
    await polled(pilot)
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ExportDialog)
    return pilot.app.screen


async def pick(pilot, select: Select, value: str) -> None:
    """Choose ``value`` in a focused Select by keys: enter opens it, down moves, enter picks."""
    options = [option_value for _, option_value in select._options]
    await pilot.press("enter")
    moves = options.index(value) - options.index(select.value)
    await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves), "enter")
    await pilot.pause()
    assert select.value == value


async def test_gguf_with_its_quant_by_keyboard_and_the_path_follows(home, exports):
    run_dir = make_run(home, "done", state="finished", steps=20, created=1)
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        dialog = await open_dialog(pilot, "done")
        path, format_select = dialog.query_one("#export-path", Input), dialog.query_one("#export-format", Select)
        quant = dialog.query_one("#export-quant", Select)
        assert app.focused is path and path.value == str(run_dir / "merged")
        assert quant.disabled  # a merged folder has no quant
        await pilot.press("shift+tab")  # past the disabled quant list, to the format
        assert app.focused is format_select
        await pick(pilot, format_select, "gguf")
        assert path.value == str(run_dir / "done-f16.gguf") and not quant.disabled
        await pilot.press("tab")
        assert app.focused is quant
        await pick(pilot, quant, "q8_0")
        assert path.value == str(run_dir / "done-q8_0.gguf")
        await pilot.press("tab", "enter")  # to the path; enter exports
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert exports == [("done", ["--gguf", str(run_dir / "done-q8_0.gguf"), "--quant", "q8_0"])]
        assert any(n.message == f"Exported done as GGUF q8_0 to {run_dir / 'done-q8_0.gguf'}" for n in app._notifications)


async def test_an_edited_path_stays_when_the_format_changes_and_ollama_gets_it(home, exports):
    make_run(home, "done", state="finished", steps=20, created=1)
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        dialog = await open_dialog(pilot, "done")
        path = dialog.query_one("#export-path", Input)
        path.value = ""
        await pilot.press(*"~/models/smol")
        await pilot.press("shift+tab")
        await pick(pilot, dialog.query_one("#export-format", Select), "ollama")
        assert path.value == "~/models/smol"  # typed by the user: kept
        await pilot.press("tab", "tab", "enter")  # quant (f16), path, export
        await app.workers.wait_for_complete()
        assert exports == [("done", ["--ollama", str(Path.home() / "models" / "smol"), "--quant", "f16"])]


async def test_escape_closes_an_open_list_first_then_the_dialog_without_exporting(home, exports):
    make_run(home, "done", state="finished", steps=20, created=1)
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        dialog = await open_dialog(pilot, "done")
        await pilot.press("shift+tab", "enter")  # the format list opens
        assert dialog.query_one("#export-format", Select).expanded
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is dialog and not dialog.query_one("#export-format", Select).expanded
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await app.workers.wait_for_complete()
        assert exports == []


async def test_merged_stays_the_enter_key_default_and_a_failure_is_shown(home, monkeypatch):
    run_dir = make_run(home, "done", state="finished", steps=20, created=1)
    monkeypatch.setattr("tui_ft.ui.screens.runs.export_merged_cli", lambda home, name, out: "tui-ft: disk full")
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dialog(pilot, "done")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any(n.message == "Export of done failed: tui-ft: disk full" and n.severity == "error"
                   for n in app._notifications)
    assert not (run_dir / "merged").exists()


async def test_the_dialogs_flags_reach_the_real_cli(home):
    """No stand-in: the child ``tui-ft export`` parses the GGUF flags and refuses this fake run in its own words."""
    make_run(home, "done", state="finished", steps=20, created=1)  # run.json names a base folder that is not there
    app = app_on("runs", home)
    async with app.run_test(size=(100, 30)) as pilot:
        dialog = await open_dialog(pilot, "done")
        await pilot.press("shift+tab")
        await pick(pilot, dialog.query_one("#export-format", Select), "gguf")
        await pilot.press("tab", "tab", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert errors == ["Export of done failed: tui-ft: done: GGUF export needs the model's config.json, "
                          "which /models/SmolLM2-135M-Instruct lacks"]
