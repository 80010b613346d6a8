"""The Runs pane (not built yet: it says so instead of showing anything fake)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class RunsScreen(Screen):
    """Watch runs live."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Runs", classes="pane-title")
        yield Static("This pane is not built yet. Watch runs live arrives here in a coming release.", classes="empty-state")
        yield Footer()
