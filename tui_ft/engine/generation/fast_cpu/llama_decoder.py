"""A lean forward pass for Llama-architecture models, for token-by-token decoding.

Why hand-written: at batch 1 a step is a few small matmuls per layer, and transformers'
forward adds several milliseconds of Python per token (mask building,
cache objects, output dataclasses, keyword plumbing through 30 layers). This module runs the
same operations, in the same order and dtypes, on the model's own weights and modules, with
a preallocated KV cache: the logits are bit-for-bit those of transformers' forward, so greedy
output equals ``model.generate()``'s (tests and ``bench/generate_speed.py`` check it).

Projections are called as modules when they are not plain ``nn.Linear`` (peft's LoRA layers),
so adapters work, and peft's ``disable_adapter()`` switches them off as usual.

bf16 on CPU: projections run on weights laid out once for oneDNN, and after the prompt q/k/v
and gate/up run as one call each (:class:`Projection`, :mod:`tui_ft.engine.generation.fast_cpu.onednn_weights`).
Several positions after the prompt (guessed tokens to check) run in one pass when each comes
out as it would alone, attention included (:func:`_attention_groups`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tui_ft.engine.generation.fast_cpu.onednn_weights import (
    MAX_ROWS,
    PROMPT_ROWS_PROBED,
    forget_packed,
    linear,
    packed_weight,
    prompt_is_exact,
    rows_are_independent,
    stacking_is_exact,
)

SUPPORTED_TYPES = ("llama",)
FLOAT_LANES = {"AVX512": 16, "AVX2": 8}  # floats in one of torch's vector registers, by its CPU kernels
KV_BLOCK = 512  # torch's CPU attention splits keys into blocks of this many positions
_ATTENTION_PROBED: dict[tuple, bool] = {}


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


def exact_single(module):
    """The module's laid-out weight when it decodes bit for bit as ``F.linear`` does, else None.

    On a CPU without native bf16 (AVX-512 without AVX512_BF16 or AMX) oneDNN emulates bf16
    with kernels that round some one-position results differently from ``F.linear``.
    """
    packed = packed_weight([module])
    if packed is not None and not stacking_is_exact([module], packed):
        forget_packed([module])
        return None
    return packed


class Projection:
    """Projections of one input (q, k, v; gate, up; or a single one) on laid-out weights.

    After the prompt they run as one oneDNN call on a stacked weight when that is exact,
    else one call each. A prompt runs a projection's own laid-out weight when that matches
    ``F.linear`` at prompt lengths (probed), else ``F.linear``. Modules that are not plain
    bf16 ``nn.Linear`` (fp32, LoRA layers) always run as transformers runs them.

    Args:
        modules: The projections, in output order.
        prompt_rows: The most prompt positions run on the laid-out weight at once (the output
            layer sees only the last position of a prompt); None for any number.
    """

    def __init__(self, modules: list, prompt_rows: int | None = None):
        self.modules = modules
        self.sizes = [module.out_features for module in modules]
        stacked = packed_weight(modules) if len(modules) > 1 else None
        if stacked is not None and not stacking_is_exact(modules, stacked):
            forget_packed(modules)  # each module gets its own below
            stacked = None
        self.stacked = stacked
        self.single = [None if self.stacked is not None else exact_single(module) for module in modules]
        probed = (1,) if prompt_rows == 1 else PROMPT_ROWS_PROBED
        self.prompt_ready = [
            packed is not None and prompt_is_exact(module, packed, probed)
            for module, packed in zip(modules, self.single, strict=False)
        ]
        self.prompt_rows = prompt_rows
        self.plain = [type(module) is torch.nn.Linear for module in modules]

    @property
    def all_packed(self) -> bool:
        return all(packed is not None for packed in self.packed)

    @property
    def packed(self) -> list:
        """The laid-out weights used after the prompt (None where a module has none)."""
        return [self.stacked] if self.stacked is not None else self.single

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(out, in) features of each weight in :attr:`packed`."""
        if self.stacked is not None:
            return [(sum(self.sizes), self.modules[0].in_features)]
        return [(module.out_features, module.in_features) for module in self.modules]

    def parts(self, x, prompt: bool) -> list:
        """Each module's output for ``x`` (``(1, rows, in)``), in order."""
        if not prompt and self.stacked is not None:
            return list(linear(x, self.stacked).split(self.sizes, dim=-1))
        rows_fit = self.prompt_rows is None or x.shape[1] <= self.prompt_rows
        outputs = []
        for module, packed, ready, plain in zip(self.modules, self.single, self.prompt_ready, self.plain, strict=False):
            if packed is not None and (not prompt or (ready and rows_fit)):
                outputs.append(linear(x, packed))
            elif plain:  # skips nn.Module.__call__ (hooks, dispatch): the same kernel, less Python
                outputs.append(F.linear(x, module.weight, module.bias))
            else:
                outputs.append(module(x))
        return outputs

    def __call__(self, x, prompt: bool):
        """The output of a single projection."""
        return self.parts(x, prompt)[0]


