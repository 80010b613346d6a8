"""How a run stores its weights: frozen ones in 16 bits (or 4-bit NF4), trained ones in fp32.

Memory is the point: LoRA of an 8B model holds 32 GB of frozen weights in fp32, 16 GB in
bf16 and about 5 GB in NF4. Under ``weight_dtype=auto`` the base loads in bf16 (fp16 on a
GPU without native bf16) unless every weight is trained (full fine-tuning keeps fp32 master
weights); whatever is trained is then made fp32 again, so the optimizer state and the
updates stay fp32 (mixed precision, as every trainer in the field does it).

Small weights (norms, biases) stay fp32 too: they are a rounding error of the memory, and
RMSNorm's scale multiplies the fp32 residual stream.

Where the device computes bf16 slowly (a CPU without AMX), the run computes in fp32 and each
linear layer upcasts its 16-bit weight on the fly (:func:`compute_in_fp32`): the frozen weight
stays 16-bit in memory and only one layer's fp32 copy exists at a time.
"""

from __future__ import annotations

import torch

from tui_ft.engine.models.devices import bf16_is_native
from tui_ft.engine.runs.config import TrainConfig

SMALL_WEIGHT_DIMS = 1  # vectors (norm scales, biases) stay fp32 whatever the storage


def half_dtype(device: str) -> torch.dtype:
    """The 16-bit type frozen weights are stored in on ``device``: bf16, or fp16 on a GPU without native bf16."""
    if device.split(":")[0] == "cuda" and not bf16_is_native(device):
        return torch.float16
    return torch.bfloat16


def trains_every_weight(config: TrainConfig) -> bool:
    """Full fine-tuning (full DPO, a full reward model): nothing is frozen, so nothing is worth storing in 16 bits
    under ``auto``."""
    return config.trains_every_weight


def load_dtype(config: TrainConfig, device: str) -> torch.dtype:
    """The dtype the base model is loaded in (before trained weights go back to fp32)."""
    if config.weight_dtype == "float32" or (config.weight_dtype == "auto" and trains_every_weight(config)):
        return torch.float32
    return half_dtype(device)


def keep_small_weights_fp32(model) -> None:
    """Norm scales and biases back to fp32, and 16-bit embeddings hand fp32 vectors on.

    The embedding's output starts the residual stream, which every layer adds to: in bf16 it
    would round each layer's contribution to 8 bits of mantissa.
    """
    for param in model.parameters():
        if param.dim() <= SMALL_WEIGHT_DIMS and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
    embeddings = model.get_input_embeddings()
    if embeddings is not None and embeddings.weight.dtype in (torch.bfloat16, torch.float16):
        embeddings.register_forward_hook(_output_to_fp32)


def _output_to_fp32(module, args, output):
    return output.float()


def trained_weights_to_fp32(model) -> int:
    """Make every weight that trains fp32 (optimizer state follows the weight's dtype); returns how many."""
    changed = 0
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()
            changed += 1
    return changed


class UpcastLinear(torch.autograd.Function):
    """``x @ W.T + b`` in ``x``'s dtype for a 16-bit ``W``, saving the 16-bit ``W`` (not an fp32 copy).

    ``F.linear(x, W.float())`` would keep every layer's fp32 copy alive until the backward pass
    (autograd saves it to compute the input's gradient): the whole model in fp32 again at the
    peak. This saves the weight as stored and upcasts it again in the backward pass; the input
    is saved only when the weight itself is trained.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.has_bias = bias is not None
        return torch.nn.functional.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ weight.to(grad.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b


def _upcast_forward(module):
    def forward(x):
        if x.dtype == module.weight.dtype or torch.is_autocast_enabled(x.device.type):
            return torch.nn.functional.linear(x, module.weight, module.bias)
        bias = module.bias.to(x.dtype) if module.bias is not None else None
        return UpcastLinear.apply(x, module.weight, bias)
    return forward


def compute_in_fp32(model) -> int:
    """Let every plain linear layer with 16-bit weights compute in its input's dtype; returns how many.

    Only exact ``nn.Linear`` modules are patched: peft's LoRA layers call their ``base_layer``
    (a plain ``nn.Linear``), and 4-bit layers dequantise to their own compute dtype.
    """
    patched = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype in (torch.bfloat16, torch.float16):
            module.forward = _upcast_forward(module)
            patched += 1
    return patched


def quantization_config(compute_dtype: torch.dtype):
    """QLoRA's storage (Dettmers et al., 2023): NF4 with double quantisation, computing in ``compute_dtype``.

    Raises:
        ModelError: bitsandbytes is not installed (it is the ``gpu`` extra).
    """
    from tui_ft.engine.models import ModelError

    try:
        import bitsandbytes  # noqa: F401  (transformers needs it at load time; fail here with advice)
    except ImportError as error:
        raise ModelError("qlora needs bitsandbytes: pip install 'tui_ft[gpu]'") from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=torch.uint8)


def enable_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    Non-reentrant checkpointing: it works when the layer's inputs need no gradient (frozen
    embeddings under LoRA), and gives the same values as without it (dropout masks are replayed
    from the saved RNG state).
    """
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
