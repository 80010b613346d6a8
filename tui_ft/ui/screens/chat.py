"""The Chat pane (not built yet: it says so instead of showing anything fake)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class ChatScreen(Screen):
    """Chat with a model or a run."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Chat", classes="pane-title")
        yield Static("This pane is not built yet. Chat with a model or a run arrives here in a coming release.", classes="empty-state")
        yield Footer()
