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

from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from tui_ft.safe_text import clean
from tui_ft.ui import compat
from tui_ft.views import plot_axes
from tui_ft.views.run_monitor import Series

Y_AXIS_WIDTH = 10  # columns plotext spends on the y tick labels
BRAILLE_POINTS_PER_CELL = 2  # the braille marker draws two points per column
KEPT_PICTURES = 8  # a plot's last pictures, for runs the cursor comes back to
# One picture is drawn at a time, whichever plot asks: plotext keeps no shared state that we
# know of, but it is not documented as thread-safe, and one busy thread takes less of the
# UI thread's share of the interpreter than four.
_PLOTEXT = threading.RLock()


Color = tuple[int, int, int]
BLUE, ORANGE, GREEN, RED, PURPLE = (0, 130, 200), (245, 130, 48), (60, 180, 75), (230, 25, 75), (145, 30, 180)
RAW = (128, 128, 128)  # the unsmoothed curve, faint behind its moving average
OVERLAY_COLORS = ((70, 240, 240), (240, 50, 230), (180, 225, 40), (255, 225, 25), (170, 110, 40), (0, 128, 128))
"""Marked runs' curves, in marking order: the colours of textual-plotext's sequence that no curve above uses."""


@dataclass(frozen=True)
class Curve:
    """One line of a plot: ``key`` from the records of ``kind`` (train or eval).

    ``smooth``: drawn as its moving average with the raw points faint behind, while smoothing
    is on (per-step values are noisy; evaluations and the learning rate are not).
    """

    label: str
    kind: str
    key: str
    color: Color = BLUE
    smooth: bool = False


@dataclass(frozen=True)
class PlotSpec:
    """A plot: its title and the curves it draws; ``overlay`` adds marked runs' first curve."""

    title: str
    curves: tuple[Curve, ...]
    overlay: bool = False


SFT_PLOTS = (
    PlotSpec("Loss", (Curve("train", "train", "loss", BLUE, True), Curve("eval", "eval", "loss", ORANGE)), overlay=True),
    PlotSpec("Perplexity", (Curve("train", "train", "ppl", BLUE, True), Curve("eval", "eval", "ppl", ORANGE))),
    PlotSpec("Learning rate", (Curve("lr", "train", "lr", PURPLE),)),
    PlotSpec("Tokens/s", (Curve("tokens/s", "train", "tokens_per_s", GREEN, True),)),
)
DPO_PLOTS = (
    PlotSpec("DPO loss", (Curve("train", "train", "loss", BLUE, True), Curve("eval", "eval", "loss", ORANGE)), overlay=True),
    PlotSpec("Rewards", (Curve("chosen", "train", "rewards_chosen", GREEN, True),
                         Curve("rejected", "train", "rewards_rejected", RED, True),
                         Curve("margin", "train", "rewards_margin", BLUE, True))),
    PlotSpec("Reward accuracy", (Curve("train", "train", "rewards_accuracy", BLUE, True),
                                 Curve("eval", "eval", "rewards_accuracy", ORANGE))),
    PlotSpec("Learning rate", (Curve("lr", "train", "lr", PURPLE),)),
)


REWARD_PLOTS = (
    PlotSpec("Reward model loss", (Curve("train", "train", "loss", BLUE, True), Curve("eval", "eval", "loss", ORANGE)),
             overlay=True),
    PlotSpec("Accuracy", (Curve("train", "train", "accuracy", BLUE, True), Curve("eval", "eval", "accuracy", ORANGE))),
    PlotSpec("Margin", (Curve("train", "train", "margin", BLUE, True), Curve("eval", "eval", "margin", ORANGE))),
    PlotSpec("Learning rate", (Curve("lr", "train", "lr", PURPLE),)),
)


def plots_for(method: str) -> tuple[PlotSpec, ...]:
    """The four plots a run of ``method`` shows (DPO and a reward model plot their own measures, not perplexity)."""
    return {"dpo": DPO_PLOTS, "reward": REWARD_PLOTS}.get(method, SFT_PLOTS)


@dataclass(frozen=True)
class Line:
    """A curve as drawn: its label, colour, series, and whether it is smoothed."""

    label: str
    color: Color
    points: Series
    smooth: bool = False


@dataclass(frozen=True)
class PictureJob:
    """What one picture shows, taken on the UI thread for the thread that draws it.

    ``lines``' series are append-only: the poll thread may add points while it is drawn, which
    is harmless.
    """

    width: int
    height: int
    theme: str  # plotext's name of the theme
    title: str
    budget: int  # points per curve
    lines: tuple[Line, ...]
    smoothing: bool = True


