"""The training loop on a tiny random model, in-process: methods, what changes, resume, guards.

Each run trains a 2-layer Llama (hidden size 32) with the real tokenizer for a few steps on
eight short examples; the whole file takes seconds.
"""

from __future__ import annotations

import math
import stat
from pathlib import Path

import orjson
import pytest

from tui_ft.engine.files import current_umask
from tui_ft.engine.runs import create_run, list_checkpoints, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.runs.worker import run_worker
from tui_ft.engine.training.trainer import train_run

DATASET = "datasets/seed_instructions.jsonl"  # 8 examples


def start(home: Path, model: Path, **values) -> Path:
    """Create a run (no evaluation split unless asked) and return its folder."""
    values = {"model": str(model), "dataset": DATASET, "eval_split": 0.0, "save_every": 0, "seed": 7} | values
    return create_run(TrainConfig(**values), home)


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# The tiny model's frozen tied embeddings bound how far LoRA and freeze can move its logits
# (random weights of scale 0.02); full training moves the embeddings too. Under weight_dtype
# auto the frozen weights are bf16, which blurs LoRA's small moves a little more (a drop of
# 0.049 against 0.051 in fp32 on this model).
@pytest.mark.parametrize(("method", "lr", "drop", "weight_dtype"), [
    ("lora", 0.1, 0.04, "auto"), ("lora", 0.1, 0.05, "float32"), ("full", 1e-2, 1.0, "auto"),
    ("freeze", 1e-2, 0.1, "auto"), ("freeze", 1e-2, 0.1, "float32"),
])
def test_each_method_lowers_the_loss_and_changes_only_its_parameters(workspace, tiny_model_dir, tmp_path, method, lr,
                                                                     drop, weight_dtype):
    run_dir = start(workspace, tiny_model_dir, method=method, lr=lr, max_steps=8, batch_size=8, freeze_layers=1,
                    warmup_ratio=0.0, save_every=4, eval_dataset="datasets/seed_instructions_20.jsonl", eval_every=4,
                    weight_dtype=weight_dtype)
    assert train_run(run_dir) == "finished"
    records = read_metrics(run_dir)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 8
    assert losses[-1] < losses[0] - drop, losses  # one batch of 8, seen 8 times: memorisation shows
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]
    assert all(r["ppl"] == pytest.approx(math.exp(r["loss"]), rel=1e-6) for r in evals)
    assert evals[-1]["loss"] < evals[0]["loss"] + 0.5  # held-out loss is measured, finite and sane
    started = records[0]
    assert started["frozen"] + started["trainable"] == started["total"] and 0 < started["trainable_pct"] <= 100
    config = orjson.loads((run_dir / "run.json").read_bytes())
    assert config["template"] == "chat" and config["model_path"] == str(tiny_model_dir)
    assert config["lr"] == lr and config["versions"]["torch"]
    status = read_status(run_dir)
    assert (status["state"], status["step"], status["total_steps"]) == ("finished", 8, 8)
    assert not (run_dir / ("model" if method == "lora" else "adapter")).exists()
    if method == "lora":
        check_lora_outputs(run_dir, tiny_model_dir, tmp_path, exact=weight_dtype == "float32")
    else:
        check_full_weights(run_dir, tiny_model_dir, frozen_layers=1 if method == "freeze" else None,
                           frozen_bf16=weight_dtype == "auto")


def check_full_weights(run_dir: Path, base_dir: Path, frozen_layers: int | None, frozen_bf16: bool = False) -> None:
    """Embeddings and the first layers keep their values when frozen; every other tensor moved.

    ``frozen_bf16``: frozen matrices were stored in bf16 (``weight_dtype=auto``), so they come
    back as their bf16 rounding; vectors (norm scales) stay fp32 and exact. ``model/`` is fp32.
    """
    before, after = weights(base_dir), weights(run_dir / "model")
    assert set(before) == set(after)
    assert {value.dtype for value in after.values()} == {before[next(iter(before))].dtype}
    frozen = []
    if frozen_layers is not None:
        prefixes = ("model.embed_tokens.",) + tuple(f"model.layers.{i}." for i in range(frozen_layers))
        frozen = [n for n in before if n.startswith(prefixes)]
        assert len(frozen) == 1 + 9 * frozen_layers
    for name, value in before.items():
        kept = value.bfloat16().float() if frozen_bf16 and value.dim() > 1 else value
        assert kept.equal(after[name]) == (name in frozen), name


def check_lora_outputs(run_dir: Path, base_dir: Path, tmp_path: Path, exact: bool = True) -> None:
    """Only adapter weights train, the base stays bit-identical, and the merged export matches.

    ``exact``: trained on fp32 weights, so the merged export (fp32) matches the adapter to 1e-5;
    otherwise the base was bf16 and the export is merged into bf16, which matches to 2e-2.
    """
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.training.export import export_merged

    saved = load_file(list_checkpoints(run_dir)[-1] / "trainable.safetensors")
    assert saved and all("lora_" in name for name in saved)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    ids = torch.tensor([[1, 520, 1990, 314, 2056, 28, 42, 7, 99]])
    with torch.no_grad():
        adapted = tuned(input_ids=ids).logits
        with tuned.disable_adapter():
            plain = tuned(input_ids=ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-4)  # the adapter learned something
    for name, value in tuned.get_base_model().state_dict().items():
        if "lora_" not in name:
            assert value.equal(original[name.replace(".base_layer", "")]), name
    merged_dir = export_merged(run_dir, tmp_path / "merged")
    merged_weights = load_file(merged_dir / "model.safetensors")
    assert {value.dtype for value in merged_weights.values()} == {torch.float32 if exact else torch.bfloat16}
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted, atol=1e-5 if exact else 2e-2)
    assert orjson.loads((merged_dir / "tui_ft_export.json").read_bytes())["source"] == "adapter"
    # Every file as the umask makes them: safetensors alone wrote the weights 0600 (a teammate
    # could read the configs of a shared export, not its weights).
    umask_mode = 0o666 & ~current_umask()
    for folder in (merged_dir, run_dir / "adapter"):
        assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {
            path.name: umask_mode for path in folder.iterdir()}


