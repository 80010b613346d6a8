"""The base of the dashboard's five panes: a Screen that comes back without restyling itself.

Textual restyles every widget of a screen when it is shown again (``switch_mode`` sends a
``ScreenResume`` asking for it), in case the CSS or theme changed while it was hidden. That
was 40-90 ms a pane switch on the 2-core machine (``bench/ui_latency.py``), for a pane with a
form of 70 widgets. Here it happens only when the theme did change: the CSS itself is
refreshed by ``switch_mode`` when it changed, and class changes restyle their widgets at once,
shown or not.

A pane also records that its styles are current once it is shown. Textual's
``refresh_css`` marks only a *mounted* screen as up to date, and a mode's screen is not
mounted yet when ``switch_mode`` refreshes the CSS for it; left stale, every later switch to
that pane re-parsed the whole stylesheet (150-400 ms).
"""

from __future__ import annotations

from textual import events, on
from textual.actions import parse
from textual.geometry import Size
from textual.screen import Screen
from textual.types import NoActiveAppError
from textual.widget import Widget
from textual.widgets import Input, Select, TextArea
from textual.worker import Worker, WorkerState

from tui_ft.safe_text import clean
from tui_ft.ui import compat


def is_text_field(widget: Widget | None) -> bool:
    """Whether ``widget`` is a field the user fills in (text, or a closed list): escape leaves it."""
    return isinstance(widget, (Input, TextArea, Select))


def typing_keys(widget: Widget | None) -> bool:
    """Whether ``widget`` takes a digit pressed now (an Input, an open list's search).

    The app's digit keys leave it to such a widget: the Chat prompt among them, which itself
    switches panes on a digit while it is empty (``widgets/chat_prompt.py``).
    """
    return widget is not None and widget.check_consume_key("1", "1")


def digits_type(widget: Widget | None) -> bool:
    """Whether a digit pressed now is typed (not a pane switch): for the keys shown on screen."""
    return typing_keys(widget) and not getattr(widget, "digits_switch_panes", False)


