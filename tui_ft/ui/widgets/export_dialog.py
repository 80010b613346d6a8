"""A small modal that asks how and where to export a run: a merged model folder, a GGUF file, or an Ollama folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from tui_ft.safe_text import clean

FORMATS = [("Merged model folder (Hugging Face)", "merged"), ("GGUF file (llama.cpp)", "gguf"),
           ("Ollama folder (model.gguf + Modelfile)", "ollama")]
QUANTS = [("f16", "f16"), ("bf16", "bf16"), ("q8_0 (half the size)", "q8_0")]  # as `tui-ft export --quant`


@dataclass(frozen=True)
class ExportChoice:
    """What the dialog was told: ``tui-ft export NAME --<format> PATH [--quant QUANT]``."""

    format: str  # merged, gguf or ollama
    path: Path
    quant: str = "f16"  # gguf and ollama only

    @property
    def label(self) -> str:
        """How a notification names it: "merged", "as GGUF q8_0", "for Ollama (f16)"."""
        return {"merged": "merged", "gguf": f"as GGUF {self.quant}", "ollama": f"for Ollama ({self.quant})"}[self.format]

    def cli_flags(self) -> list[str]:
        """The flags of ``tui-ft export`` that say this."""
        flags = [f"--{self.format}", str(self.path)]
        return flags if self.format == "merged" else [*flags, "--quant", self.quant]


def default_path(run_dir: Path, run_name: str, format: str, quant: str) -> Path:
    """Where an export goes unless the user types elsewhere: inside the run's folder, named for the format."""
    if format == "gguf":
        return run_dir / f"{run_name}-{quant}.gguf"
    return run_dir / format


class ExportDialog(ModalScreen[ExportChoice | None]):
    """Ask for the format, quant and path of ``tui-ft export``; dismisses with an :class:`ExportChoice` or ``None``.

    The path has the focus, so ``e`` then enter exports the merged folder as before; shift+tab
    reaches the format and quant lists. The path follows the format and quant until it is edited.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel", tooltip="Close without exporting")]
    AUTO_FOCUS = "#export-path"
    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 80%; max-width: 90; height: auto;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ExportDialog Horizontal { height: auto; }
    ExportDialog #export-format { width: 2fr; }
    ExportDialog #export-quant { width: 1fr; margin-left: 1; }
    ExportDialog #export-buttons { align-horizontal: right; }
    ExportDialog Button { margin-left: 1; }
    """

    def __init__(self, run_name: str, run_dir: Path):
        super().__init__()
        self.run_name = run_name
        self.run_dir = run_dir
        self._default = default_path(run_dir, run_name, "merged", "f16")

    def compose(self) -> ComposeResult:
        with Vertical():
            # The run's name is a folder's name: never markup.
            yield Static(Text.assemble("Export ", (clean(self.run_name), "bold"), " (LoRA merged into the base) as:"))
            with Horizontal():
                yield Select(FORMATS, value="merged", allow_blank=False, id="export-format")
                yield Select(QUANTS, value="f16", allow_blank=False, id="export-quant", disabled=True,
                             tooltip="How GGUF stores the weight matrices (norms stay f32)")
            yield Input(str(self._default), id="export-path", select_on_focus=False)
            with Horizontal(id="export-buttons"):
                yield Button("Export", id="export-ok", variant="primary")
                yield Button("Cancel", id="export-cancel")

    def choice(self, path: str) -> ExportChoice:
        """What the dialog says now, writing to ``path`` (``~`` expanded)."""
        return ExportChoice(str(self.query_one("#export-format", Select).value), Path(path).expanduser(),
                            str(self.query_one("#export-quant", Select).value))

    @on(Select.Changed)
    def format_changed(self) -> None:
        chosen = self.choice("")
        self.query_one("#export-quant", Select).disabled = chosen.format == "merged"
        path = self.query_one("#export-path", Input)
        new_default = default_path(self.run_dir, self.run_name, chosen.format, chosen.quant)
        if path.value.strip() == str(self._default):  # not edited: it follows the format
            path.value = str(new_default)
        self._default = new_default

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export-ok")
    def accept(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.notify("Type where to write the export.", severity="warning")
            return
        self.dismiss(self.choice(path))

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
