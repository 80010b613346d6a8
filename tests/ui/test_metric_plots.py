"""The Runs pane's plot pictures: a legend outside the data, even row-aligned y ticks, whole-step
x ticks, a scale for one point, and smoothed per-step curves with the raw ones faint behind."""

from __future__ import annotations

import math
import random
import re

import pytest
from textual_plotext.plot import Plot

from tui_ft.ui.widgets.metric_plots import BLUE, ORANGE, RAW, Line, PictureJob, draw_picture
from tui_ft.views import plot_axes
from tui_ft.views.run_monitor import SMOOTHING, Series

FRAME_TOP, FRAME_BOTTOM = "┌", "└"


def noisy_loss(steps: int, seed: int = 0) -> Series:
    rng = random.Random(seed)
    return Series([(step, 3.7 * math.exp(-step / 15) + rng.random() * 0.4) for step in range(1, steps + 1)])


def picture(lines: tuple[Line, ...], width: int = 70, height: int = 14, smoothing: bool = True, title: str = "Loss"):
    job = PictureJob(width, height, "textual-default", title, 2 * (width - 10), lines, smoothing)
    return draw_picture(Plot(), job)


def y_labels(text: str) -> list[tuple[int, float]]:
    """(row, value) of every labelled y tick, top to bottom."""
    rows = text.splitlines()
    return [(index, float(match.group(1))) for index, row in enumerate(rows)
            if (match := re.match(r"\s*(-?[0-9.]+(?:e-?[0-9]+)?)┤", row))]


def x_labels(text: str) -> list[str]:
    rows = text.splitlines()
    bottom = next(index for index, row in enumerate(rows) if row.lstrip().startswith(FRAME_BOTTOM))
    return rows[bottom + 1].split()


def test_the_legend_is_a_line_of_its_own_above_the_data():
    train, evals = noisy_loss(60), Series([(12, 2.3), (24, 1.5), (36, 1.1)])
    text = picture((Line("train", BLUE, train, True), Line("eval", ORANGE, evals))).plain
    rows = text.splitlines()
    assert rows[0].startswith("Loss") and "━ train" in rows[0] and "━ eval 1.1" in rows[0] and "━ raw" in rows[0]
    assert rows[1].lstrip().startswith(FRAME_TOP)  # the frame starts on the next line
    inside = "\n".join(rows[2:])
    assert "train" not in inside and "eval" not in inside  # nothing written over the data
    assert f"train {train.values[-1]:.4g}" in rows[0]  # the latest raw value


@pytest.mark.parametrize("height", [8, 10, 14, 19, 25])
def test_y_ticks_are_evenly_spaced_rows_and_values(height):
    text = picture((Line("train", BLUE, noisy_loss(40), True),), height=height).plain
    labels = y_labels(text)
    assert len(labels) >= 2, text
    row_gaps = {b[0] - a[0] for a, b in zip(labels, labels[1:], strict=False)}
    value_gaps = {round(a[1] - b[1], 9) for a, b in zip(labels, labels[1:], strict=False)}
    assert len(row_gaps) == 1 and len(value_gaps) == 1, text


def test_x_ticks_are_whole_steps():
    text = picture((Line("train", BLUE, noisy_loss(10), True),)).plain
    labels = x_labels(text)
    assert labels and all(label.isdigit() for label in labels), text
    assert int(labels[-1]) <= 10


def test_one_point_has_a_scale_around_its_value():
    text = picture((Line("lr", BLUE, Series([(1, 2e-4)])),), title="Learning rate").plain
    values = [value for _, value in y_labels(text)]
    assert min(values) < 2e-4 < max(values) and min(values) > 0, text  # not -1 to 1
    assert max(values) - min(values) < 1e-4
    assert all(label.isdigit() for label in x_labels(text))


def colours(text) -> set[tuple[int, int, int]]:
    """The RGB colours of a picture's text, legend and curves alike."""
    found = set()
    for span in text.spans:
        color = getattr(span.style, "color", None)
        if color is not None and color.triplet is not None:
            found.add(tuple(color.triplet))
    return found


def test_smoothing_draws_the_average_over_the_faint_raw_curve_and_can_be_turned_off():
    train = noisy_loss(40)
    on = picture((Line("train", BLUE, train, True),), smoothing=True)
    off = picture((Line("train", BLUE, train, True),), smoothing=False)
    assert {RAW, BLUE} <= colours(on)
    assert RAW not in colours(off) and BLUE in colours(off)
    assert "raw" not in off.plain.splitlines()[0]


def test_series_keeps_a_debiased_moving_average():
    series = Series([(1, 4.0), (2, 2.0), (3, 3.0)])
    ema, expected = 0.0, []
    for count, value in enumerate((4.0, 2.0, 3.0), start=1):
        ema = SMOOTHING * ema + (1 - SMOOTHING) * value
        expected.append(ema / (1 - SMOOTHING ** count))
    assert series.smoothed == pytest.approx(expected)
    assert series.smoothed[0] == 4.0  # the first point is itself, not pulled towards zero
    assert [y for _, y in series.points(smoothed=True)] == pytest.approx(expected)
    long = noisy_loss(1000)
    reduced = long.downsample(10, smoothed=True)
    assert reduced[0][1] == pytest.approx(sum(long.smoothed[:100]) / 100)


@pytest.mark.parametrize("seed", range(40))
def test_row_aligned_axes_cover_the_data_with_round_ticks_on_rows(seed):
    rng = random.Random(seed)
    scale = 10 ** rng.uniform(-5, 4)
    low = rng.uniform(-1, 3) * scale
    high = low + rng.choice([0, rng.uniform(0.001, 5) * scale])
    rows = rng.randint(3, 30)
    axis = plot_axes.row_aligned_axis(*plot_axes.value_range([low, high]), rows)
    assert axis.low <= low and axis.high >= high
    per_row = (axis.high - axis.low) / (rows - 1)
    positions = [(tick - axis.low) / per_row for tick in axis.ticks]
    assert all(abs(p - round(p)) < 1e-6 for p in positions)  # every tick on a row
    assert len({round(b - a, 6) for a, b in zip(positions, positions[1:], strict=False)}) <= 1  # evenly
    assert len(set(axis.labels)) == len(axis.labels)  # no two ticks read the same
    assert (high - low) / (axis.high - axis.low) > 0.3 or high == low  # the data fills a fair part of it
