"""UI fixtures: a workspace at a fixed path, so snapshots do not depend on tmp names."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXED_HOME = Path("/tmp/tui_ft_ui_workspace")


@pytest.fixture
def ui_home(default_model_path) -> Path:
    """A fresh workspace with the shipped datasets, always at the same path."""
    shutil.rmtree(FIXED_HOME, ignore_errors=True)
    shutil.copytree(REPO / "datasets", FIXED_HOME / "datasets")
    (FIXED_HOME / "checkpoints").mkdir()
    return FIXED_HOME
