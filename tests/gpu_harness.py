"""What the CUDA tests share: a small Llama-shaped model built here, and a run trained through the engine.

A GPU server may have no network and no default model, so nothing is downloaded: the
tokenizer is a byte-level BPE trained on the shipped datasets (ChatML special tokens and chat
template, like the default model's) and the model is a 4-layer Llama built from a config with
random weights, saved in bf16 as models on the Hub are. Every test in tests/gpu is marked
``gpu`` (tests/conftest.py skips them without CUDA and hides CUDA from other sessions); they
import the fixtures from here by name.

A module beside the tests rather than a tests/gpu/conftest.py: test modules import
``conftest`` by name, and a second conftest.py would take that name in ``sys.modules``. The
helpers take a device, so the harness itself is tried on the CPU
(``tests/engine/test_gpu_harness.py``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import REPO

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def dataset_texts() -> list[str]:
    """Every string in the shipped JSONL datasets (what the tokenizer learns its merges from)."""
    texts = []

    def collect(value):
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for path in sorted((REPO / "datasets").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                collect(json.loads(line))
    return texts


def build_tokenizer(folder: Path, vocab_size: int = 2048):
    """A byte-level BPE tokenizer with ChatML tokens and template, saved in ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(dataset_texts(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_llama(folder: Path, hidden: int = 256, layers: int = 4, heads: int = 8, kv_heads: int = 4,
                intermediate: int = 704, seed: int = 0) -> Path:
    """A Llama-shaped model with random weights and the tokenizer above, saved in bf16 in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    """The small Llama-shaped model folder (read-only: copy it before changing it)."""
    return build_llama(tmp_path_factory.mktemp("llama") / "model")


@pytest.fixture
def gpu_workspace(tmp_path) -> Path:
    """An empty workspace with the shipped datasets copied in."""
    shutil.copytree(REPO / "datasets", tmp_path / "datasets")
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def train(workspace: Path, model_dir: Path, device: str = "cuda", after_setup=None, **settings):
    """Create a run and train it in this process with the engine's Trainer; returns ``(run_dir, trainer)``.

    The trainer is returned set up and trained, so a test can look at its model and optimizer;
    ``after_setup(trainer)`` sees it before the first step (the final save of a freeze run
    makes the whole model fp32, as its saved folder is).
    """
    from tui_ft.engine.runs import create_run
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.trainer import Trainer

    values = dict(dataset="datasets/seed_instructions.jsonl", template="alpaca", max_steps=30, batch_size=8, eval_split=0.0,
                  save_every=0, warmup_ratio=0.0, scheduler="constant", seed=1)
    values.update(settings)
    run_dir = create_run(TrainConfig(model=str(model_dir), device=device, **values), workspace)
    trainer = Trainer(run_dir)
    try:
        trainer.setup()
        if after_setup is not None:
            after_setup(trainer)
        assert trainer.train() == "finished"
    finally:
        if trainer.metrics is not None:
            trainer.metrics.close()
    return run_dir, trainer


def train_losses(run_dir: Path) -> list[float]:
    """The run's train losses, step order."""
    from tui_ft.engine.runs import read_metrics

    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def assert_learns(losses: list[float], drop: float = 0.3) -> None:
    """Every loss finite, and the last five lower than the first five by ``drop`` (nats) or more."""
    assert losses and all(math.isfinite(x) for x in losses), losses
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - drop, f"the loss did not fall: first {first:.3f}, last {last:.3f} ({losses})"


def trained_pairs(count: int = 8) -> list[tuple[str, str]]:
    """The first examples of the training set: (prompt as the alpaca template renders it, response)."""
    rows = [json.loads(line) for line in (REPO / "datasets" / "seed_instructions.jsonl").read_text().splitlines() if line]
    return [(f"### Instruction:\n{row['instruction']}\n\n### Response:\n", row.get("response") or row.get("output"))
            for row in rows[:count]]


def batch_loss(model, tokenizer, device: str) -> float:
    """Mean loss of ``model`` on the responses of a few training examples (what the runs train on).

    Computed in bf16 autocast on CUDA, as training computes.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids, labels = [], []
    for prompt, response in trained_pairs():
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        ids.append(torch.tensor(prompt_ids + response_ids))
        labels.append(torch.tensor([-100] * len(prompt_ids) + response_ids))
    input_ids = pad_sequence(ids, batch_first=True, padding_value=tokenizer.pad_token_id).to(device)
    labels = pad_sequence(labels, batch_first=True, padding_value=-100).to(device)
    lengths = torch.tensor([len(i) for i in ids], device=device)
    mask = torch.arange(input_ids.shape[1], device=device)[None, :] < lengths[:, None]
    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        return float(model(input_ids=input_ids, attention_mask=mask.long(), labels=labels).loss)


def check_lora_run(workspace: Path, model_dir: Path, device: str) -> None:
    """Train LoRA on ``device`` and check it: the loss falls, frozen weights are bf16 and trained ones
    fp32 (the optimizer state too), and the saved adapter loads with peft onto the bf16 base and
    computes what the trained model computed."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.models import load_tokenizer

    run_dir, trainer = train(workspace, model_dir, device=device, method="lora", lr=3e-3, name="lora")
    assert_learns(train_losses(run_dir))
    if device.startswith("cuda"):
        assert trainer.precision == "bf16"
    model = trainer.model
    frozen = [p for p in model.parameters() if not p.requires_grad and p.dim() > 1]
    trained = [p for p in model.parameters() if p.requires_grad]
    assert frozen and {p.dtype for p in frozen} == {torch.bfloat16}  # 16-bit frozen weights: half of fp32
    assert trained and {p.dtype for p in trained} == {torch.float32}  # mixed precision: fp32 adapter and updates
    assert {p.device.type for p in model.parameters()} == {device.split(":")[0]}
    states = [s for s in trainer.optimizer.state.values() if "exp_avg" in s]
    assert states and {(s["exp_avg"].dtype, s["exp_avg"].device.type) for s in states} == {(torch.float32, device)}

    tokenizer = load_tokenizer(model_dir)
    model.eval()
    trained_loss = batch_loss(model, tokenizer, device)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device)
    base_loss = batch_loss(base, tokenizer, device)
    loaded = PeftModel.from_pretrained(base, run_dir / "adapter").to(device).eval()
    loaded_loss = batch_loss(loaded, tokenizer, device)
    assert loaded_loss == pytest.approx(trained_loss, rel=2e-2)  # the adapter is what was trained
    assert loaded_loss < base_loss - 0.5, (base_loss, trained_loss, loaded_loss)  # and it is not the base


def build_billion_llama(folder: Path, device: str = "cuda") -> Path:
    """A ~1.1B-parameter Llama-shaped model (hidden 2048, 22 layers, vocabulary 32000, as TinyLlama) with
    random weights, built on ``device`` and saved in bf16 with the small tokenizer (ids past it go unused)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=False, rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="1GB")
    del model
    return folder


def write_long_dataset(path: Path, examples: int = 8, words: int = 1400) -> Path:
    """Instruction examples whose responses are longer than 1024 tokens: every example fills max_length."""
    import random

    pool = sorted({word for text in dataset_texts() for word in text.split() if word.isalpha()})
    with path.open("w") as out:
        for index in range(examples):
            rng = random.Random(index)
            out.write(json.dumps({"instruction": "Continue.", "response": " ".join(rng.choice(pool) for _ in range(words))}) + "\n")
    return path


def cuda_peak_child(run_dir: str, steps: int) -> None:
    """In a fresh process: set up the run's Trainer, train ``steps`` steps, print the CUDA peak as JSON.

    The peak is what the memory plan predicts: ``torch.cuda.max_memory_allocated`` plus the
    context (what the process holds beyond the allocator's reservations), as bench/memory_plan.py measures.
    """
    import torch

    from tui_ft.engine.training.trainer import Trainer

    torch.cuda.init()
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(Path(run_dir))
    trainer.setup()
    for _ in range(steps):
        trainer._train_step()
    free, total = torch.cuda.mem_get_info()
    allocated = torch.cuda.max_memory_allocated()
    context = max(0, total - free - torch.cuda.memory_reserved())
    print("PEAK " + json.dumps({"peak": allocated + context, "allocated": allocated, "context": context}), flush=True)


def measure_cuda_peak(run_dir: Path, steps: int = 2) -> dict:
    """:func:`cuda_peak_child` in a child process (a clean allocator and context); its measurement."""
    import subprocess
    import sys

    code = f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); import gpu_harness; gpu_harness.cuda_peak_child(sys.argv[1], {steps})"
    done = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("PEAK "):])
