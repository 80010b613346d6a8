"""The memory plan: bytes counted by hand on a tiny config, the CLI's --plan, and the refusal before launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tui_ft.cli import main
from tui_ft.engine.runs import MemoryPlanError, TrainConfig, create_run
from tui_ft.engine.runs.device_memory import CAPACITY_ENV
from tui_ft.engine.runs.memory_count import NF4_BYTES
from tui_ft.engine.runs.memory_plan import cheapest_fix, longest_example_estimate, longest_example_tokens, plan_memory

# Two layers: q 32x32, k and v 32x16, o 32x32, gate and up 32x64, down 64x32 = 9,216 linear
# weights a layer; embeddings and an untied head of 100 x 32; five norms of 32.
TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "tie_word_embeddings": False}
LINEAR, EMBEDDING, NORMS = 2 * 9216, 100 * 32, 5 * 32
TOTAL = LINEAR + 2 * EMBEDDING + NORMS
LORA_Q_K_V_O = 2 * 8 * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 32))  # rank 8 on q, k, v, o of two layers


def plan(**settings):
    return plan_memory(TrainConfig(device="cpu", **settings), TINY, capacity=None).components


def test_weights_are_counted_in_their_storage_dtype():
    assert plan(method="full", weight_dtype="float32")["trainable"] == TOTAL * 4
    assert plan(method="full", weight_dtype="bfloat16")["trainable"] == TOTAL * 2
    assert plan(method="full")["weights"] == 0  # auto keeps fp32 master weights when everything trains
    assert plan(method="lora", weight_dtype="float32")["weights"] == TOTAL * 4
    # auto: frozen matrices bf16, norm scales fp32
    assert plan(method="lora")["weights"] == (LINEAR + 2 * EMBEDDING) * 2 + NORMS * 4
    # freeze: layer 1, the embeddings and its norms frozen; layer 2, the head and the final norm train
    frozen = plan(method="freeze", freeze_layers=1)
    assert frozen["weights"] == (9216 + EMBEDDING) * 2 + 2 * 32 * 4
    assert frozen["trainable"] == (9216 + EMBEDDING + 3 * 32) * 4


def test_gradients_and_optimizer_follow_the_trained_parameters_only():
    lora = plan(method="lora")
    assert lora["trainable"] == lora["gradients"] == LORA_Q_K_V_O * 4
    assert lora["optimizer"] == LORA_Q_K_V_O * 8  # AdamW: two fp32 states
    full = plan(method="full")
    assert full["gradients"] == TOTAL * 4 and full["optimizer"] == TOTAL * 8
    assert plan(method="full", weight_dtype="bfloat16")["optimizer"] == TOTAL * 4  # states follow the weights' dtype
    assert plan(method="lora", lora_rank=16)["optimizer"] == 2 * LORA_Q_K_V_O * 8


def test_qlora_stores_linear_layers_in_four_bits():
    qlora, lora = plan(method="qlora"), plan(method="lora")
    assert qlora["weights"] == int(LINEAR * NF4_BYTES + 2 * EMBEDDING * 2 + NORMS * 4)
    assert qlora["weights"] < lora["weights"]
    assert qlora["trainable"] > lora["trainable"]  # every linear layer gets an adapter


def test_activations_grow_with_tokens_and_checkpointing_cuts_them():
    short, long = plan(max_length=128)["activations"], plan(max_length=1024)["activations"]
    assert 7 < long / short <= 8.01
    assert plan(max_length=128, batch_size=4)["activations"] == 2 * plan(max_length=128, batch_size=2)["activations"]
    deep = {**TINY, "num_hidden_layers": 24}
    config = TrainConfig(device="cpu", max_length=1024)
    without = plan_memory(config, deep, capacity=None).components["activations"]
    with_checkpointing = plan_memory(replace(config, gradient_checkpointing=True), deep, capacity=None)
    assert with_checkpointing.components["activations"] < 0.6 * without
    # DPO runs chosen and rejected rows: twice the tokens of SFT at the same batch
    assert plan(method="dpo", max_length=512)["activations"] > 1.9 * plan(method="lora", max_length=512)["activations"]


def test_peak_is_compared_with_the_capacity():
    config = TrainConfig(device="cpu", max_length=256)
    roomy = plan_memory(config, TINY, capacity=10**12)
    assert roomy.fits and roomy.peak_bytes <= sum(roomy.components.values())
    assert "on cpu" in roomy.summary() and "needs ≈" in roomy.summary()
    tight = plan_memory(config, TINY, capacity=1000)
    assert not tight.fits and "does NOT fit" in tight.table()
    assert plan_memory(config, TINY, capacity=None).fits  # unknown capacity: nothing to refuse on
    os.environ[CAPACITY_ENV] = "12345"
    try:
        assert plan_memory(config, TINY).capacity_bytes == 12345
    finally:
        del os.environ[CAPACITY_ENV]


def test_cheapest_fix_prefers_checkpointing_then_qlora_then_batch():
    config = TrainConfig(device="cpu", batch_size=8, max_length=1024)
    deep = {**TINY, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 24, "num_attention_heads": 8,
            "num_key_value_heads": 8, "vocab_size": 1000}
    full_plan = plan_memory(config, deep, capacity=None)
    checkpointed = plan_memory(replace(config, gradient_checkpointing=True), deep, capacity=None)
    described, fixed = cheapest_fix(config, deep, checkpointed.peak_bytes + 1)
    assert described.startswith("activation checkpointing") and "batch" not in described
    assert fixed.fits and fixed.peak_bytes < full_plan.peak_bytes
    described, fixed = cheapest_fix(config, deep, int(checkpointed.peak_bytes * 0.8))
    assert "--batch-size" in described and "--grad-accum" in described and fixed.fits
    assert "--batch-size 4 --grad-accum 2" in described or "--batch-size 2 --grad-accum 4" in described \
        or "--batch-size 1 --grad-accum 8" in described
    assert cheapest_fix(config, deep, 1000) is None


def test_plan_json_from_the_cli_creates_no_run(workspace, tiny_model_dir, capsys):
    status = main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset",
                   "datasets/seed_instructions.jsonl", "--method", "lora", "--max-length", "256", "--plan", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert printed["peak_bytes"] > 0 and printed["device"] == "cpu" and printed["fits"] is True
    assert set(printed["components"]) == {"weights", "trainable", "gradients", "optimizer", "activations", "overhead"}
    assert printed["peak_bytes"] <= sum(printed["components"].values())
    assert not list((workspace / "checkpoints").iterdir())
    main(["--home", str(workspace), "train", "--model", str(tiny_model_dir), "--dataset",
          "datasets/seed_instructions.jsonl", "--method", "lora", "--plan"])
    table = capsys.readouterr().out
    assert "optimizer state" in table and "needs ≈" in table and "on cpu: fits" in table
    assert not list((workspace / "checkpoints").iterdir())


@pytest.fixture
def deep_model_dir(tmp_path, tiny_model_dir) -> Path:
    """The tiny model's files under a config of 24 wider layers: nothing loads the weights, the plan reads the config."""
    folder = tmp_path / "deep"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=512, intermediate_size=1536, num_hidden_layers=24, num_attention_heads=8,
                  num_key_value_heads=8, head_dim=64)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_long_dataset(workspace: Path) -> str:
    """Eight examples longer than 512 tokens: every batch reaches max_length."""
    rows = [json.dumps({"instruction": "Continue.", "response": " ".join(["word"] * 700)}) for _ in range(8)]
    (workspace / "datasets" / "long.jsonl").write_text("\n".join(rows) + "\n")
    return "datasets/long.jsonl"


