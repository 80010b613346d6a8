"""On CUDA the objectives' forward and backward never wait for the GPU (issue 18, item 7).

torch's sync debug mode raises on any call that makes the host wait for the device. A
stand-in model (a decoder that hands back hidden states computed on the GPU) keeps
transformers' own waits out of it: what is checked is the objectives' code (selection of the
trained positions, the loss, the statistics). tests/engine/test_host_syncs.py counts the same
on the CPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.gpu


def stand_in_model():
    import torch

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(model_type="llama")
            self.embed = torch.nn.Embedding(50, 16)
            self.lm_head = torch.nn.Linear(16, 50, bias=False)

        def get_decoder(self):
            return lambda input_ids, **_: SimpleNamespace(last_hidden_state=torch.tanh(self.embed(input_ids)))

    return StandIn().cuda()


def tokenized(count: int):
    from tui_ft.engine.data.templates import IGNORE_INDEX, Tokenized

    made = []
    for index in range(count):
        ids = [(7 * index + j) % 50 for j in range(5 + index)]
        made.append(Tokenized(ids, [IGNORE_INDEX] * 2 + ids[2:], len(ids)))
    return made


@pytest.mark.parametrize("packing", [False, True])
def test_sft_forward_and_backward_never_wait_for_the_gpu(packing):
    import torch

    from tui_ft.engine.training.sft import SFTObjective

    objective = SFTObjective.__new__(SFTObjective)
    objective.items, objective.pad_id, objective.packing = tokenized(6), 0, packing
    model = stand_in_model()
    batch = objective.collate(list(range(6)), "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        output = objective.forward(model, batch)
        output.loss_sum.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert output.stats["trained"] == objective.weight(list(range(6)))
    assert torch.isfinite(output.stats["nll"]).item()


def test_dpo_forward_and_backward_never_wait_for_the_gpu():
    import torch

    from tui_ft.engine.training.dpo import DPOObjective

    objective = DPOObjective.__new__(DPOObjective)
    pairs = tokenized(8)
    objective.items, objective.pad_id, objective.beta = list(zip(pairs[::2], pairs[1::2], strict=True)), 0, 0.1
    objective.reference = torch.randn(4, 2) - 5
    model = stand_in_model()
    batch = objective.collate([0, 1, 2, 3], "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        output = objective.forward(model, batch)
        output.loss_sum.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert output.stats["pairs"] == 4 and torch.isfinite(output.stats["loss_sum"]).item()
