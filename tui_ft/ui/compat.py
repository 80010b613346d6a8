"""Every private Textual and textual-plotext name the dashboard relies on, in one place.

The dashboard's speed-ups (``bench/ui_latency.py``) reach into Textual's and textual-plotext's
internals: names with a leading underscore, which an upgrade may rename or drop without notice.
Each one is used here and only here, by one small function with a line on why; the classes
whose private hooks we override name them in :data:`PRIVATE_NAMES` too. ``tests/ui/test_compat.py``
checks that every name in that table still exists in the installed versions, and that no other
module of ``tui_ft`` uses one directly, so an upgrade that breaks one fails with the name, not
with a slow dashboard or an ``AttributeError`` in the middle of a frame.

Moving a version bound in ``pyproject.toml``: see the README's testing notes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from textual.app import App
    from textual.geometry import Size
    from textual.screen import Screen
    from textual.widgets import DataTable, Footer
    from textual_plotext import PlotextPlot
    from textual_plotext.plot import Plot


class PrivateName(NamedTuple):
    """A private attribute of a library class that tui_ft uses, and why."""

    owner: str  # "module:Class", importable: where the attribute is looked up (methods, or set on instances)
    name: str
    why: str
    params: tuple[str, ...] = ()  # a method's parameters that we pass or override with
    hook: str = ""  # a method we override rather than call: the tui_ft module that overrides it


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName("textual.app:App", "_dom_ready",
                "tell whether a first screen is laid out (a pane made after that marks its styles current)"),
    PrivateName("textual.app:App", "_css_update_count",
                "read the stylesheet's version, which a pane copies when its styles are current"),
    PrivateName("textual.screen:Screen", "_css_update_count",
                "mark a pane's styles current: Textual re-parses the whole CSS for a screen whose count differs"),
    PrivateName("textual.screen:Screen", "_compositor",
                "read the size a pane was laid out at, and render a pane laid out off screen"),
    PrivateName("textual._compositor:Compositor", "size",
                "read the size a screen was last laid out at"),
    PrivateName("textual._compositor:Compositor", "render_update",
                "render a pane laid out off screen, so that its first visit is a repaint", ("full",)),
    PrivateName("textual.screen:Screen", "_layout_required",
                "tell whether a layout was asked for while a pane was hidden"),
    PrivateName("textual.screen:Screen", "_refresh_layout",
                "lay out a pane that is not shown (Textual lays out only the current screen)", ("size",)),
    PrivateName("textual.screen:Screen", "_get_breakpoint_classes",
                "set a pane's breakpoint classes before it is first laid out", ("dimension", "breakpoints")),
    PrivateName("textual.screen:Screen", "_screen_resized",
                "skip laying a pane out again at the size it was laid out at", ("size",),
                hook="tui_ft/ui/screens/pane.py"),
    PrivateName("textual.screen:Screen", "_on_message",
                "drop a ScreenResume that comes when the pane is no longer in front", ("message",),
                hook="tui_ft/ui/screens/pane.py"),
    PrivateName("textual.screen:Screen", "_on_screen_resume",
                "restyle a pane only when the theme changed: Pane's handler runs before this one", ("event",),
                hook="tui_ft/ui/screens/pane.py"),
    PrivateName("textual.widgets:DataTable", "_update_dimensions",
                "start the run table's caches of drawn rows over when its column widths change", ("new_rows",),
                hook="tui_ft/ui/widgets/run_table.py"),
    PrivateName("textual.widgets:DataTable", "_update_count",
                "key DataTable's caches of drawn cells and rows, which do not include the column widths"),
    PrivateName("textual.widgets:Footer", "_bindings_ready",
                "let the key bar show its keys: Footer shows nothing until its bindings_changed sets it"),
    PrivateName("textual.widgets:OptionList", "_move_page",
                "page a list opened a moment ago: before its first layout it raised KeyError (a Select's up then pageup)",
                ("direction",)),
    PrivateName("textual._ansi_sequences", "ANSI_SEQUENCES_KEYS",
                "read alt+1…alt+5 from a terminal that sends ESC 1…ESC 5 as alt+N, not as the macOS characters ¡ ™ £ ¢ ∞"),
    PrivateName("textual_plotext:PlotextPlot", "_get_plotext_theme_name",
                "take plotext's name of the app's theme on the UI thread, for a picture drawn in a worker",
                ("app_theme_name",)),
    PrivateName("textual_plotext.plot:Plot", "_set_size",
                "size a figure as PlotextPlot.render does: plotsize alone leaves resized plots wrong", ("width", "height")),
)


# -- textual.app.App ------------------------------------------------------------------------


def app_laid_out(app: App) -> bool:
    """Whether the app's first screen has been laid out (its stylesheet and theme are set up)."""
    return app._dom_ready  # set by Screen once, when a first screen is laid out


