"""A small modal that asks where to write a run's merged model."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui_ft.safe_text import clean


class ExportDialog(ModalScreen[str | None]):
    """Ask for the output folder of ``tui-ft export NAME --merged``; dismisses with the path or ``None``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel", tooltip="Close without exporting")]
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 80%; max-width: 90; height: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ExportDialog Horizontal { height: auto; align-horizontal: right; }
    ExportDialog Button { margin-left: 1; }
    """

    def __init__(self, run_name: str, default_out: Path):
        super().__init__()
        self.run_name = run_name
        self.default_out = default_out

    def compose(self) -> ComposeResult:
        with Vertical():
            # The run's name is a folder's name: never markup.
            yield Static(Text.assemble("Export ", (clean(self.run_name), "bold"), " as one merged model (base + adapter) to:"))
            yield Input(str(self.default_out), id="export-path", select_on_focus=False)
            with Horizontal():
                yield Button("Export", id="export-ok", variant="primary")
                yield Button("Cancel", id="export-cancel")

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-ok")
    def accept(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.notify("Type a folder to write the merged model to.", severity="warning")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