def float_lanes() -> int | None:
    """Floats in one vector register of the CPU kernels torch runs (None: unknown)."""
    return FLOAT_LANES.get(torch.backends.cpu.get_cpu_capability())


def _attention_groups(start: int, count: int, lanes: int) -> list[tuple[int, int]]:
    """Runs ``[first, last)`` of positions after ``start`` whose attention may share one call.

    torch's CPU attention sums whole registers of scores, then the last partial register one
    score at a time with another exp: a position attended together with later ones (their
    keys masked) comes out as alone only when its key count ends in the same register and the
    same key block as the longest one's.
    """

    def block(index: int) -> tuple[int, int]:
        keys = start + index + 1
        return keys // lanes, (keys - 1) // KV_BLOCK

    groups, first = [], 0
    for index in range(1, count + 1):
        if index == count or block(index) != block(first):
            groups.append((first, index))
            first = index
    return groups


def _rows_mask(rows: int, stop: int, device=None):
    """Which of ``stop`` keys each of the last ``rows`` positions sees (itself and those before)."""
    return torch.arange(stop, device=device) < torch.arange(stop - rows + 1, stop + 1, device=device).view(rows, 1, 1, 1)


def _attend_rows(query, keys, values, scale: float, gqa: bool, allowed=None):
    """Attention of several positions at once, each to the keys before it (see
    :func:`_attention_groups`): the positions go in as a batch, with a mask (``allowed``,
    :func:`_rows_mask`), so each is computed as a single position is."""
    rows, stop = query.shape[2], keys.shape[2]
    if allowed is None:
        allowed = _rows_mask(rows, stop, query.device)
    out = F.scaled_dot_product_attention(
        query.transpose(0, 2), keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1),
        attn_mask=allowed, scale=scale, enable_gqa=gqa,
    )
    return out.transpose(0, 2)


def grouped_attention_is_exact(heads: int, kv_heads: int, head_dim: int, dtype) -> bool:
    """True when :func:`_attend_rows` gives each position bit for bit what it gets alone
    (measured on random data at several lengths; cached per shape and thread count)."""
    lanes = float_lanes()
    key = (heads, kv_heads, head_dim, dtype, torch.get_num_threads(), lanes)
    if lanes is None:
        return False
    if key not in _ATTENTION_PROBED:
        generator = torch.Generator().manual_seed(3)
        exact = True
        with torch.inference_mode():
            for start in (37, 300, 505, 1013):
                count = MAX_ROWS
                query = torch.randn(1, heads, count, head_dim, generator=generator).to(dtype)
                keys = torch.randn(1, kv_heads, start + count, head_dim, generator=generator).to(dtype)
                values = torch.randn(1, kv_heads, start + count, head_dim, generator=generator).to(dtype)
                for first, last in _attention_groups(start, count, lanes):
                    stop = start + last
                    together = _attend_rows(query[:, :, first:last], keys[:, :, :stop], values[:, :, :stop], 0.125, heads != kv_heads)
                    for row in range(first, last):
                        alone = F.scaled_dot_product_attention(
                            query[:, :, row : row + 1], keys[:, :, : start + row + 1], values[:, :, : start + row + 1],
                            scale=0.125, enable_gqa=heads != kv_heads,
                        )
                        exact = exact and torch.equal(together[:, :, row - first : row - first + 1], alone)
        _ATTENTION_PROBED[key] = exact
    return _ATTENTION_PROBED[key]


