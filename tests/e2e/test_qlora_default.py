"""QLoRA on the CPU with the default model: a 4-bit NF4 base (bitsandbytes), LoRA on every linear layer.

The adapter is plain PEFT: it loads onto the bf16 base, and the merged export is bf16.
"""

from __future__ import annotations

import math

import orjson
import pytest

from tui_ft.engine.runs import create_run, read_metrics, read_status
from tui_ft.engine.runs.config import TrainConfig
from tui_ft.engine.training.trainer import train_run

pytestmark = pytest.mark.e2e
LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
SMOLLM2_135M_PARAMETERS = 134_515_008


def test_qlora_trains_a_4_bit_base_and_its_adapter_loads_onto_the_bf16_base(workspace, default_model_path, tmp_path):
    pytest.importorskip("bitsandbytes")
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_ft.engine.training.export import export_merged

    run_dir = create_run(TrainConfig(model="default", dataset="datasets/seed_instructions.jsonl", method="qlora",
                                     max_steps=4, batch_size=8, max_length=256, lr=1e-3, eval_split=0.0,
                                     save_every=0, warmup_ratio=0.0, lora_dropout=0.0, name="q"), workspace)
    assert train_run(run_dir) == "finished", read_status(run_dir)
    records = read_metrics(run_dir)
    started = records[0]
    # Every linear layer of the 30 blocks adapted at rank 8; the 4-bit weights counted as weights, not bytes.
    # Rank r on a (in, out) layer: r * (in + out). Hidden 576, k/v 192, MLP 1536, 30 blocks.
    per_block = 2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536)
    assert started["trainable"] == 30 * 8 * per_block == 2_442_240
    assert started["total"] == SMOLLM2_135M_PARAMETERS + started["trainable"]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.05, losses  # one batch of eight, seen four times
    adapter = run_dir / "adapter"
    assert set(orjson.loads((adapter / "adapter_config.json").read_bytes())["target_modules"]) == LINEAR
    assert all("lora_" in name for name in load_file(adapter / "adapter_model.safetensors"))

    # The adapter on the bf16 base, as any PEFT user would load it: a training example got likelier.
    tokenizer = AutoTokenizer.from_pretrained(default_model_path)
    first = orjson.loads((workspace / "datasets" / "seed_instructions.jsonl").read_bytes().splitlines()[0])
    text = tokenizer.apply_chat_template([{"role": "user", "content": first["instruction"]},
                                          {"role": "assistant", "content": first["response"]}], tokenize=False)
    ids = torch.tensor([tokenizer(text)["input_ids"]])

    def nll(model) -> float:
        with torch.no_grad():
            return float(model(input_ids=ids, labels=ids).loss)

    base = AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.bfloat16)
    tuned = PeftModel.from_pretrained(base, adapter).eval()
    adapted = nll(tuned)
    with tuned.disable_adapter():
        plain = nll(tuned)
    assert adapted < plain - 0.05, (adapted, plain)

    merged_dir = export_merged(run_dir, tmp_path / "merged")
    merged = load_file(merged_dir / "model.safetensors")
    assert {value.dtype for value in merged.values()} == {torch.bfloat16}  # merged into the bf16 base
    exported = nll(AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.bfloat16).eval())
    # Merged, the weights round to bf16 once more: most of the adapter's gain survives.
    assert abs(exported - adapted) < 0.25 * (plain - adapted), (exported, adapted, plain)
