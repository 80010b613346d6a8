"""Several training processes as one run: the process group, data shards, reductions, wrapping.

On one machine :mod:`tui_ft.engine.runs.group_launcher` starts one worker per process, and across
servers torchrun does; either sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and
:func:`join_group` turns those into a process group (nccl on CUDA, gloo on CPU). On one machine
the ranks meet through a file store in a private folder (``$TUI_FT_INIT_METHOD``,
``file://...``) and gloo and NCCL talk over loopback only: nothing listens where another host
could reach it. Across servers they meet at torchrun's rendezvous (``env://``). A collective
waits for the slowest rank at most ``$TUI_FT_COLLECTIVE_TIMEOUT_MIN`` minutes (default 60).

The rules that keep a run's meaning independent of the process count:

- ``batch_size`` is the *global* micro-batch: every process computes the same global batch
  order from ``(seed, epoch)`` and takes its own contiguous slice (:func:`shard`), so resume
  stays exact and the learning-rate schedule counts the same steps at any N;
- each process divides its summed loss by the whole step's trained tokens (known to every
  process) and multiplies by N, because DDP and FSDP *average* gradients: the result is the
  gradient one process would compute for the whole batch;
- metrics are sums reduced across processes (:func:`reduce_stats`) before the objective turns
  them into a loss, so the logged loss is the token-weighted loss of the global batch;
- a stop is agreed by all processes (:func:`agree`), so they stop at the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank, world size, device and backend (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str | None = None  # None: the config's device (one process)
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes status, metrics and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there are several processes (collectives are needed)."""
        return self.world > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world} (local rank {self.local_rank}) on {self.device} with {self.backend}"


INIT_METHOD_ENV = "TUI_FT_INIT_METHOD"  # set by the group launcher: file://<private folder>/store
# How long a collective may wait for the slowest rank before the run fails. NCCL's default (10
# minutes) is shorter than rank 0 may work alone: writing a 70B checkpoint or the final weights.
TIMEOUT_ENV = "TUI_FT_COLLECTIVE_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 60.0


def collective_timeout():
    """``$TUI_FT_COLLECTIVE_TIMEOUT_MIN`` minutes (default 60) as a ``timedelta``."""
    from datetime import timedelta

    try:
        minutes = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN))
    except ValueError:
        minutes = DEFAULT_TIMEOUT_MIN
    return timedelta(minutes=minutes if minutes > 0 else DEFAULT_TIMEOUT_MIN)


def launched_as_rank() -> bool:
    """True when this process is one rank of several (the group launcher or torchrun set ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


launched_by_torchrun = launched_as_rank  # the earlier name


def join_group(requested_device: str) -> Group:
    """Join the process group of this run's ranks; the device follows the local rank.

    With ``$TUI_FT_INIT_METHOD`` (the group launcher, one machine) the ranks rendezvous through
    that file store; without it (torchrun across servers) through torchrun's ``env://``.

    Args:
        requested_device: The run's ``device`` setting (``auto``, ``cpu``, ``cuda``).
    """
    import torch.distributed as dist

    from tui_ft.engine.models.devices import pick_device

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = pick_device(requested_device)
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        device, backend = "cpu", "gloo"
    init_method = os.environ.get(INIT_METHOD_ENV)
    timeout = collective_timeout()
    if init_method:
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=timeout)
    else:
        dist.init_process_group(backend, timeout=timeout)
    return Group(rank, world, local_rank, device, backend)


def claim_device(device: str) -> None:
    """Make GPU N the current CUDA device of a process that trains on ``cuda:N``.

    Without it, whatever uses the current device (``torch.cuda.synchronize()``, caching
    allocator statistics, kernels of libraries that do not take a device) works on GPU 0 and
    opens a second CUDA context there.
    """
    if device.startswith("cuda"):
        index = torch.device(device).index
        if index is not None:
            torch.cuda.set_device(index)


def leave_group(group: Group) -> None:
    """Destroy the process group (each process, at its end)."""
    if group.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard(indices: list[int], group: Group) -> list[int]:
    """This process's contiguous slice of a global micro-batch (sizes differ by one at most).

    Contiguous rather than strided: a batch is sorted by length, so a slice holds examples of
    similar length and its padding stays small.
    """
    size, extra = divmod(len(indices), group.world)
    start = group.rank * size + min(group.rank, extra)
    return indices[start : start + size + (group.rank < extra)]


def reduce_stats(stats: list[dict], group: Group) -> list[dict]:
    """Sum micro-batch statistics over this process, then over all processes.

    Statistics may be numbers (counts made on the host) or 0-d tensors on the training device
    (loss sums): the tensors are added up where they are and read back once, with the
    all-reduce, so a step waits for the device once rather than once per value.

    Returns:
        One dict of sums (a list, as the objectives' ``summarize`` takes). Every process must
        pass the same keys (a process with no data passes zeroed statistics).
    """
    keys = sorted({key for s in stats for key in s})
    host = dict.fromkeys(keys, 0.0)
    on_device: dict[str, list] = {key: [] for key in keys}
    for s in stats:
        for key, value in s.items():
            if isinstance(value, torch.Tensor):
                on_device[key].append(value.detach().reshape(()).to(torch.float64))
            else:
                host[key] += float(value)
    tensors = [t for parts in on_device.values() for t in parts]
    if not group.active and not tensors:
        return [{key: _as_number(host[key]) for key in keys}]
    device = torch.device(group.device) if group.backend == "nccl" else (tensors[0].device if tensors else torch.device("cpu"))
    totals = torch.tensor([host[key] for key in keys], dtype=torch.float64)
    totals = totals.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else totals.to(device)
    for position, key in enumerate(keys):
        if on_device[key]:
            totals[position] += torch.stack([t.to(device) for t in on_device[key]]).sum()
    if group.active:
        import torch.distributed as dist

        dist.all_reduce(totals)
    return [{key: _as_number(value) for key, value in zip(keys, totals.tolist(), strict=False)}]


def _as_number(value: float):
    return int(value) if float(value).is_integer() else value


def agree(local: bool, group: Group) -> bool:
    """True on every process when it is true on any (a stop asked of one process stops all)."""
    if not group.active:
        return local
    import torch.distributed as dist

    device = group.device if group.backend == "nccl" else "cpu"
    flag = torch.tensor([1 if local else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def barrier(group: Group) -> None:
    """Wait for every process (no-op for one)."""
    if group.active:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(value, group: Group):
    """Rank 0's ``value`` on every process."""
    if not group.active:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value, group: Group) -> list:
    """Every process's ``value`` on every process (in rank order)."""
    if not group.active:
        return [value]
    import torch.distributed as dist

    found = [None] * group.world
    dist.all_gather_object(found, value)
    return found


def gather_objects(value, group: Group) -> list | None:
    """Every process's ``value`` on rank 0 (in rank order); ``None`` elsewhere."""
    if not group.active:
        return [value]
    import torch.distributed as dist

    found = [None] * group.world if group.is_main else None
    dist.gather_object(value, found, dst=0)
    return found
