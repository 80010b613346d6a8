"""The dashboard's own commands in the command palette (ctrl+p).

Going to a pane, the help screen, and the actions of the pane the palette was opened on.
The pane's actions are read from its ``BINDINGS`` (``ui/keys.py``), so a key added there is
in the palette too, with the same description; an action the pane says is unavailable now
(``check_action``) is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from textual.actions import parse
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches

from tui_ft.ui import keys


@dataclass(frozen=True)
class PaletteCommand:
    """One entry of the palette: what it reads, what it does, and its key."""

    name: str
    help: str
    run: Callable[[], object]


class DashboardCommands(Provider):
    """Palette commands: every pane, the keys, and what the current pane can do now."""

    def commands(self) -> Iterator[PaletteCommand]:
        """The commands offered on the screen the palette was opened on, in display order."""
        from tui_ft.ui.screens.pane import Pane

        app = self.app
        for key, mode, label in keys.PANES:
            yield PaletteCommand(f"Go to {label}", f"Show the {label} pane (key {key})", partial(app.switch_mode, mode))
        yield PaletteCommand("Show keys and help", "List every key of every pane (? or F1)", app.action_help)
        screen = self.screen
        if not isinstance(screen, Pane):  # a dialog: its own keys are on screen
            return
        label = {mode: label for _, mode, label in keys.PANES}.get(app.current_mode, app.current_mode)
        seen = set()
        for binding in getattr(screen, "BINDINGS", []):
            if binding.action in seen or not binding.description:
                continue
            seen.add(binding.action)
            _, action_name, params = parse(binding.action)
            try:
                available = screen.check_action(action_name, params)
            except NoMatches:  # the pane is still mounting the widgets its check reads
                available = False
            if not available:
                continue  # unavailable now (no run selected, a launch under way)
            help_text = f"{binding.tooltip or binding.description} (key {keys.key_label(binding)})"
            yield PaletteCommand(f"{label}: {binding.description}", help_text, partial(screen.run_action, binding.action))

    async def discover(self) -> Hits:
        """Show every command before anything is typed."""
        for command in self.commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        """Commands whose name matches ``query`` (Textual's fuzzy matcher)."""
        matcher = self.matcher(query)
        for command in self.commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, text=command.name, help=command.help)
