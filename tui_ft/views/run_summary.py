"""The Train form's summary line: what a run will do, in words, before it starts."""

from __future__ import annotations

from tui_ft.engine.runs.run_shape import RunShape
from tui_ft.views.formatting import format_estimate


def shape_line(shape: RunShape) -> str:
    """One line: ``20 examples: 18 trained, 2 held out · 3 steps an epoch · 9 steps (3 epochs) · ≈ 40 s``."""
    held = (f"{shape.held_out} held out from the eval file" if shape.held_from_file
            else f"{shape.held_out} held out" if shape.held_out else "none held out")
    epochs = shape.total_steps / shape.steps_per_epoch if shape.steps_per_epoch else 0
    epochs_text = f"{epochs:g} epoch{'' if epochs == 1 else 's'}" if epochs == int(epochs) else f"{epochs:.1f} epochs"
    parts = [f"{shape.examples} example{'' if shape.examples == 1 else 's'}: {shape.trained} trained, {held}",
             f"{shape.steps_per_epoch} step{'' if shape.steps_per_epoch == 1 else 's'} an epoch",
             f"{shape.total_steps} step{'' if shape.total_steps == 1 else 's'} ({epochs_text})"]
    if shape.seconds is not None:
        parts.append(f"≈ {format_estimate(shape.seconds)} at {shape.speed.tokens_per_s:.0f} tokens/s (as {shape.speed.run})")
    return " · ".join(parts)
