"""A training step reads values back from the device once, not once per micro-batch and value (issue 18, item 7).

On a GPU every read (``float(tensor)``, ``.item()``, a count of a boolean mask) waits for
every kernel queued before it. The counts a step needs are made on the host when the batch is
collated, the loss sums stay tensors, and :func:`reduce_stats` reads them all at once. Here a
stand-in model (a decoder that hands back fixed hidden states) keeps transformers' own reads
out of the count; tests/gpu/test_cuda_host_syncs.py checks the same on CUDA with torch's sync
debug mode.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tui_ft.engine.data.templates import IGNORE_INDEX, Tokenized
from tui_ft.engine.training.distributed import Group, reduce_stats

HIDDEN, VOCAB = 16, 50


class StandInModel(torch.nn.Module):
    """What ``selected_logits`` calls on a plain-head model: a decoder and an output head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(model_type="llama")
        self.embed = torch.nn.Embedding(VOCAB, HIDDEN)
        self.lm_head = torch.nn.Linear(HIDDEN, VOCAB, bias=False)

    def get_decoder(self):
        return lambda input_ids, **_: SimpleNamespace(last_hidden_state=torch.tanh(self.embed(input_ids)))


class Reads:
    """Counts the ways Python reads a tensor's value back (each one a wait on a GPU)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(real))

    def _counting(self, real):
        def read(tensor, *args, **kwargs):
            self.count += 1
            return real(tensor, *args, **kwargs)

        return read


def items(count: int = 6) -> list[Tokenized]:
    made = []
    for index in range(count):
        ids = [(7 * index + j) % VOCAB for j in range(5 + index)]
        prompt = 2 + index % 3
        made.append(Tokenized(ids, [IGNORE_INDEX] * prompt + ids[prompt:], len(ids)))
    return made


def sft_objective(packing: bool):
    from tui_ft.engine.training.sft import SFTObjective

    objective = SFTObjective.__new__(SFTObjective)
    objective.items, objective.pad_id, objective.packing = items(), 0, packing
    return objective


@pytest.mark.parametrize("packing", [False, True])
def test_sft_micro_batches_read_nothing_back_and_the_step_reads_once(monkeypatch, packing):
    objective, model = sft_objective(packing), StandInModel()
    batches = [objective.collate([0, 1, 2], "cpu"), objective.collate([3, 4, 5], "cpu")]
    reads = Reads(monkeypatch)
    outputs = [objective.forward(model, batch) for batch in batches]
    for output in outputs:
        output.loss_sum.backward()
    assert reads.count == 0  # no value read back during the micro-batches
    values = objective.summarize(reduce_stats([o.stats for o in outputs], Group()))
    assert reads.count == 1  # the step's statistics: one read
    monkeypatch.undo()

    # The same numbers as counting on the device: the host's indices select the same positions.
    trained = sum(o.stats["trained"] for o in outputs)
    assert trained == objective.weight([0, 1, 2, 3, 4, 5])
    reference = 0.0
    for batch in batches:
        device_only = {k: v for k, v in batch.items() if not k.startswith("trained")}  # a mask counted on the device
        reference += float(objective.forward(model, device_only).loss_sum)
    assert values["loss"] == pytest.approx(reference / trained, rel=1e-6)


def test_dpo_micro_batches_read_nothing_back(monkeypatch):
    from tui_ft.engine.training.dpo import DPOObjective

    objective, model = DPOObjective.__new__(DPOObjective), StandInModel()
    pairs = items(8)
    objective.items, objective.pad_id, objective.beta = list(zip(pairs[::2], pairs[1::2], strict=True)), 0, 0.1
    objective.reference = torch.randn(4, 2) - 5
    batch = objective.collate([0, 1, 2, 3], "cpu")
    reads = Reads(monkeypatch)
    output = objective.forward(model, batch)
    output.loss_sum.backward()
    assert reads.count == 0
    stats = reduce_stats([output.stats], Group())[0]
    assert reads.count == 1
    monkeypatch.undo()
    by_hand = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels", "reference")}
    expected = objective.forward(model, by_hand).stats
    assert stats["pairs"] == 4 and stats["tokens"] == expected["tokens"]
    for key in ("loss_sum", "chosen", "rejected", "correct"):
        assert stats[key] == pytest.approx(float(expected[key]), rel=1e-6), key


def test_reduce_stats_adds_host_numbers_and_device_tensors_alike():
    stats = [{"nll": torch.tensor(1.5), "trained": 3}, {"nll": torch.tensor(2.25), "trained": 4}, {"nll": 0.25, "trained": 1}]
    assert reduce_stats(stats, Group()) == [{"nll": 4, "trained": 8}]
    assert reduce_stats([{"a": 1.5}, {"a": 2}], Group()) == [{"a": 3.5}]
