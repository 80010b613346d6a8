"""Axis ranges and ticks for the Runs pane's plots, chosen here rather than by plotext.

plotext picks y ticks at round values and puts each label on the nearest text row, so two
labels one row apart and the next two rows apart read as an uneven scale (``0.583┤`` then
``0.416┤`` three rows down); its x ticks split the range into equal parts (``1.0 3.2 5.5``),
and a single point gets the range -1 to 1. Here the y range is stretched so that every tick
falls exactly on a row, a fixed number of rows apart; x ticks are whole steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


@dataclass(frozen=True)
class Axis:
    """A range and the ticks to label on it."""

    low: float
    high: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]


def nice_steps(at_least: float):
    """Round tick steps, smallest first, from the first that is at least ``at_least``."""
    exponent = math.floor(math.log10(at_least)) if at_least > 0 else 0
    while True:
        for mantissa in NICE_MANTISSAS:
            step = mantissa * 10.0 ** exponent
            if step >= at_least * (1 - 1e-12):
                yield step
        exponent += 1


def value_range(values: list[float]) -> tuple[float, float]:
    """The lowest and highest of ``values``, widened around a single value so it has a scale."""
    low, high = min(values), max(values)
    if high - low <= abs(high) * 1e-9:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    return low, high


def tick_gaps(rows: int) -> tuple[int, ...]:
    """Rows between labels to try: every row or two on a short plot, two to four on a taller one."""
    return (1, 2) if rows <= 5 else (2, 3, 4)


def row_aligned_axis(low: float, high: float, rows: int) -> Axis:
    """A y axis over ``low``-``high`` on ``rows`` text rows whose ticks each fall on a row.

    plotext maps the range's ends to the first and last row and everything between linearly,
    so a range of ``(rows - 1) * per_row`` puts the value ``start + k * per_row`` exactly on row
    ``k``. Ticks are a round ``step`` apart, every ``gap`` rows (``per_row = step / gap``), from
    a multiple of ``step``; of the gaps and steps that cover the data, the one it fills most wins.
    """
    rows = max(2, rows)
    spaces = rows - 1  # row intervals between the bottom row and the top one
    best = None
    for gap in tick_gaps(rows):
        if spaces < gap:
            continue
        for step in nice_steps((high - low) * gap / spaces):
            # Ticks from a multiple of the step (0, 1, 2), or of the row's value where that is
            # round too (0.5, 1.5, 2.5), which can fit the data in fewer rows.
            units = (step, step / gap) if is_nice(step / gap) else (step,)
            fits = [(math.floor(low / unit + 1e-9) * unit, unit) for unit in units]
            fits = [(start, unit) for start, unit in fits if start + spaces * step / gap >= high - abs(high) * 1e-12]
            if fits:
                break
        for start, unit in fits:
            fill = (high - low) / (spaces * step / gap) * (1.0 if unit == step else 0.9)
            if best is None or fill > best[0] + 1e-9:
                best = (fill, start, start + spaces * step / gap, step, unit)
    _, start, top, step, unit = best
    ticks = []
    while start + len(ticks) * step <= top + step * 1e-9:
        ticks.append(start + len(ticks) * step)
    scale = max(abs(tick) for tick in ticks)
    return Axis(start, top, tuple(ticks), tuple(tick_label(tick, unit, scale) for tick in ticks))


def is_nice(value: float) -> bool:
    """Whether ``value`` is 1, 2, 2.5 or 5 times a power of ten."""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return any(abs(mantissa - nice) < 1e-6 for nice in NICE_MANTISSAS)


def tick_label(value: float, step: float, scale: float) -> str:
    """``value`` (a multiple of ``step``) with as many decimals as ``step`` needs; powers of ten
    where the axis's ``scale`` (its largest tick) is very small or very large, as a learning
    rate is."""
    step_exponent = math.floor(math.log10(step) + 1e-9)
    extra = 1 if round(step / 10 ** step_exponent, 6) == 2.5 else 0  # 2.5, 0.25: one more decimal
    if abs(value) < step * 1e-6:
        value = 0.0  # not -0.0, and not 1e-17 from the sums
    if scale < 1e-3 or scale >= 1e6:
        if value == 0:
            return "0"
        digits = max(0, math.floor(math.log10(abs(value)) + 1e-9) - step_exponent + extra)
        return f"{value:.{min(digits, 3)}e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.{max(0, -step_exponent + extra)}f}"


def step_axis(low: float, high: float, most_ticks: int) -> Axis:
    """An x axis of training steps: whole-number ticks, at most ``most_ticks`` of them."""
    if high - low < 1:
        low, high = low - 1, high + 1  # one step: a scale either side of it
    most_ticks = max(2, most_ticks)
    for step in nice_steps(max(1.0, (high - low) / (most_ticks - 1))):
        if step == int(step):
            break
    first = math.ceil(low / step) * step
    ticks = []
    tick = first
    while tick <= high + 1e-9:
        ticks.append(tick)
        tick += step
    return Axis(low, high, tuple(ticks), tuple(str(int(tick)) for tick in ticks))
