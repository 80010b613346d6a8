"""Where things live in a workspace, and how a reference names a run.

A workspace holds ``datasets/``, ``checkpoints/<run>/`` (one folder a run, with ``run.json``),
``bench/`` (results of models that are not runs), ``ratings/`` and ``transcripts/``. A run is
named by its folder's name or by the path of its folder; every lookup goes through
:func:`find_run_dir` so that the CLI, chat, ratings and evaluation agree on what is a run.
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"


def run_dir_by_name(home: Path, name: str) -> Path | None:
    """``home/checkpoints/<name>`` when it holds a ``run.json``; ``None`` for anything else.

    A name is one folder name: ``""``, ``.``, ``..`` and anything with a ``/`` name no run.
    """
    if not name or "/" in name or name in (".", ".."):
        return None
    path = Path(home) / CHECKPOINTS / name
    return path if (path / RUN_FILE).is_file() else None


def find_run_dir(ref: str, home: Path) -> Path | None:
    """The run folder a reference names: a run name in ``checkpoints/`` (a trailing ``/`` allowed), else the path of a run folder.

    Returns ``None`` when ``ref`` names no run (a model reference then). The path is as given,
    not resolved.
    """
    if not ref:
        return None
    by_name = run_dir_by_name(home, ref.strip("/"))
    if by_name is not None:
        return by_name
    by_path = Path(ref).expanduser()
    return by_path if (by_path / RUN_FILE).is_file() else None


def reference_slug(ref: str) -> str:
    """A file name for a model reference: ``/models/My Model/`` -> ``models-My-Model`` (ratings, transcripts)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ref.strip().strip("/")).strip("-.")
    return slug or "model"
