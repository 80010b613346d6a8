"""The help screen: every key, grouped by pane."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_ft.ui.keys import key_label


class HelpScreen(ModalScreen[None]):
    """A modal list of key bindings; any of escape, q, ? or F1 closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, groups: list[tuple[str, list[Binding]]]):
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for title, bindings in self.groups:
            if not bindings:
                continue
            table.add_row(f"[bold]{title}[/]", "")
            for binding in bindings:
                table.add_row(key_label(binding), binding.tooltip or binding.description)
            table.add_row("", "")
        table.add_row("ctrl+p", "Command palette: go to a pane, run this pane's actions")
        with VerticalScroll(id="help-body"):
            yield Static("[b]Keys[/b]  (escape, ? or F1 closes)\n")
            yield Static(table)