class LlamaDecoder:
    """Runs a Llama model position by position with a preallocated KV cache.

    Args:
        model: A ``LlamaForCausalLM`` (or a peft model wrapping one), in eval mode.
        max_length: The most positions (prompt + reply) this decoder will hold.
    """

    def __init__(self, model, max_length: int):
        inner = unwrap_causal_lm(model)
        self.body = inner.model
        config = inner.config
        self.layers = list(self.body.layers[: config.num_hidden_layers])
        first = self.layers[0].self_attn
        self.head_dim = first.head_dim
        self.scaling = first.scaling
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.gqa = self.heads != self.kv_heads
        self.qk_width = (self.heads + self.kv_heads) * self.head_dim  # q and k, side by side
        weight = self.body.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        shape = (1, self.kv_heads, max_length, self.head_dim)
        self.keys = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.values = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.length = 0  # positions filled
        self.max_length = max_length
        self.rotary = self.body.rotary_emb
        self.projections = []
        for layer in self.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.projections.append((
                Projection([attn.q_proj, attn.k_proj, attn.v_proj]), Projection([attn.o_proj]),
                Projection([mlp.gate_proj, mlp.up_proj]), Projection([mlp.down_proj]),
            ))
        self.lm_head = Projection([inner.lm_head], prompt_rows=1)
        every = [self.lm_head] + [projection for layer in self.projections for projection in layer]
        self.packed = sum(len(projection.packed) for projection in every if projection.all_packed)
        self.exact_rows = all(projection.all_packed for projection in every) and self._rows_exact(every, config)

    def _rows_exact(self, projections, config) -> bool:
        """True when several positions at once give the same logits as one at a time.

        Needs every matmul on laid-out bf16 weights with rows computed independently (fp32
        MKL and LoRA layers are not), and widths that fill whole vector registers (a partial
        register takes a scalar path that can round differently).
        """
        widths = (config.hidden_size, config.intermediate_size, self.head_dim)
        if any(width % 32 for width in widths):
            return False
        shapes = {shape: packed for projection in projections for shape, packed in zip(projection.shapes, projection.packed, strict=False)}
        return all(rows_are_independent(packed, i, o) for (o, i), packed in shapes.items())

    @staticmethod
    def _rms_norm(norm, x):
        # transformers' LlamaRMSNorm, operation for operation (the same rounding).
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + norm.variance_epsilon)
        return norm.weight * x.to(dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return (x * cos) + (rotated * sin)

    def _qkv(self, projection: Projection, x, cos, sin, prompt: bool):
        """Queries and keys (rotated) and values, ``(1, heads, rows, head_dim)`` each."""
        count = x.shape[1]

        def heads(output):
            return output.view(1, count, -1, self.head_dim).transpose(1, 2)

        if projection.stacked is not None and not prompt:
            qkv = linear(x, projection.stacked)
            # q and k side by side rotate together: the same arithmetic per element, half the calls.
            qk = self._rotate(heads(qkv[..., : self.qk_width]), cos, sin)
            return qk[:, : self.heads], qk[:, self.heads :], heads(qkv[..., self.qk_width :])
        q, k, v = projection.parts(x, prompt)
        return self._rotate(heads(q), cos, sin), self._rotate(heads(k), cos, sin), heads(v)

    def _attend(self, index: int, q, start: int, end: int, prompt: bool):
        keys, values = self.keys[index], self.values[index]
        if prompt or end - start == 1:
            return F.scaled_dot_product_attention(
                q, keys[:, :, :end], values[:, :, :end], scale=self.scaling, is_causal=end - start > 1, enable_gqa=self.gqa
            )
        # Positions after the prompt: each as single-token decoding computes it.
        parts = []
        for (first, last), allowed in zip(self._groups, self._masks, strict=False):
            stop = start + last
            if last - first == 1:
                parts.append(F.scaled_dot_product_attention(
                    q[:, :, first:last], keys[:, :, :stop], values[:, :, :stop], scale=self.scaling, enable_gqa=self.gqa
                ))
            else:
                parts.append(_attend_rows(q[:, :, first:last], keys[:, :, :stop], values[:, :, :stop], self.scaling, self.gqa,
                                          allowed))
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    def forward(self, input_ids, every_position: bool = False):
        """Run ``input_ids`` (``(1, n)``) at the next ``n`` positions and return logits.

        The first call is the prompt. Later calls take one position, or several when
        :attr:`exact_rows` (to check draft tokens); :meth:`rewind` drops positions again.

        Returns:
            ``(1, vocab)`` logits of the last position, or ``(n, vocab)`` for every position.
        """
        count = input_ids.shape[1]
        start, end = self.length, self.length + count
        prompt = start == 0
        if end > self.max_length:
            raise ValueError(f"the decoder holds {self.max_length} positions; {end} asked")
        if count > 1 and not prompt and not self.exact_rows:
            raise ValueError("several positions after the prompt need exact_rows")
        if count > 1 and not prompt:
            exact = grouped_attention_is_exact(self.heads, self.kv_heads, self.head_dim, self.dtype)
            self._groups = _attention_groups(start, count, float_lanes()) if exact else [(i, i + 1) for i in range(count)]
            # The same masks serve every layer: made once a pass.
            self._masks = [_rows_mask(last - first, start + last, self.device) if last - first > 1 else None
                           for first, last in self._groups]
        hidden = self.body.embed_tokens(input_ids)
        positions = torch.arange(start, end, device=self.device).unsqueeze(0)
        cos, sin = self.rotary(hidden, position_ids=positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        for index, layer in enumerate(self.layers):
            qkv_proj, o_proj, gate_up_proj, down_proj = self.projections[index]
            residual = hidden
            q, k, v = self._qkv(qkv_proj, self._rms_norm(layer.input_layernorm, hidden), cos, sin, prompt)
            self.keys[index][:, :, start:end] = k
            self.values[index][:, :, start:end] = v
            out = self._attend(index, q, start, end, prompt)
            out = out.transpose(1, 2).reshape(1, count, -1).contiguous()
            hidden = residual + o_proj(out, prompt)
            residual = hidden
            gate, up = gate_up_proj.parts(self._rms_norm(layer.post_attention_layernorm, hidden), prompt)
            hidden = residual + down_proj(F.silu(gate) * up, prompt)
        self.length = end
        hidden = self._rms_norm(self.body.norm, hidden if every_position else hidden[:, -1:, :])
        return self.lm_head(hidden, prompt)[0]

    def rewind(self, length: int) -> None:
        """Forget every position from ``length`` on (rejected draft tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} from {self.length}")
        self.length = length