# -- textual.screen.Screen ------------------------------------------------------------------


def mark_styles_current(screen: Screen, app: App) -> None:
    """Record that ``screen`` is styled for the app's stylesheet as it is now."""
    screen._css_update_count = app._css_update_count  # Textual re-parses the CSS for a screen behind


def laid_out_size(screen: Screen) -> Size:
    """The size ``screen`` was last laid out at."""
    return screen._compositor.size  # no public name for the size of the last layout


def layout_pending(screen: Screen) -> bool:
    """Whether a layout of ``screen`` was asked for and not done yet."""
    return screen._layout_required  # set by refresh(layout=True), cleared by the next update


def breakpoint_classes(screen: Screen, dimension: int, breakpoints: list[tuple[int, str]]) -> set[str]:
    """The breakpoint classes that apply to ``dimension`` cells, as Textual computes them on a Resize."""
    return screen._get_breakpoint_classes(dimension, breakpoints)  # Textual's own rule, not a copy of it


def lay_out(screen: Screen, size: Size) -> None:
    """Lay ``screen`` out at ``size``, shown or not."""
    screen._refresh_layout(size)  # Textual's own layout pass, done now rather than when the screen is next shown


def render_offscreen(screen: Screen) -> None:
    """Render every widget of ``screen`` into a frame that is thrown away (its widgets keep their lines)."""
    screen._compositor.render_update(full=True)  # Textual paints only the current screen


# -- textual.widgets ------------------------------------------------------------------------


def restart_table_caches(table: DataTable) -> None:
    """Make a DataTable draw its cells and rows again instead of reusing cached ones."""
    table._update_count += 1  # the key of its caches: a new count starts them over


def set_footer_bindings_ready(footer: Footer) -> None:
    """Let a Footer show its keys, as Footer's own bindings_changed does."""
    footer._bindings_ready = True  # a reactive: Footer composes nothing until it is True


def guard_option_list_paging() -> None:
    """Let pageup/pagedown in a list that is not laid out yet do nothing instead of raising.

    A Select opened with ``up`` and paged with ``pageup`` before its list's first layout raised
    ``KeyError`` in Textual 8.2 (``OptionList._move_page`` reads line numbers made at layout),
    and the dashboard exited (``tests/ui/test_random_keys.py``).
    """
    from textual.widgets import OptionList

    move_page = OptionList._move_page  # Textual's own paging, kept
    if getattr(move_page, "guarded", False):
        return

    def guarded_move_page(self, direction) -> None:
        if self.scrollable_content_region:  # laid out: its lines exist
            move_page(self, direction)

    guarded_move_page.guarded = True
    OptionList._move_page = guarded_move_page


# -- textual._ansi_sequences ----------------------------------------------------------------


class _AltKey(NamedTuple):
    """Stands in for a ``Keys`` member in Textual's table of sequences: the parser reads ``.value``."""

    value: str


def read_escape_digits_as_alt(digits: str) -> None:
    """Make the terminal's ESC + digit (what xterm and tmux send for alt+digit) the key ``alt+digit``.

    Textual's table turns ESC 1 into ``¡`` (what macOS's Option+1 types), so an alt+1 binding
    never fired there, and in a text field the character was typed. A ``£`` typed as such (no
    ESC: Shift+3 on a British keyboard) stays ``£``.
    """
    import importlib

    table = importlib.import_module("textual._ansi_sequences").ANSI_SEQUENCES_KEYS
    for digit in digits:
        table[f"\x1b{digit}"] = (_AltKey(f"alt+{digit}"),)


# -- textual_plotext ------------------------------------------------------------------------


def plotext_theme_name(plot: PlotextPlot, app_theme: str) -> str:
    """plotext's name of the Textual theme ``app_theme`` for ``plot`` (which registers it)."""
    return plot._get_plotext_theme_name(app_theme)  # PlotextPlot.render's own mapping


def set_figure_size(figure: Plot, width: int, height: int) -> None:
    """Size a plotext figure to ``width`` × ``height`` cells, after ``plotsize``."""
    figure._set_size(width, height)  # PlotextPlot.render calls it too: plotsize alone leaves resized plots wrong
