"""The key bar at the bottom of every pane: Textual's Footer, rebuilt only when its keys change.

Textual's Footer recomposes (about thirty new widgets, each styled) whenever the screen says
its bindings *may* have changed: every focus move, screen switch and ``refresh_bindings``.
That cost 50-100 ms a key press on the 2-core machine (``bench/ui_latency.py``), most of the
dashboard's key-to-repaint time, while the keys shown were usually the same.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.screen import Screen
from textual.widgets import Footer

from tui_ft.ui import compat


def shown_keys(screen: Screen) -> tuple:
    """What the footer shows for ``screen``: each shown binding's key, label, action and state."""
    return tuple(
        (binding.key, binding.key_display, binding.description, binding.action, binding.group, enabled, tooltip)
        for _, binding, enabled, tooltip in screen.active_bindings.values()
        if binding.show or binding.action == "app.command_palette"
    )


class KeyFooter(Footer):
    """A Footer that recomposes only when the keys it would show differ from those it shows.

    The help key is pinned to the left: it came after the pane's keys, and a pane with many
    keys cut the footer before it, at 80 and even 120 columns; `?` is the key that explains
    the others.
    """

    DEFAULT_CSS = """
    KeyFooter FooterKey.-pinned { dock: left; border-right: vkey $foreground 20%; }
    """
    PINNED_ACTIONS = ("help",)
    _shown: tuple | None = None
    _shown_width = 0

    def compose(self):
        widgets = list(super().compose())
        for widget in widgets:
            # A key of the footer carries its binding's action (FooterKey is not public Textual).
            if getattr(widget, "action", None) in self.PINNED_ACTIONS:
                widget.add_class("-pinned")
        yield from self.fitting(widgets, self.app.size.width)

    @staticmethod
    def key_cells(widget) -> int | None:
        """Columns a compact key takes (key, space, label, the gap after it); None for a group."""
        if not hasattr(widget, "key_display"):
            return None
        description = getattr(widget, "description", "")
        return cell_len(widget.key_display) + (1 + cell_len(description) if description else 0) + 2

    def fitting(self, widgets: list, width: int) -> list:
        """The keys that fit in ``width`` columns, whole, in order: the pinned help key and the
        palette always, the pane's keys until the line is full. Cut by the screen's edge, the
        last key read ``c C`` at 80 columns; every key is in the help screen (``?``) anyway.
        """
        cells = [self.key_cells(widget) for widget in widgets]
        if None in cells or not width:
            return widgets  # a key group (Datasets' example keys): shown as Textual lays it out
        always = [i for i, widget in enumerate(widgets)
                  if widget.has_class("-pinned") or widget.has_class("-command-palette")]
        room = width - sum(cells[i] for i in always) - 2  # the pinned key's and the palette's borders
        kept = []
        for index, widget in enumerate(widgets):
            if index in always:
                kept.append(widget)
            elif cells[index] <= room:
                room -= cells[index]
                kept.append(widget)
            else:
                room = -1  # in order: never a later, shorter key after a dropped one
        return kept

    def on_resize(self) -> None:
        if self._shown is not None and self._shown_width != self.app.size.width:
            self._shown = None  # the keys that fit change with the width
            self._recompose_if_changed()

    def bindings_changed(self, screen: Screen) -> None:
        compat.set_footer_bindings_ready(self)
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            # After the refresh, as Footer does: the screen's widgets (which its check_action
            # may query) are mounted by then.
            self.call_after_refresh(self._recompose_if_changed)

    def _recompose_if_changed(self) -> None:
        if not self.is_attached:
            return
        keys = shown_keys(self.screen)
        if keys != self._shown:
            self._shown, self._shown_width = keys, self.app.size.width
            self.call_later(self.recompose)
