"""Experiment trackers: a run's ``train`` and ``eval`` records sent to TensorBoard and Weights & Biases too.

``metrics.jsonl`` stays the run's own record; ``report_to`` (:class:`TrainConfig`) adds trackers
beside it. Both are optional extras (``pip install 'tui_ft[tensorboard]'``, ``'tui_ft[wandb]'``)
and never needed to train: a tracker that cannot start, or fails while logging, is one warning
line in ``worker.log`` and training goes on without it. Only the main rank opens them (the
trainer's choice). Each record's numbers become scalars named ``KIND/KEY`` (``train/loss``,
``eval/ppl``, ``train/rewards_margin``) at the record's step: the keys of ``metrics.jsonl``.

A resumed run continues its curves. A worker that died after its last checkpoint (step N) had
logged steps past N, which the resumed worker trains again:

- TensorBoard: the resumed writer's ``purge_step`` (N + 1) hides the dead worker's events from
  step N + 1 on, so each step shows once, the resumed worker's;
- W&B: its steps only go forward, so the steps it already holds stay as the dead worker logged
  them, and the resumed worker logs from the first step past them (no point twice, no warnings).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol

from tui_ft.engine.files import read_json, write_json_atomic
from tui_ft.engine.runs.folder import read_run_config

TENSORBOARD_FOLDER = "tensorboard"  # checkpoints/<run>/tensorboard/: `tensorboard --logdir checkpoints` shows every run
WANDB_RUN_FILE = "wandb_run.json"  # the W&B run id, so a resumed run logs to the same W&B run
WANDB_PROJECT = "tui_ft"  # unless $WANDB_PROJECT names another


class Tracker(Protocol):
    """One experiment tracker, opened for one run (the constructor takes the run folder and the start step)."""

    def log(self, kind: str, step: int, values: dict) -> None:
        """Record ``values`` (a ``train`` or ``eval`` record's) at ``step``."""

    def close(self) -> None:
        """Write out what is pending and let go of the tracker."""


def scalars(values: dict) -> dict[str, float]:
    """The numbers of a record (flags and text left out)."""
    return {key: value for key, value in values.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardTracker:
    """Event files in ``checkpoints/<run>/tensorboard/``, written by torch's ``SummaryWriter``."""

    def __init__(self, run_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: see the module's docstring. TensorBoard reloads every 5 s; flushing every
        # 10 s (not the default 120) keeps a watched run's curves current.
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_FOLDER), purge_step=start_step + 1, flush_secs=10)

    def log(self, kind: str, step: int, values: dict) -> None:
        for key, value in scalars(values).items():
            self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run named as the run, with ``run.json``'s settings as its config, resumed under the same id.

    Online when the user is logged in (``wandb login`` or ``$WANDB_API_KEY``), offline otherwise;
    ``$WANDB_MODE`` wins when set. Its files go to ``$WANDB_DIR``, else ``checkpoints/<run>/wandb/``.
    """

    def __init__(self, run_dir: Path, start_step: int):
        import wandb

        run_dir = Path(run_dir)
        config = read_run_config(run_dir)
        options = {
            "project": os.environ.get("WANDB_PROJECT") or WANDB_PROJECT, "name": config.get("name") or run_dir.name,
            "id": wandb_run_id(run_dir), "resume": "allow", "config": config,
            # Read here, not left to W&B: it reads the environment once a process, at its first run.
            "dir": os.environ.get("WANDB_DIR") or str(run_dir),
            # The worker's output already goes to worker.log: W&B must not wrap its stdout and stderr.
            "settings": wandb.Settings(console="off"),
        }
        chosen = os.environ.get("WANDB_MODE") or None
        try:
            self.run = wandb.init(mode=chosen, **options)
        except wandb.errors.UsageError:  # no API key: W&B says so at once, before any run starts
            if chosen:
                raise
            self.run = wandb.init(mode="offline", **options)
            print("report_to=wandb: not logged in to W&B (wandb login): logging offline", flush=True)

    def log(self, kind: str, step: int, values: dict) -> None:
        if step < self.run.step:  # a resumed W&B run already holds this step (see the module's docstring)
            return
        self.run.log({f"{kind}/{key}": value for key, value in scalars(values).items()}, step=step)

    def close(self) -> None:
        self.run.finish()


TRACKERS: dict[str, type] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


def wandb_run_id(run_dir: Path) -> str:
    """The run's W&B id, chosen (and kept in ``wandb_run.json``) the first time."""
    path = Path(run_dir) / WANDB_RUN_FILE
    run_id = read_json(path).get("id")
    if not isinstance(run_id, str) or not run_id:
        run_id = secrets.token_hex(4)  # W&B ids are letters and digits; eight, as W&B's own
        write_json_atomic(path, {"id": run_id})
    return run_id


class Trackers:
    """The run's open trackers as one: a tracker that fails is reported once and dropped."""

    def __init__(self, opened: dict[str, Tracker]):
        self.opened = opened

    def log(self, kind: str, step: int, values: dict) -> None:
        """Send a record to every tracker still open."""
        for name, tracker in list(self.opened.items()):
            try:
                tracker.log(kind, step, values)
            except Exception as error:  # noqa: BLE001 - a tracker must never stop training
                del self.opened[name]
                warn(name, describe(error))
                try:
                    tracker.close()
                except Exception:  # noqa: BLE001 - already reported; whatever it holds goes with the process
                    pass

    def close(self) -> None:
        """Close every tracker; a failure is reported, the others still close."""
        opened, self.opened = self.opened, {}
        for name, tracker in opened.items():
            try:
                tracker.close()
            except Exception as error:  # noqa: BLE001 - the run's result is already saved
                warn(name, describe(error))


def open_trackers(targets: list[str] | None, run_dir: Path, start_step: int) -> Trackers:
    """Open the trackers ``report_to`` names; one that cannot start is one warning line.

    Args:
        targets: ``report_to``: tracker names (``None``: none).
        run_dir: The run folder.
        start_step: The step training starts from (the checkpoint's on resume, else 0).
    """
    opened: dict[str, Tracker] = {}
    for name in targets or []:
        try:
            opened[name] = TRACKERS[name](Path(run_dir), start_step)
        except ModuleNotFoundError as error:
            installed = (error.name or "").split(".")[0] != name  # else something it needs is missing
            warn(name, describe(error) if installed else f"not installed (pip install 'tui_ft[{name}]')")
        except Exception as error:  # noqa: BLE001 - no network, a bad key, a folder it cannot write
            warn(name, describe(error))
    return Trackers(opened)


def describe(error: BaseException) -> str:
    """An error in one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__


def warn(name: str, reason: str) -> None:
    """One line in the worker's log (its stdout)."""
    print(f"warning: report_to={name}: {reason}; training goes on without it", flush=True)
