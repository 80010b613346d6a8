"""A small modal that asks for a recipe file: to load into the Train form, or to save the form as."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Static

from tui_ft.safe_text import clean


class RecipeDialog(ModalScreen[str | None]):
    """Ask for a recipe path; ``check(path)`` returns why it cannot be used (shown, the dialog stays) or ``""``.

    Dismisses with the path, or ``None`` (escape). The recipes already in ``recipes/`` complete
    as the user types (right arrow takes the suggestion).
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="train.recipe.cancel", tooltip="Close; the form is unchanged")]
    DEFAULT_CSS = """
    RecipeDialog { align: center middle; }
    RecipeDialog > Vertical {
        width: 80%; max-width: 100; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    RecipeDialog #recipe-problems { color: $error; height: auto; max-height: 12; }
    RecipeDialog Horizontal { height: auto; align-horizontal: right; }
    RecipeDialog Button { margin-left: 1; }
    """

    def __init__(self, title: str, action: str, default: str, known: list[str], check: Callable[[str], str]):
        super().__init__()
        self.title_text, self.action_label, self.default, self.known, self.check = title, action, default, known, check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            yield Input(self.default, id="recipe-path", select_on_focus=False,
                        suggester=SuggestFromList(self.known, case_sensitive=False) if self.known else None)
            yield Static("", id="recipe-problems")
            with Horizontal():
                yield Button(self.action_label, id="recipe-ok", variant="primary")
                yield Button("Cancel", id="recipe-cancel")

    @on(Input.Submitted, "#recipe-path")
    @on(Button.Pressed, "#recipe-ok")
    def accept(self) -> None:
        path = self.query_one("#recipe-path", Input).value.strip()
        problem = self.check(path) if path else "Type the recipe file's path."
        # Paths and file contents are someone else's text: shown plain, never as markup.
        self.query_one("#recipe-problems", Static).update(Text(clean(problem)))
        if not problem:
            self.dismiss(path)

    @on(Button.Pressed, "#recipe-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
