"""The tui_ft dashboard: five panes as Textual modes, a help screen and the command palette."""

from __future__ import annotations

import gc
import sys
from functools import partial
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from tui_ft.ui import compat, keys
from tui_ft.ui.commands import DashboardCommands
from tui_ft.ui.screens.benchmark import BenchmarkScreen
from tui_ft.ui.screens.chat import ChatScreen
from tui_ft.ui.screens.datasets import DatasetsScreen
from tui_ft.ui.screens.help import HelpScreen, warm_help_table
from tui_ft.ui.screens.pane import Pane, is_text_field, typing_keys
from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.screens.train import TrainScreen


class TuiFtApp(App):
    """Fine-tune language models from a terminal."""

    TITLE = "tui_ft"
    CSS_PATH = "app.tcss"
    MODES = {
        "datasets": DatasetsScreen,
        "train": TrainScreen,
        "runs": RunsScreen,
        "chat": ChatScreen,
        "benchmark": BenchmarkScreen,
    }
    DEFAULT_MODE = "datasets"
    BINDINGS = keys.APP_BINDINGS
    COMMANDS = App.COMMANDS | {DashboardCommands}  # Textual's own (theme, quit, screenshot) too
    # Panes built in the background once the first pane is up: composing and styling a pane's
    # widgets made its first visit slow (the Train form most), so a first visit then costs
    # what a later one does (figures: bench/README.md). Chat is left out: it loads a model
    # when it is built.
    PREBUILT_MODES = ("train", "runs", "benchmark")
    PREBUILD_DELAY_S = 0.1  # after the first paint, and between panes: keys in between go first
    # Python's full garbage collection walks every object the app holds, hundreds of thousands
    # once a pane has loaded a tokenizer (transformers and torch come with it), and a key
    # pressed during a collection waits for it. Objects that live as long as the app are taken
    # out of the collector's sight (gc.freeze) whenever modules were imported since the last
    # look, which is when the heap grows by a step (before and after: bench/README.md).
    # Reference counting still frees frozen objects; only reference cycles among them wait
    # until exit.
    FREEZE_HEAP_EVERY_S: float | None = 1.0

    def __init__(self, home: Path, model_ref: str = "default"):
        compat.read_escape_digits_as_alt("".join(key for key, _, _ in keys.PANES))  # alt+1…alt+5 in xterm and tmux
        compat.guard_option_list_paging()  # a list paged before its first layout raised
        super().__init__()
        self.home = Path(home)
        self.model_ref = model_ref  # the model panes start on
        self.sub_title = str(self.home)
        self._to_prebuild = list(self.PREBUILT_MODES)
        self._prebuild_timer = None
        self._unpainted = None  # a pane built in the background, laid out at the next tick
        self._switching_to_built_pane = False
        self._prebuilding = False
        self._modules_when_frozen = 0

    def on_mount(self) -> None:
        self._prebuild_timer = self.set_timer(self.PREBUILD_DELAY_S, self.prebuild_next_pane)
        if self.FREEZE_HEAP_EVERY_S:
            self.set_interval(self.FREEZE_HEAP_EVERY_S, self.freeze_long_lived_objects)

    def freeze_long_lived_objects(self) -> bool:
        """Freeze the heap when modules were imported since the last freeze; True when it did."""
        modules = len(sys.modules)
        if modules == self._modules_when_frozen:
            return False
        gc.freeze()
        self._modules_when_frozen = modules
        return True

    def prebuild_next_pane(self) -> None:
        """Build one pane that was never shown, paint the one built last time, then reschedule.

        A pane is built by switching to its mode and straight back in one batch, so nothing
        else is painted; its widgets are then composed, mounted and styled by their own
        message loops while the current pane stays in front. At the next tick, once they are
        mounted, it is laid out and rendered off screen (:meth:`paint_offscreen`).
        """
        if not self.is_running:
            return  # closing: a new pane now would be torn down half-built
        if len(self.screen_stack) > 1:  # a dialog is open: switching away would hide it for a frame
            self._prebuild_timer = self.set_timer(self.PREBUILD_DELAY_S, self.prebuild_next_pane)
            return
        if self._unpainted is not None:
            self.paint_offscreen(self._unpainted)
            self._unpainted = None
        while self._to_prebuild:
            mode = self._to_prebuild.pop(0)
            if mode != self.current_mode and not self.is_mode_built(mode):
                current = self.current_mode
                with self.batch_update():
                    self._prebuilding = True  # not the user's switch: the pane in front keeps its focus
                    try:
                        self.switch_mode(mode)
                        self.switch_mode(current)
                    finally:
                        self._prebuilding = False
                self._unpainted = self.get_screen_stack(mode)[0]
                break
        if self._to_prebuild or self._unpainted is not None:
            self._prebuild_timer = self.set_timer(self.PREBUILD_DELAY_S, self.prebuild_next_pane)
        else:  # every pane is built: the help screen's table last
            self.run_worker(partial(warm_help_table, self.all_bindings(), *self.size), thread=True,
                            exit_on_error=False, description="Laying out the help screen's keys")

    def paint_offscreen(self, screen) -> None:
        """Lay out and render a pane that is not shown, so that its first visit is a repaint.

        A prebuilt pane had never been laid out: its first visit arranged and rendered every
        widget for the first time (the Train form and the Runs pane's plots most: bench/README.md).
        The frame made here is thrown away; the widgets keep their sizes and rendered lines.
        """
        if screen.is_current or not screen.is_attached or screen in self.screen_stack:
            return
        if isinstance(screen, Pane):
            screen.set_breakpoint_classes(self.size)
        compat.lay_out(screen, self.size)  # Textual's own layout pass; it paints only a current screen
        compat.render_offscreen(screen)

    def switch_mode(self, mode: str):
        """Show the pane of ``mode``; a pane already built is shown in the next frame."""
        if isinstance(self.screen, Pane) and mode != self.current_mode and not self._prebuilding:
            self.screen.leave_fields()  # coming back, no key lands in a field scrolled out of sight
        self._switching_to_built_pane = self.is_mode_built(mode)
        try:
            return super().switch_mode(mode)
        finally:
            self._switching_to_built_pane = False

    def delay_update(self, delay: float = 0.05) -> None:
        # Textual holds every frame for a moment after a mode switch, to hide a new pane's widgets
        # appearing one by one. A built pane has nothing to hide, and that hold was most of a
        # pane switch (bench/README.md).
        if not self._switching_to_built_pane:
            super().delay_update(delay)

    def is_mode_built(self, mode: str) -> bool:
        """True when the pane of ``mode`` was built (shown, or prebuilt)."""
        try:
            return bool(self.get_screen_stack(mode))
        except KeyError:  # Textual makes a mode's stack on its first switch
            return False

    async def action_quit(self) -> None:
        """Quit once no pane is half-built (runs and evaluation jobs keep going)."""
        self._to_prebuild.clear()
        if self._prebuild_timer is not None:
            self._prebuild_timer.stop()
        await self.panes_settled()
        self.exit()

    def get_key_display(self, binding: Binding) -> str:
        # F1 as keyboards print it (Textual writes f1).
        display = super().get_key_display(binding)
        return display.upper() if display[:1] == "f" and display[1:].isdigit() else display

    # -- pane switching ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pane_key", "show_pane", "next_pane"):
            # Not from a dialog: its pane would be hidden with the dialog still open in it.
            if not isinstance(self.screen, Pane):
                return False
            # A digit is the field's while it types one: False lets the key through to it.
            return not (action == "pane_key" and typing_keys(self.screen.focused))
        if action == "leave_field":
            return isinstance(self.screen, Pane) and is_text_field(self.screen.focused)
        return True

    async def action_pane_key(self, mode: str) -> None:
        """A digit outside text fields: show the pane of ``mode``."""
        await self.action_show_pane(mode)

    async def action_show_pane(self, mode: str) -> None:
        """Show the pane of ``mode`` (``alt+N`` and the tab strip: from anywhere)."""
        if mode != self.current_mode:
            await self.switch_mode(mode)

    async def action_next_pane(self, step: int) -> None:
        """Show the pane ``step`` places to the right in the tab strip (negative: to the left)."""
        modes = list(self.MODES)
        await self.action_show_pane(modes[(modes.index(self.current_mode) + step) % len(modes)])

    def action_leave_field(self) -> None:
        """Take the focus out of the text field, so keys act on the pane again."""
        self.screen.set_focus(None)

    async def action_quit_outside_fields(self) -> None:
        """Quit on ``q`` unless a form field has focus, where ``q`` is easy to hit by accident."""
        from textual.widgets import Input, Select, TextArea

        focused = self.focused
        if focused is not None and any(isinstance(w, (Input, Select, TextArea)) for w in focused.ancestors_with_self):
            return
        await self.action_quit()

    async def panes_settled(self, timeout: float = 3.0) -> None:
        """Wait (at most ``timeout`` seconds) until every built pane has mounted all its widgets.

        Closing the app while a pane is still composing (just after start, when panes are
        built in the background, or right after a first visit) made widgets' mount handlers
        look for children that shutdown had already removed: a traceback on the way out.
        """
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            not all(widget.is_mounted for widget in stack[0].walk_children(with_self=True))
            for mode in self.MODES
            if self.is_mode_built(mode) and (stack := self.get_screen_stack(mode))
        ):
            await asyncio.sleep(0.02)

    def action_help(self) -> None:
        """Show every key of every pane."""
        if isinstance(self.screen, HelpScreen):
            return
        # One help screen per pane, kept: building its table of every key was most of what `?`
        # took (bench/README.md). One per pane: a screen can be in one mode's stack only.
        name = f"help-{self.current_mode}"
        if not self.is_screen_installed(name):
            self.install_screen(HelpScreen(self.all_bindings()), name)
        self.push_screen(name)

    def all_bindings(self) -> list[tuple[str, list[Binding]]]:
        """The bindings of the app and of each pane, grouped by where they apply."""
        groups = [("Everywhere", list(self.BINDINGS))]
        for mode, screen in self.MODES.items():
            groups.append((mode.capitalize(), list(getattr(screen, "BINDINGS", []))))
        return groups


def run_dashboard(home: Path) -> int:
    """Open the dashboard on workspace ``home``; returns the exit status."""
    TuiFtApp(home).run()
    return 0
