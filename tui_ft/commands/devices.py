"""``--device`` for the commands that run a model outside training (chat, eval)."""

from __future__ import annotations

import os


def use_device(device: str | None) -> None:
    """Run chat and evaluation on ``device``: set for this process and the jobs it starts.

    Raises:
        UserError: Not auto, cpu, cuda, cuda:N or mps (checked without touching the GPU).
    """
    if not device:
        return
    from tui_ft.cli import UserError
    from tui_ft.engine.models.devices import INFERENCE_DEVICE_ENV

    kind, _, index = device.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise UserError(f"--device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}")
    os.environ[INFERENCE_DEVICE_ENV] = device
