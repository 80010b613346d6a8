"""Rename a run: its folder, its ``run.json`` name, and the results stored under it.

It lives here rather than in :mod:`tui_ft.engine.runs` because a run's Benchmark results are
keyed by its folder's path (``run:/…/checkpoints/<name>``): moved without them, the run's
scores would show on a row of their own under the old name, and each would be computed again.
A reward model's judgements of other models (``eval --reward``) name it the same way, wherever
they are stored, and follow it too.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui_ft.engine.evaluation import store
from tui_ft.engine.evaluation.jobs import list_jobs
from tui_ft.engine.files import read_json, write_json_atomic
from tui_ft.engine.runs.lifecycle import RunError, move_run_folder
from tui_ft.engine.runs.state import FINAL_STATES


def rename_run(run_dir: Path, new_name: str, home: Path) -> Path:
    """Rename the run in ``run_dir`` to ``new_name`` and return its new folder.

    Raises:
        RunError: One line, and nothing changed: a bad or taken name, a link, a live worker, a run
            trained on it (see :func:`~tui_ft.engine.runs.lifecycle.move_run_folder`), or an
            evaluation job still scoring it.
    """
    run_dir = Path(run_dir)
    old_id = f"run:{run_dir.resolve()}"
    for job in list_jobs(home):
        refs = list(job.get("job", {}).get("refs") or []) + [job.get("job", {}).get("reward")]
        if job["state"] not in FINAL_STATES and any(_names_run(ref, run_dir, home) for ref in refs if isinstance(ref, str)):
            raise RunError(f"{run_dir.name} is being evaluated (job {job['id']}): wait for it or stop it in Benchmark")
    target = move_run_folder(run_dir, new_name)
    if target != run_dir:
        new_id = f"run:{target.resolve()}"
        _rekey_results(target / "bench", old_id, new_id, new_name)
        _rekey_judgements(home, old_id, new_id, new_name)
    return target


def _names_run(ref: str, run_dir: Path, home: Path) -> bool:
    if ref.strip("/") == run_dir.name:
        return True
    try:
        return (Path(home) / ref).resolve() == run_dir.resolve()
    except OSError:
        return False


def _rekey_judgements(home: Path, old_id: str, new_id: str, new_name: str) -> None:
    """Give the results a renamed reward model judged (anywhere in the workspace) its new identity and name."""
    for path in store.result_files(home):
        record = read_json(path, store.MAX_RESULT_BYTES)
        if not record or record.get("kind") != "reward" or record.get("reward_model") != old_id:
            continue
        _rewrite(path, record | {"reward_model": new_id, "reward_model_name": new_name})


def _rewrite(path: Path, record: dict) -> None:
    """Store ``record`` under the key and file name of its (changed) identity, in place of ``path``."""
    identity = store.identity_of(record)
    record["key"] = store.result_key(identity)
    new_path = store.result_path(path.parent, identity)
    write_json_atomic(new_path, record)
    if new_path != path:
        os.unlink(path)


def _rekey_results(folder: Path, old_id: str, new_id: str, new_name: str) -> None:
    """Give the results in ``folder`` that name ``old_id`` the new identity, file name and key."""
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read_json(path, store.MAX_RESULT_BYTES)
        if not record or record.get("model_id") != old_id or record.get("kind") not in store.IDENTITY_FIELDS:
            continue  # damaged, foreign or not this run's: left as it is
        _rewrite(path, record | {"model": new_name, "model_id": new_id})