PLOT_FRAME_ROWS = 4  # plotext's rows around the data: the two borders, the x tick labels, the x label
LEGEND_ROWS = 1  # our own line above the plot: the title and the legend


def legend(job: PictureJob) -> Text:
    """The title and each curve's colour, name and latest value, on the line above the plot.

    Drawn by us rather than by plotext, which puts its legend on the top rows of the data and
    hides the curves' peaks under it.
    """
    header = Text(job.title if job.lines else f"{job.title} — no data yet", style="bold", no_wrap=True,
                  overflow="ellipsis")
    for line in job.lines:
        latest = line.points.values[len(line.points) - 1]
        header.append("  ━ ", style=Style(color=RichColor.from_rgb(*line.color)))
        header.append(f"{line.label} {format_value(latest)}")
    if job.smoothing and any(line.smooth for line in job.lines):
        header.append("  ━ ", style=Style(color=RichColor.from_rgb(*RAW)))
        header.append("raw", style="dim")
    return header


def format_value(value: float) -> str:
    """A latest value for the legend: four significant digits."""
    return f"{value:.4g}"


def draw_picture(figure: Plot, job: PictureJob) -> Text:
    """Draw ``job`` on ``figure`` (a plot's own plotext figure) and return the picture."""
    with _PLOTEXT:
        figure.clear_data()
        figure.clear_figure()
        height = max(PLOT_FRAME_ROWS + 2, job.height - LEGEND_ROWS)
        drawn = []  # (xs, ys, colour), the faint raw curves first so the others draw over them
        for line in job.lines:
            if line.smooth and job.smoothing:
                drawn.insert(0, (line.points.downsample(job.budget), RAW))
            drawn.append((line.points.downsample(job.budget, smoothed=line.smooth and job.smoothing), line.color))
        for points, color in drawn:
            figure.plot([x for x, _ in points], [y for _, y in points], marker="braille", color=color)
        if job.lines:
            set_axes(figure, [point for points, _ in drawn for point in points], job.width, height)
            figure.xlabel("step")
        # What PlotextPlot.render does, with the size and theme taken on the UI thread.
        figure.plotsize(job.width, height)
        compat.set_figure_size(figure, job.width, height)
        figure.theme(job.theme)
        picture = legend(job)
        picture.append("\n")
        picture.append_text(Text.from_ansi(figure.build()))
        return picture


def set_axes(figure: Plot, points: list[tuple[float, float]], width: int, height: int) -> None:
    """Whole-step x ticks, and y ticks that each fall on a row, evenly spaced (:mod:`plot_axes`)."""
    steps = [x for x, _ in points]
    x_axis = plot_axes.step_axis(min(steps), max(steps), max(2, (width - Y_AXIS_WIDTH) // 10))
    y_axis = plot_axes.row_aligned_axis(*plot_axes.value_range([y for _, y in points]), height - PLOT_FRAME_ROWS)
    figure.xlim(x_axis.low, x_axis.high)
    figure.xticks(list(x_axis.ticks), list(x_axis.labels))
    figure.ylim(y_axis.low, y_axis.high)
    figure.yticks(list(y_axis.ticks), list(y_axis.labels))


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
        self.lines: list[Line] = []  # full resolution, for render and tests
        self.smoothing = True  # train curves as their moving average, the raw points faint behind
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
        lines = [Line(curve.label, curve.color, series.get((curve.kind, curve.key)), curve.smooth)
                 for curve in spec.curves]
        if spec.overlay:
            first = spec.curves[0]
            lines += [Line(clean(name), OVERLAY_COLORS[index % len(OVERLAY_COLORS)], other.get((first.kind, first.key)),
                           first.smooth)
                      for index, (name, other) in enumerate((overlays or {}).items())]
        self.lines = [line for line in lines if line.points]
        self.refresh()

    def series(self) -> dict[str, Series]:
        """Each curve's series by its label."""
        return {line.label: line.points for line in self.lines}

    def set_smoothing(self, smoothing: bool) -> None:
        """Draw train curves smoothed (with the raw points faint behind) or raw only."""
        self.smoothing = smoothing
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
        shows = tuple(self.lines)
        return (self.size, self.app.theme, self.spec, self.smoothing, shows), tuple(len(line.points) for line in self.lines)

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
                         self.point_budget(), tuple(self.lines), self.smoothing)
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
