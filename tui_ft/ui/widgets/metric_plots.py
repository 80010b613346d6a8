"""Plots of a run's metrics (textual-plotext), redrawn from the whole history at the plot's width.

Each :class:`MetricPlot` keeps references to full-resolution series; a picture downsamples
them to the points its current width can show (a cost that depends on the width, not on the
history), so a resize redraws the whole history, never a truncated window.

Pictures are drawn in a worker thread. plotext is pure Python and took 10-25 ms a plot
(four a run, up to 100 ms each under training load): drawn in the UI thread, a key pressed
while the cursor's last move was still drawing waited for all four (110-140 ms in
``bench/ui_latency.py``). A plot shows its previous picture until the new one is ready.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from tui_ft.safe_text import clean
from tui_ft.ui import compat
from tui_ft.views.run_monitor import Series

Y_AXIS_WIDTH = 10  # columns plotext spends on the y tick labels
BRAILLE_POINTS_PER_CELL = 2  # the braille marker draws two points per column
KEPT_PICTURES = 8  # a plot's last pictures, for runs the cursor comes back to
# One picture is drawn at a time, whichever plot asks: plotext keeps no shared state that we
# know of, but it is not documented as thread-safe, and one busy thread takes less of the
# UI thread's share of the interpreter than four.
_PLOTEXT = threading.RLock()


@dataclass(frozen=True)
class Curve:
    """One line of a plot: ``key`` from the records of ``kind`` (train or eval)."""

    label: str
    kind: str
    key: str


@dataclass(frozen=True)
class PlotSpec:
    """A plot: its title and the curves it draws; ``overlay`` adds marked runs' first curve."""

    title: str
    curves: tuple[Curve, ...]
    overlay: bool = False


SFT_PLOTS = (
    PlotSpec("Loss", (Curve("train", "train", "loss"), Curve("eval", "eval", "loss")), overlay=True),
    PlotSpec("Perplexity", (Curve("train", "train", "ppl"), Curve("eval", "eval", "ppl"))),
    PlotSpec("Learning rate", (Curve("lr", "train", "lr"),)),
    PlotSpec("Tokens/s", (Curve("tokens/s", "train", "tokens_per_s"),)),
)
DPO_PLOTS = (
    PlotSpec("DPO loss", (Curve("train", "train", "loss"), Curve("eval", "eval", "loss")), overlay=True),
    PlotSpec("Rewards", (Curve("chosen", "train", "rewards_chosen"), Curve("rejected", "train", "rewards_rejected"),
                         Curve("margin", "train", "rewards_margin"))),
    PlotSpec("Reward accuracy", (Curve("train", "train", "rewards_accuracy"), Curve("eval", "eval", "rewards_accuracy"))),
    PlotSpec("Learning rate", (Curve("lr", "train", "lr"),)),
)


def plots_for(method: str) -> tuple[PlotSpec, ...]:
    """The four plots a run of ``method`` shows (DPO plots its rewards instead of perplexity)."""
    return DPO_PLOTS if method == "dpo" else SFT_PLOTS


@dataclass(frozen=True)
class PictureJob:
    """What one picture shows, taken on the UI thread for the thread that draws it.

    ``lines`` holds each curve's label and series (append-only: the poll thread may add
    points while it is drawn, which is harmless).
    """

    width: int
    height: int
    theme: str  # plotext's name of the theme
    title: str
    budget: int  # points per curve
    lines: tuple[tuple[str, Series], ...]


def draw_picture(figure: Plot, job: PictureJob) -> Text:
    """Draw ``job`` on ``figure`` (a plot's own plotext figure) and return the picture."""
    with _PLOTEXT:
        figure.clear_data()
        figure.clear_figure()
        figure.title(job.title if job.lines else f"{job.title} — no data yet")
        for label, points in job.lines:
            shown = points.downsample(job.budget)
            figure.plot([x for x, _ in shown], [y for _, y in shown], label=label, marker="braille")
        if job.lines:
            figure.xlabel("step")
        # What PlotextPlot.render does, with the size and theme taken on the UI thread.
        figure.plotsize(job.width, job.height)
        compat.set_figure_size(figure, job.width, job.height)
        figure.theme(job.theme)
        return Text.from_ansi(figure.build())


