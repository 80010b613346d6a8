"""Pilot and snapshot tests start with no pane built in the background.

The dashboard builds its other panes a moment after the first paint (``PREBUILT_MODES``);
in a test that switch-and-back lands at a time that depends on the machine's speed, so
snapshots and focus checks would vary. ``tests/ui/test_shell.py`` tests the prebuilding.
"""

import pytest


@pytest.fixture(autouse=True)
def no_background_panes(monkeypatch):
    from tui_ft.ui.app import TuiFtApp

    monkeypatch.setattr(TuiFtApp, "PREBUILT_MODES", ())


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch):
    """The Train pane counts GPUs to start its Processes field at all of them: pin the count so
    the form (and its snapshots) read the same on a GPU server as here."""
    monkeypatch.setattr("tui_ft.engine.devices.visible_gpu_count", lambda: 0)
