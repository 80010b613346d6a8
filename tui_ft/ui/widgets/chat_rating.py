"""A small keyboard-only bar to rate a reply: three digits, helpfulness, accuracy, clarity.

It is a modal screen, so the digits go to it and never to the prompt input or the pane keys.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Key
from textual.screen import ModalScreen
from textual.widgets import Static

from tui_ft.engine.evaluation.ratings import RATING_FIELDS
from tui_ft.safe_text import clean
from tui_ft.ui import keys


class RatingScreen(ModalScreen[dict | None]):
    """Type three digits 1–5; returns ``{"target", "helpfulness", "accuracy", "clarity"}``, or None.

    Args:
        targets: The replies that can be rated, as ``(key, description)``; the first is rated
            unless the user switches (compare mode offers ``tuned`` and ``base``).
    """

    BINDINGS = keys.CHAT_RATING_BINDINGS
    DEFAULT_CSS = """
    RatingScreen { align: center bottom; }
    RatingScreen > Vertical {
        width: 64; max-width: 100%; height: auto;
        border: round $accent; background: $surface; padding: 0 1; margin-bottom: 5;
    }
    """

    def __init__(self, targets: list[tuple[str, str]]):
        super().__init__()
        self.targets = targets
        self.target = targets[0][0]
        self.scores: list[int] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="rating-view")

    def on_mount(self) -> None:
        self.show()

    def show(self) -> None:
        description = dict(self.targets)[self.target]
        text = Text(clean(f"Rate {description}") + "\n", style="bold")  # it names the model
        for index, name in enumerate(RATING_FIELDS):
            score = str(self.scores[index]) if index < len(self.scores) else "_"
            style = "reverse" if index == len(self.scores) else ""
            text.append(f" {name} ")
            text.append(f"[{score}]", style=style)
        hint = "\n1–5 score · backspace undo · escape cancel"
        if len(self.targets) > 1:
            hint += " · b/t base/tuned"
        text.append(hint, style="dim")
        self.query_one("#rating-view", Static).update(text)

    def action_score(self, value: int) -> None:
        self.scores.append(value)
        if len(self.scores) == len(RATING_FIELDS):
            self.dismiss({"target": self.target, **dict(zip(RATING_FIELDS, self.scores, strict=False))})
        else:
            self.show()

    def action_undo(self) -> None:
        if self.scores:
            self.scores.pop()
            self.show()

    def action_target(self, key: str) -> None:
        if key in dict(self.targets):
            self.target = key
            self.show()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_key(self, event: Key) -> None:
        # Other printable keys do nothing here: without this, app keys such as `q` (quit) or
        # digits outside 1–5 would act behind the bar.
        bound = {key for binding in self.BINDINGS for key in binding.key.split(",")}
        if event.is_printable and event.key not in bound:
            event.prevent_default()
            event.stop()
