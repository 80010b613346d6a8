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

import weakref

SUPPORTED_TYPES = ("llama",)
_PACKED: dict[int, tuple] = {}  # id(module) -> (weight version, data pointer, packed weight)
MAX_ROWS = 9  # the most positions checked at once after the prompt (1 token + 8 guesses)
_ROWS_PROBED: dict[tuple, bool] = {}  # (out, in features, threads) -> rows computed independently


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

    The packed copy is cached for the module's lifetime (in a side table, so the module
    still deep-copies and saves as before) and redone when the weight changed (its tensor
    version counts in-place updates, e.g. an optimizer step) or was replaced.
    """
    import torch

    if not _can_pack(module):
        return None
    weight = module.weight
    stamp = (weight._version, weight.data_ptr())
    cached = _PACKED.get(id(module))
    if cached is None or cached[:2] != stamp:
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        if cached is None:
            weakref.finalize(module, _PACKED.pop, id(module), None)
        cached = _PACKED[id(module)] = (*stamp, packed)
    return cached[2]


def rows_are_independent(packed, in_features: int, out_features: int) -> bool:
    """True when oneDNN computes each row of a matmul alike for 1 to ``MAX_ROWS`` rows.

    oneDNN picks its kernel by shape: for the shapes of real models (checked: SmolLM2) each
    row comes out bit for bit as alone, but not for every shape (a 32-wide toy model differs
    in the last bit). So it is measured once per shape rather than assumed.
    """
    import torch

    key = (out_features, in_features, torch.get_num_threads())  # threads split rows differently
    if key not in _ROWS_PROBED:
        rows = torch.randn(1, MAX_ROWS, in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)

        def matmul(x):
            return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")

        with torch.inference_mode():
            alone = torch.cat([matmul(rows[:, i : i + 1]) for i in range(MAX_ROWS)], dim=1)
            _ROWS_PROBED[key] = all(torch.equal(matmul(rows[:, :m]), alone[:, :m]) for m in range(2, MAX_ROWS + 1))
    return _ROWS_PROBED[key]


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
        self.exact_rows = len(self.packed) == len(modules) and self._rows_exact(modules, config)

    def _rows_exact(self, modules, config) -> bool:
        """True when several positions at once give the same logits as one at a time.

        Needs every matmul on laid-out bf16 weights with rows computed independently (fp32
        MKL and LoRA layers are not), and widths that fill whole vector registers (a partial
        register takes a scalar path that can round differently).
        """
        widths = (config.hidden_size, config.intermediate_size, self.head_dim)
        if any(width % 32 for width in widths):
            return False
        shapes = {(m.in_features, m.out_features): self.packed[id(m)] for m in modules}
        return all(rows_are_independent(packed, i, o) for (i, o), packed in shapes.items())

    def _linear(self, module, x, prompt: bool):
        import torch
        import torch.nn.functional as F

        if not prompt and (packed := self.packed.get(id(module))) is not None:
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

    def _attend(self, index: int, q, start: int, end: int, prompt: bool):
        import torch
        import torch.nn.functional as F

        keys, values = self.keys[index], self.values[index]

        def attend(query, stop, causal):
            return F.scaled_dot_product_attention(
                query, keys[:, :, :stop], values[:, :, :stop], scale=self.scaling, is_causal=causal, enable_gqa=self.gqa
            )

        if prompt or end - start == 1:
            return attend(q, end, end - start > 1)
        # Positions after the prompt attend one at a time, exactly as single-token decoding does.
        return torch.cat([attend(q[:, :, i : i + 1], start + i + 1, False) for i in range(end - start)], dim=2)

    def forward(self, input_ids, every_position: bool = False):
        """Run ``input_ids`` (``(1, n)``) at the next ``n`` positions and return logits.

        The first call is the prompt. Later calls take one position, or several when
        :attr:`exact_rows` (to check draft tokens); :meth:`rewind` drops positions again.

        Returns:
            ``(1, vocab)`` logits of the last position, or ``(n, vocab)`` for every position.
        """
        import torch
        import torch.nn.functional as F

        count = input_ids.shape[1]
        start, end = self.length, self.length + count
        prompt = start == 0
        if end > self.max_length:
            raise ValueError(f"the decoder holds {self.max_length} positions; {end} asked")
        if count > 1 and not prompt and not self.exact_rows:
            raise ValueError("several positions after the prompt need exact_rows")
        hidden = self.body.embed_tokens(input_ids)
        positions = torch.arange(start, end, device=self.device).unsqueeze(0)
        cos, sin = self.rotary(hidden, position_ids=positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            residual = hidden
            x = self._rms_norm(layer.input_layernorm, hidden)
            q = self._linear(attn.q_proj, x, prompt).view(1, count, -1, self.head_dim).transpose(1, 2)
            k = self._linear(attn.k_proj, x, prompt).view(1, count, -1, self.head_dim).transpose(1, 2)
            v = self._linear(attn.v_proj, x, prompt).view(1, count, -1, self.head_dim).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            self.keys[index][:, :, start:end] = k
            self.values[index][:, :, start:end] = v
            out = self._attend(index, q, start, end, prompt)
            out = out.transpose(1, 2).reshape(1, count, -1).contiguous()
            hidden = residual + self._linear(attn.o_proj, out, prompt)
            residual = hidden
            x = self._rms_norm(layer.post_attention_layernorm, hidden)
            mlp = layer.mlp
            gate, up = self._linear(mlp.gate_proj, x, prompt), self._linear(mlp.up_proj, x, prompt)
            hidden = residual + self._linear(mlp.down_proj, F.silu(gate) * up, prompt)
        self.length = end
        hidden = self._rms_norm(self.body.norm, hidden if every_position else hidden[:, -1:, :])
        return self._linear(self.lm_head, hidden, prompt)[0]

    def rewind(self, length: int) -> None:
        """Forget every position from ``length`` on (rejected draft tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} from {self.length}")
        self.length = length
