"""The Chat pane's reward model picker (ctrl+w): a finished ``--method reward`` run, or none."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui_ft.safe_text import plain
from tui_ft.ui import keys
from tui_ft.ui.widgets.chat_dialogs import DIALOG_CSS, NO_REWARD_MODEL

NONE_LABEL = "none (no rewards)"
NO_RUNS_HINT = ("No finished reward model in checkpoints/: train one with --method reward "
                "(tui-ft train --config reward-concise).")


class RewardPickerScreen(ModalScreen[str | None]):
    """Pick the reward model that judges the replies; returns a run name, ``""`` for none, or None (cancelled).

    Args:
        runs: The finished reward runs to offer.
        current: The run picked now (``""``: none), highlighted.
    """

    BINDINGS = keys.CHAT_DIALOG_BINDINGS
    DEFAULT_CSS = DIALOG_CSS.format(name="RewardPickerScreen") + """
    RewardPickerScreen OptionList { height: auto; max-height: 12; border: none; }
    """

    def __init__(self, runs: list[str], current: str = NO_REWARD_MODEL):
        super().__init__()
        self.runs = list(runs)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Reward model: it scores every reply; best-of-n shows its favourite", style="bold"))
            options = [Option(plain(NONE_LABEL), id=NO_REWARD_MODEL)]
            options += [Option(plain(run), id=run) for run in self.runs]
            yield OptionList(*options, id="reward-runs")
            if not self.runs:
                yield Static(NO_RUNS_HINT, classes="dialog-hint", markup=False)
            yield Static("Enter picks · Escape cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one("#reward-runs", OptionList)
        ids = [NO_REWARD_MODEL, *self.runs]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    @on(OptionList.OptionSelected, "#reward-runs")
    def picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id or NO_REWARD_MODEL)

    def action_cancel(self) -> None:
        self.dismiss(None)
