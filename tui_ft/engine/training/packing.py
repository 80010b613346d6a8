"""Packing: several examples in one row, each attending only to itself.

A batch of examples of mixed lengths padded to its longest wastes about 40 % of its
positions (the training benchmark's random batches); batches of similar lengths waste
little but train worse (see ``batching.epoch_batches``). Packing keeps random batches and
drops the padding: the examples of a micro-batch are laid end to end in rows no longer than
its longest example, position ids restart at 0 for each example, and no attention mask is
passed. From position ids that restart, transformers builds a block-diagonal causal mask
(its padding-free path), so every example sees exactly what it would alone: the same
positions, the same attention, the same loss.
"""

from __future__ import annotations

import torch

from tui_ft.engine.data.templates import IGNORE_INDEX, Tokenized

# Architectures whose transformers forward reads packed sequences from position ids, with
# attention implementations that take its mask (flash-attention kernels are left out: untested).
PACKING_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2"}
PACKING_ATTENTION = {"sdpa", "eager", "tui_ft_sdpa_fp32"}
# What a position of attention span costs, in positions of the rest of the model: a row of
# width W costs W * (1 + ATTENTION_COST * W). Rows up to twice the longest example then cut
# padding from 17 % to 7 % (batches of 8 lengths drawn like the benchmark's) and the positions
# computed by 11 %, for 12 % more attention work (a small share of a step).
ATTENTION_COST = 5e-4


def supports_packing(model, device: str) -> bool:
    """True for a model that packs safely; on CPU only, where it was measured (5 % padding instead of 40 %)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return (device.split(":")[0] == "cpu" and getattr(config, "model_type", None) in PACKING_TYPES
            and getattr(config, "_attn_implementation", None) in PACKING_ATTENTION)


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Positions into ``lengths`` grouped into rows of total length at most ``capacity``.

    First fit, longest first (a length above ``capacity`` gets a row of its own). Deterministic:
    ties keep their order.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([index])
            room.append(capacity - lengths[index])
        else:
            rows[row].append(index)
            room[row] -= lengths[index]
    return rows


def best_rows(lengths: list[int]) -> list[list[int]]:
    """The packing that costs least, trying row capacities from the longest example to twice it.

    The cost counts every position computed (padding included) plus the attention span:
    ``rows * width * (1 + ATTENTION_COST * width)``.
    """
    longest = max(lengths)
    best, best_cost = None, None
    for capacity in range(longest, 2 * longest + 1, max(1, longest // 32)):
        rows = pack_rows(lengths, capacity)
        width = max(sum(lengths[i] for i in row) for row in rows)
        cost = len(rows) * width * (1 + ATTENTION_COST * width)
        if best_cost is None or cost < best_cost:
            best, best_cost = rows, cost
    return best


def collate_packed(items: list[Tokenized], pad_id: int) -> dict:
    """Pack tokenized examples into ``input_ids``, ``position_ids`` and ``labels`` tensors.

    Rows are chosen by :func:`best_rows`. Each example's first label is ignored: in a packed
    row the previous example's last token would otherwise predict it (alone, the first token
    is never predicted either).
    The padding at a row's end gets its own restarting positions, so it forms a segment no
    example attends to. ``tokens`` and ``positions`` count real tokens and computed positions.
    """
    rows = best_rows([len(item.input_ids) for item in items])
    width = max(sum(len(items[i].input_ids) for i in row) for row in rows)
    ids, positions, labels = [], [], []
    for row in rows:
        row_ids, row_positions, row_labels = [], [], []
        for i in row:
            item = items[i]
            row_ids += item.input_ids
            row_positions += range(len(item.input_ids))
            row_labels += [IGNORE_INDEX] + item.labels[1:]
        pad = width - len(row_ids)
        ids.append(row_ids + [pad_id] * pad)
        positions.append(row_positions + list(range(pad)))
        labels.append(row_labels + [IGNORE_INDEX] * pad)
    tensor = lambda rows_: torch.tensor(rows_, dtype=torch.long)  # noqa: E731
    from tui_ft.engine.training.batching import add_trained_positions

    return add_trained_positions({"input_ids": tensor(ids), "position_ids": tensor(positions), "labels": tensor(labels),
                                  "tokens": sum(len(item.input_ids) for item in items), "positions": len(rows) * width})
