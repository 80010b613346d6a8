"""The tui_ft dashboard: five panes as Textual modes, a help screen and the command palette."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from tui_ft.ui import keys
from tui_ft.ui.screens.benchmark import BenchmarkScreen
from tui_ft.ui.screens.chat import ChatScreen
from tui_ft.ui.screens.datasets import DatasetsScreen
from tui_ft.ui.screens.help import HelpScreen
from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.screens.train import TrainScreen


class TuiFtApp(App):
    """Fine-tune language models from a terminal."""

    TITLE = "tui_ft"
    CSS_PATH = "app.tcss"
    MODES = {
        "datasets": DatasetsScreen,
        "train": TrainScreen,
        "runs": RunsScreen,
        "chat": ChatScreen,
        "benchmark": BenchmarkScreen,
    }
    DEFAULT_MODE = "datasets"
    BINDINGS = keys.APP_BINDINGS

    def __init__(self, home: Path, model_ref: str = "default"):
        super().__init__()
        self.home = Path(home)
        self.model_ref = model_ref  # the model panes start on
        self.sub_title = str(self.home)

    def action_quit_outside_fields(self) -> None:
        """Quit on ``q`` unless a form field has focus, where ``q`` is easy to hit by accident."""
        from textual.widgets import Input, Select, TextArea

        focused = self.focused
        if focused is not None and any(isinstance(w, (Input, Select, TextArea)) for w in focused.ancestors_with_self):
            return
        self.exit()

    def action_help(self) -> None:
        """Show every key of every pane."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.all_bindings()))

    def all_bindings(self) -> list[tuple[str, list[Binding]]]:
        """The bindings of the app and of each pane, grouped by where they apply."""
        groups = [("Everywhere", list(self.BINDINGS))]
        for mode, screen in self.MODES.items():
            groups.append((mode.capitalize(), list(getattr(screen, "BINDINGS", []))))
        return groups


def run_dashboard(home: Path) -> int:
    """Open the dashboard on workspace ``home``; returns the exit status."""
    TuiFtApp(home).run()
    return 0