class Pane(Screen):
    """A dashboard pane (one mode of the app)."""

    _styled_theme: str | None = None
    TYPING_PANE = False
    """Typing is the pane's only job (Chat): its text field keeps the focus when the pane is left."""

    def leave_fields(self) -> None:
        """The pane is being left: take the focus out of a form field.

        Coming back, the field may be scrolled out of sight (the Train form at 80×24), and the
        next key would have been typed into it unseen.
        """
        if not self.TYPING_PANE and is_text_field(self.focused):
            self.set_focus(None)

    def on_key(self, event: events.Key) -> None:
        """Say why a key of this pane does nothing now, rather than nothing at all."""
        reason = self.refused_key(event.key)
        if reason:
            self.notify(reason, severity="warning", timeout=4)

    def refused_key(self, key: str) -> str | None:
        """Why ``key``'s action is unavailable now (:meth:`why_not`), or None when it is available."""
        for binding in self._bindings.key_to_bindings.get(key, ()):
            _, action, parameters = parse(binding.action)
            if not self.check_action(action, parameters):
                return self.why_not(action)
        return None

    def why_not(self, action: str) -> str | None:
        """One sentence: why ``action`` cannot be done now. None (the default) says nothing."""
        return None

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Textual's ``notify``, but plain text: no markup, no escape sequences.

        A pane's notifications carry run and model names, file paths and error lines read from
        files someone else may have written: ``colleague-model[/x]`` parsed as markup raised
        ``MarkupError`` when the toast was drawn, and the dashboard exited.
        """
        super().notify(clean(message), title=clean(title), severity=severity, timeout=timeout, markup=markup)

    @on(Worker.StateChanged)
    def report_failed_worker(self, event: Worker.StateChanged) -> None:
        """Every pane's failed worker, in one place: the pane tidies up, then one line says what failed.

        A worker that fails in an unforeseen way (the tokenizer's process died twice, a poll hit
        an unreadable file) must not leave its view on "Loading…" nor end the dashboard.
        """
        if event.state != WorkerState.ERROR:
            return
        self.worker_failed(event.worker)
        error = event.worker.error
        line = (str(error).splitlines() or [type(error).__name__])[0]
        self.notify(f"{event.worker.description}: {line}", severity="error")

    def worker_failed(self, worker: Worker) -> None:
        """Put the pane back in order after ``worker`` raised (a flag, a status line); nothing by default."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Textual refreshes the whole app's CSS when a mode's new screen is not marked current
        # (it starts at -1): a reparse, and every widget of the pane in front styled again,
        # 100-300 ms a pane built in the background, while keys waited. A new pane's widgets
        # are styled as they mount, with the stylesheet as it is now: it is current. Not the
        # first pane: at start, that refresh is what sets the theme's variables.
        try:
            app = self.app
        except NoActiveAppError:  # made outside an app
            return
        if compat.app_laid_out(app):  # a first screen has been laid out: the stylesheet is set up
            compat.mark_styles_current(self, app)
            # Likewise its first ScreenResume need not restyle what mounting styles with this
            # theme (the Train pane: 130-210 ms of a background build, keys waiting).
            self._styled_theme = app.theme

    async def _on_message(self, message) -> None:  # a private hook: tui_ft/ui/compat.py
        # A resume that comes when the pane is no longer in front is stale: a pane built in the
        # background is switched to and away in one batch, and one switched past quickly. Its
        # handlers laid the whole pane out (the Train form: 120-200 ms while keys waited, and
        # the app lays a prebuilt pane out again off screen) and reloaded what mounting had
        # just loaded. The pane gets a fresh resume when it is shown.
        if isinstance(message, events.ScreenResume) and not self.is_current:
            return
        await super()._on_message(message)

    def _on_screen_resume(self, event: events.ScreenResume) -> None:  # a private hook: tui_ft/ui/compat.py
        theme = self.app.theme
        if event.refresh_styles and self._styled_theme == theme:
            event.refresh_styles = False
        self._styled_theme = theme
        # switch_mode has refreshed the CSS (when it changed) before this event: it is current.
        compat.mark_styles_current(self, self.app)
        # No super() call: Textual calls every class's handler of an event, Screen's next
        # (calling it here too ran it twice a switch).

    def _screen_resized(self, size: Size) -> None:  # a private hook: tui_ft/ui/compat.py
        # Textual lays a screen out again each time it is switched to (switch_mode calls this),
        # even at the size it was laid out at with nothing changed: 25-40 ms of each visit to
        # the Train form (180 widgets). A layout asked for while the pane was hidden is queued
        # (``_layout_required``) and done at the first update after the switch either way.
        if size == compat.laid_out_size(self) and not compat.layout_pending(self):
            return
        super()._screen_resized(size)

    def set_breakpoint_classes(self, size: Size) -> None:
        """Set the breakpoint classes (``-tall``, ``-short``…) for a screen of ``size``.

        Textual sets them when a Resize reaches the screen, after laying it out; a pane laid out
        off screen before that was laid out for the wrong breakpoint (the Runs pane with one
        plot instead of four), and only a shown screen is laid out again when they change.
        """
        app = self.app
        horizontal = (app.HORIZONTAL_BREAKPOINTS if self.HORIZONTAL_BREAKPOINTS is None
                      else self.HORIZONTAL_BREAKPOINTS) or []
        vertical = (app.VERTICAL_BREAKPOINTS if self.VERTICAL_BREAKPOINTS is None else self.VERTICAL_BREAKPOINTS) or []
        if not (horizontal or vertical):
            return
        classes = dict.fromkeys((name for _, name in horizontal + vertical), False)
        for name in [*compat.breakpoint_classes(self, size.width, horizontal),
                     *compat.breakpoint_classes(self, size.height, vertical)]:
            classes[name] = True
        self.update_classes(classes, animate=False)
