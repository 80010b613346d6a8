"""CPU speed-ups of training: the precision choice, fp32 attention under bf16, the cheaper dropout.

Each must leave the mathematics alone: the same attention (padding mask included) and a
dropout with the same keep probability, scale and gradient.
"""

from __future__ import annotations

import pytest
import torch

from tui_ft.engine.training import cpu_speed
from tui_ft.engine.training.cpu_speed import resolve_precision, use_fast_dropout, use_fp32_attention


def small_llama(hidden: int = 32):
    """A 2-layer random Llama built in memory (SDPA attention, as loaded models get)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=101, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


class Shape:
    def __init__(self, hidden):
        self.config = type("Config", (), {"hidden_size": hidden})()


@pytest.mark.parametrize(("precision", "device", "hidden", "amx", "expected"), [
    ("auto", "cpu", 576, True, "bf16"),
    ("auto", "cpu", 576, False, "fp32"),
    ("auto", "cpu", 32, True, "fp32"),  # a tiny model gains nothing from AMX
    ("auto", "cuda:0", 32, False, "bf16"),  # an A100 or newer: native bf16
    ("auto", "mps", 576, True, "fp32"),
    ("fp32", "cpu", 576, True, "fp32"),
    ("bf16", "cpu", 32, False, "bf16"),
])
def test_auto_precision_is_bf16_on_cuda_and_on_amx_cpus_for_models_big_enough(monkeypatch, precision, device, hidden,
                                                                                amx, expected):
    monkeypatch.setattr(cpu_speed, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(cpu_speed, "bf16_is_native", lambda device: device.startswith("cuda"))
    assert resolve_precision(precision, device, Shape(hidden)) == expected


def test_auto_precision_is_fp32_with_tf32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    """A V100 or T4: ``is_bf16_supported()`` says yes by emulation; training there must not use it."""
    monkeypatch.setattr(cpu_speed, "bf16_is_native", lambda device: False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert resolve_precision("auto", "cuda:0", Shape(4096)) == "fp32"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_fp32_attention_keeps_the_padding_mask_and_runs_in_fp32_under_autocast(monkeypatch):
    model = small_llama()
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # left padding: without the mask row 0 changes
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        unmasked = model(input_ids=ids).logits
        assert use_fp32_attention(model)
        got = model(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(unmasked[0, 2:], expected[0, 2:], atol=1e-4)  # the mask matters here
        torch.testing.assert_close(got[:, 2:], expected[:, 2:], atol=1e-6, rtol=1e-5)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, value, *args, **kwargs):
        calls.append((torch.is_autocast_enabled("cpu"), {query.dtype, key.dtype, value.dtype}))
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, attention_mask=mask)
    assert calls == [(False, {torch.float32})] * 2  # both layers: autocast off, every input fp32

def test_fast_dropout_keeps_one_minus_p_scales_and_passes_the_same_mask_back():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(small_llama(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    assert use_fast_dropout(model) == 8  # 4 projections x 2 layers
    drop = model.base_model.model.model.layers[0].self_attn.q_proj.lora_dropout["default"]
    drop.train()
    x = torch.ones(400, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)  # 400k draws: 3 standard deviations < 0.002
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(sum)/dx is the scaled mask itself
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # the default generator: seeding reproduces the mask
    drop.eval()
    assert drop(x) is x
