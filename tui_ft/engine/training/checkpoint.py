"""Resumable checkpoints: ``ckpt/step-N/`` written to a temporary folder, then renamed.

A checkpoint holds the trainable weights (safetensors), the optimizer and scheduler state
(``torch.save``, read back with ``weights_only=True``), the random generators and the data
position. Frozen weights are not saved: they are the base model's.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import torch

from tui_ft.engine.files import real_folder, remove_tree

STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
RANK_RNG_FILE = "rng_ranks.pt"  # every rank's generators, for runs of several processes


def trainable_state(model) -> dict:
    """The trainable parameters by name (shared weights appear once), detached, on the CPU."""
    return {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, position: dict, keep: int,
                    rank_rngs: list | None = None) -> Path:
    """Write ``ckpt/step-N`` atomically and keep only the ``keep`` latest checkpoints.

    Args:
        run_dir: The run folder.
        model: The model being trained.
        optimizer: Its optimizer.
        scheduler: Its learning-rate scheduler.
        position: The data position and counters (``step``, ``epoch``, ``batch_index``, ...).
        keep: How many checkpoints to keep.
        rank_rngs: With several processes, every rank's :func:`rng_state` (rank order); each
            rank restores its own on resume (dropout masks differ between ranks).
    """
    from safetensors.torch import save_file

    folder = checkpoint_folder(run_dir)
    target = folder / f"step-{position['step']}"
    staging = folder / f".tmp-step-{position['step']}-{os.getpid()}"
    remove_staging(run_dir)
    staging.mkdir()
    save_file(trainable_state(model), staging / WEIGHTS_FILE)
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    publish(staging, target, scheduler, rank_rngs, position, keep)
    return target


def publish(staging: Path, target: Path, scheduler, rank_rngs: list | None, position: dict, keep: int) -> None:
    """Finish a checkpoint written in ``staging``: add the scheduler, RNG and position files,
    then put it in place of ``target`` at once (a reader sees the old one or the new one) and
    drop the oldest beyond ``keep``. Shared by the one-process and the sharded checkpoints."""
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    save_rng(staging, rank_rngs)
    (staging / STATE_FILE).write_bytes(orjson.dumps(position, option=orjson.OPT_INDENT_2))
    remove_tree(target)  # a link in its place is removed itself, never followed
    os.replace(staging, target)
    _prune(target.parent, keep)


def checkpoint_folder(run_dir: Path) -> Path:
    """The run's ``ckpt/`` folder, created when missing.

    Raises:
        UnsafeFileError: ``ckpt`` is a symbolic link (or a file): checkpoints are written and old
            ones deleted there, so a link would have them deleted in its target (an ``OSError``,
            one line).
    """
    return real_folder(Path(run_dir) / "ckpt")


def remove_staging(run_dir: Path) -> None:
    """Delete unfinished checkpoint folders (``ckpt/.tmp-*``: half written, or half deleted).

    A worker killed (or out of disk space) while writing a checkpoint leaves its staging folder
    behind, named after its pid, so no later save would reuse it: each would hold as much disk as
    a checkpoint (gigabytes for full fine-tuning) forever. The same goes for an old checkpoint
    whose deletion was cut short. Only one worker writes a run's checkpoints, so any such folder
    present before it writes is a leftover.
    """
    folder = Path(run_dir) / "ckpt"
    if folder.is_symlink() or not folder.is_dir():
        return  # never delete through a link (the next save refuses it)
    for leftover in folder.glob(".tmp-*"):
        remove_tree(leftover)


def _prune(folder: Path, keep: int) -> None:
    from tui_ft.engine.runs import list_checkpoints

    real_folder(folder, create=False)  # never prune through a link
    for old in list_checkpoints(folder.parent)[:-keep]:
        # Renamed out of the list first: a kill mid-delete must not leave a step-N that looks
        # complete and is missing files (resume, eval --checkpoint or export would load it).
        hidden = old.with_name(f".tmp-pruned-{old.name}")
        remove_tree(hidden)  # an earlier, interrupted deletion of the same step
        os.replace(old, hidden)
        remove_tree(hidden)


def load_trainable(model, folder: Path) -> None:
    """Load a checkpoint's trainable weights into ``model`` (every one must match a parameter)."""
    from safetensors.torch import load_file

    weights = load_file(folder / WEIGHTS_FILE)
    params = dict(model.named_parameters())
    unknown = [name for name in weights if name not in params]
    if unknown:
        raise RuntimeError(f"checkpoint {folder} does not fit the model: unknown weight {unknown[0]}")
    for name, tensor in weights.items():
        with _no_grad():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))


