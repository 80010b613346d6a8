"""The line at the top of every pane: the five panes by name, the one shown highlighted.

It answers "where am I" on every pane (the Chat pane named itself nowhere), and carries the
keys that reach the panes, so the footer's room is left to the pane's own keys. The keys it
offers follow the focus: inside a text field the digits type, so it says ``alt+1-5`` and
``F1`` (``?`` types too) instead.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widget import Widget

from tui_ft.ui import keys
from tui_ft.ui.screens.pane import digits_type

GAP = 2  # columns between the hints on the right


def tab_spans() -> list[tuple[int, int, str]]:
    """``(start, end, mode)`` of each tab, in columns from the left."""
    spans, x = [], 0
    for key, mode, label in keys.PANES:
        text = f" {key} {label} "
        spans.append((x, x + len(text), mode))
        x += len(text)
    return spans


def hints(typing_digits: bool, question_types: bool) -> list[str]:
    """The keys on the right, most important first (as many as fit are shown).

    A focused text field types digits and ``?``: then alt+1-5 and F1 are the keys that work.
    """
    help_hint = "F1 help" if question_types else "? help"
    if typing_digits:
        return ["alt+1-5 panes", help_hint, "^pgup/^pgdn"]
    return [help_hint, "alt+1-5", "^pgup/^pgdn"]


def tab_line(active: str, width: int, typing_digits: bool, question_types: bool, home: str,
             styles: dict[str, Style]) -> Text:
    """The strip as styled text: the tabs on the left, the hints and the workspace on the right."""
    line = Text(no_wrap=True, overflow="crop", end="")
    for key, mode, label in keys.PANES:
        style = styles["active"] if mode == active else Style()
        line.append(" ", style)
        line.append(key, style + (styles["hint"] if typing_digits else styles["key"]))
        line.append(f" {label} ", style)
    right: list[str] = []
    room = width - line.cell_len - 1
    for hint in [*hints(typing_digits, question_types), home]:
        needed = len(hint) + (GAP if right else 0)
        if needed > room:
            break
        right.append(hint)
        room -= needed
    if right:
        line.append(" " * (room + 1))
        for index, hint in enumerate(right):
            if index:
                line.append(" " * GAP)
            key, _, words = hint.partition(" ")
            if hint == home:
                line.append(hint, styles["hint"])
            else:
                line.append(key, styles["key"])
                line.append(f" {words}" if words else "", styles["hint"])
    return line


class PaneTabs(Widget):
    """One line: ``1 Datasets  2 Train  3 Runs  4 Chat  5 Benchmark`` with the pane shown highlighted; click a tab to go there."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; width: 1fr; background: $panel; color: $foreground; }
    PaneTabs > .pane-tabs--active { background: $primary; color: $foreground; text-style: bold; }
    PaneTabs > .pane-tabs--key { color: $accent; text-style: bold; }
    PaneTabs > .pane-tabs--hint { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"pane-tabs--active", "pane-tabs--key", "pane-tabs--hint"}

    def __init__(self, mode: str, *, id: str | None = None):  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.mode = mode

    def on_mount(self) -> None:
        # The hints follow the focus (digits type in a text field); one line to redraw.
        self.watch(self.screen, "focused", self._focus_moved, init=False)
        self._watched: set[int] = set()

    def _focus_moved(self, focused: Widget | None) -> None:
        # The Chat prompt switches panes on digits only while it is empty: follow its text too.
        if hasattr(focused, "digits_switch_panes") and id(focused) not in self._watched:
            self._watched.add(id(focused))
            self.watch(focused, "value", lambda _: self.refresh(), init=False)
        self.refresh()

    def render(self) -> Text:
        # partial: the key's colour over the tab's own background (the active tab's, too)
        styles = {name: self.get_component_rich_style(f"pane-tabs--{name}", partial=True) for name in ("active", "key", "hint")}
        focused = self.screen.focused
        question_types = focused is not None and focused.check_consume_key("question_mark", "?")
        return tab_line(self.mode, self.size.width, digits_type(focused), question_types,
                        str(getattr(self.app, "home", "")), styles)

    async def on_click(self, event: events.Click) -> None:
        for start, end, mode in tab_spans():
            if start <= event.x < end:
                await self.app.run_action(f"show_pane('{mode}')")
                return
