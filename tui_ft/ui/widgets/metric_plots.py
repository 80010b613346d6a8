"""Plots of a run's metrics (textual-plotext), redrawn from the whole history at the plot's width.

Each :class:`MetricPlot` keeps references to full-resolution series; at render time it
downsamples them to the points its current width can show (a cost that depends on the
width, not on the history), so a resize redraws the whole history, never a truncated window.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from textual_plotext import PlotextPlot

from tui_ft.engine.run_monitor import Series

Y_AXIS_WIDTH = 10  # columns plotext spends on the y tick labels
BRAILLE_POINTS_PER_CELL = 2  # the braille marker draws two points per column
KEPT_PICTURES = 8  # a plot's last pictures, for runs the cursor comes back to


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


class MetricPlot(PlotextPlot):
    """One plot of the selected run, with other runs' curves overlaid when asked."""

    DEFAULT_CSS = """
    MetricPlot {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None):  # noqa: A002 - Textual's name
        super().__init__(id=id, classes=classes)
        self.spec: PlotSpec | None = None
        self.lines: list[tuple[str, Series]] = []  # full resolution, for render and tests
        # The last pictures and what they showed. A screen coming back, a focus move or a poll
        # with nothing new repaints every widget, and the cursor moves back and forth between
        # runs; plotext takes 10-20 ms a plot to rebuild (up to 100 ms under load), so a plot
        # shown before hands back its picture instead.
        self._rendered: OrderedDict[tuple, tuple[tuple, object]] = OrderedDict()

    def show(self, spec: PlotSpec, series: dict[tuple[str, str], Series],
             overlays: dict[str, dict[tuple[str, str], Series]] | None = None) -> None:
        """Draw ``spec`` from the selected run's ``series``; ``overlays`` maps other runs to theirs."""
        self.spec = spec
        lines = [(curve.label, series.get((curve.kind, curve.key))) for curve in spec.curves]
        if spec.overlay:
            first = spec.curves[0]
            lines += [(name, other.get((first.kind, first.key))) for name, other in (overlays or {}).items()]
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

    def render(self):
        shows, lengths = self.render_key()
        cached = self._rendered.pop(shows, None)
        picture = cached[1] if cached is not None and cached[0] == lengths else self._build()
        self._rendered[shows] = (lengths, picture)  # the most recent last
        while len(self._rendered) > KEPT_PICTURES:
            self._rendered.popitem(last=False)
        return picture.copy()  # a copy: Textual may style the text it is handed

    def _build(self):
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        title = self.spec.title if self.spec else ""
        if not self.lines:
            title += " — no data yet"
        plt.title(title)
        budget = self.point_budget()
        for label, points in self.lines:
            shown = points.downsample(budget)
            plt.plot([x for x, _ in shown], [y for _, y in shown], label=label, marker="braille")
        if self.lines:
            plt.xlabel("step")
        return super().render()