class StopAfter:
    """A stop request that fires before step ``steps + 1``."""

    def __init__(self, steps: int):
        self.calls, self.steps = 0, steps

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def test_resume_reproduces_the_uninterrupted_loss_curve(workspace, tiny_model_dir):
    from safetensors.torch import load_file

    # Four micro-batches of two per epoch, two per step: the stop at step 3 falls mid-epoch,
    # and LoRA dropout draws from the random generator that the checkpoint must restore.
    common = dict(method="lora", lr=2e-2, max_steps=6, batch_size=2, grad_accum=2, lora_dropout=0.1)
    straight = start(workspace, tiny_model_dir, name="straight", **common)
    assert train_run(straight) == "finished"
    resumed = start(workspace, tiny_model_dir, name="resumed", **common)
    assert train_run(resumed, StopAfter(3)) == "stopped"
    assert read_status(resumed)["state"] == "stopped"
    assert [p.name for p in list_checkpoints(resumed)] == ["step-3"]
    assert train_run(resumed) == "finished"
    expected, got = train_losses(straight), train_losses(resumed)
    assert len(got) == len(expected) == 6
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(set(expected)) == 6  # the curve is not flat: the comparison means something
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert all((a[k] - b[k]).abs().max() < 1e-5 for k in a)
    events = [r["event"] for r in read_metrics(resumed) if r["kind"] == "event"]
    assert events == ["started", "checkpoint", "stopped", "resumed", "finished"]


def test_a_nan_loss_fails_the_run_naming_the_step(workspace, tiny_model_dir):
    # A huge learning rate blows the weights up at step 1; step 2's loss is not finite.
    run_dir = start(workspace, tiny_model_dir, method="full", lr=1e30, max_steps=5, save_every=1)
    assert run_worker(run_dir) == 1
    status = read_status(run_dir)
    assert status["state"] == "failed"
    assert "at step 2" in status["message"] and "step-1" in status["message"]
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-1"]
    assert not (run_dir / "model").exists()
    assert read_metrics(run_dir)[-1]["event"] == "failed"


def nll_sum(model, tokenized) -> tuple[float, int]:
    import torch
    import torch.nn.functional as F

    ids = torch.tensor([tokenized.input_ids])
    labels = torch.tensor([tokenized.labels])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    target = labels[0, 1:]
    mask = target != -100
    return float(F.cross_entropy(logits[mask], target[mask], reduction="sum")), int(mask.sum())


def test_loss_is_weighted_by_token_across_gradient_accumulation(workspace, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.data import load_dataset, sft_examples
    from tui_ft.engine.data.templates import tokenize_example
    from tui_ft.engine.models import load_tokenizer

    # Two examples with very different reply lengths: a mean of the two per-example means
    # differs clearly from the token-weighted mean.
    data = workspace / "datasets" / "two.jsonl"
    rows = [{"instruction": "Say hi.", "response": "Hi."},
            {"instruction": "Count.", "response": " ".join(str(i) for i in range(1, 40))}]
    data.write_text("\n".join(orjson.dumps(r).decode() for r in rows) + "\n")
    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    parts = [nll_sum(model, tokenize_example(e, tokenizer, "chat")) for e in sft_examples(load_dataset(data))]
    weighted = sum(s for s, _ in parts) / sum(n for _, n in parts)
    mean_of_means = sum(s / n for s, n in parts) / 2
    assert abs(weighted - mean_of_means) > 0.01
    accumulated = start(workspace, tiny_model_dir, name="accum", dataset=str(data), method="full", lr=1e-3,
                        max_steps=1, batch_size=1, grad_accum=2, warmup_ratio=0.0)
    single = start(workspace, tiny_model_dir, name="single", dataset=str(data), method="full", lr=1e-3,
                   max_steps=1, batch_size=2, grad_accum=1, warmup_ratio=0.0)
    train_run(accumulated)
    train_run(single)
    first = [next(r for r in read_metrics(d) if r["kind"] == "train") for d in (accumulated, single)]
    assert first[0]["loss"] == pytest.approx(weighted, abs=1e-4)
    assert first[1]["loss"] == pytest.approx(weighted, abs=1e-4)
    assert first[0]["ppl"] == pytest.approx(math.exp(weighted), rel=1e-4)
    # Same gradient either way: accumulation divides by the whole step's trained tokens.
    assert first[0]["grad_norm"] == pytest.approx(first[1]["grad_norm"], rel=1e-4)
    assert first[0]["tokens"] == first[1]["tokens"] == sum(len(tokenize_example(e, tokenizer, "chat").input_ids)
                                                           for e in sft_examples(load_dataset(data)))
