"""Weight storage: which dtype each method loads in, and the fp32 upcast of 16-bit linear layers."""

from __future__ import annotations

import pytest
import torch

from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.record import RunRecord
from tui_ft.engine.training import weight_storage
from tui_ft.engine.training.weight_storage import compute_in_fp32, load_dtype


@pytest.mark.parametrize(("method", "dpo_mode", "weight_dtype", "expected"), [
    ("lora", "lora", "auto", torch.bfloat16),
    ("qlora", "lora", "auto", torch.bfloat16),  # what is not 4-bit (embeddings, head) is bf16
    ("freeze", "lora", "auto", torch.bfloat16),  # the trained layers go back to fp32 after loading
    ("dpo", "lora", "auto", torch.bfloat16),
    ("full", "lora", "auto", torch.float32),  # fp32 master weights unless asked otherwise
    ("dpo", "full", "auto", torch.float32),
    ("full", "lora", "bfloat16", torch.bfloat16),  # pure bf16, asked for
    ("lora", "lora", "float32", torch.float32),
])
def test_each_method_loads_its_weights_in_the_dtype_that_saves_memory(method, dpo_mode, weight_dtype, expected):
    config = TrainConfig(method=method, dpo_mode=dpo_mode, weight_dtype=weight_dtype)
    assert load_dtype(config, "cpu") == expected


def test_a_gpu_without_native_bf16_stores_frozen_weights_in_fp16(monkeypatch):
    monkeypatch.setattr(weight_storage, "bf16_is_native", lambda device: False)
    assert load_dtype(TrainConfig(method="lora"), "cuda:1") == torch.float16
    assert load_dtype(TrainConfig(method="lora"), "cpu") == torch.bfloat16  # the CPU upcasts instead


def test_runs_from_before_weight_dtype_resume_in_fp32():
    assert TrainConfig.from_run({"method": "lora", "dataset": "d"}).weight_dtype == "float32"
    assert TrainConfig.from_run({"method": "lora", "dataset": "d", "weight_dtype": "auto"}).weight_dtype == "auto"


@pytest.mark.parametrize("trained", [False, True])
def test_upcast_linear_matches_fp32_and_saves_only_the_16_bit_weight(trained):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24)
    layer.weight.data = layer.weight.data.bfloat16()
    layer.weight.requires_grad_(trained)
    reference = torch.nn.Linear(16, 24)
    reference.weight.data = layer.weight.data.float()
    reference.bias.data = layer.bias.data.clone()
    reference.weight.requires_grad_(trained)
    x = torch.randn(3, 5, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)

    assert compute_in_fp32(layer) == 1
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((t.dtype, tuple(t.shape))) or t, lambda t: t):
        out = layer(x)
    expected = reference(x_ref)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # Only the bf16 weight (and the input, when the weight trains): never an fp32 copy of the weight.
    assert (torch.float32, (24, 16)) not in saved and (torch.bfloat16, (24, 16)) in saved
    assert ((torch.float32, (3, 5, 16)) in saved) == trained

    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad, rtol=0, atol=1e-5)
    if trained:
        assert layer.weight.grad.dtype == torch.bfloat16
        torch.testing.assert_close(layer.weight.grad.float(), reference.weight.grad, rtol=1e-2, atol=1e-2)
    else:
        assert layer.weight.grad is None


def test_autocast_regions_use_the_ordinary_linear():
    layer = torch.nn.Linear(8, 8)
    layer.weight.data = layer.weight.data.bfloat16()
    compute_in_fp32(layer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16


def test_small_weights_stay_fp32_and_embeddings_hand_on_fp32(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    weight_storage.keep_small_weights_fp32(model)
    dtypes = {name: param.dtype for name, param in model.named_parameters()}
    assert all(dtype == torch.float32 for name, dtype in dtypes.items() if "norm" in name)
    assert dtypes["model.embed_tokens.weight"] == torch.bfloat16
    assert model.get_input_embeddings()(torch.tensor([[1, 2]])).dtype == torch.float32


def test_qlora_without_bitsandbytes_is_one_line_and_creates_nothing(workspace, tiny_model_dir, monkeypatch, capsys):
    import importlib.util

    from tui_ft.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    code = main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--method", "qlora",
                 "--dataset", "datasets/seed_instructions.jsonl", "--name", "q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "pip install 'tui_ft[gpu]'" in err[0], err
    assert not (workspace / "checkpoints" / "q").exists()


@pytest.mark.parametrize(("device", "placed"), [("cuda:1", True), ("cuda", True), ("cpu", False)])
def test_the_base_loads_straight_onto_its_gpu(monkeypatch, tiny_model_dir, device, placed):
    """Each rank loads its weights onto its own GPU, shard by shard: no full copy in host RAM first."""
    import transformers

    from tui_ft.engine.training.methods import load_base

    seen = {}

    def fake(path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(RuntimeError, match="stop here"):
        load_base(RunRecord.from_json({"model_path": str(tiny_model_dir)}), dtype=torch.bfloat16, device=device)
    assert seen["dtype"] == torch.bfloat16 and seen["use_safetensors"] is True
    assert seen.get("device_map") == ({"": device} if placed else None)
