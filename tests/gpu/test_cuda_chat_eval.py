"""Chat and evaluation on CUDA: the model lands on the GPU in bf16, replies, and a trained run scores better."""

from __future__ import annotations

import math

import pytest

from gpu_harness import gpu_workspace, llama_dir, train  # noqa: F401

pytestmark = pytest.mark.gpu


def test_chat_replies_from_the_gpu_in_bf16_with_and_without_the_adapter(gpu_workspace, llama_dir):
    import torch

    from tui_ft.engine.generation.chat_model import forget_chat_models, load_chat_model
    from tui_ft.engine.generation.sampling import GenerationSettings

    run_dir, _ = train(gpu_workspace, llama_dir, method="lora", lr=3e-3, max_steps=20, name="chatty")
    try:
        chat = load_chat_model(run_dir.name, gpu_workspace)
        params = list(chat.model.parameters())
        assert {p.device.type for p in params} == {"cuda"}
        assert torch.bfloat16 in {p.dtype for p in params} and chat.has_adapter
        settings = GenerationSettings(max_new_tokens=12, temperature=0.0)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        tuned = "".join(chat.stream(messages, settings))
        assert chat.last_stats is not None and chat.last_stats.new_tokens > 0
        assert "".join(chat.stream(messages, settings)) == tuned  # greedy: the same reply twice
        "".join(chat.stream(messages, settings, use_adapter=False))
        assert chat.last_stats.new_tokens > 0  # the base answers too (noise: random weights)
    finally:
        forget_chat_models()


def test_perplexity_on_cuda_is_lower_after_training(gpu_workspace, llama_dir):
    from tui_ft.engine.evaluation.evaluate import evaluate

    run_dir, _ = train(gpu_workspace, llama_dir, method="full", lr=1e-3, max_steps=30, name="evaluated")
    data = "datasets/seed_instructions.jsonl"  # the training set: what the run learned
    base = evaluate(str(llama_dir), gpu_workspace, perplexity_path=data, use_cache=False)
    tuned = evaluate(run_dir.name, gpu_workspace, perplexity_path=data, use_cache=False)
    for result in (base, tuned):
        assert math.isfinite(result["perplexity"]) and result["tokens"] > 0
    vocab = 2048
    assert base["perplexity"] > vocab / 8  # random weights: about as unsure as the vocabulary is large
    assert tuned["perplexity"] < base["perplexity"] / 4, (base["perplexity"], tuned["perplexity"])
