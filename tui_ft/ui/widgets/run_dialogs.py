"""The Runs pane's dialogs: confirm a deletion, rename a run, and the settings two or more runs differ in."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Static

from tui_ft.engine.runs.config import RUN_NAME_PATTERN
from tui_ft.safe_text import clean, plain
from tui_ft.views.run_diff import config_diff

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 80%; max-width: 110; height: auto; max-height: 90%;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} Horizontal {{ height: auto; align-horizontal: right; }}
{name} Button {{ margin-left: 1; }}
"""


class ConfirmDelete(ModalScreen[bool]):
    """Ask before deleting a run; dismisses with ``True`` to delete. Cancel has the focus."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel", id="runs.delete.cancel", tooltip="Keep the run"),
                Binding("y", "confirm", "Delete", id="runs.delete.confirm", tooltip="Delete the run")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDelete") + "ConfirmDelete > Vertical { border: thick $error; }"

    def __init__(self, run_name: str, live: bool, size_text: str):
        super().__init__()
        self.run_name, self.live, self.size_text = run_name, live, size_text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble("Delete run ", (clean(self.run_name), "bold"),
                                       f" and its checkpoints ({self.size_text})? This cannot be undone."))
            if self.live:
                yield Static("It is running: it is stopped first (at its next step), then deleted.")
            with Horizontal():
                yield Button("Delete  y", id="delete-ok", variant="error")
                yield Button("Cancel  n", id="delete-cancel")

    def on_mount(self) -> None:
        self.query_one("#delete-cancel", Button).focus()  # enter on arrival keeps the run

    @on(Button.Pressed, "#delete-ok")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#delete-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class RenameDialog(ModalScreen[str | None]):
    """Ask for a run's new name; dismisses with it, or ``None``. A name that is not a safe run name is refused here."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="runs.rename.cancel", tooltip="Keep the name")]
    DEFAULT_CSS = DIALOG_CSS.format(name="RenameDialog") + "RenameDialog #rename-error { color: $error; height: auto; }"

    def __init__(self, run_name: str, taken: set[str]):
        super().__init__()
        self.run_name, self.taken = run_name, taken

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble("Rename run ", (clean(self.run_name), "bold"),
                                       " (its checkpoints, ratings and scores move with it) to:"))
            yield Input(clean(self.run_name), id="rename-name", select_on_focus=True)
            yield Static("", id="rename-error")
            with Horizontal():
                yield Button("Rename", id="rename-ok", variant="primary")
                yield Button("Cancel", id="rename-cancel")

    def problem(self, name: str) -> str:
        """Why ``name`` cannot be the new name, or ``""``."""
        if not RUN_NAME_PATTERN.fullmatch(name) or ".." in name:
            return "A run name is letters, digits, '.', '_' and '-' (64 at most), starting with a letter or digit."
        if name in self.taken and name != self.run_name:
            return f"A run named {name} already exists."
        return ""

    @on(Input.Submitted, "#rename-name")
    @on(Button.Pressed, "#rename-ok")
    def accept(self) -> None:
        name = self.query_one("#rename-name", Input).value.strip()
        problem = self.problem(name)
        self.query_one("#rename-error", Static).update(problem)
        if not problem:
            self.dismiss(None if name == self.run_name else name)

    @on(Button.Pressed, "#rename-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfigDiffScreen(ModalScreen[None]):
    """The settings the given runs differ in, one column a run."""

    BINDINGS = [Binding("escape,q,f", "close", "Close", id="runs.diff.close", tooltip="Back to the runs")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfigDiffScreen") + "ConfigDiffScreen DataTable { height: auto; max-height: 30; }"

    def __init__(self, configs: dict[str, dict], home=None):
        super().__init__()
        self.configs, self.home = configs, home

    def compose(self) -> ComposeResult:
        names = list(self.configs)
        rows = config_diff(list(self.configs.values()), self.home)
        with Vertical():
            yield Static(plain(f"{len(rows)} setting{'' if len(rows) == 1 else 's'} differ"
                               if rows else "These runs have the same settings."))
            table = DataTable(id="diff", cursor_type="row", zebra_stripes=True)
            table.add_column("setting")
            for name in names:
                table.add_column(plain(name))
            for key, values in rows:
                table.add_row(plain(key), *(plain(value) for value in values))
            yield table
            with Horizontal():
                yield Button("Close  esc", id="diff-close")

    @on(Button.Pressed, "#diff-close")
    def action_close(self) -> None:
        self.dismiss(None)