def _no_grad():
    return torch.no_grad()


def load_checkpoint(folder: Path, model, optimizer, scheduler, rank: int = 0, device=None) -> dict:
    """Restore weights, optimizer, scheduler and random generators; returns the data position.

    Args:
        rank: This process's rank: it restores its own random generators when the checkpoint
            has them (a run of several processes), else rank 0's.
        device: This process's device (``cuda:1``, ``cpu``); ``None``: where the trained
            weights are. The optimizer state is read straight onto it: ``torch.load`` would
            otherwise put it back on the device it was saved from (rank 0's GPU) in every rank.
    """
    load_trainable(model, folder)
    location = _state_device(model, device)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=location, weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True))
    load_rng(folder, rank, location)
    return orjson.loads((folder / STATE_FILE).read_bytes())


def _state_device(model, device) -> torch.device:
    """The device the optimizer state belongs on: ``device`` with its index, else the trained weights'."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device
    trained = [p.device for p in model.parameters() if p.requires_grad]
    return trained[0] if trained else torch.device("cpu")


def cuda_index(device) -> int | None:
    """The CUDA device index of ``device`` (``cuda`` alone: the current one); ``None`` for another device.

    ``None`` for ``device=None`` too unless CUDA is available: then the current CUDA device.
    """
    if device is None:
        return torch.cuda.current_device() if torch.cuda.is_available() else None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.current_device() if device.index is None else device.index


def rng_state(device=None) -> dict:
    """This process's random generators: Python's, torch's CPU one, and its own CUDA device's.

    Only this process's GPU (``device``; ``None``: the current one when CUDA is available):
    another process owns each other GPU, and a run resumed on fewer GPUs must still load it.
    """
    rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
    index = cuda_index(device)
    if index is not None:
        rng["cuda_device"] = torch.cuda.get_rng_state(index)
    return rng


def save_rng(folder: Path, rank_rngs: list | None = None) -> None:
    """Write ``rng.pt`` (this process's generators) and, for several processes, ``rng_ranks.pt``."""
    torch.save(rank_rngs[0] if rank_rngs else rng_state(), folder / "rng.pt")
    if rank_rngs and len(rank_rngs) > 1:
        torch.save(rank_rngs, folder / RANK_RNG_FILE)


def load_rng(folder: Path, rank: int = 0, device=None) -> None:
    """Restore the generators saved for ``rank`` (rank 0's when there is no state for it).

    The CUDA generator goes back to this process's own device (``device``; ``None``: the
    current one). A checkpoint from before this rule holds every visible GPU's state
    (``cuda``, a list): this device's entry is used when there is one.
    """
    rng = torch.load(folder / "rng.pt", map_location="cpu", weights_only=True)
    if rank and (folder / RANK_RNG_FILE).is_file():
        ranks = torch.load(folder / RANK_RNG_FILE, map_location="cpu", weights_only=True)
        rng = ranks[rank] if rank < len(ranks) else rng
    random.setstate(_as_tuple(rng["python"]))
    torch.set_rng_state(rng["torch"])
    index = cuda_index(device)
    if index is None:
        return
    own = rng.get("cuda_device")
    if own is None and isinstance(rng.get("cuda"), (list, tuple)):
        every = rng["cuda"]  # an older checkpoint: every GPU the saving process could see
        own = every[index] if index < len(every) else None
    if own is not None:
        torch.cuda.set_rng_state(own, index)


def _as_tuple(state):
    """``random.setstate`` wants tuples; a round trip may hand back lists."""
    return tuple(_as_tuple(s) for s in state) if isinstance(state, (list, tuple)) else state