def test_a_run_that_will_not_fit_is_refused_with_the_fix(workspace, deep_model_dir, monkeypatch, capsys):
    config = TrainConfig(model=str(deep_model_dir), dataset=write_long_dataset(workspace), device="cpu",
                         max_length=512, batch_size=8)
    needed = plan_memory(config, deep_model_dir, capacity=None).peak_bytes
    checkpointed = plan_memory(replace(config, gradient_checkpointing=True), deep_model_dir, capacity=None).peak_bytes
    assert checkpointed < 0.7 * needed
    monkeypatch.setenv(CAPACITY_ENV, str((needed + checkpointed) // 2))
    with pytest.raises(MemoryPlanError) as refused:
        create_run(config, workspace)
    message = str(refused.value)
    assert "\n" not in message and "will not fit" in message
    assert "activation checkpointing (--set gradient_checkpointing=true)" in message
    assert "ignore_memory_plan=true" in message
    assert not list((workspace / "checkpoints").iterdir())
    # the same refusal from the CLI: one line, a non-zero exit, nothing created
    status = main(["--home", str(workspace), "train", "--model", str(deep_model_dir), "--dataset",
                   "datasets/long.jsonl", "--method", "lora", "--max-length", "512", "--batch-size", "8",
                   "--device", "cpu", "--detach"])
    error = capsys.readouterr().err.strip()
    assert status != 0 and "gradient_checkpointing=true" in error and len(error.splitlines()) == 1
    assert not list((workspace / "checkpoints").iterdir())
    # the user overrides it
    run_dir = create_run(replace(config, ignore_memory_plan=True), workspace)
    assert json.loads((run_dir / "run.json").read_text())["ignore_memory_plan"] is True
    # a run created to be started elsewhere (torchrun across servers) is not planned here
    assert create_run(replace(config, name="elsewhere"), workspace, check_plan=False).is_dir()


def test_short_examples_are_planned_at_their_length(workspace, deep_model_dir, tokenizer, monkeypatch):
    from tui_ft.engine.data import load_dataset
    from tui_ft.engine.data.stats import token_lengths

    dataset = workspace / "datasets" / "seed_instructions.jsonl"
    longest = longest_example_tokens(dataset, tokenizer, "alpaca")
    assert longest == max(token_lengths(load_dataset(dataset), tokenizer, "alpaca")) < 512
    # the Train form's estimate, without a tokenizer: within a factor of two here
    assert longest / 2 < longest_example_estimate(dataset) < 2 * longest
    config = TrainConfig(model=str(deep_model_dir), dataset=str(dataset), device="cpu", max_length=512,
                         batch_size=8, template="alpaca")
    at_length = plan_memory(config, deep_model_dir, capacity=None)
    as_long = plan_memory(config, deep_model_dir, capacity=None, longest=longest)
    assert as_long.peak_bytes < 0.5 * at_length.peak_bytes
    assert f"8 × {longest} tokens (the longest example)" in as_long.notes["activations"]
    # a run whose examples are short is not refused for what max_length would need
    monkeypatch.setenv(CAPACITY_ENV, str((as_long.peak_bytes + at_length.peak_bytes) // 2))
    assert create_run(config, workspace).is_dir()


def test_plan_module_imports_without_torch():
    code = ("import sys; import tui_ft.engine.runs.memory_plan as m; "
            "from tui_ft.engine.runs import TrainConfig; "
            "m.plan_memory(TrainConfig(device='cpu'), {'hidden_size': 8, 'num_hidden_layers': 1, 'vocab_size': 10}); "
            "print('torch' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


MEASURE = """
import json, sys
from pathlib import Path
from tui_ft.engine.training.trainer import Trainer
trainer = Trainer(Path(sys.argv[1]))
trainer.setup()
trainer._train_step()
status = Path('/proc/self/status').read_text().splitlines()
print(json.dumps(next(int(line.split()[1]) * 1024 for line in status if line.startswith('VmHWM'))))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc")
def test_plan_is_near_a_measured_peak(workspace, tiny_model_dir):
    # The tiny model's 49,152-token vocabulary makes the logits and the loss the bulk of the
    # peak (about 2 GB at 8 x 512 tokens): the part of the plan that grows with a run's shape.
    config = TrainConfig(model=str(tiny_model_dir), dataset=write_long_dataset(workspace), device="cpu", batch_size=8,
                         max_length=512, max_steps=1, eval_split=0.0, save_every=0, template="alpaca")
    run_dir = create_run(config, workspace)
    planned = plan_memory(config, tiny_model_dir, capacity=None).peak_bytes
    measured = json.loads(subprocess.run([sys.executable, "-c", MEASURE, str(run_dir)], capture_output=True,
                                         text=True, check=True, timeout=600).stdout.splitlines()[-1])
    print(f"plan {planned / 1e9:.2f} GB, measured {measured / 1e9:.2f} GB")
    assert 0.7 < planned / measured < 1.4, (planned, measured)


def test_a_model_too_large_for_chat_or_evaluation_is_refused_before_loading(tmp_path, monkeypatch, tiny_model_dir):
    from tui_ft.engine.evaluation.model_session import ModelSession
    from tui_ft.engine.generation import chat_model
    from tui_ft.engine.models import ModelError
    from tui_ft.engine.runs.memory_count import CUDA_CONTEXT
    from tui_ft.engine.runs.memory_plan import check_loading, loading_bytes

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    cache = 2 * 2 * 2 * 8 * 4096 * 2  # keys and values, 2 layers, 2 kv heads of 8, 4096 tokens, bf16
    assert loading_bytes(folder, "cpu", 2) == int((TOTAL * 2 + cache) * 1.1)
    assert loading_bytes(folder, "cuda:1", 2) == int((TOTAL * 2 + cache) * 1.1 + CUDA_CONTEXT)
    monkeypatch.setenv(CAPACITY_ENV, str(loading_bytes(folder, "cpu", 4)))
    check_loading("tiny", folder, "cpu", 4)  # exactly what it needs: loaded
    monkeypatch.setenv(CAPACITY_ENV, str(loading_bytes(folder, "cpu", 4) - 1))
    with pytest.raises(ModelError, match=r"^tiny: needs about \d\.\d MB of RAM on cpu and \d\.\d MB is free: "):
        check_loading("tiny", folder, "cpu", 4)
    with pytest.raises(ModelError, match="of GPU memory on cuda:0 .* another GPU .* or stop a run using this one"):
        check_loading("tiny", folder, "cuda:0", 2)
    check_loading("tiny", tmp_path / "no-config", "cpu", 4)  # a size it cannot tell: loading says what is wrong

    # Chat and evaluation ask before any weight is read.
    monkeypatch.setenv(CAPACITY_ENV, "1000")
    monkeypatch.setattr("tui_ft.engine.models.load_model", lambda *a, **k: pytest.fail("the weights were loaded"))
    with pytest.raises(ModelError, match="needs about .* and 1 kB is free"):
        chat_model.load_chat_model(str(tiny_model_dir), tmp_path, fits=check_loading)
    import tui_ft.engine.evaluation.model_session as session_module

    monkeypatch.setattr(session_module, "load_model", lambda *a, **k: pytest.fail("the weights were loaded"))
    with pytest.raises(ModelError, match="needs about .* and 1 kB is free"):
        ModelSession(str(tiny_model_dir), tmp_path).load()


def test_chat_cli_refuses_a_model_that_does_not_fit_in_one_line(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv(CAPACITY_ENV, "1000")
    assert main(["--home", str(tmp_path), "chat", str(tiny_model_dir), "--prompt", "hi"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith(f"tui-ft: {tiny_model_dir}: needs about ")
    assert printed.err.count("\n") == 1