class MetricPlot(PlotextPlot):
    """One plot of the selected run, with other runs' curves overlaid when asked."""

    DEFAULT_CSS = """
    MetricPlot {
        height: 1fr;
        min-height: 8;
    }
    """

    class PictureReady(Message):
        """A picture drawn in the worker thread, for what ``shows`` showed at ``lengths``."""

        def __init__(self, shows: tuple, lengths: tuple, picture: Text):
            super().__init__()
            self.shows, self.lengths, self.picture = shows, lengths, picture

    def __init__(self, *, id: str | None = None, classes: str | None = None):  # noqa: A002 - Textual's name
        super().__init__(id=id, classes=classes)
        self.spec: PlotSpec | None = None
        self.lines: list[tuple[str, Series]] = []  # full resolution, for render and tests
        # The last pictures and what they showed. A screen coming back, a focus move or a poll
        # with nothing new repaints every widget, and the cursor moves back and forth between
        # runs: a plot shown before hands back its picture instead of drawing it again.
        self._rendered: OrderedDict[tuple, tuple[tuple, Text]] = OrderedDict()
        self._shown: Text | None = None  # the picture on screen, shown until the next is ready
        self._drawing: tuple | None = None  # the (shows, lengths) being drawn

    def show(self, spec: PlotSpec, series: dict[tuple[str, str], Series],
             overlays: dict[str, dict[tuple[str, str], Series]] | None = None) -> None:
        """Draw ``spec`` from the selected run's ``series``; ``overlays`` maps other runs to theirs."""
        self.spec = spec
        lines = [(curve.label, series.get((curve.kind, curve.key))) for curve in spec.curves]
        if spec.overlay:
            first = spec.curves[0]
            # Other runs' names label their curves: plotext's output is read as ANSI, so no escapes in them.
            lines += [(clean(name), other.get((first.kind, first.key))) for name, other in (overlays or {}).items()]
        self.lines = [(label, points) for label, points in lines if points]
        self.refresh()

    def point_budget(self) -> int:
        """How many points per curve the current width can show."""
        return max(2, (self.size.width - Y_AXIS_WIDTH) * BRAILLE_POINTS_PER_CELL)

    def render_key(self) -> tuple[tuple, tuple]:
        """What the picture shows (size, theme, title, each curve's series) and how much of it.

        The series themselves (compared by identity) rather than their ids: a key in the cache
        keeps its series alive, so an id is never reused for another run's series. The lengths
        are kept apart: a live run's plot grows, and its older pictures are replaced, not kept.
        """
        shows = tuple((label, points) for label, points in self.lines)
        return (self.size, self.app.theme, self.spec, shows), tuple(len(points) for _, points in self.lines)

    def _picture(self, shows: tuple, lengths: tuple) -> Text | None:
        """The kept picture of ``shows`` at ``lengths``, if there is one."""
        cached = self._rendered.get(shows)
        return cached[1] if cached is not None and cached[0] == lengths else None

    def render(self):
        shows, lengths = self.render_key()
        cached = self._rendered.get(shows)
        if cached is not None and cached[0] == lengths:
            self._rendered.move_to_end(shows)  # the most recent last
            self._shown = cached[1]
        else:
            self.prepare()
            if cached is not None:
                self._shown = cached[1]  # the same curves, shorter: a live run's last picture
        if self._shown is None:
            return ""
        picture = self._shown.copy()  # a copy: Textual may style the text it is handed
        picture.no_wrap, picture.overflow = True, "crop"  # an older picture may be wider than the plot now
        return picture

    @property
    def is_drawing(self) -> bool:
        """Whether a picture is being drawn for what the plot shows, or waits to be."""
        if self._drawing is not None:
            return True
        return bool(self.size.area) and self.spec is not None and self._picture(*self.render_key()) is None

    def prepare(self) -> None:
        """Start drawing the picture of what the plot shows now, unless it is drawn or being drawn."""
        if not self.size.area or self.spec is None:
            return  # not laid out yet: no size to draw at
        shows, lengths = self.render_key()
        if self._picture(shows, lengths) is not None or self._drawing == (shows, lengths):
            return
        self._drawing = (shows, lengths)
        width, height = self.size
        job = PictureJob(width, height, compat.plotext_theme_name(self, self.app.theme), self.spec.title,
                         self.point_budget(), tuple(self.lines))
        # Not an exclusive worker: cancelling one fails everyone who waits for the app's workers.
        # A draw that is no longer wanted skips itself instead (:meth:`_draw`).
        self.run_worker(lambda: self._draw(job, shows, lengths), thread=True, group="plot-picture",
                        exit_on_error=False, description=f"Drawing the {self.spec.title} plot")

    def _draw(self, job: PictureJob, shows: tuple, lengths: tuple) -> None:
        """In the worker thread: draw ``job`` and hand the picture to the UI thread.

        Skipped when the plot asked for another picture since (the cursor moved on): draws wait
        for one another, and only the last one asked for is worth its 10-100 ms.
        """
        with _PLOTEXT:
            if self._drawing != (shows, lengths):
                return
            try:
                picture = draw_picture(self.plt, job)
            except Exception as error:  # noqa: BLE001 - a plot that cannot be drawn says why, in place
                picture = Text(f"{job.title}: could not draw the plot ({error})", style="bold red")
        if not get_current_worker().is_cancelled:
            self.post_message(self.PictureReady(shows, lengths, picture))

    def on_metric_plot_picture_ready(self, message: PictureReady) -> None:
        message.stop()
        if self._drawing == (message.shows, message.lengths):
            self._drawing = None
        self._rendered.pop(message.shows, None)
        self._rendered[message.shows] = (message.lengths, message.picture)
        while len(self._rendered) > KEPT_PICTURES:
            self._rendered.popitem(last=False)
        self.refresh()
