"""The Train pane (not built yet: it says so instead of showing anything fake)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class TrainScreen(Screen):
    """Start a fine-tuning run."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Train", classes="pane-title")
        yield Static("This pane is not built yet. Start a fine-tuning run arrives here in a coming release.", classes="empty-state")
        yield Footer()
