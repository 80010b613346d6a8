"""A lean forward pass for Llama-architecture models, for token-by-token decoding.

Why hand-written: at batch 1 a 135M model's step is short (about 10 ms of matmuls in bf16),
and transformers' forward adds several milliseconds of Python per token (mask building,
cache objects, output dataclasses, keyword plumbing through 30 layers). This module runs the
same operations, in the same order and dtypes, on the model's own weights and modules, with
a preallocated KV cache: the logits are bit-for-bit those of transformers' forward, so greedy
output equals ``model.generate()``'s (tests and ``bench/generate_speed.py`` check it).

Projections are called as modules when they are not plain ``nn.Linear`` (peft's LoRA layers),
so adapters work, and peft's ``disable_adapter()`` switches them off as usual.
"""

from __future__ import annotations

SUPPORTED_TYPES = ("llama",)


def _plain_linear(module) -> bool:
    import torch

    return type(module) is torch.nn.Linear


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

    def _linear(self, module, x):
        import torch.nn.functional as F

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
