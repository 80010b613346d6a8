"""The model as the training step calls it: plain, wrapped in DDP, or sharded with FSDP.

The objectives call parts of the model directly (the decoder, then the output head on the
trained positions only), so wrapping the bare model would bypass DDP's and FSDP's forward:
DDP prepares its gradient reduction there, and FSDP gathers the parameters that no layer
owns (embeddings, final norm, head). :class:`ObjectiveForward` makes the whole objective
forward the forward of one module, and that module is what gets wrapped.
"""

from __future__ import annotations

import contextlib

import torch

from tui_ft.engine.training.distributed import Group


class ObjectiveForward(torch.nn.Module):
    """``module(objective, batch)`` runs ``objective.forward(model, batch)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, objective, batch):
        return objective.forward(self.model, batch)


def wrap_for_training(model, group: Group, fsdp: bool, precision: str = "fp32") -> torch.nn.Module:
    """The module the training step calls: unwrapped for one process, else DDP or FSDP.

    Args:
        model: The model with the run's method applied (on the group's device for DDP; FSDP
            moves each shard to the device itself).
        group: The process group.
        fsdp: Shard parameters, gradients and optimizer state with ``fully_shard`` (FSDP2):
            each decoder layer is one unit, the rest (embeddings, norm, head) the root's.
        precision: The run's compute precision (``bf16`` or ``fp32``); FSDP follows it
            (:func:`fsdp_precision`).
    """
    step = ObjectiveForward(model)
    if not group.active:
        return step
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from tui_ft.engine.training.methods import decoder_layers

        mesh = init_device_mesh(group.device.split(":")[0], (group.world,))
        policy = fsdp_precision(precision)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh, **policy)
        fully_shard(step, mesh=mesh, **policy)
        return step
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(step, **no_buffer_sync(DistributedDataParallel))


def fsdp_precision(precision: str) -> dict:
    """``fully_shard``'s keyword for a run computing in ``precision``: none for fp32.

    In bf16 the layers gather their parameters in bf16 (half the traffic of fp32, and what
    autocast would compute in anyway) while gradients are reduced in fp32, so a sum over many
    ranks loses nothing; the sharded parameters and the optimizer stay fp32.
    """
    if precision != "bf16":
        return {}
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}


def no_buffer_sync(ddp_class) -> dict:
    """DDP's keyword to skip sending buffers before each forward: they (rotary tables) are equal on every rank.

    ``forward_sync_buffers`` where this torch has it (``broadcast_buffers`` is deprecated there),
    else ``broadcast_buffers`` (which also skips the first sync, harmless for equal buffers).
    """
    import inspect

    if "forward_sync_buffers" in inspect.signature(ddp_class.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def is_sharded(step_model) -> bool:
    """True when ``step_model`` was sharded with ``fully_shard``."""
    return hasattr(step_model, "set_requires_gradient_sync")


@contextlib.contextmanager
def gradient_sync(step_model, enabled: bool):
    """Accumulate gradients without communication unless ``enabled`` (the step's last micro-batch)."""
    if enabled or not isinstance(step_model, torch.nn.Module):
        yield
    elif hasattr(step_model, "no_sync"):  # DDP
        with step_model.no_sync():
            yield
    elif is_sharded(step_model):
        step_model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            step_model.set_requires_gradient_sync(True)
    else:
        yield


def as_float(value) -> float:
    """A scalar tensor (or DTensor, as FSDP's gradient norm is) as a Python float."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)


def full_state_dict(step_model, group: Group) -> dict | None:
    """The whole model's weights on rank 0's CPU (a collective: every rank calls it); ``None`` elsewhere.

    Keys are the model's own (without the wrapper's ``model.`` prefix); a tied weight (the
    output head sharing the embeddings) appears once, under the name ``save_pretrained`` keeps.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(step_model, options=options)
    if not group.is_main:
        return None
    model = step_model.model
    aliases = set(dict(model.named_parameters(remove_duplicate=False))) - set(dict(model.named_parameters()))
    state = {key.removeprefix("model."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if key not in aliases}
