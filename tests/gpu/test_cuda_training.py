"""Training on CUDA through the engine's Trainer: LoRA in bf16, QLoRA, full, freeze, DPO, a chosen GPU, DDP.

Each test trains the small Llama-shaped model of ``gpu_harness`` for a few dozen steps and checks
values: the loss is finite and falls, weights are stored in the dtypes the method promises,
and what the run saves loads back (the adapter with peft, the full weights with transformers)
and computes what the trained model computed.
"""

from __future__ import annotations

import pytest

from gpu_harness import assert_learns, batch_loss, check_lora_run, gpu_workspace, llama_dir, train, train_losses  # noqa: F401

pytestmark = pytest.mark.gpu


def dtypes(params) -> set:
    return {p.dtype for p in params}


def test_lora_stores_frozen_weights_in_bf16_trains_fp32_and_the_adapter_loads_with_peft(gpu_workspace, llama_dir):
    import torch

    torch.cuda.reset_peak_memory_stats()
    check_lora_run(gpu_workspace, llama_dir, "cuda")
    assert torch.cuda.max_memory_allocated() > 0


def test_qlora_trains_on_4_bit_weights_and_its_adapter_loads_onto_the_bf16_base(gpu_workspace, llama_dir):
    pytest.importorskip("bitsandbytes")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.models import load_tokenizer

    run_dir, trainer = train(gpu_workspace, llama_dir, method="qlora", lr=3e-3, name="qlora")
    assert_learns(train_losses(run_dir))
    four_bit = [m for m in trainer.model.modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit, "no layer was quantized to 4 bits"
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}
    config = (run_dir / "adapter" / "adapter_config.json").read_text()
    assert "gate_proj" in config and "down_proj" in config  # LoRA on every linear layer, as QLoRA does

    tokenizer = load_tokenizer(llama_dir)
    base = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.bfloat16).to("cuda")
    base_loss = batch_loss(base, tokenizer, "cuda")
    loaded = PeftModel.from_pretrained(base, run_dir / "adapter").to("cuda").eval()
    assert batch_loss(loaded, tokenizer, "cuda") < base_loss - 0.3


