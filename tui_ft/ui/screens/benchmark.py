"""The Benchmark pane (not built yet: it says so instead of showing anything fake)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class BenchmarkScreen(Screen):
    """Score models on benchmarks."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Benchmark", classes="pane-title")
        yield Static("This pane is not built yet. Score models on benchmarks arrives here in a coming release.", classes="empty-state")
        yield Footer()
