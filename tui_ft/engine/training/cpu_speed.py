"""Training speed on CPUs: bf16 autocast where AMX pays off, fp32 attention, a cheaper dropout.

Measured on a 2-core Sapphire Rapids (AMX) with the default model, LoRA, batch 8 of about
140 tokens (CPU seconds a step, median of five; ``bench/train_throughput.py`` has the
end-to-end figures):

- fp32: 9.0; bf16 autocast: 6.5 (AMX matrix units); bf16 with attention kept in fp32: 5.0
  (the CPU flash-attention backward is slower in bf16 than in fp32); plus the dropout below: 4.0.
- At one example of 40 tokens bf16 is no slower; on the 2-layer test model (hidden size 32)
  there is nothing to gain, so bf16 is chosen only from ``BF16_MIN_HIDDEN`` up.
- ``torch.compile`` of the decoder layers: 47 CPU seconds to compile and no faster a step.
"""

from __future__ import annotations

import functools

import torch

from tui_ft.engine.models.devices import bf16_is_native, cpu_has_amx

BF16_MIN_HIDDEN = 256  # smaller models train in fp32 under ``auto`` (AMX gains nothing there)
FP32_ATTENTION = "tui_ft_sdpa_fp32"  # the attention function's registered name


def resolve_precision(precision: str, device: str, model) -> str:
    """``bf16`` or ``fp32`` for a run's ``precision`` setting on ``device``.

    ``auto`` is bf16 autocast on a CUDA GPU with native bf16 (compute capability 8.0 and up),
    and on CPUs with AMX for models with a hidden size of at least ``BF16_MIN_HIDDEN``; fp32
    elsewhere (with TF32 matmuls on older GPUs: a V100 or T4 emulates bf16 slowly). ``bf16``
    and ``fp32`` are taken as given.
    """
    if precision != "auto":
        return precision
    kind = device.split(":")[0]
    if kind == "cuda":
        if bf16_is_native(device):
            return "bf16"
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return "fp32"
    hidden = getattr(getattr(model, "config", None), "hidden_size", 0) or 0
    return "bf16" if kind == "cpu" and hidden >= BF16_MIN_HIDDEN and cpu_has_amx() else "fp32"


def sdpa_in_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention, computed in fp32 inside a bf16 autocast region."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    with torch.autocast("cpu", enabled=False):
        output, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                                 attention_mask, **kwargs)
    return output.to(dtype), weights


def use_fp32_attention(model) -> bool:
    """Switch a model that uses SDPA to :func:`sdpa_in_fp32`; returns whether it was switched."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) != "sdpa" or not hasattr(base, "set_attn_implementation"):
        return False
    AttentionInterface.register(FP32_ATTENTION, sdpa_in_fp32)
    AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)  # the same padding and causal masks as SDPA
    base.set_attn_implementation(FP32_ATTENTION)
    return base.config._attn_implementation == FP32_ATTENTION


@functools.cache
def fast_dropout_class():
    """The dropout module class, defined on first use so that this module imports without torch."""
    class FastDropout(torch.nn.Module):
        """Dropout with masks from 16-bit slices of 64-bit random words.

        ``torch.nn.Dropout`` on CPU draws one Mersenne-Twister number per element and was 13 %
        of a LoRA step (peft drops out the input of every adapted projection); a 64-bit word
        gives four 16-bit draws. An element is kept with probability ``1 - p`` rounded to a
        multiple of 1/65536 (0.95 becomes 0.949997), then scaled by ``1 / (1 - p)``. The
        generator is torch's default one, so seeding and checkpointed RNG states work as before.
        """

        def __init__(self, p: float):
            super().__init__()
            self.p = float(p)
            self.threshold = round(self.p * 65536) - 32768  # int16 draws below it are dropped

        def forward(self, x):
            if not self.training or self.p == 0.0:
                return x
            count = x.numel()
            # Bounds given: a bare random_() on int64 leaves the top bit 0, so one slice in four
            # would never drop. The upper bound is exclusive: one word in 2**64 never comes up.
            words = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
            keep = words.view(torch.int16)[:count].view(x.shape) >= self.threshold
            return x * torch.where(keep, 1.0 / (1.0 - self.p), 0.0).to(x.dtype)

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return FastDropout


def use_fast_dropout(model) -> int:
    """Replace the ``torch.nn.Dropout`` of every LoRA adapter (peft's ``lora_dropout``); returns how many."""
    fast = fast_dropout_class()
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, torch.nn.ModuleDict):
            for name, drop in list(drops.items()):
                if isinstance(drop, torch.nn.Dropout) and drop.p > 0:
                    drops[name] = fast(drop.p)
                    replaced += 1
    return replaced


def speed_up_for_cpu(model, device: str, precision: str) -> str:
    """Resolve ``precision`` and apply the CPU speed-ups; returns ``bf16`` or ``fp32``.

    On CPU: the cheaper LoRA dropout always, fp32 attention under bf16. Nothing changes on
    other devices.
    """
    resolved = resolve_precision(precision, device, model)
    if device.split(":")[0] == "cpu":
        use_fast_dropout(model)
        if resolved == "bf16":
            use_fp32_attention(model)
    return resolved