def test_full_fine_tuning_keeps_fp32_master_weights_and_saves_what_it_trained(gpu_workspace, llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.models import load_tokenizer

    run_dir, trainer = train(gpu_workspace, llama_dir, method="full", lr=1e-3, name="full")
    assert_learns(train_losses(run_dir), drop=2.0)
    assert dtypes(trainer.model.parameters()) == {torch.float32}
    tokenizer = load_tokenizer(llama_dir)
    trainer.model.eval()
    trained_loss = batch_loss(trainer.model, tokenizer, trainer.device)
    saved = AutoModelForCausalLM.from_pretrained(run_dir / "model", dtype=torch.float32).to("cuda").eval()
    assert batch_loss(saved, tokenizer, "cuda") == pytest.approx(trained_loss, rel=1e-2)


def test_freeze_keeps_the_frozen_layers_bf16_and_unchanged(gpu_workspace, llama_dir):
    import torch
    from safetensors.torch import load_file

    stored = {}

    def record_dtypes(trainer):
        for index, layer in enumerate(trainer.model.model.layers):
            weight = layer.self_attn.q_proj.weight
            stored[index] = (weight.dtype, weight.requires_grad)

    run_dir, trainer = train(gpu_workspace, llama_dir, method="freeze", freeze_layers=2, lr=1e-3, name="freeze",
                             after_setup=record_dtypes)
    assert_learns(train_losses(run_dir), drop=1.0)
    # Frozen layers in bf16, trained ones in fp32 (the final save then makes the folder one dtype).
    assert stored == {0: (torch.bfloat16, False), 1: (torch.bfloat16, False), 2: (torch.float32, True),
                      3: (torch.float32, True)}
    original = load_file(llama_dir / "model.safetensors")
    layers = trainer.model.model.layers
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(layers[0].self_attn.q_proj.weight.cpu().to(torch.bfloat16), original[name])
    before = original["model.layers.3.self_attn.q_proj.weight"].float()
    assert float((layers[3].self_attn.q_proj.weight.detach().cpu() - before).abs().max()) > 1e-3  # trained layers moved
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert torch.equal(saved[name].to(torch.bfloat16), original[name])


def test_dpo_learns_the_preferences_on_cuda(gpu_workspace, llama_dir):
    import math

    from safetensors.torch import load_file

    run_dir, trainer = train(gpu_workspace, llama_dir, method="dpo", dataset="datasets/dpo_concise.jsonl", lr=5e-3,
                             max_steps=16, batch_size=4, name="dpo")
    losses = train_losses(run_dir)
    assert all(math.isfinite(x) for x in losses) and losses[0] == pytest.approx(math.log(2), abs=1e-2)
    assert sum(losses[-4:]) / 4 < math.log(2) - 0.1, losses  # the policy moved away from the reference, the right way
    reference = load_file(run_dir / "reference_logps.safetensors")["train"]
    assert reference.shape[1] == 2 and bool(reference.isfinite().all()) and bool((reference < 0).all())


@pytest.fixture
def two_gpus():
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")


def test_a_run_on_the_second_gpu_leaves_the_first_alone(gpu_workspace, llama_dir, two_gpus):
    import torch

    torch.cuda.synchronize(0)
    before = torch.cuda.memory_allocated(0)
    run_dir, trainer = train(gpu_workspace, llama_dir, device="cuda:1", method="lora", lr=3e-3, max_steps=10,
                             name="second")
    assert torch.cuda.current_device() == 1  # torch.cuda.set_device: syncs and allocator calls go to GPU 1
    assert {p.device for p in trainer.model.parameters()} == {torch.device("cuda", 1)}
    assert torch.cuda.memory_allocated(0) == before
    torch.cuda.set_device(0)


def test_ddp_on_two_gpus_follows_one_gpu_and_an_out_of_memory_rank_ends_the_run(gpu_workspace, llama_dir, two_gpus,
                                                                             monkeypatch):
    from tui_ft.engine.runs import create_run, launch_run, read_status
    from tui_ft.engine.runs.config import TrainConfig

    from polling import wait_for

    common = dict(dataset="datasets/seed_instructions.jsonl", method="full", lr=1e-3, max_steps=12, batch_size=8,
                  eval_split=0.0, save_every=0, warmup_ratio=0.0, seed=5, precision="fp32", device="cuda")
    one, _ = train(gpu_workspace, llama_dir, name="one", **{k: v for k, v in common.items() if k != "device"})
    two = create_run(TrainConfig(model=str(llama_dir), name="two", nproc=2, **common), gpu_workspace)
    launch_run(two)
    status = wait_for(lambda: (s := read_status(two))["state"] in ("finished", "failed", "died") and s, "the DDP run",
                      timeout=300)
    assert status["state"] == "finished", status
    # fp32 (TF32 matrix products where the engine enables them): the same curve within 0.5 %.
    assert train_losses(two) == pytest.approx(train_losses(one), rel=5e-3)
    assert len({round(x, 2) for x in train_losses(one)}) > 3  # the curve moves: the comparison means something
    assert "with nccl" in (two / "worker.log").read_text()

    # Rank 1 runs out of memory alone: NCCL must not keep rank 0 waiting for its watchdog.
    monkeypatch.setenv("TUI_FT_TEST_FAULT", "1:3:oom")
    oom = create_run(TrainConfig(model=str(llama_dir), name="oom", nproc=2, **common), gpu_workspace)
    launch_run(oom)
    status = wait_for(lambda: (s := read_status(oom))["state"] in ("finished", "failed", "died") and s,
                      "the run with an out-of-memory rank to end", timeout=180)
    assert status["state"] == "failed" and status["message"].startswith("rank 1 failed: out of memory"), status
