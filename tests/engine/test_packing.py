"""Packed batches: every example once, no cross-example attention, the same loss as padded batches."""

from __future__ import annotations

import random

import pytest
import torch

from tui_ft.engine.data import Example
from tui_ft.engine.data.templates import IGNORE_INDEX
from tui_ft.engine.training.batching import epoch_batches
from tui_ft.engine.training.packing import best_rows, collate_packed, pack_rows, supports_packing
from tui_ft.engine.training.sft import SFTObjective


def small_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa",
                         initializer_range=0.3)  # large weights: attending across examples would show
    return LlamaForCausalLM(config)


def examples(count: int) -> list[Example]:
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    return [Example(messages=[{"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(1, 6)))},
                              {"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 40)))}])
            for _ in range(count)]


def test_rows_hold_every_example_once_within_the_capacity():
    lengths = [random.Random(i).randint(5, 100) for i in range(50)]
    rows = pack_rows(lengths, 120)
    assert sorted(i for row in rows for i in row) == list(range(50))
    assert all(sum(lengths[i] for i in row) <= 120 for row in rows)
    assert len(rows) < 50 and pack_rows(lengths, 120) == rows
    assert pack_rows([30, 200, 10], 100) == [[1], [0, 2]]  # too long for any row: a row of its own


def test_best_rows_compute_fewer_positions_than_rows_as_long_as_the_longest_example():
    rng = random.Random(0)
    plain = best = 0
    for _ in range(100):
        lengths = [rng.randint(60, 340) for _ in range(8)]
        rows = best_rows(lengths)
        assert sorted(i for row in rows for i in row) == list(range(8))
        assert max(sum(lengths[i] for i in row) for row in rows) <= 2 * max(lengths)
        plain += len(pack_rows(lengths, max(lengths))) * max(lengths)
        best += len(rows) * max(sum(lengths[i] for i in row) for row in rows)
    assert best < 0.95 * plain  # about 11 % fewer positions for lengths like the benchmark's
    assert best_rows([100, 100]) == [[0], [1]]  # one row of 200 costs more attention than two of 100


@pytest.mark.parametrize("train_on_prompt", [False, True])
def test_packed_rows_give_the_padded_batches_loss_and_gradient(tokenizer, train_on_prompt):
    model = small_llama(len(tokenizer))
    objective = SFTObjective(examples(12), tokenizer, "alpaca", 128, train_on_prompt)
    indices = list(range(12))

    def loss_and_grad(packing: bool):
        objective.packing = packing
        model.zero_grad()
        output = objective.forward(model, objective.collate(indices, "cpu"))
        output.loss_sum.backward()
        return output, model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    padded, padded_grad = loss_and_grad(False)
    packed, packed_grad = loss_and_grad(True)
    assert packed.stats["trained"] == padded.stats["trained"] == objective.weight(indices)
    assert packed.stats["tokens"] == padded.stats["tokens"]
    assert packed.stats["padding"] < padded.stats["padding"] / 2
    assert packed.stats["nll"] == pytest.approx(padded.stats["nll"], rel=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-5)


def test_a_packed_row_restarts_positions_and_never_predicts_across_examples(tokenizer):
    objective = SFTObjective(examples(4), tokenizer, "alpaca", 128, train_on_prompt=True)
    items = objective.items
    batch = collate_packed(items, objective.pad_id)
    for _row_ids, row_positions, row_labels in zip(batch["input_ids"], batch["position_ids"], batch["labels"], strict=False):
        starts = [i for i, p in enumerate(row_positions.tolist()) if p == 0]
        assert all(row_labels[i] == IGNORE_INDEX for i in starts)  # nothing predicts a segment's first token
    assert batch["tokens"] == sum(len(item.input_ids) for item in items)
    assert batch["positions"] == batch["input_ids"].numel() >= batch["tokens"]


def test_only_cpu_llama_like_models_with_sdpa_pack(tokenizer):
    model = small_llama(len(tokenizer))
    assert supports_packing(model, "cpu")
    assert not supports_packing(model, "cuda:0")
    model.config._attn_implementation = "flash_attention_2"
    assert not supports_packing(model, "cpu")


def test_random_batches_are_mixed_lengths_and_a_pure_function_of_seed_and_epoch():
    lengths = list(range(1, 65))
    grouped = epoch_batches(lengths, 8, seed=3, epoch=0)
    mixed = epoch_batches(lengths, 8, seed=3, epoch=0, grouped=False)
    assert mixed == epoch_batches(lengths, 8, seed=3, epoch=0, grouped=False) != epoch_batches(lengths, 8, 3, 1, False)
    assert sorted(i for batch in mixed for i in batch) == list(range(64))
    spread = lambda batches: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)  # noqa: E731
    assert spread(grouped) < 8 * 8 and spread(mixed) > 8 * 30  # grouped batches are narrow, random ones wide
