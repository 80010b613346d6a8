"""A lean forward pass for Llama-architecture models, for token-by-token decoding.

Why hand-written: at batch 1 a 135M model's step is short (about 10 ms of matmuls in bf16),
and transformers' forward adds several milliseconds of Python per token (mask building,
cache objects, output dataclasses, keyword plumbing through 30 layers). This module runs the
same operations, in the same order and dtypes, on the model's own weights and modules, with
a preallocated KV cache: the logits are bit-for-bit those of transformers' forward, so greedy
output equals ``model.generate()``'s (tests and ``bench/generate_speed.py`` check it).

Projections are called as modules when they are not plain ``nn.Linear`` (peft's LoRA layers),
so adapters work, and peft's ``disable_adapter()`` switches them off as usual.

bf16 on CPU: for one position at a time, oneDNN's matmul re-lays out the plain weight on
every call, which makes bf16 decoding slower than fp32. The weights are laid out once for
oneDNN (``_reorder_linear_weight`` with batch size 1) and kept next to the module (about one
more copy of the bf16 weights); the result is bit-for-bit that of ``F.linear`` at one
position (checked by the tests), and measured 3x faster than fp32 on an AMX CPU. The prompt
(many positions) still runs through ``F.linear``, which is fast there.
"""

from __future__ import annotations

SUPPORTED_TYPES = ("llama",)
PACKED_ATTRIBUTE = "_tui_ft_decode_weight"  # (weight version, data pointer, packed weight)


def _plain_linear(module) -> bool:
    import torch

    return type(module) is torch.nn.Linear


def _can_pack(module) -> bool:
    import torch

    if not _plain_linear(module) or module.bias is not None:
        return False
    weight = module.weight
    return (
        weight.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def packed_decode_weight(module):
    """The module's bf16 weight laid out for oneDNN at batch size 1 (None where that does not apply).

    The packed copy is cached on the module and redone when the weight changed (its tensor
    version counts in-place updates, e.g. an optimizer step) or was replaced.
    """
    import torch

    if not _can_pack(module):
        return None
    weight = module.weight
    stamp = (weight._version, weight.data_ptr())
    cached = getattr(module, PACKED_ATTRIBUTE, None)
    if cached is None or cached[:2] != stamp:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        cached = (*stamp, packed)
        object.__setattr__(module, PACKED_ATTRIBUTE, cached)  # a cache, not a parameter or buffer
    return cached[2]


def unwrap_causal_lm(model):
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def supports_lean_decoding(model) -> bool:
    """True when :class:`LlamaDecoder` reproduces this model's forward exactly."""
    inner = unwrap_causal_lm(model)
    config = inner.config
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        getattr(config, "model_type", None) in SUPPORTED_TYPES
        and getattr(config, "hidden_act", None) == "silu"
        and rope.get("rope_type", "default") == "default"
        and getattr(config, "pretraining_tp", 1) == 1
        and getattr(config, "_attn_implementation", "sdpa") in ("sdpa", None)
        and hasattr(inner, "model")
        and hasattr(inner, "lm_head")
        and not getattr(inner, "training", False)
    )


class LlamaDecoder:
    """Runs a Llama model position by position with a preallocated KV cache.

    Args:
        model: A ``LlamaForCausalLM`` (or a peft model wrapping one), in eval mode.
        max_length: The most positions (prompt + reply) this decoder will hold.
    """

    def __init__(self, model, max_length: int):
        import torch

        inner = unwrap_causal_lm(model)
        self.body = inner.model
        self.lm_head = inner.lm_head
        config = inner.config
        self.layers = list(self.body.layers[: config.num_hidden_layers])
        first = self.layers[0].self_attn
        self.head_dim = first.head_dim
        self.scaling = first.scaling
        self.kv_heads = config.num_key_value_heads
        self.gqa = config.num_attention_heads != config.num_key_value_heads
        weight = self.body.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        shape = (1, self.kv_heads, max_length, self.head_dim)
        self.keys = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.values = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.length = 0  # positions filled
        self.max_length = max_length
        self.rotary = self.body.rotary_emb
        modules = [self.lm_head]
        for layer in self.layers:
            attn, mlp = layer.self_attn, layer.mlp
            modules += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        self.packed = {id(m): w for m in modules if (w := packed_decode_weight(m)) is not None}

    def _linear(self, module, x):
        import torch
        import torch.nn.functional as F

        if x.shape[1] == 1 and (packed := self.packed.get(id(module))) is not None:
            return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        # A plain Linear skips nn.Module.__call__ (hooks, dispatch): the same kernel, less Python.
        return F.linear(x, module.weight, module.bias) if _plain_linear(module) else module(x)

    @staticmethod
    def _rms_norm(norm, x):
        import torch

        # transformers' LlamaRMSNorm, operation for operation (the same rounding).
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + norm.variance_epsilon)
        return norm.weight * x.to(dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return (x * cos) + (rotated * sin)

    def forward(self, input_ids):
        """Run ``input_ids`` (``(1, n)``) at the next ``n`` positions; return the last position's logits."""
        import torch
        import torch.nn.functional as F

        count = input_ids.shape[1]
        start, end = self.length, self.length + count
        if end > self.max_length:
            raise ValueError(f"the decoder holds {self.max_length} positions; {end} asked")
        if count > 1 and start > 0:
            raise ValueError("several positions at once only for the prompt, at the start")
        hidden = self.body.embed_tokens(input_ids)
        positions = torch.arange(start, end, device=self.device).unsqueeze(0)
        cos, sin = self.rotary(hidden, position_ids=positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        causal = count > 1
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            residual = hidden
            x = self._rms_norm(layer.input_layernorm, hidden)
            q = self._linear(attn.q_proj, x).view(1, count, -1, self.head_dim).transpose(1, 2)
            k = self._linear(attn.k_proj, x).view(1, count, -1, self.head_dim).transpose(1, 2)
            v = self._linear(attn.v_proj, x).view(1, count, -1, self.head_dim).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            self.keys[index][:, :, start:end] = k
            self.values[index][:, :, start:end] = v
            out = F.scaled_dot_product_attention(
                q,
                self.keys[index][:, :, :end],
                self.values[index][:, :, :end],
                scale=self.scaling,
                is_causal=causal,
                enable_gqa=self.gqa,
            )
            out = out.transpose(1, 2).reshape(1, count, -1).contiguous()
            hidden = residual + self._linear(attn.o_proj, out)
            residual = hidden
            x = self._rms_norm(layer.post_attention_layernorm, hidden)
            mlp = layer.mlp
            x = self._linear(mlp.down_proj, F.silu(self._linear(mlp.gate_proj, x)) * self._linear(mlp.up_proj, x))
            hidden = residual + x
        self.length = end
        hidden = self._rms_norm(self.body.norm, hidden[:, -1:, :])
        return self._linear(self.lm_head, hidden)[:, -1, :]
