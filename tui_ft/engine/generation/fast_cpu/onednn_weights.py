"""bf16 projection weights laid out once for oneDNN's one-position matmul, and the checks
that say when several rows or several stacked projections may share one call.

Why: oneDNN's matmul re-lays out a plain bf16 weight on every call (``F.linear``), which
made one-position bf16 decoding slower than fp32 and costs a prompt a tenth of its time.
Laid out once, in the layout oneDNN picks for many rows (``LAYOUT_ROWS``), the result is bit
for bit that of ``F.linear`` at one position and at prompt lengths, and as fast as the
one-row layout at one row (measured on SmolLM2's shapes). Each call still costs about 20 µs
before any arithmetic, so after the prompt, projections that read the same input (q, k, v;
gate, up) run on one stacked weight: 211 calls a token become 121 on a 30-layer model.
(Stacked weights do not round like separate ones at every prompt length, so the prompt
runs those projections through ``F.linear``.)

Exactness is measured, not assumed: oneDNN picks its kernel by shape, and for some shapes
(a 32-wide toy model) rows or stacked columns round differently in the last bit.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

MAX_ROWS = 9  # the most positions checked at once after the prompt (1 token + 8 guesses)
LAYOUT_ROWS = 128  # the batch size oneDNN lays weights out for (one layout serves every row count)
PROMPT_ROWS_PROBED = (1, 300)  # prompt lengths at which a laid-out weight is checked
_PACKED: dict[tuple[int, ...], tuple] = {}  # module ids -> (weight stamps, packed weight)
_PROBED: dict[tuple, bool] = {}  # (kind, shapes, threads) -> measured exact


def can_pack(module) -> bool:
    """True for a plain bias-free bf16 ``nn.Linear`` on a CPU whose oneDNN does bf16."""
    if type(module) is not torch.nn.Linear or module.bias is not None:
        return False
    weight = module.weight
    return (
        weight.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def linear(x, packed):
    """``x @ weight.T`` on a laid-out weight (``x``: ``(1, rows, in)``)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


def packed_weight(modules):
    """The weights of ``modules`` stacked (output features in order) and laid out for oneDNN.

    None unless every module :func:`can_pack`. The copy is cached for the modules' lifetime
    (in a side table, so the model still deep-copies and saves as before) and redone when a
    weight changed (its tensor version counts in-place updates, e.g. an optimizer step) or
    was replaced.
    """
    if not all(can_pack(module) for module in modules):
        return None
    key = tuple(id(module) for module in modules)
    stamps = tuple((module.weight._version, module.weight.data_ptr()) for module in modules)
    cached = _PACKED.get(key)
    if cached is None or cached[0] != stamps:
        with torch.no_grad():
            weight = torch.cat([module.weight.detach() for module in modules]) if len(modules) > 1 else modules[0].weight.detach()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, LAYOUT_ROWS)
        if cached is None:
            weakref.finalize(modules[0], _PACKED.pop, key, None)
        cached = _PACKED[key] = (stamps, packed)
    return cached[1]


def forget_packed(modules) -> None:
    """Drop the cached laid-out weight of ``modules`` (a stacking found inexact: no second copy)."""
    _PACKED.pop(tuple(id(module) for module in modules), None)


def _probe(kind: str, shapes: tuple, check) -> bool:
    key = (kind, shapes, torch.get_num_threads())  # threads split the work differently
    if key not in _PROBED:
        with torch.inference_mode():
            _PROBED[key] = check()
    return _PROBED[key]


def _random_rows(in_features: int, seed: int = 0):
    return torch.randn(1, MAX_ROWS, in_features, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


def rows_are_independent(packed, in_features: int, out_features: int) -> bool:
    """True when oneDNN computes each row of a matmul alike for 1 to ``MAX_ROWS`` rows."""

    def check() -> bool:
        rows = _random_rows(in_features)
        alone = torch.cat([linear(rows[:, i : i + 1], packed) for i in range(MAX_ROWS)], dim=1)
        return all(torch.equal(linear(rows[:, :m], packed), alone[:, :m]) for m in range(2, MAX_ROWS + 1))

    return _probe("rows", (out_features, in_features), check)


def stacking_is_exact(modules, stacked) -> bool:
    """True when the stacked laid-out weight gives each module's outputs bit for bit as
    ``F.linear`` does, one position at a time (the reference: transformers' decoding step)."""
    shapes = tuple((module.out_features, module.in_features) for module in modules)

    def check() -> bool:
        rows = _random_rows(shapes[0][1], seed=2)
        for i in range(MAX_ROWS):
            row = rows[:, i : i + 1]
            if not torch.equal(linear(row, stacked), torch.cat([F.linear(row, m.weight) for m in modules], dim=-1)):
                return False
        return True

    return _probe("stack", shapes, check)


def prompt_is_exact(module, packed, rows: tuple[int, ...] = PROMPT_ROWS_PROBED) -> bool:
    """True when the module's laid-out weight gives ``F.linear``'s result bit for bit at these
    row counts (a prompt's positions all at once). Probed on the real weight: making a random
    one of an output layer's size would cost more than the check."""

    def check() -> bool:
        generator = torch.Generator().manual_seed(4)
        for count in rows:
            x = torch.randn(1, count, module.in_features, generator=generator).to(torch.bfloat16)
            if not torch.equal(linear(x, packed), F.linear(x, module.weight)):
                return False
        return True

    return _probe("prompt", (module.out_features, module.in_features, rows), check)
