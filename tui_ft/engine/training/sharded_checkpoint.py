"""Checkpoints of an FSDP run: every rank writes its own shards (``torch.distributed.checkpoint``).

The folder is ``ckpt/step-N`` as for any run, written under a temporary name and renamed by
rank 0 once every rank has written; it holds the DCP files (``.metadata`` and one file per
rank) with the model and optimizer state, and, from rank 0, the scheduler, every rank's
random generators and the data position. DCP reshards on load, so a run may resume with a
different number of processes.

Every function here is a collective: all ranks call it.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import torch

from tui_ft.engine.training.checkpoint import STATE_FILE, checkpoint_folder, load_rng, publish, remove_staging, rng_state
from tui_ft.engine.training.distributed import Group, barrier, broadcast_object, gather_objects

METADATA_FILE = ".metadata"  # written by DCP


def is_sharded_checkpoint(folder: Path) -> bool:
    """True for a checkpoint written by :func:`save_sharded`."""
    return (Path(folder) / METADATA_FILE).is_file()


def save_sharded(run_dir: Path, step_model, optimizer, scheduler, position: dict, keep: int, group: Group) -> Path:
    """Write ``ckpt/step-N`` from every rank; returns its path (on every rank)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder = Path(run_dir) / "ckpt"
    target = folder / f"step-{position['step']}"
    staging = None
    if group.is_main:
        checkpoint_folder(run_dir)  # a link as ckpt/ is refused: old checkpoints are deleted there
        staging = folder / f".tmp-step-{position['step']}-{os.getpid()}"
        remove_staging(run_dir)  # leftovers of a killed worker, as the one-process save does
        staging.mkdir()
    staging = Path(broadcast_object(str(staging) if staging else None, group))
    model_state, optimizer_state = get_state_dict(step_model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=staging)
    rngs = gather_objects(rng_state(group.device), group)
    if group.is_main:
        publish(staging, target, scheduler, rngs, position, keep)
    barrier(group)
    return target


def load_sharded(folder: Path, step_model, optimizer, scheduler, group: Group) -> dict:
    """Restore model, optimizer, scheduler and this rank's generators; returns the data position."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(step_model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=folder)
    set_state_dict(step_model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True))
    load_rng(folder, group.rank, group.device)
    return orjson.loads((folder / STATE_FILE).read_bytes())
