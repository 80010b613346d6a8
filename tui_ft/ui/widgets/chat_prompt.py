"""The Chat pane's prompt: typing is the pane's only job, so it has the focus, yet while it is
empty the pane digits switch panes, as everywhere outside a text field."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

from tui_ft.ui.keys import PANES

MODE_OF_DIGIT = {key: mode for key, mode, _ in PANES}


class PromptInput(Input):
    """An Input that switches panes on a pane digit while it is empty.

    The prompt decides, not the app's digit bindings: keys typed quickly (``hi 2``) reach the
    app before the prompt has taken the first ones, so the app would see it still empty.
    """

    @property
    def digits_switch_panes(self) -> bool:
        """Whether a pane digit typed now switches panes (the prompt is empty)."""
        return not self.value

    async def on_key(self, event: events.Key) -> None:
        mode = MODE_OF_DIGIT.get(event.key)
        if mode is not None and not self.value:
            event.prevent_default()  # Input's own handler (called after this one) would type it
            event.stop()
            await self.app.run_action(f"show_pane('{mode}')")
