"""Dialogs of the Chat pane: sampling settings with a system prompt, and where to export a transcript."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from tui_ft.engine.generation.best_of_n import MAX_BEST_OF, best_of_problems
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.safe_text import plain
from tui_ft.ui import keys

# (field, label) of each number the user can set; the parser is the field's type.
FIELDS = (
    ("temperature", "temperature (0 = greedy)"),
    ("top_p", "top-p"),
    ("top_k", "top-k (0 = all)"),
    ("max_new_tokens", "max new tokens"),
    ("repetition_penalty", "repetition penalty"),
    ("seed", "seed (empty = random)"),
)


@dataclass
class ChatSettings:
    """Everything that shapes a reply besides the model and the conversation.

    Attributes:
        generation: How each reply is generated.
        system_prompt: The conversation's system message (empty: none).
        best_of: Replies sampled per answer, the reward model's best shown (1: off).
        reward_model: The reward run that judges every reply (empty: none).
    """

    generation: GenerationSettings
    system_prompt: str = ""
    best_of: int = 1
    reward_model: str = ""


DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 70; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; background: $surface; padding: 0 1;
}}
{name} .row {{ height: 1; }}
{name} .row Label {{ width: 26; }}
{name} Input, {name} Input:focus {{ border: none; height: 1; padding: 0 1; width: 1fr; background: $panel; }}
{name} Input:focus {{ background: $primary 40%; }}
{name} .dialog-error {{ color: $error; height: auto; }}
{name} .dialog-hint {{ color: $text-muted; }}
{name} Select {{ width: 1fr; }}
{name} Select > SelectCurrent {{ padding: 0 1; }}
"""

NO_REWARD_MODEL = ""  # the reward model choice "none"


class SettingsScreen(ModalScreen[ChatSettings | None]):
    """Edit the sampling settings and the system prompt; Enter saves, Escape cancels."""

    BINDINGS = keys.CHAT_DIALOG_BINDINGS
    DEFAULT_CSS = DIALOG_CSS.format(name="SettingsScreen")

    def __init__(self, current: ChatSettings, reward_runs: list[str] = ()):
        super().__init__()
        self.current = current
        self.reward_runs = list(reward_runs)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Sampling settings", style="bold"))
            for name, label in FIELDS:
                value = getattr(self.current.generation, name)
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input("" if value is None else str(value), id=f"set-{name}", select_on_focus=False)
            with Horizontal(classes="row"):
                yield Label("system prompt")
                yield Input(self.current.system_prompt, id="set-system", placeholder="(none)", select_on_focus=False)
            with Horizontal(classes="row"):
                yield Label(f"best of n (1 = off, ≤{MAX_BEST_OF})")
                yield Input(str(self.current.best_of), id="set-best_of", select_on_focus=False)
            with Horizontal(classes="row"):
                yield Label("reward model")
                runs = self.reward_runs + [r for r in [self.current.reward_model] if r and r not in self.reward_runs]
                # Run names label the options: Text, as a str label would be read as markup.
                yield Select([(plain("none"), NO_REWARD_MODEL)] + [(plain(run), run) for run in runs], allow_blank=False,
                             value=self.current.reward_model, id="set-reward", compact=True)
            yield Static("", id="settings-error", classes="dialog-error")
            yield Static("Enter saves · Tab next field · Escape cancels", classes="dialog-hint")

    def parse(self) -> tuple[ChatSettings | None, list[str]]:
        """The settings in the fields, or the problems that prevent using them."""
        values, problems = {}, []
        for name, label in FIELDS:
            raw = self.query_one(f"#set-{name}", Input).value.strip()
            if name == "seed" and not raw:
                values[name] = None
                continue
            kind = int if name in ("top_k", "max_new_tokens", "seed") else float
            try:
                values[name] = kind(raw)
            except ValueError:
                problems.append(f"{label.split(' (')[0]}: {'a whole number' if kind is int else 'a number'} is needed, got {raw!r}")
        raw_best_of = self.query_one("#set-best_of", Input).value.strip()
        try:
            best_of = int(raw_best_of)
        except ValueError:
            problems.append(f"best of n: a whole number is needed, got {raw_best_of!r}")
        if problems:
            return None, problems
        generation = replace(self.current.generation, **values)
        problems = generation.problems() + best_of_problems(best_of, generation)
        system = self.query_one("#set-system", Input).value.strip()
        reward = self.query_one("#set-reward", Select).value
        settings = ChatSettings(generation, system, best_of, reward if isinstance(reward, str) else NO_REWARD_MODEL)
        return (None if problems else settings), problems

    @on(Input.Submitted)
    def save(self) -> None:
        settings, problems = self.parse()
        if problems:
            self.query_one("#settings-error", Static).update("\n".join(problems))
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[str | None]):
    """Ask where to write the transcript (relative paths are inside the workspace)."""

    BINDINGS = keys.CHAT_DIALOG_BINDINGS
    DEFAULT_CSS = DIALOG_CSS.format(name="ExportScreen")

    def __init__(self, suggested: str):
        super().__init__()
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Export the transcript to Markdown", style="bold"))
            with Horizontal(classes="row"):
                yield Label("file")
                yield Input(self.suggested, id="export-path", select_on_focus=False)
            yield Static("Enter writes the file · Escape cancels", classes="dialog-hint")

    @on(Input.Submitted)
    def save(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or self.suggested)

    def action_cancel(self) -> None:
        self.dismiss(None)
