"""Numbers as the dashboard and the CLI show them: durations, estimates and sizes, one way each."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """``"45s"``, ``"12m05s"``, ``"3h02m"``; ``"—"`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_estimate(seconds: float) -> str:
    """``40 s``, ``12 min``, ``3.5 h``: an estimate's precision, not a clock's (``12m05s`` would claim more)."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(count: int | None) -> str:
    """``"512 MiB"``, ``"1.5 GiB"``; ``"—"`` when unknown."""
    if count is None:
        return "—"
    if count >= 1024**3:
        return f"{count / 1024**3:.1f} GiB"
    return f"{count / 1024**2:.0f} MiB"


def format_age(seconds: float | None) -> str:
    """How long ago, from a duration: ``"45s ago"``, ``"12m05s ago"``; ``""`` when unknown."""
    shown = format_duration(seconds)
    return "" if shown == "—" else f"{shown} ago"
