"""The help screen: every key, grouped by pane."""

from __future__ import annotations

from functools import lru_cache

from rich.console import Console
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Static

from tui_ft.ui.keys import key_label


class HelpScreen(ModalScreen[None]):
    """A modal list of key bindings; any of escape, q, ? or F1 closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, groups: list[tuple[str, list[Binding]]]):
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("[b]Keys[/b]  (escape, ? or F1 closes)\n")
            yield KeyTable(self.groups)


def key_rows(groups: list[tuple[str, list[Binding]]]) -> tuple[tuple[str, str], ...]:
    """The table's rows: a group title (with an empty second cell), then its keys."""
    rows = []
    for title, bindings in groups:
        if not bindings:
            continue
        rows.append((f"[bold]{title}[/]", ""))
        for binding in bindings:
            description = binding.tooltip or binding.description
            if rows[-1][1] == description:  # another key for the same thing (1 and alt+1): one line
                rows[-1] = (f"{rows[-1][0]} / {key_label(binding)}", description)
            else:
                rows.append((key_label(binding), description))
        rows.append(("", ""))
    rows.append(("ctrl+p", "Command palette: go to a pane, run this pane's actions"))
    return tuple(rows)


@lru_cache(maxsize=16)
def rendered_table(rows: tuple[tuple[str, str], ...], width: int) -> Text:
    """The key table laid out by Rich at ``width`` columns, as styled text.

    Rich's table layout was most of a help screen's first appearance (50-75 ms idle); the
    rows are the same for every pane, so each width is laid out once and every pane's help
    screen reuses it.
    """
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, description in rows:
        table.add_row(key, description)
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    text = Text(no_wrap=True, end="")
    for number, line in enumerate(console.render_lines(table, console.options.update_width(width), pad=False)):
        if number:
            text.append("\n")
        for segment in line:
            text.append(segment.text, segment.style)
    return text


def predicted_width(screen_width: int, screen_height: int, rows: int) -> int:
    """The table's width on a help screen of that size, by app.tcss's rules for #help-body.

    80% of the screen at most 90 columns, less the border (2), the padding (4) and, when the
    table is taller than the body, the scrollbar (2).
    """
    width = min(screen_width * 80 // 100, 90) - 2 - 4
    body_rows = screen_height * 80 // 100 - 2 - 2 - 2  # border, padding, the title's two lines
    return width - 2 if rows > body_rows else width


def warm_help_table(groups: list[tuple[str, list[Binding]]], screen_width: int, screen_height: int) -> None:
    """Lay the key table out ahead of the first ``?`` (a worker thread can do it).

    At the widths with and without the scrollbar: Textual measures the table's height before
    it knows whether the scrollbar is needed.
    """
    rows = key_rows(groups)
    width = predicted_width(screen_width, screen_height, len(rows))
    for candidate in {width, min(screen_width * 80 // 100, 90) - 6}:
        rendered_table(rows, candidate)


class KeyTable(Widget):
    """The table of keys, laid out once per width (:func:`rendered_table`)."""

    DEFAULT_CSS = "KeyTable { height: auto; }"

    def __init__(self, groups: list[tuple[str, list[Binding]]]):
        super().__init__()
        self.rows = key_rows(groups)

    def render(self) -> Text:
        return rendered_table(self.rows, max(self.content_size.width, 20))

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(rendered_table(self.rows, max(width, 20)).plain.splitlines())
